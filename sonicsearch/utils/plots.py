"""PNG plots written beside runs: confusion matrix and training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: str | Path, title: str) -> None:
    """Row-normalised confusion matrix with counts in the cells."""
    n = len(labels)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true label")
    save_figure(fig, path)


def plot_curves(history: Sequence[dict], path: str | Path) -> None:
    """Training loss and validation metrics per epoch, with the phase boundary marked."""
    epochs = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    a1.plot(epochs, [h["val_loss"] for h in history], label="val loss")
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss")
    a1.legend()
    a2.plot(epochs, [h["val_macro_f1"] for h in history], label="val macro-F1 (file)")
    a2.plot(epochs, [h["val_accuracy"] for h in history], label="val accuracy (file)")
    a2.plot(epochs, [h["val_window_macro_f1"] for h in history], label="val macro-F1 (window)",
            linestyle="--")
    a2.set_xlabel("epoch")
    a2.set_ylim(0, 1)
    a2.legend()
    switch = [h["epoch"] for h in history if h["phase"] == 2][:1]
    for ax in (a1, a2):
        for x in switch:
            ax.axvline(x - 0.5, color="grey", linestyle=":", label="unfreeze")
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def save_figure(fig, path: str | Path) -> None:
    """Write ``fig`` as a PNG (tight layout, 110 dpi) and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
