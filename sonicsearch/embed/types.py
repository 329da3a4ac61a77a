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

SEGMENT_SECONDS = 20.0  # a style segment: the windows that start in one 20 s stretch
MIN_SEGMENT_SECONDS = 10.0  # a shorter last segment joins the one before it


@dataclass
class StyleVectors:
    """What a file sounds like (not which recording it is): one L2-normalised vector for
    the whole file and one per segment of about :data:`SEGMENT_SECONDS`, so that a long
    file can be similar in parts."""

    file: np.ndarray  # (S,) float32
    segments: np.ndarray  # (m, S) float32, m >= 1
    spans: np.ndarray  # (m, 2) float64 start, end seconds of each segment

    @property
    def dim(self) -> int:
        return int(self.file.shape[0])


@dataclass
class EmbeddedFile:
    """Window embeddings of one file or waveform, and its style vectors when the model has
    a style head (None: the index pools them from the window vectors, see
    :func:`pool_style`)."""

    vectors: np.ndarray  # (n, dim) float32, L2-normalised, one row per window
    spans: np.ndarray  # (n, 2) float64 start, end seconds in the file
    probs: np.ndarray | None  # (n, n_labels) head probabilities; None for label-free models
    duration: float  # of the source, seconds
    sample_rate: int  # of the source file
    style: StyleVectors | None = None


class StylePool:
    """Window features summed per segment as windows stream in (memory grows with the
    number of segments, not of windows), then averaged into :class:`StyleVectors`.

    Windows quieter than a file's loud ones are left out the way the window vectors are
    (``loud``: the same mask, decided per window; if no window is loud, all count).
    """

    def __init__(self) -> None:
        self._sums: dict[tuple[bool, int], np.ndarray] = {}
        self._counts: dict[tuple[bool, int], int] = {}
        self._spans: dict[tuple[bool, int], list[float]] = {}

    def add(self, features: np.ndarray, spans: np.ndarray,
            loud: np.ndarray | None = None) -> None:
        """Add windows: ``features (n, F)``, their ``spans (n, 2)`` seconds, and which of
        them are loud (None: all)."""
        features = np.asarray(features, np.float64)
        spans = np.asarray(spans, np.float64).reshape(-1, 2)
        loud = np.ones(len(spans), bool) if loud is None else np.asarray(loud, bool)
        seg = np.floor(spans[:, 0] / SEGMENT_SECONDS).astype(np.int64)
        for key in {(bool(a), int(b)) for a, b in zip(loud, seg)}:
            rows = (loud == key[0]) & (seg == key[1])
            total = features[rows].sum(axis=0)
            if key in self._sums:
                self._sums[key] += total
                self._counts[key] += int(rows.sum())
                lo, hi = self._spans[key]
                self._spans[key] = [min(lo, spans[rows, 0].min()), max(hi, spans[rows, 1].max())]
            else:
                self._sums[key], self._counts[key] = total, int(rows.sum())
                self._spans[key] = [float(spans[rows, 0].min()), float(spans[rows, 1].max())]

    @property
    def empty(self) -> bool:
        return not self._counts

    def vectors(self, project=None) -> StyleVectors:
        """The file's and each segment's mean feature, through ``project`` (a function of
        ``(m, F)`` float32 -> ``(m, S)``; None keeps the mean), L2-normalised.

        Raises:
            ValueError: no window was added.
        """
        if self.empty:
            raise ValueError("no windows to pool")
        loud = any(key[0] for key in self._counts)
        keys = sorted(k for k in self._counts if k[0] == loud)
        groups: list[list[tuple[bool, int]]] = [[k] for k in keys]
        if len(groups) > 1:
            lo, hi = self._spans[keys[-1]]
            if hi - lo < MIN_SEGMENT_SECONDS:
                groups[-2:] = [groups[-2] + groups[-1]]
        sums = np.stack([sum(self._sums[k] for k in g) for g in groups])
        counts = np.array([sum(self._counts[k] for k in g) for g in groups], np.float64)
        spans = np.array([[min(self._spans[k][0] for k in g), max(self._spans[k][1] for k in g)]
                          for g in groups], np.float64)
        means = np.vstack([sums.sum(axis=0) / counts.sum(), sums / counts[:, None]])
        out = means.astype(np.float32)
        if project is not None:
            out = np.asarray(project(out), np.float32)
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return StyleVectors(out[0], out[1:], spans)


def pool_style(vectors: np.ndarray, spans: np.ndarray) -> StyleVectors:
    """Style vectors of a model without a style head: the mean of the file's (and each
    segment's) normalised window vectors, normalised. ``vectors`` are the windows an index
    keeps (quiet ones already left out)."""
    pool = StylePool()
    pool.add(vectors, spans)
    return pool.vectors()


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
