"""The contrastive objective: a projection head and NT-Xent (SimCLR / COLA), shared by
``pretrain`` and by the joint objective of ``train`` (``train.contrastive_weight > 0``).

The projection head serves the loss only; the embedding stays the backbone's penultimate
vector, and the head is never part of a saved model file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sonicsearch.config import Config
from sonicsearch.views import ViewMaker


class ProjectionHead(nn.Module):
    """``Linear -> BatchNorm -> ReLU -> Linear``: embedding ``(B, D)`` -> ``(B, out_dim)``."""

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Normalised-temperature cross-entropy over ``2B`` projections (float32).

    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are two views of one excerpt (the positive
    pair); the other ``2B - 2`` rows are its negatives.

    Raises:
        ValueError: the shapes differ or the temperature is not positive.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"two (B, D) batches expected, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = (z @ z.T) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def two_view_loss(model: nn.Module, head: nn.Module, v1: torch.Tensor, v2: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """NT-Xent of the model's embeddings of two views, through the projection head."""
    _, emb = model(torch.cat([v1, v2]))
    z1, z2 = head(emb).chunk(2)
    return nt_xent(z1, z2, temperature)


class JointObjective:
    """The contrastive term that ``train`` adds beside cross-entropy.

    It owns a projection head (trained at the head learning rate, kept in ``last.pt`` for
    resume, dropped from ``model.pt``) and a view generator seeded per epoch.
    """

    def __init__(self, config: Config, embed_dim: int, device: torch.device):
        pc, fc = config.pretrain, config.features
        self.weight = config.train.contrastive_weight
        self.temperature = config.train.contrastive_temperature
        self.seed = config.train.seed
        self.views = ViewMaker(pc, fc.sample_rate, fc.window_samples)
        self.head = ProjectionHead(embed_dim, pc.projection_hidden, pc.projection_dim).to(device)
        self.device = device
        self.gen = torch.Generator(device=device)

    def param_group(self, lr: float, weight_decay: float) -> dict:
        return {"params": list(self.head.parameters()), "lr": lr, "weight_decay": weight_decay,
                "name": "projection"}

    def start_epoch(self, epoch: int) -> None:
        self.gen.manual_seed(self.seed * 1_000_003 + epoch)
        self.head.train()

    def forward(self, model, wave: torch.Tensor, clean: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits of ``wave`` (possibly mixed up) and ``weight * NT-Xent`` of two views of the
        un-mixed ``clean`` crops, in one forward pass; the term is None while the backbone is
        frozen (it could only train the projection head)."""
        if not any(p.requires_grad for p in model.backbone.net.parameters()):
            logits, _ = model(wave)
            return logits, None
        v1, v2 = self.views.pair(clean, self.gen)
        n = wave.shape[0]
        logits, emb = model(torch.cat([wave, v1.to(wave.dtype), v2.to(wave.dtype)]))
        z1, z2 = self.head(emb[n:]).chunk(2)
        return logits[:n], self.weight * nt_xent(z1, z2, self.temperature)


__all__ = ["JointObjective", "ProjectionHead", "nt_xent", "two_view_loss"]
