"""One query request: what the CLI (``query``), the server (``POST /query``) and the Python
API (``AudioIndex.query*``) all build and pass to the library.

A request names what to search with (clip files, one waveform, or precomputed window
vectors), how many results (``k``), how window matches make a file's score (``rollup``,
``segments``), which files may be results (``filters``) and below which score a result is
dropped (``min_score``: a number, or ``"auto"`` for the index's calibrated no-match
threshold, resolved before the search by :meth:`sonicsearch.index.AudioIndex.run`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonicsearch.errors import ConfigError
from sonicsearch.index.filters import Filters, parse_min_score, resolve_prefix
from sonicsearch.index.rollups import ROLLUP_DEFAULT
from sonicsearch.registry import Registry

__all__ = ["MODE_DEFAULT", "MODE_REGISTRY", "QueryRequest"]

MODE_REGISTRY: Registry[str] = Registry("mode", error=ConfigError)
MODE_REGISTRY.register("recording", "the recording a clip came from: window vectors, "
                       "time-consistent roll-ups, the no-match calibration")
MODE_REGISTRY.register("style", "what sounds like the clip: style vectors of files and "
                       "20 s segments, exact cosine (index/style.py)")
MODE_DEFAULT = "recording"


@dataclass(frozen=True, eq=False)
class QueryRequest:
    """A query, before it meets an index.

    Attributes:
        clips: audio files to query, one result each (the ``query`` command's clips).
        waveform, sample_rate: or one mono waveform (None rate: the model's).
        vectors, spans, probs: or precomputed window vectors of the index's model, their
            (start, end) seconds (None: the index's windowing) and head probabilities.
        mode: ``recording`` (which recording: window vectors) or ``style`` (what sounds
            alike: style vectors); a name in MODE_REGISTRY.
        style: or, in style mode, the query's style vector ``(S,)`` (None: pooled from
            the clip's or the vectors' windows).
        k: results wanted (None: all, with ``occurrences`` only). rollup: a name in
            ROLLUP_REGISTRY (recording mode).
        segments: windows (recording) or style segments, not files.
        occurrences: every span of every file where the clip occurs, not each file's
            best (recording mode; :mod:`sonicsearch.index.occurrences`).
        filters: which indexed files may be results (None or inactive: all).
        min_score: drop results below this; ``"auto"``: the index's no-match threshold.
        exclude_self: leave a clip out of its own results when it is indexed.
        exclude: an indexed path to leave out (what exclude_self sets per clip).
        exclude_id: or an indexed file's id (``/files/{id}/similar``; style mode).
        query, duration: the name and length echoed in the result.
        thresholded: a min_score was asked for, even if ``"auto"`` resolved to none (the
            result then reports ``min_score``, ``no_match`` and ``reason``).
    """

    clips: tuple[str | Path, ...] = ()
    waveform: np.ndarray | None = None
    sample_rate: int | None = None
    vectors: np.ndarray | None = None
    spans: np.ndarray | None = None
    probs: np.ndarray | None = None
    mode: str = MODE_DEFAULT
    style: np.ndarray | None = None
    k: int | None = 10
    rollup: str = ROLLUP_DEFAULT
    segments: bool = False
    occurrences: bool = False
    filters: Filters | None = None
    min_score: float | str | None = None
    exclude_self: bool = False
    exclude: str | Path | None = None
    exclude_id: int | None = None
    query: str = "<vectors>"
    duration: float | None = None
    thresholded: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "clips", tuple(self.clips))
        object.__setattr__(self, "min_score", parse_min_score(self.min_score))
        MODE_REGISTRY.check(self.mode)
        if self.k is not None and self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        if self.k is None and not self.occurrences:
            raise ConfigError("k must be at least 1, got None (only an occurrences query "
                              "lists all it finds)")
        if self.occurrences and (self.mode != "recording" or self.segments):
            raise ConfigError("occurrences are spans of recordings: they take mode "
                              "'recording' and no segments")
        if self.mode == "style" and self.min_score == "auto":
            raise ConfigError("min_score 'auto' is the recording mode's calibrated no-match "
                              "threshold; in style mode give a number (a cosine, e.g. 0.8)")

    @classmethod
    def from_options(cls, *, labels: Sequence[str] | None = None,
                     path_prefix: str | Path | None = None,
                     min_duration: float | None = None, max_duration: float | None = None,
                     max_per_folder: int | None = None, prefix_base: str | Path | None = None,
                     **fields) -> QueryRequest:
        """A request from the flat options of the CLI and the server: the filter fields
        make one :class:`Filters` (None when they filter nothing; a relative
        ``path_prefix`` is taken under ``prefix_base``, the current directory when None);
        ``fields`` are the other attributes.

        Raises:
            ConfigError: bad filter values or min_score.
        """
        prefix = resolve_prefix(path_prefix, prefix_base) if path_prefix else None
        filters = Filters(tuple(labels or ()), prefix, min_duration, max_duration,
                          max_per_folder)
        return cls(filters=filters if filters.active else None, **fields)

    def with_clip(self, emb, **changes) -> QueryRequest:
        """This request for one embedded clip (an ``EmbeddedFile``): its window vectors,
        spans, probabilities, duration and (a style head's) style vector, plus
        ``changes``."""
        return self.replace(vectors=emb.vectors, spans=emb.spans, probs=emb.probs,
                            duration=emb.duration,
                            style=emb.style.file if emb.style is not None else None,
                            **changes)

    def replace(self, **changes) -> QueryRequest:
        """A copy with some attributes changed."""
        return dataclasses.replace(self, **changes)
