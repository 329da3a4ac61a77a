"""Two-view objectives for ``pretrain`` (``pretrain.method``) and the joint objective of
``train`` (``train.contrastive_weight > 0``).

- NT-Xent (SimCLR / COLA): a projection head; each excerpt's two views are pulled together
  and pushed away from the other excerpts of the batch.
- BYOL (BYOL-A's objective): a projection head and a predictor on the online model regress
  the projection of a target model, an exponential moving average of the online one; no
  negatives, so it does not push apart two excerpts that happen to sound alike.

Heads, predictor and target serve the loss only; the embedding stays the backbone's
penultimate vector, and none of them is ever part of a saved model file.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from sonicsearch.config import Config
from sonicsearch.errors import ConfigError
from sonicsearch.training.views import ViewMaker


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


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``2 - 2 cos(p, z)`` averaged over the batch (float32), ``z`` a fixed target."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=1)).mean()


class NTXentObjective(nn.Module):
    """``pretrain.method: ntxent``: NT-Xent through a projection head."""

    def __init__(self, model: nn.Module, pc):
        super().__init__()
        self.projection = ProjectionHead(model.backbone.embed_dim, pc.projection_hidden,
                                         pc.projection_dim)
        self.temperature = pc.temperature

    def loss(self, model: nn.Module, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        return two_view_loss(model, self.projection, v1, v2, self.temperature)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.projection.parameters())

    def after_step(self, model: nn.Module, progress: float) -> None:
        """Nothing to update outside the optimizer."""


class BYOLObjective(nn.Module):
    """``pretrain.method: byol``: the online model's projection, through a predictor,
    regresses the target's projection of the other view (symmetrised). The target starts as
    a copy of the online model and follows it by EMA, its decay rising from
    ``pretrain.ema_decay`` to 1 on a cosine over the run (BYOL's schedule)."""

    def __init__(self, model: nn.Module, pc):
        super().__init__()
        self.projection = ProjectionHead(model.backbone.embed_dim, pc.projection_hidden,
                                         pc.projection_dim)
        self.predictor = ProjectionHead(pc.projection_dim, pc.projection_hidden,
                                        pc.projection_dim)
        self.target = copy.deepcopy(model).requires_grad_(False)
        self.target_projection = copy.deepcopy(self.projection).requires_grad_(False)
        self.ema_decay = pc.ema_decay

    def loss(self, model: nn.Module, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        both = torch.cat([v1, v2])
        _, emb = model(both)
        p1, p2 = self.predictor(self.projection(emb)).chunk(2)
        with torch.no_grad():
            _, t = self.target(both)
            z1, z2 = self.target_projection(t).chunk(2)
        return (byol_loss(p1, z2) + byol_loss(p2, z1)) / 2

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.projection.parameters()) + list(self.predictor.parameters())

    @torch.no_grad()
    def after_step(self, model: nn.Module, progress: float) -> None:
        """Move the target towards the online model; ``progress`` is the run's fraction done."""
        tau = 1 - (1 - self.ema_decay) * (math.cos(math.pi * min(1.0, progress)) + 1) / 2
        for online, target in ((model, self.target), (self.projection, self.target_projection)):
            for po, pt in zip(online.parameters(), target.parameters(), strict=True):
                pt.lerp_(po.detach(), 1 - tau)
            for bo, bt in zip(online.buffers(), target.buffers(), strict=True):
                bt.copy_(bo)


PRETRAIN_METHODS = {"ntxent": NTXentObjective, "byol": BYOLObjective}


def make_pretrain_objective(method: str, model: nn.Module, pc) -> nn.Module:
    """The pretraining objective named by ``pretrain.method``.

    Raises:
        ConfigError: an unknown method.
    """
    if method not in PRETRAIN_METHODS:
        raise ConfigError(f"pretrain.method must be one of {', '.join(PRETRAIN_METHODS)}, "
                          f"got {method!r}")
    return PRETRAIN_METHODS[method](model, pc)


class JointObjective:
    """The contrastive term that ``train`` adds beside cross-entropy.

    It owns a projection head (trained at the head learning rate, kept in ``last.pt`` for
    resume, dropped from ``model.pt``) and a view generator seeded per epoch.
    """

    def __init__(self, config: Config, embed_dim: int, device: torch.device):
        pc, fc = config.pretrain, config.features
        self.weight = config.train.contrastive_weight
        self.temperature = config.train.contrastive_temperature
        self.seed = config.runtime.seed
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


__all__ = ["PRETRAIN_METHODS", "BYOLObjective", "JointObjective", "NTXentObjective",
           "ProjectionHead", "byol_loss", "make_pretrain_objective", "nt_xent", "two_view_loss"]
