"""The style head: what a window sounds like, beside the embedding that tells recordings apart.

A model file may carry a style head (the shipped base model does from ``base-v2``): a small
MLP on a segment's mean *stage statistics* (every backbone stage's channel means and
standard deviations, :func:`forward_with_stats`), standardised, giving an S-d vector that
is compared by cosine. It was distilled from a music tagger's penultimate layer on the
training pool's music (benchmarks/style_levers.py, docs/base-model.md). A model fine-tuned
from one gets a new head fitted to its labels (:mod:`sonicsearch.training.style_head`);
models without one (trained from scratch, pretrained) use the mean of their window
embeddings instead (:func:`sonicsearch.embed.types.pool_style`).

The file keeps the head's shape in ``style_head`` (``{"in_dim", "hidden", "dim"}``) and its
weights under ``style_head.*`` in the state_dict.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sonicsearch.errors import ModelError


class StyleHead(nn.Module):
    """Mean stage statistics ``(B, in_dim)`` -> standardised -> MLP -> ``(B, dim)`` (not
    normalised: the caller L2-normalises)."""

    def __init__(self, in_dim: int, hidden: int = 512, dim: int = 128):
        super().__init__()
        self.in_dim, self.hidden, self.dim = int(in_dim), int(hidden), int(dim)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Dropout(0.2), nn.Linear(hidden, dim))
        self.register_buffer("mu", torch.zeros(in_dim))
        self.register_buffer("sd", torch.ones(in_dim))

    def shape(self) -> dict[str, int]:
        """What a model file records to rebuild the head before loading its weights."""
        return {"in_dim": self.in_dim, "hidden": self.hidden, "dim": self.dim}

    @classmethod
    def from_shape(cls, shape: Any) -> StyleHead:
        """Rebuild from :meth:`shape`'s dict.

        Raises:
            ModelError: not such a dict.
        """
        try:
            return cls(int(shape["in_dim"]), int(shape["hidden"]), int(shape["dim"]))
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"a damaged style head entry ({shape!r})") from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mu) / self.sd)


def stage_outputs(backbone: nn.Module) -> list[nn.Module]:
    """The last module of each backbone stage: hooking these reads every stage's output
    during the ordinary forward pass."""
    groups = backbone.spec.stages(backbone.net)
    return [group[-1] for group in groups]


def forward_with_stats(model: nn.Module, x: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """One eval-mode forward pass of an AudioModel giving ``model.embed``'s embeddings and
    probabilities and each window's stage statistics ``(B, 2 * sum(channels))`` (means and
    population standard deviations over frequency and time, bottom stage first; stages
    whose output is not a feature map are skipped).

    Raises:
        ModelError: the backbone has no feature-map stage.
    """
    outs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outs.append(out))
             for m in stage_outputs(model.backbone)]
    try:
        emb, probs = model.embed(x)
    finally:
        for h in hooks:
            h.remove()
    parts = []
    for out in outs:
        if out.dim() == 4:
            parts += [out.float().mean(dim=(2, 3)), out.float().std(dim=(2, 3), correction=0)]
    if not parts:
        raise ModelError(f"{model.arch} has no feature-map stage for style statistics")
    return emb, probs, torch.cat(parts, 1)


@torch.no_grad()
def embed_with_stats(model: nn.Module, windows: np.ndarray | torch.Tensor, batch: int = 32
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(n, samples)`` -> L2-normalised embeddings ``(n, D)`` and stage statistics
    ``(n, S)``, float32, from one :func:`forward_with_stats` pass per batch (the same numbers
    as ``infer.embed_windows`` and ``infer.stage_statistics``, at about half their cost)."""
    x_all = torch.as_tensor(windows)
    dev = next(model.parameters()).device
    embs, stats = [], []
    for i in range(0, len(x_all), max(1, batch)):
        emb, _, st = forward_with_stats(model, x_all[i:i + batch].to(dev))
        embs.append(torch.nn.functional.normalize(emb.float(), dim=1).cpu())
        stats.append(st.float().cpu())
    return torch.cat(embs).numpy(), torch.cat(stats).numpy()
