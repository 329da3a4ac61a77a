"""Second objectives of a tuning study: inference latency of one window, and leave-one-out
retrieval quality of validation-file embeddings (what the index will serve)."""

from __future__ import annotations

import time

import numpy as np
import torch

from sonicsearch.config import Config
from sonicsearch.data.manifest import Dataset
from sonicsearch.data.windows import FileWindows, collate_files
from sonicsearch.eval.metrics import map_at_k, precision_at_k
from sonicsearch.model.infer import run_files


@torch.no_grad()
def window_latency_ms(model, config: Config, repeats: int = 9) -> float:
    """Median milliseconds of one window's forward pass (batch 1) on the model's device."""
    device = next(model.parameters()).device
    model.eval()
    gen = torch.Generator().manual_seed(0)
    wave = (torch.randn(1, config.features.window_samples, generator=gen) * 0.1).to(device)
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        model(wave)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:  # two warm-up passes
            times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def file_embeddings(model, items, labels: list[str], config: Config) -> np.ndarray:
    """One L2-normalised vector per file: the mean of its normalised window embeddings."""
    from torch.utils.data import DataLoader

    loader = DataLoader(FileWindows(items, labels, config.features), batch_size=4,
                        collate_fn=collate_files)
    return run_files(model, loader).file_vectors()


def loo_retrieval(vectors: np.ndarray, targets: list[int] | np.ndarray, k: int = 10) -> dict:
    """Leave-one-out retrieval by cosine: each file queries the others; a hit shares its label.

    Returns:
        ``{"map": mAP@k, "precision": precision@k, "k": k}`` (k capped at files - 1).
    """
    targets = np.asarray(targets)
    n = len(targets)
    k = min(k, n - 1)
    if k < 1:
        return {"map": 0.0, "precision": 0.0, "k": 0}
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    relevant = targets[order] == targets[:, None]
    n_relevant = np.bincount(targets)[targets] - 1
    return {"map": map_at_k(relevant, k, n_relevant),
            "precision": precision_at_k(relevant, k), "k": k}


def second_objective(objective: str, model, dataset: Dataset, config: Config) -> float:
    """``f1+latency``: ms per window; ``f1+retrieval``: mAP@10 of validation files."""
    if objective == "f1+latency":
        return window_latency_ms(model, config)
    items = dataset.split("val") or dataset.split("test")
    vectors = file_embeddings(model, items, dataset.labels, config)
    return float(loo_retrieval(vectors, [dataset.labels.index(it.label) for it in items])["map"])
