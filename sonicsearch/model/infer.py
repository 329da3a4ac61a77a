"""Inference on windows: the one ``windows -> model -> L2-normalise -> per file`` loop that
evaluation, validation and the tuning objectives share.

Windows are ``(n, samples)`` waveforms at the model's rate, as cut by
:func:`sonicsearch.audio.frame_windows` or :class:`sonicsearch.data.windows.FileWindows`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


def _device_of(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return next(model.parameters()).device


@torch.no_grad()
def forward_windows(model: torch.nn.Module, windows: np.ndarray | torch.Tensor,
                    batch_size: int = 64, device: str | torch.device | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Run windows through ``model`` in eval mode, ``batch_size`` at a time.

    Args:
        model: an :class:`~sonicsearch.model.backbones.AudioModel` (``forward`` gives
            ``(logits, embeddings)``).
        windows: ``(n, samples)`` float32 waveforms.
        batch_size: windows per forward pass.
        device: where to run (default: the model's device).

    Returns:
        ``(logits (n, C), embeddings (n, D))`` as float32 arrays, the embeddings
        L2-normalised (C is 0 for a label-free model).
    """
    dev = _device_of(model, device)
    model.eval()
    x_all = torch.as_tensor(np.ascontiguousarray(windows) if isinstance(windows, np.ndarray)
                            else windows)
    logits, embs = [], []
    for i in range(0, x_all.shape[0], max(1, batch_size)):
        lg, emb = model(x_all[i: i + batch_size].to(dev))
        logits.append(lg.float().cpu().numpy())
        embs.append(torch.nn.functional.normalize(emb.float(), dim=1).cpu().numpy())
    if not embs:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return (np.concatenate(logits).astype(np.float32),
            np.concatenate(embs).astype(np.float32))


def embed_windows(model: torch.nn.Module, windows: np.ndarray | torch.Tensor,
                  batch_size: int = 64, device: str | torch.device | None = None) -> np.ndarray:
    """L2-normalised window embeddings ``(n, D)`` float32 (see :func:`forward_windows`)."""
    return forward_windows(model, windows, batch_size, device)[1]


@torch.no_grad()
def stage_statistics(model: torch.nn.Module, windows: np.ndarray | torch.Tensor,
                     batch_size: int = 64, device: str | torch.device | None = None
                     ) -> np.ndarray:
    """Texture statistics of each window: every backbone stage's channel means and standard
    deviations (population std: a 1 x 1 map gives 0) over frequency and time, bottom stage
    first (``(n, 2 * sum(channels))`` float32; 2,048 values for a ResNet-18, whose last
    stage's 512 means are its embedding before normalisation). A style representation:
    lower stages describe timbre and texture, where the embedding alone is tuned to tell
    recordings apart (benchmarks/README.md, "Sounds like this").
    """
    dev = _device_of(model, device)
    model.eval()
    x_all = torch.as_tensor(np.ascontiguousarray(windows) if isinstance(windows, np.ndarray)
                            else windows)
    stages = model.backbone.stages()
    dtype = next(model.backbone.parameters()).dtype
    out = []
    for i in range(0, x_all.shape[0], max(1, batch_size)):
        x = model.features(x_all[i: i + batch_size].to(dev)).to(dtype)
        parts = []
        for stage in stages:
            x = stage(x)
            parts += [x.float().mean(dim=(2, 3)), x.float().std(dim=(2, 3), correction=0)]
        out.append(torch.cat(parts, 1).cpu().numpy())
    if not out:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(out).astype(np.float32)


@dataclass
class FileOutputs:
    """Per file, in the order of the loader's dataset: its window logits ``(n, C)``, its
    normalised window embeddings ``(n, D)`` and its target index."""

    files: list[int] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)

    def file_logits(self) -> list[np.ndarray]:
        """Each file's mean window logits ``(C,)``."""
        return [w.mean(axis=0) for w in self.logits]

    def file_vectors(self) -> np.ndarray:
        """One L2-normalised vector per file: the mean of its normalised window embeddings."""
        sums = np.stack([e.sum(axis=0) for e in self.embeddings]).astype(np.float64)
        return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def run_files(model: torch.nn.Module, loader, batch_size: int = 64,
              device: str | torch.device | None = None) -> FileOutputs:
    """Every window of every file of ``loader`` through the model, grouped per file.

    Args:
        loader: a DataLoader over :class:`~sonicsearch.data.windows.FileWindows` with
            :func:`~sonicsearch.data.windows.collate_files`.

    Returns:
        FileOutputs sorted by dataset index.
    """
    logits: dict[int, list[np.ndarray]] = {}
    embs: dict[int, list[np.ndarray]] = {}
    targets: dict[int, int] = {}
    for windows, owner, tgt, files in loader:
        lg, emb = forward_windows(model, windows, batch_size, device)
        own = owner.numpy()
        for f in np.unique(own):
            logits.setdefault(int(f), []).append(lg[own == f])
            embs.setdefault(int(f), []).append(emb[own == f])
        targets.update(zip(files.tolist(), tgt.tolist()))
    out = FileOutputs()
    for f in sorted(logits):
        out.files.append(f)
        out.logits.append(np.concatenate(logits[f]))
        out.embeddings.append(np.concatenate(embs[f]))
        out.targets.append(targets[f])
    return out


__all__ = ["FileOutputs", "embed_windows", "forward_windows", "run_files", "stage_statistics"]
