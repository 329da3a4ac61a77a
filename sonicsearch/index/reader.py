"""IndexReader: one opened generation of an index: its backend, metadata and model, its
facts, and the search of one resolved :class:`QueryRequest`.

This is the index API that clients build on (no-match calibration, the server, the
benchmarks): it never calls them. :class:`sonicsearch.index.AudioIndex` adds what needs
those clients, such as ``min_score="auto"`` (the calibration), on top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.embed.types import pool_style
from sonicsearch.errors import ConfigError, IndexStoreError
from sonicsearch.index import layout as L
from sonicsearch.index.backends import IndexBackend, backend_files, open_backend
from sonicsearch.index.codec import stored_dim, vector_format
from sonicsearch.index.filters import filtered_hits
from sonicsearch.index.occurrences import MIN_SCORE as OCCURRENCE_MIN_SCORE
from sonicsearch.index.occurrences import occurrence_search
from sonicsearch.index.request import QueryRequest
from sonicsearch.index.search import Hit, search
from sonicsearch.index.store import Store
from sonicsearch.index.style import (
    WINDOW_MEAN,
    StyleTable,
    pooled_style,
    read_style,
    style_note,
    table_of,
)
from sonicsearch.index.types import BuildReport, Embedder, QueryResult
from sonicsearch.utils.progress import log

DEFAULT_INDEX_DIR = L.DEFAULT_INDEX_DIR


class IndexReader:
    """A built index, opened read-only: its backend, metadata, and the model it holds.

    Use :meth:`open`; the model is loaded on first use, unless an embedder is given. The
    opened generation stays on disk (a reader lock that builds respect) and keeps
    answering until :meth:`close`; :meth:`refresh` switches to the newest one a build
    committed since. Refresh between queries, not while another thread queries the same
    object.
    """

    def __init__(self, root: Path, gen: Path, meta: dict[str, Any], store: Store,
                 index: IndexBackend, embedder: Embedder | None, device: str,
                 hold: int | None = None):
        self.root, self.gen, self.meta, self.store = root, gen, meta, store
        self.index, self.device = index, device  # the backend (index/backends)
        self._hold = hold  # the reader lock on ``gen`` (layout.hold_generation)
        # candidates are scored exactly from the stored raw vectors (a memory map)
        self._exact = store.vectors()
        self._search_overrides: tuple[int | None, int | None] = (None, None)
        self._embedder = None
        self._style: StyleTable | None = None
        self.build_report: BuildReport | None = None
        if embedder is not None:
            self.use_embedder(embedder)

    @classmethod
    def open(cls, index_dir: str | Path = DEFAULT_INDEX_DIR, embedder: Embedder | None = None,
             device: str = "auto", nprobe: int | None = None,
             ef_search: int | None = None) -> IndexReader:
        """Open the live generation of an index directory.

        Args:
            index_dir: the directory ``build-index`` wrote.
            embedder: a loaded model to query with (checked against the index's model);
                None loads the index's own copy on the first query.
            device: auto | cpu | cuda: where FAISS searches (flat and IVF indexes can use a
                GPU) and where a lazily loaded model runs.
            nprobe, ef_search: override the index's IVF / HNSW search settings.

        Raises:
            IndexStoreError: no index there, or it is damaged; the message names the folder.
        """
        layout = L.IndexLayout(index_dir)
        if not layout.root.is_dir():
            raise IndexStoreError(f"no index at {layout.root}: the folder does not exist "
                                  "(build one with `sonicsearch build-index`)")
        for _ in range(3):  # a build may replace the generation while we open it
            gen = layout.current()
            if gen is None:
                raise IndexStoreError(layout.why_no_index())
            hold = None
            try:
                hold = L.hold_generation(gen)  # clean-up now leaves it alone
                index = cls._load(layout.root, gen, embedder, device, nprobe, ef_search, hold)
            except IndexStoreError:
                L.release_generation(hold)
                if layout.current_name() == gen.name:
                    raise
                continue
            except BaseException:
                L.release_generation(hold)
                raise
            index._search_overrides = (nprobe, ef_search)
            return index
        raise IndexStoreError(f"index {layout.root} keeps changing while opening it; try again")

    @classmethod
    def _load(cls, root, gen, embedder, device, nprobe, ef_search, hold=None) -> IndexReader:
        meta = L.read_index_json(gen)
        L.check_sizes(gen, meta)
        for name in (*backend_files(root, meta), L.MODEL):
            if not (gen / name).is_file():
                raise L.damaged(gen, name, "is missing")
        store = Store(gen)
        try:
            index = open_backend(root, gen, meta, (store.n_rows, len(store.records)),
                                 device, nprobe, ef_search)
            return cls(root, gen, meta, store, index, embedder, device, hold)
        except BaseException:
            store.close()
            raise

    # -- facts ---------------------------------------------------------------------------

    @property
    def model_path(self) -> Path:
        """The copy of the model inside the index."""
        return self.gen / L.MODEL

    @property
    def labels(self) -> list[str]:
        return list(self.meta["model"]["labels"])

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def on_gpu(self) -> bool:
        """Whether the backend searches on a GPU."""
        return bool(self.index.on_gpu)

    def info(self) -> dict[str, Any]:
        """The info JSON of docs/formats.md: counts, model, times, index type and why,
        windowing, path, and whether index.json had its own checksum (manifest_verified)."""
        m, fc = self.meta["model"], self.meta["features"]
        return {
            "files": len(self.store.records), "vectors": self.ntotal,
            "dim": int(self.meta["dim"]),
            "vector_format": vector_format(self.meta), "stored_dim": stored_dim(self.meta),
            "index_type": self.meta["index_type"],
            "model": {"arch": m["arch"], "sha256": m["sha256"], "labels": list(m["labels"])},
            "created": self.meta["created"], "updated": self.meta["updated"],
            "index_params": self.meta["index_params"], "index_reason": self.meta["index_reason"],
            "window_seconds": fc["window_seconds"], "hop_seconds": fc["hop_seconds"],
            "path": str(self.root),
            "style": ({k: self.meta["style"][k] for k in ("kind", "dim", "files", "segments")}
                      if self.meta.get("style") else None),
            "manifest_verified": L.manifest_verified(self.meta),
        }

    # -- a newer generation --------------------------------------------------------------

    def refresh(self) -> bool:
        """Switch to the newest committed generation, if a build committed one since this
        index was opened (what a long-running server calls). The model moves along when
        the new generation was built with the same model and windows.

        Returns:
            True when it switched, False when this is already the newest.

        Raises:
            IndexStoreError: the newest generation cannot be opened (this one stays open).
        """
        name = L.IndexLayout(self.root).current_name()
        if name is None or name == self.gen.name:
            return False
        nprobe, ef_search = self._search_overrides
        new = type(self).open(self.root, device=self.device, nprobe=nprobe,
                              ef_search=ef_search)
        keep = self._embedder
        if keep is not None and (new.meta["model"]["sha256"] != self.meta["model"]["sha256"]
                                 or new.meta["features"] != self.meta["features"]):
            keep = None
        old_store, old_hold, old_index = self.store, self._hold, self.index
        self.gen, self.meta, self.store, self.index = new.gen, new.meta, new.store, new.index
        self._exact, self._hold = new._exact, new._hold
        self._style = None
        self._embedder = keep
        old_store.close()
        old_index.close()
        L.release_generation(old_hold)
        return True

    reload = refresh

    # -- the model -----------------------------------------------------------------------

    def use_embedder(self, embedder: Embedder) -> None:
        """Query with this embedder from now on (after :meth:`check_embedder`)."""
        self.check_embedder(embedder)
        self._embedder = embedder

    def check_embedder(self, embedder: Embedder) -> None:
        """Raise IndexStoreError unless ``embedder`` is the model the index was built with."""
        m = self.meta["model"]
        if embedder.model_sha256 != m["sha256"]:
            raise IndexStoreError(
                f"index {self.root} was built with model {m['sha256'][:12]} ({m['arch']}); "
                f"this model is {embedder.model_sha256[:12]} ({embedder.arch})")

    # -- search --------------------------------------------------------------------------

    def search(self, request: QueryRequest) -> QueryResult:
        """The results of a request with window ``vectors`` and a resolved ``min_score``
        (a number or None: ``"auto"`` is resolved by the caller, see
        :meth:`sonicsearch.index.AudioIndex.run`).

        Raises:
            IndexStoreError: vectors of another dimension. ConfigError: an unknown roll-up,
                k < 1, or an unresolved ``"auto"``.
        """
        if isinstance(request.min_score, str):
            raise ConfigError(f"min_score {request.min_score!r} must be resolved to a "
                              "number before the search (AudioIndex.run does)")
        if request.mode == "style":
            return self._style_search(request)
        vectors = self.stored_space(request.vectors)
        hop = self.meta["features"]["hop_seconds"]
        spans = self._query_spans(vectors, request.spans)
        exclude_id = self._exclude_id(request)
        filters, rollup, segments = request.filters, request.rollup, request.segments
        fields = filters.fields() if filters is not None and filters.active else None

        if request.occurrences:
            return self._occurrences(request, vectors, spans, exclude_id, fields)

        def run(depth: int, allowed: np.ndarray | None = None) -> list[Hit]:
            return search(self.index, self.store, vectors, spans, depth, rollup, hop,
                          segments=segments, exclude=exclude_id, exact=self._exact,
                          allowed=allowed, fields=fields)

        return self._answer(request, run, self.ntotal, spans)

    def _occurrences(self, request: QueryRequest, vectors: np.ndarray, spans: np.ndarray,
                     exclude_id: int | None, fields) -> QueryResult:
        """Every occurrence at or above the request's min_score (else the default), at most
        ``k`` (None: all); the result always reports the threshold (``min_score``)."""
        threshold = (request.min_score if request.min_score is not None
                     else OCCURRENCE_MIN_SCORE)
        hop = self.meta["features"]["hop_seconds"]

        def run(depth: int, allowed: np.ndarray | None = None) -> list[Hit]:
            return occurrence_search(self.index, self.store, vectors, spans, hop, threshold,
                                     self._exact, exclude_id, allowed, fields)[:depth]

        k = request.k if request.k is not None else max(1, self.ntotal)
        result = self._answer(request.replace(k=k, min_score=threshold, thresholded=True),
                              run, self.ntotal, spans)
        if result.no_match and (request.filters is None or not request.filters.active):
            result.extra["reason"] = (f"the clip occurs nowhere with a score of "
                                      f"{threshold:.3f} or more")
        result.extra["occurrences"] = True
        return result

    def stored_space(self, vectors: np.ndarray) -> np.ndarray:
        """Query vectors in the space of the stored rows: the model's vectors as they are,
        or projected for a compact index (index/codec.py); vectors already of the stored
        dimension (the index's own rows, as calibration queries them) pass unchanged.

        Raises:
            IndexStoreError: vectors of neither dimension.
        """
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        projection = getattr(self._exact, "projection", None)
        if vectors.shape[1] == self.meta["dim"]:
            return vectors if projection is None else projection.project(vectors)
        if projection is not None and vectors.shape[1] == projection.dim:
            return vectors
        raise IndexStoreError(f"query vectors have dimension {vectors.shape[1]}; index "
                              f"{self.root} holds dimension {self.meta['dim']}")

    def _query_spans(self, vectors: np.ndarray, spans: np.ndarray | None) -> np.ndarray:
        """The query windows' ``(n, 2)`` spans: as given, else the index's windowing."""
        if spans is None:
            fc = self.meta["features"]
            starts = np.arange(len(vectors)) * fc["hop_seconds"]
            spans = np.stack([starts, starts + fc["window_seconds"]], axis=1)
        return np.asarray(spans, dtype=np.float64).reshape(-1, 2)

    def _exclude_id(self, request: QueryRequest) -> int | None:
        """The indexed file a request leaves out: by path, else by id (None: none)."""
        if request.exclude is not None:
            return self.store.by_path.get(str(Path(request.exclude).resolve()))
        return request.exclude_id

    def _answer(self, request: QueryRequest, run, n_rows: int,
                spans: np.ndarray | None) -> QueryResult:
        """The result of a request whose search is ``run(depth, allowed)``: its top ``k``
        (through the filters and threshold when it has any), the predicted label and the
        echoed query facts. ``n_rows``: how deep a segments search can go."""
        extra: dict[str, Any] = {}
        if request.filters is None and request.min_score is None and not request.thresholded:
            hits = run(request.k)
        else:
            hits, extra = filtered_hits(self.store.records, n_rows, run, request.k,
                                        request.filters, request.min_score, request.segments)
        labels, probs = self.labels, request.probs
        predicted = (labels[int(np.argmax(np.asarray(probs).mean(axis=0)))]
                     if probs is not None and len(probs) and labels else None)
        seconds = request.duration
        if seconds is None:
            seconds = float(spans[:, 1].max()) if spans is not None and len(spans) else 0.0
        return QueryResult([self._result(rank, hit) for rank, hit in enumerate(hits, 1)],
                           request.query, round(float(seconds), 3), predicted, extra,
                           mode=request.mode)

    # -- style ---------------------------------------------------------------------------

    @property
    def style(self) -> StyleTable:
        """The index's style vectors (read on first use; an index built before them gets
        them pooled from its window vectors, with a note on stderr)."""
        if self._style is None:
            table = read_style(self.gen, self.meta)
            if table is None:
                per_file = pooled_style(self.store.records, self._exact, self.store.all_spans())
                table = table_of(per_file, WINDOW_MEAN, stored=False)
                log(style_note(self.root))
            self._style = table
        return self._style

    def _style_search(self, request: QueryRequest) -> QueryResult:
        """Style mode: rank files (or segments) by the cosine of their style vectors to the
        request's (``style``, else pooled from its window vectors)."""
        table = self.style
        q, spans = request.style, None
        if request.vectors is not None:
            vectors = np.atleast_2d(np.asarray(request.vectors, dtype=np.float32))
            spans = self._query_spans(vectors, request.spans)
        if q is None:
            if spans is None or table.kind != WINDOW_MEAN:
                raise ConfigError("a style query needs the clip, or its style vector "
                                  "(Embedder.style) for this index's model")
            q = pool_style(vectors, spans).file
        q = np.asarray(q, np.float32).reshape(-1)
        if q.shape[0] != table.dim or not np.isfinite(q).all():
            raise IndexStoreError(f"the style vector has dimension {q.shape[0]}"
                                  f"{'' if np.isfinite(q).all() else ' and non-finite values'}"
                                  f"; index {self.root} holds finite {table.dim}-d style vectors")
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        exclude_id = self._exclude_id(request)

        def run(depth: int, allowed: np.ndarray | None = None) -> list[Hit]:
            return table.hits(q, depth, request.segments, exclude_id, allowed)

        return self._answer(request, run, len(table.segments), spans)

    def _result(self, rank: int, hit: Hit) -> dict[str, Any]:
        rec = self.store.records[hit.file]
        out = {"rank": rank, "path": rec.path, "score": round(hit.score, 6),
               "start": round(hit.start, 3), "end": round(hit.end, 3), "label": rec.label}
        if hit.query_start is not None:
            out["query_start"] = round(hit.query_start, 3)
            out["query_end"] = round(hit.query_end, 3)
        return out

    def close(self) -> None:
        """Close the metadata and release the generation (a later build may delete it)."""
        self.store.close()
        self.index.close()
        L.release_generation(self._hold)
        self._hold = None

    def __enter__(self) -> IndexReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.root)!r}, files={len(self.store.records)}, "
                f"vectors={self.ntotal}, type={self.meta['index_type']})")
