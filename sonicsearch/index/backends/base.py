"""The vector-index backend interface, and the per-window scalar fields a backend may store.

A backend holds one generation's window vectors under integer ids (id = the window's row in
that generation's meta.sqlite) and answers inner-product top-k searches. The metadata
(files, windows, spans, model) always stays in our SQLite store; the backend only adds the
scalar fields needed to filter inside the vector search (label, folders, duration).

A filtered search passes a :class:`Selection`: the exact window ids that may come back (an
ID selector's input) and the same set as conditions on the stored fields, so each backend
filters inside its own search and a filtered top-k is complete.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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
    id -1 when fewer than k vectors exist (or pass ``where``), as FAISS does. ``max_k``:
    the most neighbours one search may ask for (None: no limit); ``on_gpu``: whether it
    searches on a GPU.
    """

    name: str
    d: int
    max_k: int | None
    on_gpu: bool

    @property
    def ntotal(self) -> int: ...

    def add(self, vectors: np.ndarray, ids: np.ndarray,
            fields: WindowFields | None = None) -> None: ...

    def delete(self, ids: np.ndarray) -> int: ...

    def search(self, vectors: np.ndarray, k: int,
               where: Selection | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...

    # -- one generation (what build and open call; one implementation per backend) ------

    @classmethod
    def check_uri(cls, uri: str | None) -> None:
        """Raise ConfigError when ``uri`` is no place for this backend's vectors."""

    @classmethod
    def open_generation(cls, root: Path, gen: Path, meta: dict[str, Any], n_rows: int,
                        device: str = "auto", nprobe: int | None = None,
                        ef_search: int | None = None) -> IndexBackend:
        """The generation's vectors, opened for searching and checked against ``n_rows``."""

    @classmethod
    def write_generation(cls, gen: Path, prev: tuple[Path, dict[str, Any]] | None,
                         records: Sequence[FileRecord], plan: GenerationSpec
                         ) -> tuple[dict[str, Any], list[str]]:
        """Index ``gen/vectors.npy``; returns the index.json ``backend`` entry and the files
        linked unchanged from the previous generation ``prev`` (gen folder, index.json)."""

    @classmethod
    def kept_uri(cls, entry: dict[str, Any], index_dir: Path) -> str:
        """The uri a later build keeps from a generation's ``entry`` ("" for none)."""

    @classmethod
    def same_place(cls, entry: dict[str, Any], uri: str | None, root: Path) -> bool:
        """Whether a generation's ``entry`` lies where a build with ``uri`` puts it."""

    @classmethod
    def after_commit(cls, root: Path, entries: list[dict[str, Any]]) -> list[str]:
        """Clean up after a commit; ``entries``: the live and previous generations' of
        this backend. Returns what was dropped."""


@dataclass(frozen=True)
class GenerationSpec:
    """What a backend needs to index one generation's vectors."""

    dim: int
    index_type: str
    params: dict[str, Any]
    same_index: bool  # same vectors, type and place as the previous generation
    device: str = "auto"
    uri: str | None = None


@dataclass(frozen=True)
class FieldFilter:
    """Conditions on the stored :class:`WindowFields` (a file's label, folders, duration),
    and an id range to leave out (the query's own file)."""

    labels: tuple[str, ...] = ()
    path_prefix: str | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    exclude: tuple[int, int] | None = None  # window ids [a, b)


@dataclass(frozen=True)
class Selection:
    """The windows a search may return.

    Attributes:
        rows: a boolean mask over window ids: exactly the windows allowed.
        fields: the same windows as conditions on the stored fields, for a backend that
            filters on them (None: ``rows`` only).
    """

    rows: np.ndarray
    fields: FieldFilter | None = None

    def ranges(self) -> list[tuple[int, int]]:
        """``rows`` as sorted runs of allowed ids ``[a, b)``."""
        edges = np.diff(np.concatenate([[0], self.rows.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        return list(zip(starts.tolist(), ends.tolist(), strict=True))


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
