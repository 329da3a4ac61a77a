"""The records the index keeps and returns.

What the index needs from a model (``EmbedderProtocol``, ``EmbeddedFile``) lives in
:mod:`sonicsearch.embed.types`; ``Embedder`` here is that protocol's older name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sonicsearch.embed.types import EmbeddedFile, EmbedderProtocol
from sonicsearch.utils.reporting import display_path, skipped_by_reason

Embedder = EmbedderProtocol  # the older name of the protocol (not sonicsearch.embed.Embedder)
__all__ = ["BuildReport", "EmbeddedFile", "Embedder", "EmbedderProtocol", "FileRecord",
           "QueryResult", "display_path", "skipped_by_reason"]


class QueryResult(list):
    """What every query returns: the list of results, best first, carrying the query's own
    facts as attributes; ``.to_dict()`` is the query JSON of docs/formats.md
    (docs/schemas/query.schema.json), what ``query --json`` prints.

    Each result is a dict: ``rank``, ``path`` (exact: a non-UTF-8 file name keeps its bytes
    as surrogate escapes), ``score``, ``start``/``end`` (the best-matching span of the
    indexed file, seconds), ``label`` (the model's prediction for that indexed file, not a
    label anyone gave it), and in segments mode ``query_start``/``query_end``.
    ``predicted_label`` is the model's prediction for the query; ``mode`` says what was
    searched: ``recording`` (window vectors) or ``style`` (style vectors).

    ``extra`` holds the keys a filtered or thresholded query adds (min_score, no_match,
    reason); it is empty otherwise.

    For callers of the older dict shape, ``result["results"]``, ``result["query"]``,
    ``result.get("reason")`` etc. read the keys of :meth:`to_dict`.
    """

    _FIELDS = ("query", "mode", "duration", "predicted_label", "results")

    def __init__(self, results: Iterable[dict], query: str, duration: float,
                 predicted_label: str | None, extra: dict | None = None,
                 mode: str = "recording"):
        super().__init__(results)
        self.query, self.duration, self.predicted_label = query, duration, predicted_label
        self.mode = mode
        self.extra = dict(extra or {})

    @classmethod
    def from_dict(cls, obj: dict) -> QueryResult:
        """From the query JSON object (a QueryResult is returned as it is)."""
        if isinstance(obj, QueryResult):
            return obj
        return cls(obj["results"], obj["query"], obj["duration"], obj["predicted_label"],
                   {k: v for k, v in obj.items() if k not in cls._FIELDS},
                   obj.get("mode", "recording"))

    @property
    def no_match(self) -> bool:
        """True when a filtered or thresholded query found nothing (see ``extra["reason"]``)."""
        return bool(self.extra.get("no_match", False))

    def to_dict(self) -> dict:
        """The query JSON object (docs/formats.md, docs/schemas/query.schema.json), plus
        ``extra``'s keys when there are any."""
        return {"query": self.query, "mode": self.mode, "duration": self.duration,
                "predicted_label": self.predicted_label, "results": list(self), **self.extra}

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return self.to_dict()[key]
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``result[key]`` for a key of :meth:`to_dict`, else ``default``."""
        return self[key] if key in self.keys() else default

    def keys(self) -> tuple[str, ...]:
        return self._FIELDS + tuple(self.extra)

    def __repr__(self) -> str:
        return (f"QueryResult(query={self.query!r}, predicted_label={self.predicted_label!r}, "
                f"results={list.__repr__(self)})")


@dataclass
class FileRecord:
    """One indexed file: a row of the ``files`` table.

    Its windows are FAISS ids ``first_row .. first_row + n_windows - 1`` of its generation.
    """

    path: str  # resolved, absolute
    size: int
    mtime_ns: int
    sha256: str  # of the file's bytes
    duration: float
    sample_rate: int
    label: str | None  # argmax of the mean window probabilities, None without labels
    n_windows: int
    first_row: int = 0


@dataclass
class BuildReport:
    """What :func:`sonicsearch.index.build.build_index` did.

    ``files`` and ``vectors`` count the live index after the build. ``written`` is False when
    nothing changed and the previous generation stays live.
    """

    index_dir: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    files: int = 0
    vectors: int = 0
    index_type: str = ""
    reason: str = ""  # why this index type
    seconds: float = 0.0  # wall time of the build
    audio_seconds: float = 0.0  # audio embedded in this build
    written: bool = False
    generation: str = ""

    def skipped_by_reason(self) -> dict[str, int]:
        """Skipped files counted per reason, most frequent first."""
        return skipped_by_reason(self.skipped)

    def summary(self) -> str:
        """One line for humans: what changed, the totals, the audio embedded, why this index
        type, and why files were skipped (what ``build-index`` prints)."""
        if self.written:
            head = (f"{len(self.added)} added, {len(self.updated)} updated, "
                    f"{len(self.removed)} removed, {self.unchanged} unchanged")
        else:
            head = f"up to date ({self.unchanged} unchanged)"
        text = (f"{head}; index has {self.files} files, {self.vectors} vectors "
                f"({self.index_type}: {self.reason}) in {self.seconds:.1f}s")
        if self.audio_seconds:
            speed = self.audio_seconds / max(self.seconds, 1e-9)
            text += (f"; embedded {self.audio_seconds / 3600:.2f} h of audio "
                     f"({speed:.0f}x real time)")
        if self.skipped:
            why = ", ".join(f"{n} {r}" for r, n in self.skipped_by_reason().items())
            text += f"; {len(self.skipped)} skipped ({why})"
        return text
