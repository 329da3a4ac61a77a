"""What the index needs from an embedder, and the records it keeps and returns.

The index programs against :class:`Embedder` (a structural protocol) so that it can be built
and tested without torch: ``sonicsearch.embed.Embedder`` satisfies it, and so do test fakes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from sonicsearch.config import FeatureConfig
from sonicsearch.errors import AudioError


@dataclass
class EmbeddedFile:
    """Window embeddings of one file or waveform."""

    vectors: np.ndarray  # (n, dim) float32, L2-normalised, one row per window
    spans: np.ndarray  # (n, 2) float64 start, end seconds in the file
    probs: np.ndarray | None  # (n, n_labels) head probabilities; None for label-free models
    duration: float  # of the source, seconds
    sample_rate: int  # of the source file


class QueryResult(list):
    """What ``AudioIndex.query`` returns: the list of results (dicts as in the query JSON of
    docs/formats.md, best first), carrying the query's own facts as attributes.

    ``extra`` holds the keys a filtered or thresholded query adds (min_score, no_match,
    reason); it is empty otherwise."""

    def __init__(self, results: Iterable[dict], query: str, duration: float,
                 predicted_label: str | None, extra: dict | None = None):
        super().__init__(results)
        self.query, self.duration, self.predicted_label = query, duration, predicted_label
        self.extra = dict(extra or {})

    @classmethod
    def from_dict(cls, obj: dict) -> QueryResult:
        known = ("results", "query", "duration", "predicted_label")
        return cls(obj["results"], obj["query"], obj["duration"], obj["predicted_label"],
                   {k: v for k, v in obj.items() if k not in known})

    @property
    def no_match(self) -> bool:
        """True when a filtered or thresholded query found nothing (see ``extra["reason"]``)."""
        return bool(self.extra.get("no_match", False))

    def to_dict(self) -> dict:
        """The query JSON object (docs/formats.md, docs/schemas/query.schema.json), plus
        ``extra``'s keys when there are any."""
        return {"query": self.query, "duration": self.duration,
                "predicted_label": self.predicted_label, "results": list(self), **self.extra}

    def __repr__(self) -> str:
        return (f"QueryResult(query={self.query!r}, predicted_label={self.predicted_label!r}, "
                f"results={list.__repr__(self)})")


@runtime_checkable
class Embedder(Protocol):
    """A loaded model that turns audio into window vectors.

    ``model_sha256`` must be the SHA-256 of the bytes of the file at ``model_path``: the
    index copies that file and checks the copy against it.
    """

    dim: int
    labels: list[str]
    model_sha256: str
    model_path: Path
    arch: str
    feature_config: FeatureConfig  # window_seconds / hop_seconds used

    def embed_file(self, path: str | Path) -> EmbeddedFile: ...

    def embed_files(
        self, paths: Iterable[str | Path]
    ) -> Iterator[tuple[Path, EmbeddedFile | AudioError]]: ...

    def embed_waveform(self, wave: np.ndarray, sample_rate: int) -> EmbeddedFile: ...


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
        counts: dict[str, int] = {}
        for _, reason in self.skipped:
            counts[reason] = counts.get(reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def summary(self) -> str:
        """One line for humans: what changed, the totals, and why files were skipped."""
        if self.written:
            head = (f"{len(self.added)} added, {len(self.updated)} updated, "
                    f"{len(self.removed)} removed, {self.unchanged} unchanged")
        else:
            head = f"up to date ({self.unchanged} unchanged)"
        text = (f"{head}; index has {self.files} files, {self.vectors} vectors "
                f"({self.index_type}) in {self.seconds:.1f}s")
        if self.skipped:
            why = ", ".join(f"{n} {r}" for r, n in self.skipped_by_reason().items())
            text += f"; {len(self.skipped)} skipped ({why})"
        return text
