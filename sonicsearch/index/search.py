"""Query: find candidate files by window search, then score each candidate exactly.

The FAISS index only proposes candidates: every query window's ``CANDIDATE_DEPTH`` nearest
indexed windows (a depth that does not depend on ``k``). Each candidate file is then scored
exactly from the stored raw vectors of all its windows against all the query's windows
(many files at once: :mod:`sonicsearch.index.scoring`), so a file's score never depends on
``k`` or on which other hits came back (beyond float32 rounding, about 1e-6), and for ``max``
and ``mean-top`` not on the index type either (IVF-PQ's approximate distances only pick
candidates; ``vote``'s background comes from the neighbours the index returns, rescored
exactly). Results for ``k`` are the first
``k`` results for any larger ``k``: when the candidates are too few for ``k``, the search
deepens (x4) and ranks the files it adds after those already ranked.

Roll-ups (``rollup=``), with S = the cosine similarities of query windows x file windows:

- ``max``: a file scores its best window pair; the span is that window.
- ``mean-top``: each window of the file scores its best match against the query's windows;
  the file scores the mean of its top ``m`` (all of them when it has fewer).
- ``vote``: time-consistent voting above the background. A query window at ``q`` s and
  the file's window at ``t`` s vote for the offset bucket ``round((t - q) / hop)`` with
  their similarity minus the query window's background (its ``BACKGROUND_RANK``-th most
  similar indexed window), when that is positive: a window that is about as close to a
  file as to a crowd of others (a noisy window, a hub) does not vote. Each query window
  counts once per bucket pair (b, b+1), so an excerpt whose offset falls half-way between
  two hops is not split; the file scores its best pair, divided by what it would be if
  every query window matched perfectly (1.0), in order. The best span is that of the
  windows that voted for it.
- segments mode ranks windows instead: each candidate window scores its best match
  against the query's windows, and names that query window's span.

A filter (``allowed``, a mask over file ids) applies inside the vector search: the backend
is given the allowed windows (a :class:`Selection`: FAISS an ID selector, Milvus its filter
expression), so files outside it are never candidates even when the filter keeps 1 % of the
collection, and the search deepens until ``k`` allowed results are ranked or the
candidates run out; once the allowed windows are no more than the depth, the last stage
scores every allowed file. The stages depend on the filter, not on ``k``, so for a fixed
filter the results for ``k`` are still the first ``k`` for any larger ``k``.

Long queries are processed in blocks of ``QUERY_BLOCK`` windows (backend searches and the
similarity blocks), so memory stays bounded however long the query clip is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sonicsearch.errors import ConfigError
from sonicsearch.index.backends.base import FieldFilter, IndexBackend, Selection
from sonicsearch.index.rollups import (  # noqa: F401 - ROLLUPS, MEAN_TOP_M: the public names
    MEAN_TOP_M,
    QUERY_BLOCK,
    ROLLUP_DEFAULT,
    ROLLUP_REGISTRY,
    ROLLUPS,
    SCORE_DECIMALS,
    similarity_blocks,
)
from sonicsearch.index.scoring import BATCHED, blocks, fits, gather
from sonicsearch.index.store import Store

CANDIDATE_DEPTH = 64  # indexed windows searched per query window, whatever k is
# vote: a query window's background is its 64th most similar indexed window (measured on a
# validation set against no background and ranks 8-32: README "What each lever bought")
BACKGROUND_RANK = 64


@dataclass
class Hit:
    """One ranked file (or, in segments mode, one window) before paths and labels."""

    file: int
    score: float
    start: float
    end: float
    query_start: float | None = None
    query_end: float | None = None


def search(
    index: IndexBackend,
    store: Store,
    vectors: np.ndarray,
    spans: np.ndarray,
    k: int,
    rollup: str,
    hop: float,
    segments: bool = False,
    exclude: int | None = None,
    max_k: int | None = None,
    exact: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
    fields: FieldFilter | None = None,
) -> list[Hit]:
    """Top-``k`` files (or windows with ``segments``) for a query's window vectors.

    Args:
        index: the generation's backend (ids = store rows).
        store: the generation's metadata.
        vectors: (nq, dim) float32 query window vectors.
        spans: (nq, 2) their start, end seconds in the query.
        k: results wanted.
        rollup: a name in ROLLUP_REGISTRY (ignored with ``segments``).
        hop: the index's hop between windows, seconds (for ``vote``).
        segments: return window hits instead of files.
        exclude: a file id to leave out (the query file itself).
        max_k: most neighbours one search may ask for (None: the backend's ``max_k``).
        exact: the stored raw vectors (row = id) candidates are scored from; None reads
            them from ``store``.
        allowed: a boolean mask over file ids: only these files may be results (None: all).
        fields: ``allowed`` as conditions on the stored fields (labels, path prefix,
            durations), for a backend that filters on them (see :class:`Selection`).

    Raises:
        ConfigError: unknown rollup or k < 1.

    One function, because the deepening loop holds the candidate set, the filter mask and
    the roll-up together; each step is a call to a small function.
    """
    spec = ROLLUP_REGISTRY.get(rollup)
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    ntotal = int(index.ntotal)
    if ntotal == 0 or len(vectors) == 0:
        return []
    stored = exact if exact is not None else store.vectors()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    spans = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    max_k = max_k or index.max_k
    limit = min(ntotal, max_k or ntotal)
    depth = min(limit, CANDIDATE_DEPTH)
    keep = eligible(store, allowed, exclude)
    pool = int(store.n_windows[keep].sum()) if keep is not None else ntotal
    ranked: list[Hit] = []
    seen = np.zeros(0, dtype=np.int64)
    near = Neighbours(index, x)  # one search per depth, shared by both uses
    floor = (background(index, store, stored, x, exclude, max_k, near)
             if spec.background and not segments else None)
    if keep is not None:  # the filter goes down to the backend; the background does not
        near = Neighbours(index, x, selection_of(store, keep, fields, exclude))
    while True:
        last = depth >= limit or (keep is not None and pool <= depth)
        if keep is not None and pool <= depth:  # no more work than the search: score them all
            found = _all_of(store, keep, segments)
        else:
            found = candidate_ids(near, store, depth, segments, exclude, keep)
        fresh = np.setdiff1d(found, seen)  # a deeper search adds after what is ranked
        seen = np.union1d(seen, fresh)
        if segments:
            ranked += _rank_windows(store, stored, x, spans, fresh)
        else:
            ranked += _ranked(score_files(store, stored, x, spans, fresh, rollup, hop, floor))
        if len(ranked) >= k or last:
            return ranked[:k]
        depth = min(limit, depth * 4)


def eligible(store: Store, allowed: np.ndarray | None, exclude: int | None
              ) -> np.ndarray | None:
    """The files that may be results as a mask (None: every file but ``exclude``)."""
    if allowed is None:
        return None
    keep = np.asarray(allowed, dtype=bool).copy()
    if keep.shape != (len(store.n_windows),):
        raise ConfigError(f"a filter mask needs one entry per indexed file "
                          f"({len(store.n_windows)}), got shape {keep.shape}")
    if exclude is not None:
        keep[exclude] = False
    return keep


def selection_of(store: Store, keep: np.ndarray, fields: FieldFilter | None,
               exclude: int | None) -> Selection:
    """The windows of the files ``keep`` allows, for the backend's search."""
    rows = np.repeat(keep, store.n_windows.astype(np.int64))
    if fields is not None and exclude is not None:
        a = int(store.first_rows[exclude])
        fields = FieldFilter(fields.labels, fields.path_prefix, fields.min_duration,
                             fields.max_duration, (a, a + int(store.n_windows[exclude])))
    return Selection(rows, fields)


def _all_of(store: Store, keep: np.ndarray, segments: bool) -> np.ndarray:
    """Every eligible file id (or window row with ``segments``)."""
    files = np.flatnonzero(keep).astype(np.int64)
    if not segments:
        return files
    return np.concatenate([np.arange(int(store.first_rows[f]),
                                     int(store.first_rows[f]) + int(store.n_windows[f]))
                           for f in files.tolist()] or [np.zeros(0, np.int64)])


class Neighbours:
    """The ids of each query window's ``depth`` nearest indexed windows, searched in blocks
    of ``QUERY_BLOCK`` windows. The first depth asked for is kept (the vote background and
    the first candidates ask for the same one in the common case: one search, not two);
    deeper ones are searched block by block and not kept, so memory stays bounded."""

    def __init__(self, index: IndexBackend, x: np.ndarray, where: Selection | None = None):
        self.index, self.x, self.where = index, x, where
        self._depth: int | None = None
        self._kept: list[np.ndarray] = []

    def __call__(self, depth: int) -> Iterator[np.ndarray]:
        if self._depth is None:
            self._depth, self._kept = depth, list(self._search(depth))
        return iter(self._kept) if depth == self._depth else self._search(depth)

    def _search(self, depth: int) -> Iterator[np.ndarray]:
        for a in range(0, len(self.x), QUERY_BLOCK):
            if self.where is None:
                yield self.index.search(self.x[a : a + QUERY_BLOCK], depth)[1]
            else:
                yield self.index.search(self.x[a : a + QUERY_BLOCK], depth, self.where)[1]


def candidate_ids(near: Neighbours, store: Store, depth: int, segments: bool,
                exclude: int | None, keep: np.ndarray | None = None) -> np.ndarray:
    """Sorted unique candidate file ids (or window rows with ``segments``)."""
    parts = []
    for ids in near(depth):
        rows = np.unique(ids[ids >= 0].astype(np.int64))
        files = store.file_of_rows(rows)
        if keep is not None:
            rows, files = rows[keep[files]], files[keep[files]]
        elif exclude is not None:
            rows, files = rows[files != exclude], files[files != exclude]
        parts.append(rows if segments else np.unique(files))
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def background(index, store: Store, stored: np.ndarray, x: np.ndarray,
               exclude: int | None = None, max_k: int | None = None,
               near: Neighbours | None = None) -> np.ndarray:
    """Each query window's background for ``vote``: the similarity of its
    ``BACKGROUND_RANK``-th most similar indexed window, computed exactly from the stored
    vectors of the windows the index returns (so an approximate index can give a slightly
    different one), the windows of ``exclude`` left out. Zeros when the index has fewer
    windows than that (a background needs a crowd to measure)."""
    ntotal = int(index.ntotal)
    skip = int(store.n_windows[exclude]) if exclude is not None else 0
    depth = min(ntotal, BACKGROUND_RANK + skip, max_k or ntotal)
    floor = np.zeros(len(x), dtype=np.float64)
    if ntotal - skip < BACKGROUND_RANK or depth < BACKGROUND_RANK:
        return floor
    if exclude is not None:
        first = int(store.first_rows[exclude])
    near = near or Neighbours(index, x)
    for a, ids in zip(range(0, len(x), QUERY_BLOCK), near(depth), strict=True):
        xb = x[a : a + QUERY_BLOCK]
        ids = ids.astype(np.int64)
        valid = ids >= 0
        if exclude is not None:
            valid &= (ids < first) | (ids >= first + skip)
        rows = np.where(valid, ids, 0)
        sims = np.empty(ids.shape, dtype=np.float64)
        for c in range(0, len(xb), 64):  # 64 x depth x dim at a time: bounded memory
            part = np.asarray(stored[rows[c : c + 64]], dtype=np.float32)
            sims[c : c + 64] = np.einsum("qd,qkd->qk", xb[c : c + 64], part)
        sims = np.where(valid, sims, -np.inf)
        kth = -np.partition(-sims, BACKGROUND_RANK - 1, axis=1)[:, BACKGROUND_RANK - 1]
        floor[a : a + len(xb)] = np.where(np.isfinite(kth), kth, 0.0)
    return floor


def file_vectors(store: Store, stored: np.ndarray, f: int) -> np.ndarray:
    a = int(store.first_rows[f])
    return np.ascontiguousarray(stored[a : a + int(store.n_windows[f])], dtype=np.float32)


def score_files(store: Store, stored: np.ndarray, x: np.ndarray, spans: np.ndarray,
                files: np.ndarray, rollup: str, hop: float, floor: np.ndarray | None
                ) -> list[Hit]:
    """The exact roll-up of each of ``files``, in blocks of files scored together
    (:mod:`sonicsearch.index.scoring`); one at a time where a roll-up has no batched form
    or a file is too large for a block."""
    batch = BATCHED.get(rollup)
    files = np.asarray(files, np.int64)
    alone = np.array([batch is None or not fits(int(store.n_windows[f]), len(x))
                      for f in files.tolist()], bool)
    hits = [_score_file(store, stored, x, spans, int(f), rollup, hop, floor)
            for f in files[alone].tolist()]
    if batch is None or alone.all():
        return hits
    table = store.span_table()
    for run in blocks(files[~alone], store.n_windows, len(x)):
        block = gather(run, store.first_rows, store.n_windows, stored, table, x)
        scores, starts, ends = batch(block, spans[:, 0], hop, floor)
        hits += [Hit(f, s, a, b) for f, s, a, b in zip(
            run.tolist(), scores.tolist(), starts.tolist(), ends.tolist(), strict=True)]
    return hits


def _score_file(store: Store, stored: np.ndarray, x: np.ndarray, spans: np.ndarray, f: int,
                rollup: str, hop: float, floor: np.ndarray | None) -> Hit:
    """The exact roll-up of one file from all its windows' vectors (``floor``: the query
    windows' backgrounds, for roll-ups that need one; None for the others)."""
    score, start, end = ROLLUP_REGISTRY.get(rollup).score(
        x, file_vectors(store, stored, f), spans[:, 0], store.file_spans(f), hop, floor)
    return Hit(f, score, start, end)


def _rank_windows(store: Store, stored: np.ndarray, x: np.ndarray, spans: np.ndarray,
                  rows: np.ndarray) -> list[Hit]:
    """Candidate windows ranked by their best match over the query (segments mode)."""
    out = []
    files = store.file_of_rows(rows)
    for f in np.unique(files):
        f = int(f)
        v = file_vectors(store, stored, f)  # whole file: the same sums whatever the rows
        local = rows[files == f] - int(store.first_rows[f])
        best, arg = np.full(len(v), -np.inf), np.zeros(len(v), np.int64)
        for a, s in similarity_blocks(x, v):
            i = s.argmax(axis=0)
            m = s[i, np.arange(len(v))]
            better = m > best  # strictly: the earliest query window wins ties
            best[better], arg[better] = m[better], a + i[better]
        file_spans = store.file_spans(f)
        for w in local.tolist():
            q = int(arg[w])
            out.append((-round(float(best[w]), SCORE_DECIMALS), int(store.first_rows[f]) + w,
                        Hit(f, float(best[w]), float(file_spans[w, 0]), float(file_spans[w, 1]),
                            float(spans[q, 0]), float(spans[q, 1]))))
    out.sort(key=lambda t: (t[0], t[1]))
    return [h for _, _, h in out]


def _ranked(items: list[Hit]) -> list[Hit]:
    """Best first; scores equal to SCORE_DECIMALS (as reported) tie, broken by file id."""
    return sorted(items, key=lambda h: (-round(h.score, SCORE_DECIMALS), h.file, h.start))
