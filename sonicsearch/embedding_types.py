"""The model-to-index contract: what an index needs from a model, in a module light enough
for both sides to import (numpy and the config only; no torch, no FAISS).

``sonicsearch.embed.Embedder`` (the torch model) satisfies :class:`EmbedderProtocol`, and
so do test fakes; the index programs against the protocol, so it builds and tests without
torch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

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


@runtime_checkable
class EmbedderProtocol(Protocol):
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


E = TypeVar("E", bound=EmbedderProtocol)


def with_windows(embedder: E, window_seconds: float | None = None,
                 hop_seconds: float | None = None) -> E:
    """The same model windowed differently, as a new object (``embedder`` is not changed).

    Uses the embedder's own ``with_windows`` when it has one, else a shallow copy with a
    replaced ``feature_config``. None keeps a setting; no change returns ``embedder``.
    """
    fc = embedder.feature_config
    window = window_seconds or fc.window_seconds
    hop = hop_seconds or fc.hop_seconds
    if (window, hop) == (fc.window_seconds, fc.hop_seconds):
        return embedder
    own = getattr(embedder, "with_windows", None)
    if callable(own):
        return own(window, hop)
    other = copy.copy(embedder)
    other.feature_config = replace(fc, window_seconds=window, hop_seconds=hop)
    return other
