"""The vector-index backend interface, and the per-window scalar fields a backend may store.

A backend holds one generation's window vectors under integer ids (id = the window's row in
that generation's meta.sqlite) and answers inner-product top-k searches. The metadata
(files, windows, spans, model) always stays in our SQLite store; the backend only adds the
scalar fields needed to filter inside the vector search (label, folders, duration).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from sonicsearch.index.types import FileRecord
from sonicsearch.registry import Registry

# backend name -> its IndexBackend class; each backend's module registers itself
BACKEND_REGISTRY: Registry[type] = Registry("backend")
MAX_FOLDERS = 64  # ancestor folders stored per window row (deeper paths keep the nearest 64)


@runtime_checkable
class IndexBackend(Protocol):
    """What the build and the query path need from a vector index.

    Scores are inner products of float32 vectors (cosine similarity on L2-normalised ones);
    ``search`` returns ``(scores, ids)`` of shape (n_queries, k), best first, padded with
    id -1 when fewer than k vectors exist (or pass ``expr``), as FAISS does.
    """

    name: str
    d: int

    @property
    def ntotal(self) -> int: ...

    def add(self, vectors: np.ndarray, ids: np.ndarray,
            fields: WindowFields | None = None) -> None: ...

    def delete(self, ids: np.ndarray) -> int: ...

    def search(self, vectors: np.ndarray, k: int,
               expr: str | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class WindowFields:
    """Scalar fields of window rows, aligned with the vectors passed to ``add``."""

    label: list[str | None]
    folders: list[list[str]]
    duration: np.ndarray  # float64 seconds of the window's file

    def __len__(self) -> int:
        return len(self.label)

    def slice(self, a: int, b: int) -> WindowFields:
        return WindowFields(self.label[a:b], self.folders[a:b], self.duration[a:b])

    @classmethod
    def of_records(cls, records: Sequence[FileRecord]) -> WindowFields:
        """One entry per window of ``records`` (in row order): its file's fields."""
        label: list[str | None] = []
        folders: list[list[str]] = []
        for rec in records:
            anc = ancestors(rec.path)
            label.extend([rec.label] * rec.n_windows)
            folders.extend([anc] * rec.n_windows)
        duration = np.repeat([r.duration for r in records], [r.n_windows for r in records])
        return cls(label, folders, duration.astype(np.float64))


def ancestors(path: str) -> list[str]:
    """The folders a file lies under, nearest last: ``/a/b/c.wav`` -> ``["/", "/a", "/a/b"]``.

    A path-prefix filter on a folder then becomes an exact membership test, with no
    wildcard escaping (see :func:`sonicsearch.index.backends.milvus_backend.filter_expr`).
    """
    parts = []
    folder = os.path.dirname(os.path.normpath(path))
    while True:
        parts.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return parts[::-1][-MAX_FOLDERS:]
