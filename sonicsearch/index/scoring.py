"""The roll-ups of many candidate files at once: what :func:`sonicsearch.index.search.search`
scores its candidates with.

:mod:`sonicsearch.index.rollups` defines each roll-up on one file (the reference); here the
same computation runs over a block of candidate files together: their stored windows are
gathered and meet the query's windows in a few cache-sized matrix products
(:func:`sonicsearch.index.codec.similarities`), and each file's reduction (best window,
mean of the top ones, offset votes) is a segment-wise numpy reduction over its columns
(``np.maximum.reduceat`` and friends). One file at a time cost about 2 ms of Python per
candidate on the project's 2-core machine, and a 10 s clip brings up to 576 candidates;
results are the same to float32 rounding (about 1e-6; tested against the per-file
roll-ups in ``tests/index/test_scoring.py``, measured by ``benchmarks/search_speed.py
--per-file``: docs/scale.md).

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
    """The block of ``files``: their rows' similarities to the query windows ``x`` (read
    from ``stored``, either vector format) and spans. ``spans``: every stored row's
    (start, end), row order."""
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


def _groups(keys: np.ndarray) -> np.ndarray:
    """First position of each run of equal values in sorted ``keys``."""
    if not len(keys):
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]])).astype(np.int64)


@batched("vote")
def vote(block: Block, query_starts: np.ndarray, hop: float, floor: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sonicsearch.index.rollups.vote` of every file of the block. Only pairs above
    their query window's background vote (a few per query window among all the
    candidates' windows), so the buckets are kept sparse: (file, bucket, query window)."""
    hop = hop if hop > 0 else 1.0
    owner, n_files, nq = block.owner, len(block.files), len(query_starts)
    lo = np.rint((np.minimum.reduceat(block.starts, block.firsts) - query_starts.max())
                 / hop).astype(np.int64)
    above = block.sims - floor[:, None]  # similarity above the background
    q, c = np.nonzero(above > 0)  # the pairs that vote
    val, f = above[q, c], owner[c]
    b = np.rint((block.starts[c] - query_starts[q]) / hop).astype(np.int64) - lo[f]
    # pair(q, f, p) = max of the votes at buckets p and p + 1 (one vote per bucket)
    down = b >= 1
    width = int(b.max(initial=0)) + 2
    key = np.concatenate([(f * width + b) * nq + q,
                          (f[down] * width + b[down] - 1) * nq + q[down]])
    order = np.argsort(key, kind="stable")
    key, votes = key[order], np.concatenate([val, val[down]])[order]
    runs = _groups(key)
    pair_key, pair = key[runs], np.maximum.reduceat(votes, runs) if len(runs) else votes
    bucket_key = pair_key // nq  # f * width + p, sorted, query windows in order within
    runs = _groups(bucket_key)
    totals = np.add.reduceat(pair, runs) if len(runs) else pair
    fb = bucket_key[runs]
    tf, tp = fb // width, fb % width
    rounded = np.round(totals, 9)  # ties as computed in any block size
    top = np.zeros(n_files)
    np.maximum.at(top, tf, rounded)
    best = np.zeros(n_files, np.int64)  # no positive total: the first bucket, as argmax
    first = np.flatnonzero((rounded == top[tf]) & (top[tf] > 0))
    hit_files, pos = np.unique(tf[first], return_index=True)
    best[hit_files] = tp[first[pos]]
    score = np.zeros(n_files)
    at_best = tp == best[tf]
    score[tf[at_best]] = totals[at_best]
    most = max(float(np.sum(1.0 - floor)), 1e-12)
    # voters: pairs at bucket best or best + 1 whose vote is the pair's
    wanted = (f * width + best[f]) * nq + q
    i = np.minimum(np.searchsorted(pair_key, wanted), max(len(pair_key) - 1, 0))
    pair_there = np.where(pair_key[i] == wanted, pair[i], 0.0) if len(pair_key) else val
    yes = ((b == best[f]) | (b == best[f] + 1)) & (val >= pair_there)
    voted = np.zeros(len(block.starts), bool)
    voted[c[yes]] = True
    any_voted = np.maximum.reduceat(voted.astype(np.int8), block.firsts) > 0
    # a file without voters: the windows near its best bucket for some query window
    reach = np.rint((block.starts - query_starts.max()) / hop).astype(np.int64) - lo[owner]
    near = (reach <= best[owner] + 1) & (best[owner] == 0)
    use = np.where(any_voted[owner], voted, near)
    return (score / most,
            np.minimum.reduceat(np.where(use, block.starts, np.inf), block.firsts),
            np.maximum.reduceat(np.where(use, block.ends, -np.inf), block.firsts))
