"""The FAISS backend: today's index (faiss_index.py) behind the IndexBackend interface.

Build and query use the FAISS index file of a generation exactly as before; this class
lets code that programs against :class:`IndexBackend` use it too. FAISS ids are positions
(row i = id i), so ``add`` appends ids in order, and ``delete`` masks ids at search time
with an ID selector (what FAISS offers for every index type, HNSW included) until the next
build writes a generation without them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from sonicsearch.errors import ConfigError, IndexStoreError
from sonicsearch.index.backends.base import BACKEND_REGISTRY, WindowFields
from sonicsearch.index.faiss_index import build_faiss_index, read_faiss_index, set_search_params


@BACKEND_REGISTRY.register("faiss")
class FaissBackend:
    """A FAISS index of one generation; ``path`` is where :meth:`commit` writes it."""

    name = "faiss"

    def __init__(self, index: faiss.Index, index_type: str = "flat",
                 params: dict[str, Any] | None = None, path: str | Path | None = None):
        self.index, self.index_type = index, index_type
        self.params = params or {"factory": "Flat"}
        self.path = Path(path) if path is not None else None
        self.d = int(index.d)
        self._deleted = np.empty(0, np.int64)

    @classmethod
    def create(cls, dim: int, index_type: str = "flat", params: dict[str, Any] | None = None,
               path: str | Path | None = None, vectors: np.ndarray | None = None,
               device: str = "cpu") -> FaissBackend:
        """An index of ``vectors`` (ids 0..n-1; trained on them for IVF types), or empty.

        Raises:
            ConfigError: an IVF type without vectors to train on.
        """
        params = params or {"factory": "Flat"}
        if vectors is None:
            if index_type in ("ivf", "ivfpq"):
                raise ConfigError(f"a {index_type} index needs vectors to train on; pass them "
                                  "to create, or use flat or hnsw")
            vectors = np.empty((0, dim), np.float32)
        return cls(build_faiss_index(vectors, index_type, params, device=device),
                   index_type, params, path)

    @classmethod
    def open(cls, path: str | Path, index_type: str, params: dict[str, Any],
             nprobe: int | None = None, ef_search: int | None = None) -> FaissBackend:
        """Read a generation's index file and apply its search settings."""
        index = read_faiss_index(str(path))
        set_search_params(index, index_type, params, nprobe=nprobe, ef_search=ef_search)
        return cls(index, index_type, params, path)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) - int(self._deleted.size)

    def add(self, vectors: np.ndarray, ids: np.ndarray,
            fields: WindowFields | None = None) -> None:
        """Append vectors; ``ids`` must continue the positions (FAISS numbers by position).

        Raises:
            IndexStoreError: ids that are not ``ntotal .. ntotal + n - 1``.
        """
        ids = np.asarray(ids, np.int64)
        start = int(self.index.ntotal)
        if not np.array_equal(ids, np.arange(start, start + len(ids))):
            raise IndexStoreError(f"the FAISS backend numbers vectors by position: ids must be "
                                  f"{start}..{start + len(ids) - 1}")
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def delete(self, ids: np.ndarray) -> int:
        """Hide ids from searches; returns how many were present and not yet deleted."""
        ids = np.unique(np.asarray(ids, np.int64))
        ids = ids[(ids >= 0) & (ids < self.index.ntotal)]
        new = np.setdiff1d(ids, self._deleted, assume_unique=True)
        self._deleted = np.union1d(self._deleted, new)
        return int(new.size)

    def search(self, vectors: np.ndarray, k: int,
               expr: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product; ``expr`` (a scalar filter) is not supported by FAISS.

        Raises:
            ConfigError: an ``expr`` was given.
        """
        if expr:
            raise ConfigError("the faiss backend cannot filter inside the search; use "
                              "--backend milvus or filter the results")
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self._deleted.size:
            return self.index.search(x, k)
        return self.index.search(x, k, params=self._selector_params())

    def _selector_params(self) -> faiss.SearchParameters:
        sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(self._deleted))
        if self.index_type in ("ivf", "ivfpq"):
            p = faiss.SearchParametersIVF(sel=sel,
                                          nprobe=faiss.extract_index_ivf(self.index).nprobe)
        elif self.index_type == "hnsw":
            p = faiss.SearchParametersHNSW(sel=sel, efSearch=self.index.hnsw.efSearch)
        else:
            p = faiss.SearchParameters(sel=sel)
        p._keep = sel  # the selector must outlive the parameters (SWIG does not own it)
        return p

    def commit(self) -> None:
        """Write the index file (fsynced).

        Raises:
            IndexStoreError: no path; ids were deleted (FAISS ids are positions, so a
                generation without them is written from the kept rows, as build-index
                does); or the file cannot be written.
        """
        if self.path is None:
            raise IndexStoreError("this FAISS backend has no file to commit to")
        if self._deleted.size:
            raise IndexStoreError(f"{self._deleted.size} deleted ids are only masked in memory: "
                                  "FAISS numbers vectors by position; write a new generation "
                                  "without them (build-index does)")
        try:
            faiss.write_index(self.index, str(self.path))
        except RuntimeError as exc:
            raise IndexStoreError(f"cannot write {self.path} "
                                  f"({str(exc).splitlines()[0]})") from None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self.index = None
