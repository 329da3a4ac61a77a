"""The model-to-index contract: what an index needs from a model, in a module light enough
for both sides to import (numpy and the config only; no torch, no FAISS).

``sonicsearch.embed.Embedder`` (the torch model) satisfies :class:`EmbedderProtocol`, and
so do test fakes; the index programs against the protocol, so it builds and tests without
torch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from sonicsearch.config import FeatureConfig
from sonicsearch.errors import AudioError, ConfigError


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

    Raises:
        ConfigError: a window or hop that :func:`check_window` / :func:`check_hop` refuse.
    """
    fc = embedder.feature_config
    window = fc.window_seconds if window_seconds is None else window_seconds
    hop = fc.hop_seconds if hop_seconds is None else hop_seconds
    check_window(fc, window)
    check_hop(fc, hop)
    if (window, hop) == (fc.window_seconds, fc.hop_seconds):
        return embedder
    own = getattr(embedder, "with_windows", None)
    if callable(own):
        return own(window, hop)
    other = copy.copy(embedder)
    other.feature_config = replace(fc, window_seconds=window, hop_seconds=hop)
    return other


def min_window_samples(fc: FeatureConfig) -> int:
    """The shortest window the log-mel front end takes: its STFT pads each window by
    ``n_fft // 2`` samples on each side by reflection, which needs more samples than that."""
    return fc.n_fft // 2 + 1


def check_window(fc: FeatureConfig, seconds: float) -> None:
    """Raise ConfigError unless ``seconds`` is a finite window the front end ``fc`` takes."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"window must be a positive number of seconds, not {seconds}")
    low = min_window_samples(fc)
    if round(seconds * fc.sample_rate) < low:
        raise ConfigError(
            f"a window of {seconds:g}s is too short for this model's front end: at least "
            f"{low / fc.sample_rate:.4g}s ({low} samples at {fc.sample_rate} Hz, more than half "
            f"its {fc.n_fft}-point FFT)")


def check_hop(fc: FeatureConfig, seconds: float) -> None:
    """Raise ConfigError unless ``seconds`` is a finite hop of at least one sample."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"hop must be a positive number of seconds, not {seconds}")
    if round(seconds * fc.sample_rate) < 1:
        raise ConfigError(f"a hop of {seconds:g}s is under one sample at {fc.sample_rate} Hz: "
                          f"at least {1 / fc.sample_rate:.3g}s")
