"""The roll-ups of many candidate files at once: what :func:`sonicsearch.index.search.search`
scores its candidates with.

:mod:`sonicsearch.index.rollups` defines each roll-up on one file (the reference); here the
same computation runs over a block of candidate files together: their stored windows are
gathered in one array, the query's windows meet them in one matrix product, and each
file's reduction (best window, mean of the top ones, offset votes) is a segment-wise numpy
reduction over its columns (``np.maximum.reduceat`` and friends). One file at a time cost
about 2 ms of Python per candidate on the project's 2-core machine, and a 10 s clip brings
up to 384 candidates at 10^6 windows; results are the same, to float rounding (tested
against the per-file roll-ups in ``tests/index/test_scoring.py``).

A block holds at most :data:`BLOCK_CELLS` query-window x column cells (memory stays
bounded however long the clip); a file too large for a block on its own, or a roll-up
registered without a batched form here, is scored one file at a time as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from sonicsearch.index.codec import similarities
from sonicsearch.index.rollups import MEAN_TOP_M, SCORE_DECIMALS

# query windows x (file windows + offset buckets) per block: ~16 MB per float64 array
BLOCK_CELLS = 1 << 21


@dataclass
class Block:
    """Candidate files scored together: ``sims`` (nq, columns) holds the query windows'
    cosines with every window of every file, file ``i`` owning columns
    ``bounds[i]:bounds[i + 1]``."""

    files: np.ndarray  # (F,) file ids
    bounds: np.ndarray  # (F + 1,) first column of each file, then the end
    owner: np.ndarray  # (columns,) position in ``files`` of each column's file
    sims: np.ndarray  # (nq, columns) float64
    starts: np.ndarray  # (columns,) file windows' start seconds
    ends: np.ndarray  # (columns,) end seconds

    @property
    def firsts(self) -> np.ndarray:
        return self.bounds[:-1]


BatchFn = Callable[[Block, np.ndarray, float, np.ndarray | None],
                   tuple[np.ndarray, np.ndarray, np.ndarray]]
BATCHED: dict[str, BatchFn] = {}  # roll-up name -> its batched form


def batched(name: str) -> Callable[[BatchFn], BatchFn]:
    """Decorator: the batched form of roll-up ``name``: ``fn(block, query_starts, hop,
    floor) -> (scores, starts, ends)``, one entry per file of the block."""

    def add(fn: BatchFn) -> BatchFn:
        BATCHED[name] = fn
        return fn

    return add


def cells(n_windows: int, nq: int) -> int:
    """The cells one file takes in a block: its windows and its offset buckets (``vote``
    has at most windows + query windows + 1), times the query windows."""
    return nq * (2 * n_windows + nq + 1)


def fits(n_windows: int, nq: int) -> bool:
    """Whether one file of ``n_windows`` windows fits a block by itself."""
    return n_windows > 0 and cells(n_windows, nq) <= BLOCK_CELLS


def blocks(files: np.ndarray, n_windows: np.ndarray, nq: int) -> Iterator[np.ndarray]:
    """Runs of ``files`` (each of which :func:`fits`) whose cells fit BLOCK_CELLS."""
    run: list[int] = []
    used = 0
    for f in files.tolist():
        cost = cells(int(n_windows[f]), nq)
        if run and used + cost > BLOCK_CELLS:
            yield np.asarray(run, np.int64)
            run, used = [], 0
        run.append(f)
        used += cost
    if run:
        yield np.asarray(run, np.int64)


def gather(files: np.ndarray, first_rows: np.ndarray, n_windows: np.ndarray,
           stored, spans: np.ndarray, x: np.ndarray) -> Block:
    """The block of ``files``: their rows' vectors read from ``stored`` in one gather, and
    their similarities to the query windows ``x`` in one product. ``spans``: every
    stored row's (start, end), row order."""
    counts = n_windows[files]
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    owner = np.repeat(np.arange(len(files)), counts)
    rows = first_rows[files][owner] + (np.arange(int(bounds[-1])) - bounds[:-1][owner])
    return Block(files, bounds, owner, similarities(stored, x, rows), spans[rows, 0],
                 spans[rows, 1])


def first_in_order(block: Block, key: np.ndarray) -> np.ndarray:
    """Per file, the column first in the order (-``key`` rounded to SCORE_DECIMALS, start
    second, column third): what ``np.lexsort((starts, -round(key)))[0]`` picks per file.
    ``key`` is -inf for columns already taken."""
    rounded = np.round(key, SCORE_DECIMALS)
    top = np.maximum.reduceat(rounded, block.firsts)
    at_top = rounded == top[block.owner]
    earliest = np.minimum.reduceat(np.where(at_top, block.starts, np.inf), block.firsts)
    idx = np.flatnonzero(at_top & (block.starts == earliest[block.owner]))
    _, first = np.unique(block.owner[idx], return_index=True)
    return idx[first]


@batched("max")
def best_pair(block: Block, query_starts: np.ndarray, hop: float, floor: None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sonicsearch.index.rollups.best_pair` of every file of the block."""
    best = block.sims.max(axis=0)
    w = first_in_order(block, best)
    return best[w], block.starts[w], block.ends[w]


@batched("mean-top")
def mean_top(block: Block, query_starts: np.ndarray, hop: float, floor: None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sonicsearch.index.rollups.mean_top` of every file of the block."""
    best = block.sims.max(axis=0)
    m = np.maximum(1, np.minimum(MEAN_TOP_M, np.diff(block.bounds)))
    key = best.copy()
    total = np.zeros(len(block.files))
    first = None
    for i in range(int(m.max())):
        w = first_in_order(block, key)
        first = w if first is None else first
        total = np.where(i < m, total + best[w], total)
        key[w] = -np.inf
    return total / m, block.starts[first], block.ends[first]


def scatter_max(bucket: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
    """``out[q, bucket[q, c]] = max(values[q, c] over c)`` (0 where none), ``out`` of shape
    (nq, width): ``np.maximum.at``, but as one ``reduceat`` over runs of equal buckets when
    the buckets rise along each row (windows in time order: the stored order), which is
    many times faster."""
    nq = len(bucket)
    out = np.zeros((nq, width))
    keys = (bucket + (np.arange(nq) * width)[:, None]).ravel()
    step = np.diff(keys)
    if len(keys) and (step >= 0).all():
        runs = np.concatenate([[0], np.flatnonzero(step) + 1])
        out.ravel()[keys[runs]] = np.maximum.reduceat(values.ravel(), runs)
    else:
        np.maximum.at(out, (np.broadcast_to(np.arange(nq)[:, None], bucket.shape), bucket),
                      values)
    return out


@batched("vote")
def vote(block: Block, query_starts: np.ndarray, hop: float, floor: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sonicsearch.index.rollups.vote` of every file of the block: each file's
    offset buckets (and one pad) laid side by side on one axis."""
    hop = hop if hop > 0 else 1.0
    owner = block.owner
    lo = np.rint((np.minimum.reduceat(block.starts, block.firsts) - query_starts.max())
                 / hop).astype(np.int64)
    n_buckets = np.rint((np.maximum.reduceat(block.starts, block.firsts) - query_starts.min())
                        / hop).astype(np.int64) - lo + 1
    base = np.concatenate([[0], np.cumsum(n_buckets + 1)]).astype(np.int64)
    bucket = (np.rint((block.starts[None, :] - query_starts[:, None]) / hop).astype(np.int64)
              + (base[:-1] - lo)[owner])
    above = block.sims - floor[:, None]  # similarity above the background
    votes = scatter_max(bucket, np.maximum(above, 0.0), int(base[-1]))  # one vote per bucket
    pair = np.maximum(votes[:, :-1], votes[:, 1:])  # buckets b, b+1 merged
    totals = pair.sum(axis=0)
    valid = np.repeat(np.arange(len(n_buckets)), n_buckets)  # pads left out
    cols = np.arange(len(valid)) - np.concatenate([[0], np.cumsum(n_buckets)])[:-1][valid]
    cols = cols + base[:-1][valid]
    rounded = np.round(totals[cols], 9)  # ties as computed in any block size
    firsts = np.concatenate([[0], np.cumsum(n_buckets)[:-1]])
    hit = np.flatnonzero(rounded == np.maximum.reduceat(rounded, firsts)[valid])
    _, pos = np.unique(valid[hit], return_index=True)
    best = cols[hit[pos]]  # each file's best bucket, on the shared axis
    most = max(float(np.sum(1.0 - floor)), 1e-12)
    b = best[owner]
    near = (bucket == b) | (bucket == b + 1)
    voted = (near & (above > 0) & (above >= pair[:, b])).any(axis=0)
    any_voted = np.maximum.reduceat(voted.astype(np.int8), block.firsts) > 0
    use = np.where(any_voted[owner], voted, near.any(axis=0))
    return (totals[best] / most,
            np.minimum.reduceat(np.where(use, block.starts, np.inf), block.firsts),
            np.maximum.reduceat(np.where(use, block.ends, -np.inf), block.firsts))
