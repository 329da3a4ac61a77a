"""Style vectors in an index: what each file (and each ~20 s segment of it) sounds like,
beside the window vectors that find the recording.

On disk, in each generation::

    style-vectors.npy    (files + segments, S) float16: every file's vector (row = file id),
                         then every segment's, L2-normalised
    style-segments.npy   (segments, 3) float64: file id, start, end seconds

and index.json's ``style`` entry: ``kind`` (``head``: the model's style head;
``window-mean``: the mean of the window vectors, for a model without one), ``dim``,
``files``, ``segments``, ``segment_seconds``. float16 keeps them small: a 128-d head vector
is 256 bytes per 20 s segment, against 20 window vectors of 2 KiB each for the base model.

A style query is one vector (the clip's whole-file style vector). A file scores the best
cosine of its own vector and its segments' (so a long file can be similar in parts), and
its span is its best segment; in segments mode each segment is a result. The search is
exact (a matrix product; 10^4 tracks are about 10^5 segments), so a filtered top-k is
complete.

Indexes built before style vectors hold none: a model without a style head gets them
pooled from the stored window vectors when first needed (nothing is re-embedded), and the
next ``build-index`` stores them (:func:`style_note` says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.embed.types import SEGMENT_SECONDS, StyleVectors, pool_style
from sonicsearch.errors import IndexStoreError
from sonicsearch.index import layout as L
from sonicsearch.index.search import Hit

STYLE_VECTORS = "style-vectors.npy"
STYLE_SEGMENTS = "style-segments.npy"
STYLE_FILES = (STYLE_VECTORS, STYLE_SEGMENTS)
WINDOW_MEAN = "window-mean"  # the style kind of a model without a style head


@dataclass
class StyleTable:
    """An index's style vectors in memory: ``files (n, S)``, ``segments (m, S)`` (float32,
    normalised), each segment's ``owner (m,)`` file id and ``spans (m, 2)``."""

    kind: str
    files: np.ndarray
    segments: np.ndarray
    owner: np.ndarray
    spans: np.ndarray
    stored: bool = True  # False: pooled from the window vectors when opened

    def __post_init__(self) -> None:
        n = len(self.files)
        self.file_span = np.zeros((n, 2), np.float64)  # each file's first to last second
        self.file_span[:, 0] = np.inf
        np.minimum.at(self.file_span[:, 0], self.owner, self.spans[:, 0])
        np.maximum.at(self.file_span[:, 1], self.owner, self.spans[:, 1])

    @property
    def dim(self) -> int:
        return int(self.files.shape[1])

    def hits(self, query: np.ndarray, depth: int, segments: bool = False,
             exclude: int | None = None, allowed: np.ndarray | None = None) -> list[Hit]:
        """The best ``depth`` files (or segments) by cosine to ``query (S,)``, best first;
        ``allowed`` is a mask of file ids, ``exclude`` one file id to leave out. Ties keep
        file (segment) order, so the hits for a depth are the first ones for any larger."""
        q = np.asarray(query, np.float32).reshape(-1)
        # ranked as reported (6 decimals), in float64 so a reported score is the one compared
        seg_scores = np.round((self.segments @ q).astype(np.float64), 6)
        n = len(self.files)
        keep = np.ones(n, bool) if allowed is None else np.asarray(allowed, bool).copy()
        if exclude is not None and 0 <= exclude < n:
            keep[exclude] = False
        if segments:
            scores = np.where(keep[self.owner], seg_scores, -np.inf)
            order = _top(scores, depth)
            return [Hit(int(self.owner[i]), float(scores[i]), float(self.spans[i, 0]),
                        float(self.spans[i, 1])) for i in order]
        best_seg = np.full(n, -np.inf, np.float64)
        np.maximum.at(best_seg, self.owner, seg_scores)
        file_scores = np.round((self.files @ q).astype(np.float64), 6)
        scores = np.where(keep, np.maximum(file_scores, best_seg), -np.inf)
        order = _top(scores, depth)
        first = _first_best_segment(seg_scores, self.owner, best_seg)
        out = []
        for f in order:
            i = first.get(int(f))
            span = self.file_span[f] if i is None else self.spans[i]
            out.append(Hit(int(f), float(scores[f]), float(span[0]), float(span[1])))
        return out

    def of(self, file_id: int) -> StyleVectors:
        """One file's StyleVectors (segments are stored file by file, in file order)."""
        a, b = np.searchsorted(self.owner, [file_id, file_id + 1])
        return StyleVectors(self.files[file_id], self.segments[a:b], self.spans[a:b])

    def file_vector(self, file_id: int) -> np.ndarray:
        """One indexed file's style vector (what ``/files/{id}/similar`` queries with)."""
        return self.files[file_id]


def _top(scores: np.ndarray, depth: int) -> np.ndarray:
    """Indices of the ``depth`` highest finite scores, best first, ties in index order."""
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.argsort(-scores[finite], kind="stable")]
    return order[:max(0, depth)]


def _first_best_segment(seg_scores: np.ndarray, owner: np.ndarray,
                        best: np.ndarray) -> dict[int, int]:
    """file id -> its first segment scoring its best."""
    out: dict[int, int] = {}
    for i in np.flatnonzero(seg_scores >= best[owner]):
        out.setdefault(int(owner[i]), int(i))
    return out


def write_style(gen: Path, per_file: Sequence[StyleVectors], kind: str) -> dict[str, Any]:
    """Write a generation's style files (file ids = positions of ``per_file``), fsynced.

    Returns:
        index.json's ``style`` entry.
    """
    dim = per_file[0].dim if per_file else 0
    files = np.stack([s.file for s in per_file]) if per_file else np.zeros((0, dim))
    segs = [s.segments for s in per_file]
    rows = np.vstack([files, *segs]) if per_file else np.zeros((0, dim))
    table = np.zeros((sum(len(s) for s in segs), 3), np.float64)
    at = 0
    for file_id, s in enumerate(per_file):
        table[at : at + len(s.segments), 0] = file_id
        table[at : at + len(s.segments), 1:] = s.spans
        at += len(s.segments)
    for name, array in ((STYLE_VECTORS, rows.astype(np.float16)), (STYLE_SEGMENTS, table)):
        with open(gen / name, "wb") as f:
            np.save(f, array)
        L.fsync_file(gen / name)
    return {"kind": kind, "dim": int(dim), "files": len(per_file), "segments": at,
            "segment_seconds": SEGMENT_SECONDS}


def read_style(gen: Path, meta: dict[str, Any]) -> StyleTable | None:
    """The stored style vectors of a generation; None when it holds none (built before).

    Raises:
        IndexStoreError: style files that are missing or do not match index.json.
    """
    entry = meta.get("style")
    if not entry:
        return None
    try:
        rows = np.load(gen / STYLE_VECTORS, allow_pickle=False)
        table = np.load(gen / STYLE_SEGMENTS, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexStoreError(f"index {gen.parent.parent} has damaged style vectors "
                              f"({exc.__class__.__name__}): rebuild it with "
                              "`sonicsearch build-index --rebuild`") from None
    n, m = int(entry["files"]), int(entry["segments"])
    if rows.shape != (n + m, int(entry["dim"])) or table.shape != (m, 3):
        raise IndexStoreError(f"index {gen.parent.parent} has style vectors that do not match "
                              "its index.json: rebuild it with `sonicsearch build-index "
                              "--rebuild`")
    rows = rows.astype(np.float32)
    return StyleTable(str(entry["kind"]), rows[:n], rows[n:], table[:, 0].astype(np.int64),
                      table[:, 1:].copy())


def pool_record(rec: Any, vectors: np.ndarray, spans: np.ndarray) -> StyleVectors:
    """One indexed file's style vectors pooled from its stored window rows (a model without
    a style head); ``vectors`` and ``spans`` are every row's."""
    a, b = rec.first_row, rec.first_row + rec.n_windows
    return pool_style(np.asarray(vectors[a:b], np.float32), spans[a:b])


def pooled_style(records: Sequence[Any], vectors: np.ndarray, spans: np.ndarray
                 ) -> list[StyleVectors]:
    """Every file's style vectors pooled from its stored window vectors: what an index
    built before style vectors gets, without re-embedding."""
    return [pool_record(rec, vectors, spans) for rec in records]


def table_of(per_file: Sequence[StyleVectors], kind: str, stored: bool) -> StyleTable:
    """A StyleTable from per-file style vectors (ids = positions)."""
    files = np.stack([s.file for s in per_file]).astype(np.float32)
    segs = np.vstack([s.segments for s in per_file]).astype(np.float32)
    owner = np.concatenate([np.full(len(s.segments), i) for i, s in enumerate(per_file)])
    spans = np.vstack([s.spans for s in per_file])
    return StyleTable(kind, files, segs, owner.astype(np.int64), spans, stored)


def style_note(root: Path) -> str:
    """What to tell the user of an index whose style vectors were pooled on opening."""
    return (f"index {root} was built before style vectors: they were pooled from its window "
            "vectors now (nothing re-embedded); `sonicsearch build-index AUDIO --index "
            f"{root}` stores them, so the next opening is instant")
