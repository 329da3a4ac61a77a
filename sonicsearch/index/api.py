"""AudioIndex: open a built index, describe it, and query it by example."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.config import IndexConfig
from sonicsearch.embedding_types import with_windows
from sonicsearch.errors import AudioError, IndexStoreError
from sonicsearch.index import layout as L
from sonicsearch.index.backends import IndexBackend, backend_files, open_backend
from sonicsearch.index.build import build_index
from sonicsearch.index.calibration import check_calibration_file
from sonicsearch.index.filters import Filters, filtered_hits
from sonicsearch.index.search import ROLLUP_DEFAULT, Hit, search
from sonicsearch.index.store import Store
from sonicsearch.index.types import BuildReport, Embedder, QueryResult

DEFAULT_INDEX_DIR = Path("indexes/default")


class AudioIndex:
    """A built index, opened read-only: FAISS index, metadata, and the model it holds.

    Use :meth:`open` (or :meth:`build`); the model is loaded on the first query by file or
    waveform, unless an embedder is given. The opened generation stays on disk (a reader
    lock that builds respect) and keeps answering until :meth:`close`; :meth:`refresh`
    switches to the newest one a build committed since. Refresh between queries, not while
    another thread queries the same object.
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
        self.build_report: BuildReport | None = None
        if embedder is not None:
            self.use_embedder(embedder)

    @classmethod
    def open(cls, index_dir: str | Path = DEFAULT_INDEX_DIR, embedder: Embedder | None = None,
             device: str = "auto", nprobe: int | None = None,
             ef_search: int | None = None) -> AudioIndex:
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
    def _load(cls, root, gen, embedder, device, nprobe, ef_search, hold=None) -> AudioIndex:
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

    @classmethod
    def build(
        cls,
        inputs: Iterable[str | Path],
        model: str | Path | Embedder,
        index_dir: str | Path = DEFAULT_INDEX_DIR,
        *,
        config: IndexConfig | None = None,
        rebuild: bool = False,
        progress: Callable[[int, int, str, int, float], None] | None = None,
        device: str = "auto",
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
    ) -> AudioIndex:
        """Build or update an index (see :func:`sonicsearch.index.build.build_index`) and
        open it; the report is in ``.build_report``.

        Args:
            model: a ``model.pt`` path, or a loaded Embedder (not modified).
            window_seconds, hop_seconds: override the model's windowing for this index.
        """
        embedder = load_embedder(model, device) if isinstance(model, str | Path) else model
        embedder = with_windows(embedder, window_seconds, hop_seconds)
        config = config or IndexConfig(device=device)
        report = build_index(inputs, embedder, index_dir, config, rebuild, progress)
        index = cls.open(index_dir, embedder=embedder, device=device)
        index.build_report = report
        return index

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
            "index_type": self.meta["index_type"],
            "model": {"arch": m["arch"], "sha256": m["sha256"], "labels": list(m["labels"])},
            "created": self.meta["created"], "updated": self.meta["updated"],
            "index_params": self.meta["index_params"], "index_reason": self.meta["index_reason"],
            "window_seconds": fc["window_seconds"], "hop_seconds": fc["hop_seconds"],
            "path": str(self.root),
            "manifest_verified": L.manifest_verified(self.meta),
        }

    def check(self) -> None:
        """``info --check``: every file's size and sha256, index.json's and calibration.json's
        own checksums, and SQLite's integrity check of the metadata.

        Raises:
            IndexStoreError: one line naming the first damaged file and the fix.
        """
        L.read_index_json(self.gen)  # as it is on disk now
        L.verify(self.gen, self.meta)
        check_calibration_file(self.gen)
        problem = self.store.integrity_problem()
        if problem is not None:
            raise L.damaged(self.gen, L.META_DB, f"fails SQLite's integrity check ({problem})")

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
        new = AudioIndex.open(self.root, device=self.device, nprobe=nprobe,
                              ef_search=ef_search)
        keep = self._embedder
        if keep is not None and (new.meta["model"]["sha256"] != self.meta["model"]["sha256"]
                                 or new.meta["features"] != self.meta["features"]):
            keep = None
        old_store, old_hold, old_index = self.store, self._hold, self.index
        self.gen, self.meta, self.store, self.index = new.gen, new.meta, new.store, new.index
        self._exact, self._hold = new._exact, new._hold
        self._embedder = keep
        old_store.close()
        old_index.close()
        L.release_generation(old_hold)
        return True

    reload = refresh

    # -- the model -----------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        """The model queries are embedded with (the index's own copy, loaded on first use)."""
        if self._embedder is None:
            self.use_embedder(load_embedder(self.model_path, self.device, self.meta["features"]))
        return self._embedder

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

    # -- queries -------------------------------------------------------------------------

    def query(self, source: str | Path | np.ndarray, k: int = 10,
              sample_rate: int | None = None, rollup: str = ROLLUP_DEFAULT,
              segments: bool = False, exclude_self: bool = False,
              filters: Filters | None = None,
              min_score: float | str | None = None) -> QueryResult:
        """Find the indexed files (or windows) that sound most like a clip.

        Args:
            source: an audio file, or a mono waveform (float array).
            k: number of results; the results for k are the first k for any larger k, and
                a file's score does not depend on k.
            sample_rate: the waveform's rate; None means the model's rate.
            rollup: vote | max | mean-top: how window pairs make a file's score.
            segments: list matching windows instead of files.
            exclude_self: leave the query file itself out of the results.
            filters: keep only files that pass (see :mod:`sonicsearch.index.filters`).
            min_score: a score below which results are dropped, or "auto" for the index's
                calibrated no-match threshold. With filters or min_score the JSON gains
                ``min_score``, ``no_match`` and ``reason``.

        Returns:
            A :class:`QueryResult`: the results, best first (see its docstring for the
            fields), with ``query``, ``duration``, ``predicted_label`` and ``extra``;
            ``.to_dict()`` gives the query JSON (docs/formats.md).

        Raises:
            AudioError: the clip is unusable. IndexStoreError: another model.
        """
        if isinstance(source, np.ndarray):
            fc = self.embedder.feature_config
            emb = self.embedder.embed_waveform(source, sample_rate or fc.sample_rate)
            name, exclude = "<waveform>", None
        else:
            emb = self.embedder.embed_file(source)
            name, exclude = str(source), Path(source).resolve() if exclude_self else None
        return self.query_vectors(emb.vectors, emb.spans, emb.probs, k=k, rollup=rollup,
                                  segments=segments, exclude=exclude, query=name,
                                  duration=emb.duration, filters=filters,
                                  min_score=min_score)

    def query_files(self, paths: Iterable[str | Path], **kwargs: Any
                    ) -> Iterator[tuple[Path, QueryResult | AudioError]]:
        """Query many clips, decoding ahead; bad clips yield their AudioError in order.

        Takes :meth:`query`'s keyword arguments (k, rollup, segments, exclude_self, filters,
        min_score).
        """
        exclude_self = kwargs.pop("exclude_self", False)
        for path, emb in self.embedder.embed_files(paths):
            if isinstance(emb, AudioError):
                yield path, emb
                continue
            yield path, self.query_vectors(
                emb.vectors, emb.spans, emb.probs, query=str(path), duration=emb.duration,
                exclude=Path(path).resolve() if exclude_self else None, **kwargs)

    def query_vectors(self, vectors: np.ndarray, spans: np.ndarray | None = None,
                      probs: np.ndarray | None = None, k: int = 10,
                      rollup: str = ROLLUP_DEFAULT, segments: bool = False,
                      exclude: str | Path | None = None, query: str = "<vectors>",
                      duration: float | None = None, filters: Filters | None = None,
                      min_score: float | str | None = None) -> QueryResult:
        """Query with precomputed window embeddings of this index's model.

        Long queries are searched and scored in blocks of windows (see
        :mod:`sonicsearch.index.search`), so memory stays bounded.

        Args:
            vectors: (n, dim) L2-normalised window vectors.
            spans: (n, 2) their start, end seconds; None assumes the index's windowing.
            probs: (n, labels) head probabilities for ``predicted_label``, or None.
            exclude: an indexed path to leave out of the results.
            query, duration: echoed in the result.
            filters, min_score: as in :meth:`query`.

        Returns:
            A :class:`QueryResult`, the same shape :meth:`query` returns.
        """
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.shape[1] != self.meta["dim"]:
            raise IndexStoreError(f"query vectors have dimension {vectors.shape[1]}; index "
                                  f"{self.root} holds dimension {self.meta['dim']}")
        fc = self.meta["features"]
        if spans is None:
            starts = np.arange(len(vectors)) * fc["hop_seconds"]
            spans = np.stack([starts, starts + fc["window_seconds"]], axis=1)
        spans = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
        exclude_id = (self.store.by_path.get(str(Path(exclude).resolve()))
                      if exclude is not None else None)

        fields = filters.fields() if filters is not None and filters.active else None

        def run(depth: int, allowed: np.ndarray | None = None) -> list[Hit]:
            return search(self.index, self.store, vectors, spans, depth, rollup,
                          fc["hop_seconds"], segments=segments, exclude=exclude_id,
                          exact=self._exact,
                          allowed=allowed, fields=fields)

        extra: dict[str, Any] = {}
        if filters is None and min_score is None:
            hits = run(k)
        else:
            hits, extra = filtered_hits(self, run, k, filters, min_score, rollup, segments)
        labels = self.labels
        predicted = (labels[int(np.argmax(np.asarray(probs).mean(axis=0)))]
                     if probs is not None and len(probs) and labels else None)
        seconds = float(duration if duration is not None else spans[:, 1].max())
        return QueryResult([self._result(rank, hit) for rank, hit in enumerate(hits, 1)],
                           query, round(seconds, 3), predicted, extra)

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

    def __enter__(self) -> AudioIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"AudioIndex({str(self.root)!r}, files={len(self.store.records)}, "
                f"vectors={self.ntotal}, type={self.meta['index_type']})")


def load_embedder(model_path: str | Path, device: str = "auto",
                  features: dict[str, Any] | None = None, batch_size: int = 32) -> Embedder:
    """Load ``sonicsearch.embed.Embedder`` from a checkpoint, windowed as ``features`` say
    (an index's windowing may differ from the model's training default)."""
    from sonicsearch.embed import Embedder as TorchEmbedder

    features = features or {}
    return TorchEmbedder.from_checkpoint(model_path, device=device, batch_size=batch_size,
                                         window_seconds=features.get("window_seconds"),
                                         hop_seconds=features.get("hop_seconds"))
