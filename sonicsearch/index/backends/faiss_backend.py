"""The FAISS backend: the index file of each generation (faiss_index.py) behind the
IndexBackend interface; build and query reach it only through this class.

FAISS ids are positions (row i = id i), so ``add`` appends ids in order, and ``delete``
masks ids at search time with an ID selector (what FAISS offers for every index type, HNSW
included) until the next build writes a generation without them. A filtered search
(:class:`Selection`) uses an ID selector too (a bitmap over the ids), so the index returns
only allowed windows and a filtered top-k is complete. GPU indexes take no selector: a
filtered search of one runs on the CPU copy it was made from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from sonicsearch.errors import ConfigError, IndexStoreError
from sonicsearch.index import layout as L
from sonicsearch.index.backends.base import (
    BACKEND_REGISTRY,
    GenerationSpec,
    Selection,
    WindowFields,
)
from sonicsearch.index.codec import open_vectors, stored_dim
from sonicsearch.index.faiss_index import (
    GPU_MAX_K,
    build_faiss_index,
    index_cpu_to_gpu,
    read_faiss_index,
    resolve_gpu,
    set_search_params,
)


@BACKEND_REGISTRY.register("faiss")
class FaissBackend:
    """A FAISS index of one generation; ``path`` is where :meth:`commit` writes it."""

    name = "faiss"
    compact_index = True  # searches pca-int8 vectors with its own IVF-PQ (index/codec.py)
    FILES = (L.INDEX_FILE,)  # what a generation holds for this backend

    def __init__(self, index: faiss.Index, index_type: str = "flat",
                 params: dict[str, Any] | None = None, path: str | Path | None = None,
                 cpu: faiss.Index | None = None):
        self.index, self.index_type = index, index_type
        self.params = params or {"factory": "Flat"}
        self.path = Path(path) if path is not None else None
        self.d = int(index.d)
        self._cpu = cpu  # the CPU index a GPU copy was made from (filtered searches)
        self.on_gpu = cpu is not None
        self.max_k = GPU_MAX_K if self.on_gpu else None
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

    def search(self, vectors: np.ndarray, k: int, where: Selection | None = None,
               expr: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product among the windows ``where`` allows (None: all).

        Raises:
            ConfigError: an ``expr`` (a Milvus expression) was given.
        """
        if expr:
            raise ConfigError("the faiss backend cannot filter inside the search; use "
                              "--backend milvus or filter the results")
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if where is None and not self._deleted.size:
            return self.index.search(x, k)
        index = self._cpu if self._cpu is not None else self.index
        return index.search(x, k, params=self._selector_params(index, where))

    def _selector_params(self, index: faiss.Index,
                         where: Selection | None) -> faiss.SearchParameters:
        keep: list[Any] = []
        sel = None
        if where is not None:
            bits = np.packbits(np.asarray(where.rows, bool), bitorder="little")
            keep.append(bits)
            sel = faiss.IDSelectorBitmap(len(where.rows), faiss.swig_ptr(bits))
        if self._deleted.size:
            hide = faiss.IDSelectorNot(faiss.IDSelectorBatch(self._deleted))
            keep.append(hide)
            sel = hide if sel is None else faiss.IDSelectorAnd(sel, hide)
        keep.append(sel)
        if self.index_type in ("ivf", "ivfpq"):
            p = faiss.SearchParametersIVF(sel=sel,
                                          nprobe=faiss.extract_index_ivf(index).nprobe)
        elif self.index_type == "hnsw":
            p = faiss.SearchParametersHNSW(sel=sel, efSearch=index.hnsw.efSearch)
        else:
            p = faiss.SearchParameters(sel=sel)
        p._keep = keep  # selectors and bitmap must outlive the parameters (SWIG)
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
        """Nothing to release: the index is memory, freed with this object (so ``ntotal``
        still answers after an AudioIndex is closed, as it always has)."""

    # -- one generation ------------------------------------------------------------------

    @classmethod
    def check_uri(cls, uri: str | None) -> None:
        if uri:
            raise ConfigError("--uri is for --backend milvus; the faiss backend keeps its "
                              "index inside the index directory")

    @classmethod
    def open_generation(cls, root: Path, gen: Path, meta: dict[str, Any],
                        counts: tuple[int, int], device: str = "auto",
                        nprobe: int | None = None, ef_search: int | None = None
                        ) -> FaissBackend:
        """The generation's index file, checked against ``counts`` (rows, files) and
        index.json, with its search settings, on a GPU when ``device`` allows.

        Raises:
            IndexStoreError: the file is unreadable or disagrees with the metadata.
            ConfigError: ``device`` asks for a GPU the index cannot move to.
        """
        try:
            index = read_faiss_index(str(gen / L.INDEX_FILE))
        except RuntimeError as exc:
            raise L.damaged(gen, L.INDEX_FILE, f"is unreadable "
                            f"({str(exc).splitlines()[0][:120]})") from None
        n_rows, n_files = counts
        stored = meta.get("counts", {})
        if not (index.ntotal == n_rows == stored.get("vectors")
                and index.d == stored_dim(meta) and n_files == stored.get("files")):
            raise L.damaged(gen, L.INDEX_FILE, f"disagrees with {L.META_DB} and {L.INFO} on "
                            "the number of vectors")
        kind, params = meta["index_type"], meta["index_params"]
        set_search_params(index, kind, params, nprobe=nprobe, ef_search=ef_search)
        gpu = resolve_gpu(device)
        if gpu is not None and kind != "hnsw":
            try:
                return cls(index_cpu_to_gpu(index, kind, params, gpu), kind, params,
                           gen / L.INDEX_FILE, cpu=index)
            except RuntimeError as exc:
                if device != "auto":
                    raise ConfigError(f"cannot move this {kind} index to {device} "
                                      f"({str(exc).splitlines()[0][:120]}); use --device "
                                      "cpu or auto") from None
        return cls(index, kind, params, gen / L.INDEX_FILE)

    @classmethod
    def write_generation(cls, gen: Path, prev: tuple[Path, dict[str, Any]] | None,
                         records, plan: GenerationSpec) -> tuple[dict[str, Any], list[str]]:
        """Link the previous index file (same index), or build one from vectors.npy."""
        if plan.same_index and prev is not None:
            L.link_or_copy(prev[0] / L.INDEX_FILE, gen / L.INDEX_FILE)
            return {"name": cls.name}, [L.INDEX_FILE]
        vectors = open_vectors(gen)
        index = build_faiss_index(vectors, plan.index_type, plan.params, device=plan.device)
        try:
            faiss.write_index(index, str(gen / L.INDEX_FILE))
        except RuntimeError as exc:
            raise OSError(f"cannot write {L.INDEX_FILE} ({str(exc).splitlines()[0]})") \
                from None
        L.fsync_file(gen / L.INDEX_FILE)
        return {"name": cls.name}, []

    @classmethod
    def kept_uri(cls, entry: dict[str, Any], index_dir: Path) -> str:
        return ""  # no uri: the index file lives in the generation

    @classmethod
    def same_place(cls, entry: dict[str, Any], uri: str | None, root: Path) -> bool:
        return True  # always the generation's own file

    @classmethod
    def after_commit(cls, root: Path, entries: list[dict[str, Any]]) -> list[str]:
        return []  # the index file goes with its generation folder
