"""Torch datasets of fixed-length windows: random crops for training, every window for
evaluation. Decoding happens in ``__getitem__``, so it runs in DataLoader workers."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from sonicsearch.audio import frame_windows, load_audio, pad_to
from sonicsearch.config import FeatureConfig
from sonicsearch.data.manifest import Item


class RandomCrops(TorchDataset):
    """``crops_per_file`` random windows of every file per epoch, with random gain.

    Randomness comes from ``(seed, epoch, index)`` alone, so a run is repeatable whatever
    the number of workers, and a resumed run draws the same crops as an uninterrupted one.
    """

    def __init__(
        self,
        items: list[Item],
        labels: list[str],
        features: FeatureConfig,
        crops_per_file: int = 4,
        gain_db: float = 0.0,
        seed: int = 0,
    ):
        self.items = items
        self.targets = [labels.index(it.label) for it in items]
        self.features = features
        self.crops = max(1, crops_per_file)
        self.gain_db = gain_db
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items) * self.crops

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.items[index % len(self.items)]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        fc = self.features
        slack = max(0.0, item.duration - fc.window_seconds)
        offset = float(rng.uniform(0.0, slack)) if slack > 0 else 0.0
        wave, _ = load_audio(item.path, fc.sample_rate, offset, fc.window_seconds)
        wave = pad_to(wave, fc.window_samples)
        if self.gain_db > 0:
            wave = wave * np.float32(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20))
        return torch.from_numpy(wave), self.targets[index % len(self.items)]

    def sample_weights(self) -> torch.Tensor:
        """Per-sample weights giving each label equal total weight (balanced sampler)."""
        counts = np.bincount(self.targets)
        per_file = 1.0 / counts[self.targets]
        return torch.as_tensor(np.tile(per_file, self.crops), dtype=torch.double)


class FileWindows(TorchDataset):
    """All windows of each file: item ``i`` is ``(windows (n, samples), target, i)``."""

    def __init__(self, items: list[Item], labels: list[str], features: FeatureConfig):
        self.items = items
        self.targets = [labels.index(it.label) if it.label in labels else -1 for it in items]
        self.features = features

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        fc = self.features
        wave, _ = load_audio(self.items[index].path, fc.sample_rate)
        windows, _ = frame_windows(wave, fc.sample_rate, fc.window_seconds, fc.hop_seconds)
        return torch.from_numpy(windows), self.targets[index], index


def collate_files(batch):
    """Concatenate the windows of several files; ``owner[i]`` is the file of window ``i``."""
    windows = torch.cat([b[0] for b in batch])
    owner = torch.cat([torch.full((b[0].shape[0],), b[2], dtype=torch.long) for b in batch])
    targets = torch.tensor([b[1] for b in batch], dtype=torch.long)
    files = torch.tensor([b[2] for b in batch], dtype=torch.long)
    return windows, owner, targets, files
