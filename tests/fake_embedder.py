"""A deterministic, torch-free Embedder for index tests, and a corpus of distinct sounds.

Vectors are a seeded random projection of each window's log band energies, so an excerpt
of a file (even one not aligned to the hop) lands near the windows it overlaps, and files
made of different tones land apart.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from sonicsearch.audio import check_usable, frame_windows, load_audio
from sonicsearch.config import FeatureConfig
from sonicsearch.embed.types import EmbeddedFile
from sonicsearch.errors import AudioError

SR = 8000
N_BANDS = 64


class FakeEmbedder:
    """Satisfies sonicsearch.index.types.Embedder; ``seed`` picks the "model"."""

    arch = "fake"

    def __init__(self, model_path: Path, seed: int = 0, dim: int = 32,
                 labels: Iterable[str] | None = ("low", "mid", "high"),
                 window: float = 1.0, hop: float = 0.5, delay: float = 0.0,
                 kill_after: int | None = None):
        self.model_path = Path(model_path)
        if not self.model_path.exists():
            self.model_path.write_bytes(f"fake model seed={seed} dim={dim}\n".encode() * 64)
        self.model_sha256 = hashlib.sha256(self.model_path.read_bytes()).hexdigest()
        self.dim = dim
        self.labels = list(labels or [])
        self.feature_config = FeatureConfig(sample_rate=SR, window_seconds=window,
                                            hop_seconds=hop, min_seconds=0.25)
        rng = np.random.default_rng(seed)
        self._proj = rng.standard_normal((N_BANDS, dim))
        self._head = rng.standard_normal((dim, len(self.labels))) if self.labels else None
        self.delay = delay
        self.kill_after = kill_after  # SIGKILL this process after embedding that many files
        self.embedded: list[str] = []  # every file embedded, in order

    def embed_file(self, path: str | Path) -> EmbeddedFile:
        wave, _ = load_audio(path, sample_rate=SR)
        out = self.embed_waveform(wave, SR, name=path)
        out.sample_rate = sf.info(os.fsencode(path)).samplerate
        self.embedded.append(str(path))
        if self.delay:
            time.sleep(self.delay)
        if self.kill_after is not None and len(self.embedded) >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    def embed_files(self, paths: Iterable[str | Path]
                    ) -> Iterator[tuple[Path, EmbeddedFile | AudioError]]:
        for p in paths:
            try:
                yield Path(p), self.embed_file(p)
            except AudioError as exc:
                yield Path(p), exc

    def embed_waveform(self, wave: np.ndarray, sample_rate: int = SR,
                       name: str | Path = "<waveform>") -> EmbeddedFile:
        wave = np.asarray(wave, dtype=np.float32)
        if sample_rate != SR:
            t = np.arange(int(len(wave) * SR / sample_rate)) / SR
            wave = np.interp(t, np.arange(len(wave)) / sample_rate, wave).astype(np.float32)
        fc = self.feature_config
        check_usable(wave, SR, name, fc.min_seconds)
        windows, spans = frame_windows(wave, SR, fc.window_seconds, fc.hop_seconds)
        vectors = self.vectors_of(windows)
        probs = None
        if self._head is not None:
            logits = vectors @ self._head * 4.0
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return EmbeddedFile(vectors, spans, probs, len(wave) / SR, sample_rate)

    def vectors_of(self, windows: np.ndarray) -> np.ndarray:
        spec = np.abs(np.fft.rfft(windows, axis=1))[:, 1:]
        cut = spec.shape[1] // N_BANDS * N_BANDS
        bands = np.log1p(spec[:, :cut].reshape(len(windows), N_BANDS, -1).mean(axis=2) * 10)
        bands -= bands.mean(axis=1, keepdims=True)
        v = bands @ self._proj
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def sound(seed: int, seconds: float = 4.0, segment: float = 0.5) -> np.ndarray:
    """Random two-tone chords changing every ``segment`` seconds (distinct per seed)."""
    rng = np.random.default_rng(seed)
    n_seg = int(np.ceil(seconds / segment))
    t = np.arange(int(segment * SR)) / SR
    parts = []
    for _ in range(n_seg):
        f1, f2 = rng.uniform(100, 3800, size=2)
        parts.append(0.3 * np.sin(2 * np.pi * f1 * t) + 0.2 * np.sin(2 * np.pi * f2 * t))
    return np.concatenate(parts)[: int(seconds * SR)].astype(np.float32)


def write_sound(path: Path, seed: int, seconds: float = 4.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), sound(seed, seconds), SR)
    return path


def make_corpus(folder: Path, n: int, seed0: int = 0, seconds: float = 4.0) -> list[Path]:
    """``n`` wav files ``folder/s{seed}.wav`` (two sub-folders, to exercise the walk)."""
    return [write_sound(folder / f"part{i % 2}" / f"s{seed0 + i:03d}.wav", seed0 + i, seconds)
            for i in range(n)]
