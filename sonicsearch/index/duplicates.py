"""Duplicates: every group of indexed files that hold the same recording, whole or in part
(another encoding or sample rate, a trimmed, faded or louder copy, a mix that contains a
track), from the stored window vectors alone (nothing is embedded again).

A client of the index (it reads an :class:`~sonicsearch.index.reader.IndexReader`'s
backend, store and vectors; the index never calls it), in three steps:

1. **Candidates.** One stored window every ``stride`` seconds of every file is searched in
   the index for its ``BACKGROUND_RANK + OWN_SLACK`` nearest windows (batched, through the
   backend; above ``EXACT_ROWS`` windows, through an inverted file made for the run). Its
   background is its ``BACKGROUND_RANK``-th most similar window of *other* files, as for
   ``vote`` (0 when the index has too few windows). A neighbour in another
   file that rises at least ``SEED_LIFT`` of the way from the background to identical
   votes for its file pair at their time offset (in hops); a pair and offset that
   ``MIN_SEEDS`` searched windows agree on (neighbouring offsets counted together) is a
   candidate.
2. **Alignment.** Each candidate is checked exactly on its diagonal: every window of the
   first file is compared with the second file's windows at that offset (the nearest two,
   so a copy trimmed by a fraction of a hop still lines up), from the stored vectors. A
   window's *lift* is ``(similarity - background) / (1 - background)``, clipped to 0..1:
   1 for an identical window, 0 for one no closer than the crowd. Windows with a lift of
   at least ``MATCH_LIFT`` form runs (gaps of up to ``MAX_GAP`` windows); a run is a match
   when it lasts at least ``min_overlap`` seconds, or covers ``COVER_SHARE`` of the
   shorter file, and its **confidence**, the mean lift of its windows (``vote``'s scale:
   1.0 when every window matched perfectly), is at least ``min_score``.
   A match inside a better one of the same pair (in both files) is dropped.
3. **Groups.** Matches join files with union-find, best first; a group's confidence is its
   weakest joining match (the lowest edge of its maximum spanning tree).

Two tracks of one album share a sound but not a recording: their windows may be close one
by one, but not above the background window after window along one offset for
``min_overlap`` seconds. Silence and other windows that resemble much of the collection
have a background near 1 and never match.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sonicsearch.errors import ConfigError
from sonicsearch.index.search import BACKGROUND_RANK

if TYPE_CHECKING:
    from sonicsearch.index.reader import IndexReader

MIN_OVERLAP = 10.0  # seconds of one recording two files must share (or COVER_SHARE)
COVER_SHARE = 0.8  # ... or this share of the shorter file (short sounds, jingles)
STRIDE_SECONDS = 3.0  # one searched window every this many seconds (each window at most)
OWN_SLACK = 32  # neighbours searched beyond the background, for the file's own windows
SEED_LIFT = 0.5  # a neighbour half-way from the background to identical seeds a candidate
MIN_SEEDS = 2  # searched windows that must agree on a pair and offset
MATCH_LIFT = 0.5  # a window on the diagonal matches with this lift or more
MIN_SCORE = 0.5  # a match's confidence (mean lift) must reach this
MAX_GAP = 2  # a run of matching windows may skip this many (hops: a noisy bar)
SEARCH_BLOCK = 4096  # searched windows per backend call
# Up to this many windows step 1 asks the index itself (exact for a flat index); above,
# searching every window against every window grows as N^2 (a flat index of 46k windows:
# 70-90 s on 2 shared cores, benchmarks/duplicates.py), so step 1 searches a partition of
# the stored vectors made for the run: k-means into 2 sqrt(N) lists, PROBE of them probed.
EXACT_ROWS = 20_000
PROBE = 6


@dataclass(frozen=True)
class Match:
    """One span two files share: ``a``'s ``a_start..a_end`` is ``b``'s ``b_start..b_end``
    (file ids, ``a < b``; seconds), with its confidence (0..1)."""

    a: int
    b: int
    a_start: float
    a_end: float
    b_start: float
    b_end: float
    confidence: float


@dataclass
class DuplicateGroup:
    """Files that hold one recording (file ids, sorted), the matches that join them and
    the group's confidence (its weakest joining match)."""

    files: list[int]
    matches: list[Match]
    confidence: float


@dataclass
class Duplicates:
    """What :func:`find_duplicates` found; ``to_dict()`` is the duplicates JSON
    (docs/formats.md, docs/schemas/duplicates.schema.json)."""

    index: str
    paths: list[str]
    durations: list[float]
    min_overlap: float
    min_score: float
    groups: list[DuplicateGroup] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the search (not in the JSON: it varies)

    def to_dict(self) -> dict[str, Any]:
        def match(m: Match) -> dict[str, Any]:
            return {"a": self.paths[m.a], "b": self.paths[m.b],
                    "a_start": round(m.a_start, 3), "a_end": round(m.a_end, 3),
                    "b_start": round(m.b_start, 3), "b_end": round(m.b_end, 3),
                    "offset": round(m.b_start - m.a_start, 3),
                    "overlap": round(m.a_end - m.a_start, 3),
                    "confidence": round(m.confidence, 6)}

        return {"index": self.index, "files": len(self.paths),
                "min_overlap": self.min_overlap, "min_score": self.min_score,
                "groups": [{"group": i, "confidence": round(g.confidence, 6),
                            "files": [{"path": self.paths[f],
                                       "duration": round(self.durations[f], 3)}
                                      for f in g.files],
                            "matches": [match(m) for m in g.matches]}
                           for i, g in enumerate(self.groups, 1)]}


def find_duplicates(reader: IndexReader, min_overlap: float = MIN_OVERLAP,
                    min_score: float = MIN_SCORE,
                    stride_seconds: float = STRIDE_SECONDS) -> Duplicates:
    """Every group of indexed files that hold the same recording (see the module).

    Args:
        reader: an opened index.
        min_overlap: seconds of audio two files must share (>= 0); a shorter span counts
            when it covers ``COVER_SHARE`` of the shorter file.
        min_score: the lowest confidence (0..1) of a match.
        stride_seconds: one stored window every this many seconds is searched (> 0; each
            window when below the hop): larger is faster and may miss short overlaps.

    Returns:
        :class:`Duplicates`, groups best first (then by their first path).

    Raises:
        ConfigError: a negative, NaN or infinite min_overlap, min_score or stride.
    """
    _check(min_overlap, "min_overlap", 0.0)
    _check(min_score, "min_score", 0.0, 1.0)
    _check(stride_seconds, "stride_seconds", 0.0, strict=True)
    t0 = time.monotonic()
    store = reader.store
    records = store.records
    out = Duplicates(str(reader.root), [r.path for r in records],
                     [float(r.duration) for r in records], float(min_overlap), float(min_score))
    if len(records) < 2 or store.n_rows == 0:
        out.seconds = time.monotonic() - t0
        return out
    hop = float(reader.meta["features"]["hop_seconds"])
    d = _Diagonals(reader, hop, max(1, int(round(stride_seconds / hop))))
    matches = d.matches(_candidates(d), min_overlap, min_score)
    out.groups = _groups(matches, out.paths)
    out.seconds = time.monotonic() - t0
    return out


def _check(value: float, name: str, low: float, high: float | None = None,
           strict: bool = False) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value) and (
        value > low if strict else value >= low) and (high is None or value <= high)
    if not ok:
        bound = f"more than {low:g}" if strict else f"at least {low:g}"
        raise ConfigError(f"{name} must be a finite number {bound}"
                          f"{f' and at most {high:g}' if high is not None else ''}, "
                          f"got {value!r}")


class _Diagonals:
    """The index's stored windows as the three steps read them: vectors, spans, each
    window's file, and (after step 1) each window's background."""

    def __init__(self, reader: IndexReader, hop: float, stride: int):
        self.backend, self.store, self.hop, self.stride = reader.index, reader.store, hop, stride
        self.vectors = reader.store.vectors()
        self.spans = reader.store.all_spans()
        self.file_of = np.repeat(np.arange(len(self.store.records)), self.store.n_windows)
        self.floor = np.zeros(self.store.n_rows)

    def searched_rows(self) -> np.ndarray:
        """Every ``stride``-th window of each file (its first one included)."""
        local = np.arange(self.store.n_rows) - self.store.first_rows[self.file_of]
        return np.flatnonzero(local % self.stride == 0)

    def spread_floor(self) -> None:
        """Each unsearched window takes the background of its file's searched one before it."""
        local = np.arange(self.store.n_rows) - self.store.first_rows[self.file_of]
        self.floor = self.floor[np.arange(self.store.n_rows) - local % self.stride]

    def matches(self, candidates: list[tuple[int, int, int]], min_overlap: float,
                min_score: float) -> list[Match]:
        """The matches of the candidate (a, b, offset in hops) diagonals, best first, less
        those that lie within a better one of the same pair (:func:`_same_span`)."""
        runs = [m for a, b, off in candidates
                for m in self._runs(a, b, off, min_overlap, min_score)]
        found: dict[tuple[int, int], list[Match]] = {}
        for m in sorted(runs, key=lambda m: (-m.confidence, m.a, m.b, m.a_start)):
            kept = found.setdefault((m.a, m.b), [])
            if not any(_same_span(m, f) for f in kept):
                kept.append(m)
        return [m for kept in found.values() for m in kept]

    def _runs(self, a: int, b: int, off: int, min_overlap: float,
              min_score: float) -> list[Match]:
        lift, jb = self._diagonal(a, b, off)
        sa, sb = self._file_spans(a), self._file_spans(b)
        gap = MAX_GAP + 1
        shorter = min(self.store.records[a].duration, self.store.records[b].duration)
        out = []
        for i0, i1 in _runs(lift >= MATCH_LIFT, gap):
            conf = float(lift[i0 : i1 + 1].mean())
            length = float(sa[i1, 1] - sa[i0, 0])
            if conf < min_score or (length < min_overlap and length < COVER_SHARE * shorter):
                continue
            out.append(Match(a, b, float(sa[i0, 0]), float(sa[i1, 1]), float(sb[jb[i0], 0]),
                             float(sb[jb[i1], 1]), conf))
        return out

    def _diagonal(self, a: int, b: int, off: int) -> tuple[np.ndarray, np.ndarray]:
        """Each window of ``a``: its lift against ``b`` at ``off`` to ``off + 1`` hops (the
        offsets step 1 counted together: the better of the two windows of ``b`` nearest
        that; 0 outside ``b``), and that window of ``b``."""
        ra, rb = self._rows(a), self._rows(b)
        ta, tb = self.spans[ra, 0] + (off + 0.5) * self.hop, self.spans[rb, 0]
        right = np.clip(np.searchsorted(tb, ta), 0, len(tb) - 1)
        left = np.clip(right - 1, 0, len(tb) - 1)
        va = np.asarray(self.vectors[ra], np.float32)
        vb = np.asarray(self.vectors[rb], np.float32)
        sims = np.stack([np.einsum("nd,nd->n", va, vb[j]) for j in (left, right)])
        inside = np.stack([np.abs(tb[j] - ta) <= self.hop for j in (left, right)])
        sims = np.where(inside, sims, -np.inf)
        pick = np.argmax(sims, axis=0)
        best, jb = sims[pick, np.arange(len(ra))], np.where(pick == 0, left, right)
        floor = self.floor[ra]
        lift = np.where(np.isfinite(best), (best - floor) / np.maximum(1.0 - floor, 1e-6), 0.0)
        return np.clip(lift, 0.0, 1.0), jb

    def _rows(self, f: int) -> np.ndarray:
        a = int(self.store.first_rows[f])
        return np.arange(a, a + int(self.store.n_windows[f]))

    def _file_spans(self, f: int) -> np.ndarray:
        return self.spans[self._rows(f)]


def _candidates(d: _Diagonals) -> list[tuple[int, int, int]]:
    """Step 1: the (a, b, offset in hops) that ``MIN_SEEDS`` searched windows agree on,
    most agreed first; it also sets every window's background (``d.floor``)."""
    rows = d.searched_rows()
    ntotal, search = d.store.n_rows, _searcher(d)
    depth = min(ntotal, BACKGROUND_RANK + OWN_SLACK, d.backend.max_k or ntotal)
    n_files = len(d.store.records)
    span = int(np.ceil(max(r.duration for r in d.store.records) / d.hop)) + 2
    keys = []
    for i in range(0, len(rows), SEARCH_BLOCK):
        q = rows[i : i + SEARCH_BLOCK]
        sims, ids = search(np.ascontiguousarray(d.vectors[q], np.float32), depth)
        fq = d.file_of[q]
        fh = np.where(ids >= 0, d.file_of[np.maximum(ids, 0)], -1)
        other = (ids >= 0) & (fh != fq[:, None])
        floor = _background(sims, other, ntotal - d.store.n_windows[fq])
        d.floor[q] = floor
        lift = (sims - floor[:, None]) / np.maximum(1.0 - floor[:, None], 1e-6)
        hit = other & (lift >= SEED_LIFT)
        r, c = np.nonzero(hit)
        a, b = fq[r], fh[r, c]
        off = np.rint((d.spans[ids[r, c], 0] - d.spans[q[r], 0]) / d.hop).astype(np.int64)
        off = np.where(a < b, off, -off)
        key = (np.minimum(a, b) * n_files + np.maximum(a, b)) * (2 * span + 1) + off + span
        keys.append(np.unique(np.stack([q[r], key]), axis=1)[1])  # a window votes once
    d.spread_floor()
    return _agreed(np.concatenate(keys) if keys else np.zeros(0, np.int64), n_files, span)


def _searcher(d: _Diagonals):
    """``search(x, k) -> (sims, ids)`` for step 1: the index's own search up to
    ``EXACT_ROWS`` windows, else an inverted file over the stored vectors made for this run
    (its backgrounds are then those of the windows in the probed lists: at most the exact
    ones)."""
    n = d.store.n_rows
    if n <= EXACT_ROWS:
        return d.backend.search
    import faiss

    dim = d.vectors.shape[1]
    nlist = int(2 * math.sqrt(n))
    sample = np.random.default_rng(0).choice(n, min(n, 20 * nlist), replace=False)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.min_points_per_centroid = 16  # 20 per list: enough for a partition (no warning)
    ivf.train(np.ascontiguousarray(d.vectors[np.sort(sample)], np.float32))
    for a in range(0, n, 8 * SEARCH_BLOCK):
        ivf.add(np.ascontiguousarray(d.vectors[a : a + 8 * SEARCH_BLOCK], np.float32))
    ivf.nprobe = PROBE
    return ivf.search


def _background(sims: np.ndarray, other: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Each searched window's background: its ``BACKGROUND_RANK``-th most similar window
    of other files (when fewer came back, the least similar one that did: a higher,
    stricter background); 0 when the other files hold fewer windows than that."""
    rank = np.cumsum(other, axis=1)
    at = np.argmax(rank >= BACKGROUND_RANK, axis=1)
    last = sims.shape[1] - 1 - np.argmax(other[:, ::-1], axis=1)
    idx = np.where(rank[:, -1] >= BACKGROUND_RANK, at, last)
    floor = sims[np.arange(len(sims)), idx].astype(np.float64)
    floor = np.where(rank[:, -1] > 0, floor, 1.0)  # only its own file came back: no votes
    return np.where(crowd >= BACKGROUND_RANK, floor, 0.0)


def _agreed(keys: np.ndarray, n_files: int, span: int) -> list[tuple[int, int, int]]:
    """Keys (pair, offset) with ``MIN_SEEDS`` votes, offsets o and o+1 counted together."""
    uniq, counts = np.unique(keys, return_counts=True)
    nxt = np.searchsorted(uniq, uniq + 1)
    has = (nxt < len(uniq)) & (uniq[np.minimum(nxt, len(uniq) - 1)] == uniq + 1)
    merged = counts + np.where(has, counts[np.minimum(nxt, len(uniq) - 1)], 0)
    keep = np.flatnonzero(merged >= MIN_SEEDS)
    keep = keep[np.lexsort((uniq[keep], -merged[keep]))]
    pair, off = np.divmod(uniq[keep], 2 * span + 1)
    a, b = np.divmod(pair, n_files)
    return list(zip(a.tolist(), b.tolist(), (off - span).tolist(), strict=True))


def _runs(ok: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """(first, last) of each run of True, joining runs less than ``gap`` apart."""
    idx = np.flatnonzero(ok)
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _same_span(m: Match, f: Match) -> bool:
    """Whether ``m`` lies within a better match ``f`` of the same pair: its span overlaps
    ``f``'s by more than half in both files (one span found again from a neighbouring
    offset, or a passage that repeats inside the recording). A track twice in a mix is two
    matches: their spans in the mix do not overlap."""
    def within(a0: float, a1: float, b0: float, b1: float) -> bool:
        return min(a1, b1) - max(a0, b0) > 0.5 * (a1 - a0)

    return (within(m.a_start, m.a_end, f.a_start, f.a_end)
            and within(m.b_start, m.b_end, f.b_start, f.b_end))


def _groups(matches: list[Match], paths: list[str]) -> list[DuplicateGroup]:
    """Union-find over the matches, best first; each group's confidence is its weakest
    joining match."""
    parent = list(range(len(paths)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    weakest: dict[int, float] = {}
    for m in sorted(matches, key=lambda m: (-m.confidence, m.a, m.b, m.a_start)):
        ra, rb = root(m.a), root(m.b)
        if ra != rb:
            low = min(m.confidence, weakest.pop(ra, 1.0), weakest.pop(rb, 1.0))
            parent[rb] = ra
            weakest[ra] = low
    members: dict[int, list[int]] = {}
    for m in matches:
        members.setdefault(root(m.a), [])
    for f in range(len(paths)):
        if root(f) in members:
            members[root(f)].append(f)
    groups = [DuplicateGroup(sorted(files, key=lambda f: paths[f]),
                             sorted((m for m in matches if root(m.a) == r),
                                    key=lambda m: (-m.confidence, paths[m.a], paths[m.b])),
                             weakest[r])
              for r, files in members.items()]
    return sorted(groups, key=lambda g: (-round(g.confidence, 6), paths[g.files[0]]))
