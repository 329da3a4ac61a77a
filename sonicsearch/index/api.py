"""AudioIndex: open a built index, describe it, and query it by example.

:class:`AudioIndex` is the :class:`IndexReader` (index/reader.py) plus what sits above the
index: the embedding of clips, each result's calibrated confidence (index/confidence.py),
and ``min_score="auto"``, decided by it or by the threshold the no-match calibration
(index/calibration.py, a client of the reader) measures. Every query is one
:class:`QueryRequest`; :meth:`AudioIndex.run` answers it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.config import IndexConfig
from sonicsearch.embed.embedder import Embedder as TorchEmbedder
from sonicsearch.embed.types import with_windows
from sonicsearch.errors import AudioError, IndexStoreError
from sonicsearch.index import browse
from sonicsearch.index import duplicates as dup
from sonicsearch.index import layout as L
from sonicsearch.index.build import build_index
from sonicsearch.index.calibration import (
    check_calibration_file,
    confidence_fitted,
    confidence_model,
    resolve_min_score,
)
from sonicsearch.index.confidence import accept_confident, applies, search_with_confidence
from sonicsearch.index.duplicates import Duplicates, find_duplicates
from sonicsearch.index.filters import Filters
from sonicsearch.index.reader import DEFAULT_INDEX_DIR, IndexReader
from sonicsearch.index.request import MODE_DEFAULT, QueryRequest
from sonicsearch.index.rollups import ROLLUP_DEFAULT
from sonicsearch.index.types import EmbeddedFile, Embedder, QueryResult

__all__ = ["DEFAULT_INDEX_DIR", "AudioIndex", "load_embedder"]


class AudioIndex(IndexReader):
    """A built index, opened read-only: backend, metadata, and the model it holds.

    Use :meth:`open` (or :meth:`build`); the model is loaded on the first query by file or
    waveform, unless an embedder is given. The opened generation stays on disk (a reader
    lock that builds respect) and keeps answering until :meth:`close`; :meth:`refresh`
    switches to the newest one a build committed since. Refresh between queries, not while
    another thread queries the same object.

    ``announce_fit``, when set, is called just before a query fits a roll-up's confidence
    model (once per generation; the CLI says on stderr that this query takes longer).
    """

    announce_fit: Callable[[], None] | None = None

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

    # -- queries -------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        """The model queries are embedded with (the index's own copy, loaded on first use)."""
        if self._embedder is None:
            self.use_embedder(load_embedder(self.model_path, self.device, self.meta["features"]))
        return self._embedder

    def run(self, request: QueryRequest) -> QueryResult:
        """Answer one request: its waveform, its single clip, or its vectors.

        File results of a recording request get their ``confidence``
        (:mod:`sonicsearch.index.confidence`); ``min_score="auto"`` keeps those of
        ``ACCEPT_CONFIDENCE`` or more (on an index too small for a confidence model: the
        calibrated score threshold, resolved before the search).

        Raises:
            AudioError: the clip is unusable. IndexStoreError: another model, or vectors
                of another dimension. ConfigError: unknown roll-up, k < 1, bad filters.
        """
        if request.vectors is None and not (request.mode == "style" and request.style is not None):
            if request.waveform is not None:
                fc = self.embedder.feature_config
                emb = self.embedder.embed_waveform(request.waveform,
                                                   request.sample_rate or fc.sample_rate)
                return self.run(_with(request, emb, "<waveform>", None))
            (clip,) = request.clips
            emb = self.embedder.embed_file(clip)
            return self.run(_with(request, emb, str(clip), _self(request, clip)))
        return self._confident(request)

    def run_clips(self, request: QueryRequest
                  ) -> Iterator[tuple[Path, QueryResult | AudioError]]:
        """Answer ``request`` for each of its clips, decoding ahead; bad clips yield their
        AudioError in order."""
        for path, emb in self.embedder.embed_files(request.clips):
            if isinstance(emb, AudioError):
                yield path, emb
                continue
            yield path, self._confident(_with(request, emb, str(path), _self(request, path)))

    def _confident(self, request: QueryRequest) -> QueryResult:
        """The search of a request with vectors, each file result with its confidence;
        ``min_score="auto"`` keeps the confident ones (the calibrated threshold where the
        index is too small for a confidence model)."""
        if not applies(request):
            return self.search(self._resolved(request))
        if self.announce_fit is not None and not confidence_fitted(self, request.rollup):
            self.announce_fit()
        model = confidence_model(self, request.rollup)
        if request.min_score == "auto" and model is not None:
            plain = request.replace(min_score=None, thresholded=True)
            return accept_confident(search_with_confidence(self, plain, model))
        return search_with_confidence(self, self._resolved(request), model)

    def _resolved(self, request: QueryRequest) -> QueryRequest:
        """``request`` with its min_score a number or None (``"auto"`` resolved)."""
        occurrences = request.occurrences  # they are vote's offsets: its threshold
        threshold = resolve_min_score(self, request.min_score,
                                      ROLLUP_DEFAULT if occurrences else request.rollup,
                                      request.segments and not occurrences)
        return request.replace(min_score=threshold,
                               thresholded=request.thresholded or request.min_score is not None)

    def query(self, source: str | Path | np.ndarray, k: int = 10,
              sample_rate: int | None = None, rollup: str = ROLLUP_DEFAULT,
              segments: bool = False, exclude_self: bool = False,
              filters: Filters | None = None,
              min_score: float | str | None = None, mode: str = MODE_DEFAULT) -> QueryResult:
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
            mode: ``recording`` (the recording the clip came from) or ``style`` (files and
                20 s segments that sound like it, by style vectors; ``rollup`` unused).

        Returns:
            A :class:`QueryResult`: the results, best first (see its docstring for the
            fields), with ``query``, ``duration``, ``predicted_label`` and ``extra``;
            ``.to_dict()`` gives the query JSON (docs/formats.md).

        Raises:
            AudioError: the clip is unusable. IndexStoreError: another model.
        """
        options = dict(k=k, rollup=rollup, segments=segments, filters=filters,
                       min_score=min_score, mode=mode)
        if isinstance(source, np.ndarray):
            return self.run(QueryRequest(waveform=source, sample_rate=sample_rate, **options))
        return self.run(QueryRequest(clips=(source,), exclude_self=exclude_self, **options))

    def occurrences(self, source: str | Path | np.ndarray, k: int | None = None,
                    sample_rate: int | None = None, min_score: float | str | None = None,
                    filters: Filters | None = None, exclude_self: bool = False
                    ) -> QueryResult:
        """Every span of every indexed file where a clip occurs (a jingle aired twelve times
        in a day), best first, not just each file's best span
        (:mod:`sonicsearch.index.occurrences`).

        Args:
            source: an audio file, or a mono waveform (float array).
            k: at most this many occurrences (None: all).
            min_score: the lowest score (0..1, ``vote``'s scale) an occurrence may have;
                None: ``occurrences.MIN_SCORE``; ``"auto"``: the index's calibrated
                no-match threshold.
            filters, exclude_self, sample_rate: as in :meth:`query`.

        Returns:
            A :class:`QueryResult` whose results are occurrences: ``path``, ``score`` (the
            confidence), ``start``/``end`` in the file and ``query_start``/``query_end``
            in the clip; a file may appear several times. Its JSON always has
            ``min_score``, ``no_match`` and ``reason``, and ``occurrences: true``.

        Raises:
            AudioError: the clip is unusable. ConfigError: k < 1, a bad min_score.
        """
        options = dict(k=k, filters=filters, min_score=min_score, occurrences=True)
        if isinstance(source, np.ndarray):
            return self.run(QueryRequest(waveform=source, sample_rate=sample_rate, **options))
        return self.run(QueryRequest(clips=(source,), exclude_self=exclude_self, **options))

    def duplicates(self, min_overlap: float = dup.MIN_OVERLAP,
                   min_score: float = dup.MIN_SCORE,
                   stride_seconds: float = dup.STRIDE_SECONDS) -> Duplicates:
        """Every group of indexed files that hold the same recording, whole or in part,
        from the stored window vectors (nothing is embedded); see
        :mod:`sonicsearch.index.duplicates`.

        Args:
            min_overlap: seconds two files must share (or 80 % of the shorter file).
            min_score: the lowest confidence (0..1) of a match.
            stride_seconds: one stored window every this many seconds is searched.

        Returns:
            :class:`~sonicsearch.index.duplicates.Duplicates`: ``.groups`` (files,
            matches with their spans and confidences), ``.to_dict()`` the duplicates JSON.

        Raises:
            ConfigError: a negative, NaN or infinite argument.
        """
        return find_duplicates(self, min_overlap, min_score, stride_seconds)

    def path_between(self, start: int | str | Path, end: int | str | Path,
                     n: int = 10) -> browse.SimilarityPath:
        """A playlist of ``n`` indexed files from ``start`` to ``end`` by small steps of
        style (see :mod:`sonicsearch.index.browse` for how and why).

        Args:
            start, end: indexed files, by id (position in ``store.records``) or path.
            n: files in the playlist, both ends included (2 to the collection's size).

        Returns:
            :class:`~sonicsearch.index.browse.SimilarityPath`; ``.to_dict()`` the path JSON.

        Raises:
            IndexStoreError: a file not in the index. ConfigError: the same file twice,
                n < 2, or n above the number of indexed files.
        """
        return browse.path_between(self, start, end, n)

    def collection_map(self) -> browse.CollectionMap:
        """Every indexed file placed in 2-D (the principal components of its style vector),
        with its label and folder; ``.to_dict()`` is the map JSON."""
        return browse.map_of(self)

    def query_files(self, paths: Iterable[str | Path], **kwargs: Any
                    ) -> Iterator[tuple[Path, QueryResult | AudioError]]:
        """Query many clips, decoding ahead; bad clips yield their AudioError in order.

        Takes :meth:`query`'s keyword arguments (k, rollup, segments, exclude_self, filters,
        min_score, mode) and ``occurrences=True`` for :meth:`occurrences`' answer.
        """
        return self.run_clips(QueryRequest(clips=tuple(paths), **kwargs))

    def query_vectors(self, vectors: np.ndarray, spans: np.ndarray | None = None,
                      probs: np.ndarray | None = None, k: int = 10,
                      rollup: str = ROLLUP_DEFAULT, segments: bool = False,
                      exclude: str | Path | None = None, query: str = "<vectors>",
                      duration: float | None = None, filters: Filters | None = None,
                      min_score: float | str | None = None, mode: str = MODE_DEFAULT,
                      style: np.ndarray | None = None) -> QueryResult:
        """Query with precomputed window embeddings of this index's model.

        Long queries are searched and scored in blocks of windows (see
        :mod:`sonicsearch.index.search`), so memory stays bounded.

        Args:
            vectors: (n, dim) L2-normalised window vectors.
            spans: (n, 2) their start, end seconds; None assumes the index's windowing.
            probs: (n, labels) head probabilities for ``predicted_label``, or None.
            exclude: an indexed path to leave out of the results.
            query, duration: echoed in the result.
            filters, min_score, mode: as in :meth:`query`.
            style: in style mode, the query's style vector (``Embedder.style(...).file``);
                None pools it from ``vectors`` (a model without a style head).

        Returns:
            A :class:`QueryResult`, the same shape :meth:`query` returns.
        """
        return self.run(QueryRequest(
            vectors=vectors, spans=spans, probs=probs, k=k, rollup=rollup, segments=segments,
            exclude=exclude, query=query, duration=duration, filters=filters,
            min_score=min_score, mode=mode, style=style))

    def similar(self, file_id: int, request: QueryRequest | None = None,
                **options: Any) -> QueryResult:
        """"More like this" for an indexed file, with no upload: its stored style vector
        (``mode="style"``, the default) or its stored window vectors (``"recording"``:
        other copies of the recording) against every other file.

        Args:
            file_id: the file's position in ``store.records``.
            request: k, mode, segments, filters, min_score (its clips or vectors unused);
                None: a style request made of ``options`` (QueryRequest's fields).

        Raises:
            IndexStoreError: no file with this id.
        """
        request = request if request is not None else QueryRequest(
            **{"mode": "style", **options})
        records = self.store.records
        if not 0 <= file_id < len(records):
            raise IndexStoreError(f"no file {file_id} in index {self.root} (ids are 0 to "
                                  f"{len(records) - 1})")
        rec = records[file_id]
        request = request.replace(query=rec.path, duration=rec.duration, exclude=rec.path,
                                  clips=(), waveform=None, exclude_self=False)
        if request.mode == "style":
            return self.run(request.replace(style=self.style.file_vector(file_id)))
        a, b = rec.first_row, rec.first_row + rec.n_windows
        return self.run(request.replace(vectors=np.asarray(self._exact[a:b]),
                                        spans=self.store.spans(np.arange(a, b))))


def _with(request: QueryRequest, emb: EmbeddedFile, name: str,
          exclude: Path | None) -> QueryRequest:
    """``request`` for one embedded clip."""
    return request.with_clip(emb, query=name, exclude=exclude, clips=(), waveform=None)


def _self(request: QueryRequest, clip: str | Path) -> Path | None:
    return Path(clip).resolve() if request.exclude_self else request.exclude


def load_embedder(model_path: str | Path, device: str = "auto",
                  features: dict[str, Any] | None = None, batch_size: int = 32,
                  fast: bool = False) -> Embedder:
    """Load ``sonicsearch.embed.Embedder`` from a checkpoint, windowed as ``features`` say
    (an index's windowing may differ from the model's training default); ``fast``: on the
    int8 CPU path (:meth:`sonicsearch.embed.Embedder.int8`)."""
    features = features or {}
    emb = TorchEmbedder.from_checkpoint(model_path, device=device, batch_size=batch_size,
                                        window_seconds=features.get("window_seconds"),
                                        hop_seconds=features.get("hop_seconds"))
    return emb.int8() if fast else emb
