"""Query: search window vectors, then roll window hits up to files.

Roll-ups (``rollup=``):

- ``max``: a file scores its best window hit.
- ``mean-top``: each of the file's hit windows scores its best match against the query's
  windows; the file scores the mean of its top ``m`` (windows of the file that were not
  returned count as the lowest score returned, an upper bound for them).
- ``vote``: time-consistent voting. A query window at ``q`` s that hits the file's window
  at ``t`` s votes for the offset bucket ``round((t - q) / hop)`` with its score. Each
  query window counts once per bucket pair (b, b+1), so an excerpt whose offset falls
  half-way between two hops is not split; the file scores its best pair, divided by the
  number of query windows (1.0 = every query window matched perfectly, in order). The
  best span is that of the windows that voted for it.

IVF-PQ scores are approximate; their hits are re-scored exactly from the stored vectors.
Every result names the best-matching span ``start``..``end`` (seconds) in the indexed file.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from sonicsearch.errors import ConfigError
from sonicsearch.index.store import Store

ROLLUPS = ("vote", "max", "mean-top")
ROLLUP_DEFAULT = "vote"  # measured: benchmarks/rollups.py, README "Measured so far"
MEAN_TOP_M = 3
WINDOWS_PER_RESULT = 8  # window hits searched per file wanted


@dataclass
class Hit:
    """One ranked file (or, in segments mode, one window) before paths and labels."""

    file: int
    score: float
    start: float
    end: float
    query_start: float | None = None
    query_end: float | None = None


@dataclass
class _Hits:
    q: np.ndarray  # query window index
    row: np.ndarray  # FAISS id
    file: np.ndarray  # file id
    score: np.ndarray
    start: np.ndarray  # span of the indexed window
    end: np.ndarray


def search(
    index: faiss.Index,
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
) -> list[Hit]:
    """Top-``k`` files (or windows with ``segments``) for a query's window vectors.

    Args:
        index: the FAISS index (ids = store rows).
        store: the generation's metadata.
        vectors: (nq, dim) float32 query window vectors.
        spans: (nq, 2) their start, end seconds in the query.
        k: results wanted.
        rollup: one of ROLLUPS (ignored with ``segments``).
        hop: the index's hop between windows, seconds (for ``vote``).
        segments: return window hits instead of files.
        exclude: a file id to leave out (the query file itself).
        max_k: most neighbours one search may ask for (GPU indexes have a limit).
        exact: the stored raw vectors (row = id); when given, hit scores are recomputed
            exactly (for compressed IVF-PQ indexes, whose own scores are approximate).

    Raises:
        ConfigError: unknown rollup or k < 1.
    """
    if rollup not in ROLLUPS:
        raise ConfigError(f"unknown rollup '{rollup}'; choose one of: {', '.join(ROLLUPS)}")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    ntotal = int(index.ntotal)
    if ntotal == 0 or len(vectors) == 0:
        return []
    limit = min(ntotal, max_k or ntotal)
    extra = int(store.n_windows[exclude]) if exclude is not None else 0
    kw = min(limit, (k if segments else k * WINDOWS_PER_RESULT) + extra)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    while True:
        scores, ids = index.search(x, kw)
        hits = _collect(x, scores, ids, store, exclude, exact)
        if segments:
            ranked = _segments(hits, spans)
        elif rollup == "max":
            ranked = _max(hits)
        elif rollup == "mean-top":
            floor = float(hits.score.min()) if hits.score.size else 0.0
            ranked = _mean_top(hits, store.n_windows, MEAN_TOP_M, floor)
        else:
            ranked = _vote(hits, spans[:, 0], hop, len(x))
        # Too few distinct files among the hits: search deeper (cheap next to embedding).
        if len(ranked) >= k or kw >= limit:
            return ranked[:k]
        kw = min(limit, kw * 4)


def _collect(x, scores, ids, store: Store, exclude: int | None, exact) -> _Hits:
    q, col = np.nonzero(ids >= 0)
    row = ids[q, col].astype(np.int64)
    file = store.file_of_rows(row)
    keep = file != exclude if exclude is not None else np.ones(row.size, bool)
    q, row, file, score = q[keep], row[keep], file[keep], scores[q, col][keep]
    if exact is not None and row.size:
        unique, inverse = np.unique(row, return_inverse=True)  # sorted reads of the map
        score = np.einsum("ij,ij->i", x[q], np.asarray(exact[unique])[inverse])
    spans = store.spans(row)
    return _Hits(q, row, file, score.astype(np.float64), spans[:, 0], spans[:, 1])


def _groups(keys: np.ndarray, order: np.ndarray):
    """Yield (key, indices) for runs of equal keys[order]."""
    sorted_keys = keys[order]
    cuts = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    for part in np.split(order, cuts):
        if part.size:
            yield int(keys[part[0]]), part


def _ranked(items: list[Hit]) -> list[Hit]:
    return sorted(items, key=lambda h: (-h.score, h.file, h.start))


def _max(h: _Hits) -> list[Hit]:
    order = np.lexsort((h.start, -h.score, h.file))
    out = []
    for f, idx in _groups(h.file, order):
        i = idx[0]
        out.append(Hit(f, float(h.score[i]), float(h.start[i]), float(h.end[i])))
    return _ranked(out)


def _mean_top(h: _Hits, n_windows: np.ndarray, m: int, floor: float) -> list[Hit]:
    order = np.lexsort((-h.score, h.row))
    best = order[np.r_[True, h.row[order][1:] != h.row[order][:-1]]] if order.size else order
    out = []
    for f, idx in _groups(h.file, best[np.lexsort((h.start[best], -h.score[best],
                                                   h.file[best]))]):
        m_eff = max(1, min(m, int(n_windows[f])))
        top = list(h.score[idx[:m_eff]]) + [floor] * (m_eff - min(m_eff, idx.size))
        i = idx[0]
        out.append(Hit(f, float(np.mean(top)), float(h.start[i]), float(h.end[i])))
    return _ranked(out)


def _vote(h: _Hits, query_starts: np.ndarray, hop: float, nq: int) -> list[Hit]:
    hop = hop if hop > 0 else 1.0
    bucket = np.rint((h.start - query_starts[h.q]) / hop).astype(np.int64)
    positive = np.maximum(h.score, 0.0)
    out = []
    for f, idx in _groups(h.file, np.argsort(h.file, kind="stable")):
        bq, bs = h.q[idx], positive[idx]
        bb = bucket[idx] - bucket[idx].min()
        votes = np.zeros((nq, int(bb.max()) + 2))
        np.maximum.at(votes, (bq, bb), bs)  # one vote per query window and bucket
        pair = np.maximum(votes[:, :-1], votes[:, 1:])  # buckets b and b+1 merged
        totals = pair.sum(axis=0)
        b = int(np.argmax(totals))
        voted = ((bb == b) | (bb == b + 1)) & (bs > 0) & (bs >= pair[bq, b])
        if not voted.any():
            voted = (bb == b) | (bb == b + 1)
        out.append(Hit(f, float(totals[b] / nq), float(h.start[idx][voted].min()),
                       float(h.end[idx][voted].max())))
    return _ranked(out)


def _segments(h: _Hits, query_spans: np.ndarray) -> list[Hit]:
    order = np.lexsort((h.q, -h.score, h.row))
    best = order[np.r_[True, h.row[order][1:] != h.row[order][:-1]]] if order.size else order
    best = best[np.lexsort((h.row[best], -h.score[best]))]
    return [Hit(int(h.file[i]), float(h.score[i]), float(h.start[i]), float(h.end[i]),
                float(query_spans[h.q[i], 0]), float(query_spans[h.q[i], 1])) for i in best]
