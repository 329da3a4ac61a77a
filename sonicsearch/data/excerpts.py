"""Unlabelled audio for self-supervised pretraining: a header scan of the collection, and
batches of random excerpts decoded on demand.

Only file paths and durations are held; an epoch's plan is a permutation of
``(file, excerpt)`` pairs (a few bytes each), and each batch decodes just its excerpts
(``load_audio`` seeks), so memory does not grow with the audio in the collection. Batch
``b`` of an epoch depends on ``(seed, epoch, b)`` only: the same batches come in the same
order for any number of DataLoader workers, and a resumed run sees what an uninterrupted
one would.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from sonicsearch.audio import (
    SILENCE_PEAK,
    audio_info,
    find_audio_files,
    load_audio,
    pad_to,
    too_short,
)
from sonicsearch.errors import AudioError
from sonicsearch.utils.progress import log


@dataclass(frozen=True)
class AudioFile:
    """One usable file (by its header) and its duration in seconds."""

    path: Path
    duration: float


def scan_audio(inputs: Iterable[str | Path], min_seconds: float = 0.5,
               workers: int = 8) -> tuple[list[AudioFile], list[tuple[str, str]]]:
    """Find audio files under ``inputs`` and read their headers.

    Returns:
        ``(files, skipped)``: usable files in path order, and ``(path, reason)`` for files
        that are unreadable, empty, corrupt or shorter than ``min_seconds``.

    Raises:
        AudioError: an input that does not exist.
    """
    skipped: list[tuple[str, str]] = []
    paths = find_audio_files(inputs, skipped)

    def check(path: Path) -> AudioFile | tuple[str, str]:
        try:
            info = audio_info(path)
        except AudioError as exc:
            return str(path), exc.reason
        if info.duration < min_seconds:
            return str(path), too_short(info.duration, min_seconds)
        return AudioFile(path, info.duration)

    files: list[AudioFile] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for result in pool.map(check, paths):
            if isinstance(result, AudioFile):
                files.append(result)
            else:
                skipped.append(result)
    return files, skipped


class ExcerptBatches(TorchDataset):
    """Item ``b`` is the ``b``-th batch of the epoch: random excerpts ``(n, span)`` float32.

    Each file gives ``per_file`` excerpts per epoch at random offsets; the excerpts of all
    files are shuffled together. An excerpt that fails to decode (named once on stderr) or
    is silent is left out, so a batch may be smaller than ``batch_size``.
    """

    def __init__(self, files: list[AudioFile], sample_rate: int, span_samples: int,
                 batch_size: int, per_file: int = 4, seed: int = 0):
        self.paths = [str(f.path) for f in files]
        self.durations = np.array([f.duration for f in files], dtype=np.float64)
        self.sample_rate, self.span = sample_rate, span_samples
        self.batch_size, self.per_file, self.seed = max(1, batch_size), max(1, per_file), seed
        self._warned: set[str] = set()
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng((self.seed, epoch))
        n = len(self.paths) * self.per_file
        self.order = (rng.permutation(n) % max(1, len(self.paths))).astype(np.int32)
        self.where = rng.random(n, dtype=np.float32)  # offset as a fraction of the slack
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.order)
        return max(1, n // self.batch_size) if n else 0

    def __getitem__(self, b: int) -> torch.Tensor:
        if not 0 <= b < len(self):
            raise IndexError(b)
        lo = b * self.batch_size
        hi = len(self.order) if len(self) == 1 else lo + self.batch_size
        rows = [w for i in range(lo, hi) if (w := self._excerpt(i)) is not None]
        if not rows:
            return torch.zeros((0, self.span))
        return torch.from_numpy(np.stack(rows))

    def _excerpt(self, i: int) -> np.ndarray | None:
        f = int(self.order[i])
        path, seconds = self.paths[f], self.span / self.sample_rate
        offset = float(self.where[i]) * max(0.0, float(self.durations[f]) - seconds)
        try:
            wave, _ = load_audio(path, self.sample_rate, offset, seconds)
        except AudioError as exc:
            if path not in self._warned:
                self._warned.add(path)
                log(f"skipped an excerpt of {path}: {exc.reason}")
            return None
        if float(np.abs(wave).max()) < SILENCE_PEAK:
            return None
        return pad_to(wave, self.span)

    def sample(self, n: int) -> torch.Tensor:
        """The first ``n`` usable excerpts of epoch 0 (for the input standardisation)."""
        epoch = self.epoch
        self.set_epoch(0)
        rows: list[torch.Tensor] = []
        try:
            for b in range(len(self)):
                rows.extend(self[b])
                if len(rows) >= n:
                    break
        finally:
            self.set_epoch(epoch)
        return torch.stack(rows[:n]) if rows else torch.zeros((0, self.span))


__all__ = ["AudioFile", "ExcerptBatches", "scan_audio"]
