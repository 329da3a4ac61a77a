"""Backbones from torchvision adapted to 1-channel log-mels, with freezing and a label head.

``create_backbone`` builds one of ``ARCHS`` by name from a single registry, folds the first
convolution to one input channel (pretrained filters stay useful: summing over the RGB
weights is exactly the network fed a mono image repeated three times), swaps the ImageNet
classifier for ``dropout -> Linear(embed_dim, num_classes)`` and loads weights. The
penultimate vector of the same forward pass that gives the logits is the embedding.
``AudioModel`` wraps log-mel front end, input standardisation, SpecAugment and backbone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from sonicsearch.config import FeatureConfig, ModelConfig, TrainConfig
from sonicsearch.errors import ModelError
from sonicsearch.model.frontend import LogMel
from sonicsearch.model.tv_import import import_torchvision
from sonicsearch.model.weights import load_weights
from sonicsearch.registry import Registry

tvm = import_torchvision().models  # without torch._dynamo: ~3 s of CPU less (tv_import)

Stages = Callable[[nn.Module], list[list[nn.Module]]]


def _paths(*groups: tuple[str, ...]) -> Stages:
    return lambda net: [[net.get_submodule(p) for p in group] for group in groups]


def _split_at_pools(net: nn.Module) -> list[list[nn.Module]]:
    """VGG / AlexNet: conv blocks ending at each max-pool, then avgpool + fc layers."""
    stages, block = [], []
    for layer in net.features:
        block.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append(block)
            block = []
    return stages + [[net.avgpool, net.classifier]]  # classifier[-1] is the head (Identity)


@dataclass(frozen=True)
class ArchSpec:
    build: Callable[..., nn.Module]  # torchvision constructor
    weights: tvm.WeightsEnum  # its weights enum's DEFAULT
    conv1: str  # dotted path of the first convolution
    stages: Stages  # bottom to top, head excluded
    head: str  # dotted path of the ImageNet classifier layer
    embed_dim: int
    min_size: int  # smaller inputs are zero-padded (the pools of vgg/alexnet need room)


_RESNET = _paths(("conv1", "bn1", "relu", "maxpool"), ("layer1",), ("layer2",), ("layer3",),
                 ("layer4",))
_DENSENET = _paths(
    ("features.conv0", "features.norm0", "features.relu0", "features.pool0"),
    ("features.denseblock1", "features.transition1"),
    ("features.denseblock2", "features.transition2"),
    ("features.denseblock3", "features.transition3"),
    ("features.denseblock4", "features.norm5"),
)
ARCH_REGISTRY: Registry[ArchSpec] = Registry("arch", error=ModelError, sort=True)
_arch = ARCH_REGISTRY.register
_arch("alexnet", ArchSpec(tvm.alexnet, tvm.AlexNet_Weights.DEFAULT, "features.0",
                          _split_at_pools, "classifier.6", 4096, 63))
_arch("densenet121", ArchSpec(tvm.densenet121, tvm.DenseNet121_Weights.DEFAULT,
                              "features.conv0", _DENSENET, "classifier", 1024, 32))
_arch("resnet18", ArchSpec(tvm.resnet18, tvm.ResNet18_Weights.DEFAULT, "conv1", _RESNET, "fc",
                           512, 1))
_arch("resnet34", ArchSpec(tvm.resnet34, tvm.ResNet34_Weights.DEFAULT, "conv1", _RESNET, "fc",
                           512, 1))
_arch("vgg11_bn", ArchSpec(tvm.vgg11_bn, tvm.VGG11_BN_Weights.DEFAULT, "features.0",
                           _split_at_pools, "classifier.6", 4096, 32))
_arch("vgg16_bn", ArchSpec(tvm.vgg16_bn, tvm.VGG16_BN_Weights.DEFAULT, "features.0",
                           _split_at_pools, "classifier.6", 4096, 32))
ARCHS: tuple[str, ...] = ARCH_REGISTRY.names()  # sorted


def _set_module(net: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, name, module)


class Backbone(nn.Module):
    """A torchvision CNN on ``(B, 1, F, T)`` inputs with a replaceable classification head.

    ``forward`` returns ``(logits, embedding)``. With ``num_classes == 0`` there is no head
    and the logits are an empty ``(B, 0)`` tensor, so the return type never changes.
    """

    def __init__(self, arch: str, num_classes: int, dropout: float = 0.0):
        super().__init__()
        spec = ARCH_REGISTRY.get(arch)
        self.arch, self.embed_dim, self.dropout = arch, spec.embed_dim, dropout
        self.net = spec.build(weights=None)
        old = self.net.get_submodule(spec.conv1)
        conv = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding,
                         bias=old.bias is not None)
        with torch.no_grad():  # 3 summed init draws: the larger std a third of the fan-in wants
            conv.weight.copy_(old.weight.sum(dim=1, keepdim=True))
            if old.bias is not None:
                conv.bias.copy_(old.bias)
        _set_module(self.net, spec.conv1, conv)
        _set_module(self.net, spec.head, nn.Identity())
        self.head: nn.Module | None = None
        self.num_classes = 0
        self.reset_classifier(num_classes)
        self._trainable = len(self.stages())

    @property
    def spec(self) -> ArchSpec:
        """The registry entry: constructor, ImageNet weights, conv1 / head names, stages."""
        return ARCH_REGISTRY.get(self.arch)

    def stages(self) -> list[nn.Module]:
        """The backbone's stages, bottom to top, head excluded (views sharing parameters)."""
        return [nn.Sequential(*group) for group in self.spec.stages(self.net)]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by ``dropout -> Linear(embed_dim, num_classes)``; 0 removes it."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ModelError(f"num_classes must be an int >= 0, got {num_classes!r}")
        self.num_classes = num_classes
        self.head = None if num_classes == 0 else nn.Sequential(OrderedDict(
            drop=nn.Dropout(self.dropout), fc=nn.Linear(self.embed_dim, num_classes)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, F, T)`` -> the penultimate vector ``(B, embed_dim)``."""
        need = self.spec.min_size
        pad_f, pad_t = max(0, need - x.shape[-2]), max(0, need - x.shape[-1])
        if pad_f or pad_t:  # zero is the mean of a standardised input
            x = nn.functional.pad(x, (pad_t // 2, pad_t - pad_t // 2, pad_f // 2,
                                      pad_f - pad_f // 2))
        return self.net(x)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Embedding -> logits ``(B, num_classes)``; ``pre_logits`` returns the embedding."""
        if pre_logits:
            return feats
        if self.head is None:
            return feats.new_zeros((feats.shape[0], 0))
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.forward_features(x)
        return self.forward_head(feats), feats

    def set_trainable(self, n: int | str) -> None:
        """Train the top ``n`` stages and the head; freeze the rest (BatchNorm in eval mode).

        Args:
            n: a number of stages counted from the top (0: head only), or ``"all"``.

        Raises:
            ModelError: ``n`` is neither ``"all"`` nor an int in ``0..len(stages())``.
        """
        stages = self.stages()
        if n == "all":
            n = len(stages)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(stages):
            raise ModelError(f"{self.arch} has {len(stages)} stages: the number of stages to "
                             f"train must be 0..{len(stages)} or 'all', got {n!r}")
        self._trainable = n
        for i, stage in enumerate(stages):
            stage.requires_grad_(i >= len(stages) - n)
        if self.head is not None:
            self.head.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode:  # frozen stages keep their BatchNorm statistics
            stages = self.stages()
            for stage in stages[: len(stages) - self._trainable]:
                for m in stage.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self

    def param_groups(self, head_lr: float, backbone_lr: float,
                     weight_decay: float) -> list[dict]:
        """SGD parameter groups: the head first at ``head_lr``, trainable backbone parameters
        at ``backbone_lr``; biases and norm weights (ndim <= 1) get no weight decay.

        Raises:
            ModelError: nothing is trainable.
        """
        groups = []
        head = list(self.head.parameters()) if self.head is not None else []
        for name, params, lr in (("head", head, head_lr),
                                 ("backbone", list(self.net.parameters()), backbone_lr)):
            params = [p for p in params if p.requires_grad]
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            for suffix, ps, wd in (("", decay, weight_decay), ("_no_decay", no_decay, 0.0)):
                if ps:
                    groups.append({"params": ps, "lr": lr, "weight_decay": wd,
                                   "name": name + suffix})
        if not groups:
            raise ModelError(f"{self.arch}: no trainable parameters (no head and all frozen)")
        return groups


def create_backbone(arch: str, num_classes: int, weights: str | Path = "none",
                    dropout: float = 0.0) -> Backbone:
    """Build a backbone by name.

    Args:
        arch: one of ``ARCHS``.
        num_classes: size of the head; 0 for none (logits are then ``(B, 0)``).
        weights: ``"none"`` (random; seed before calling), ``"imagenet"`` (torch hub cache,
            downloaded when missing and online) or a path to a torchvision state_dict or a
            sonicsearch checkpoint (its head is dropped when its size differs).
        dropout: dropout before the head's Linear.

    Returns:
        The Backbone, all stages trainable, in training mode.

    Raises:
        ModelError: unknown arch, bad arguments, or a weights file that does not fit.
        WeightsUnavailableError: ImageNet weights are neither cached nor downloadable.
    """
    ARCH_REGISTRY.check(arch)
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"dropout must be in [0, 1), got {dropout}")
    model = Backbone(arch, num_classes, dropout)
    if str(weights).lower() != "none":
        load_weights(model, weights)
    return model


class SpecAugment(nn.Module):
    """Time and frequency masks (filled with 0, the input mean), per example, training only."""

    def __init__(self, time_masks: int = 0, time_mask_frames: int = 0, freq_masks: int = 0,
                 freq_mask_bins: int = 0):
        super().__init__()
        self.time = (time_masks, time_mask_frames)
        self.freq = (freq_masks, freq_mask_bins)
        self.enabled = time_masks * time_mask_frames + freq_masks * freq_mask_bins > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.enabled):
            return x
        return _mask(_mask(x, *self.freq, dim=-2), *self.time, dim=-1)


def _mask(x: torch.Tensor, count: int, width: int, dim: int) -> torch.Tensor:
    size = x.shape[dim]
    if count <= 0 or width <= 0:
        return x
    w = torch.randint(0, min(width, size) + 1, (x.shape[0], count, 1), device=x.device)
    start = (torch.rand(w.shape, device=x.device) * (size - w + 1)).long()
    pos = torch.arange(size, device=x.device)
    hit = ((pos >= start) & (pos < start + w)).any(dim=1)  # (B, size)
    shape = (x.shape[0], 1, size, 1) if dim == -2 else (x.shape[0], 1, 1, size)
    return x.masked_fill(hit.view(shape), 0.0)


class AudioModel(nn.Module):
    """Waveforms -> log-mel (float32) -> standardised -> SpecAugment (training) -> Backbone.

    ``forward(wave (B, samples))`` returns ``(logits (B, C), embedding (B, D))``; without
    labels C is 0. ``norm_mean``/``norm_std`` have shape ``(1, 1, n_mels, 1)``: a global
    standardisation stores the same value in every mel bin. Call ``fit_normalization``
    before training (they start at 0 and 1).
    """

    def __init__(self, feature_config: FeatureConfig, backbone: Backbone, labels: list[str],
                 model_config: ModelConfig | None = None,
                 spec_augment: SpecAugment | None = None):
        super().__init__()
        if len(labels) != backbone.num_classes:
            raise ModelError(f"{len(labels)} labels for a head of {backbone.num_classes}")
        self.feature_config, self.labels = feature_config, list(labels)
        self.model_config = model_config or ModelConfig(backbone.arch, "none", backbone.dropout)
        self.frontend = LogMel(feature_config)
        shape = (1, 1, feature_config.n_mels, 1)
        self.register_buffer("norm_mean", torch.zeros(shape))
        self.register_buffer("norm_std", torch.ones(shape))
        self.spec_augment = spec_augment or SpecAugment()
        self.backbone = backbone
        self.style_head = None  # a model/style.StyleHead, when the model file has one

    @classmethod
    def from_config(cls, feature_config: FeatureConfig, model_config: ModelConfig,
                    labels: list[str], train_config: TrainConfig | None = None) -> AudioModel:
        """Build from configs; SpecAugment comes from ``train_config`` (none without one).

        Raises:
            ModelError, WeightsUnavailableError: as :func:`create_backbone`.
        """
        backbone = create_backbone(model_config.arch, len(labels), model_config.weights,
                                   model_config.dropout)
        aug = SpecAugment()
        if train_config is not None:
            tc = train_config
            aug = SpecAugment(tc.time_masks, tc.time_mask_frames, tc.freq_masks,
                              tc.freq_mask_bins)
        return cls(feature_config, backbone, labels, replace(model_config), aug)

    @property
    def arch(self) -> str:
        return self.backbone.arch

    @torch.no_grad()
    def fit_normalization(self, spectrograms: torch.Tensor, per_bin: bool = False) -> None:
        """Set the standardisation from training log-mels ``(N, 1, n_mels, frames)`` in dB.

        Raises:
            ModelError: wrong shape or non-finite values.
        """
        s = spectrograms.detach().double()
        if s.dim() != 4 or s.shape[2] != self.feature_config.n_mels or not s.isfinite().all():
            raise ModelError(f"fit_normalization needs finite (N, 1, "
                             f"{self.feature_config.n_mels}, T) log-mels, got {tuple(s.shape)}")
        dims = (0, 1, 3) if per_bin else (0, 1, 2, 3)
        mean, std = s.mean(dim=dims, keepdim=True), s.std(dim=dims, keepdim=True)
        std = torch.where(std > 1e-3, std, torch.ones_like(std))  # a constant input stays put
        self.norm_mean.copy_(mean.expand_as(self.norm_mean))
        self.norm_std.copy_(std.expand_as(self.norm_std))

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(B, samples)`` -> standardised log-mel ``(B, 1, n_mels, frames)``."""
        return (self.frontend(wave) - self.norm_mean) / self.norm_std

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.spec_augment(self.features(wave))
        return self.backbone(x.to(next(self.backbone.parameters()).dtype))

    @torch.no_grad()
    def embed(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eval-mode embeddings ``(B, D)`` (not normalised) and class probabilities ``(B, C)``
        (None without labels); the previous train/eval mode is restored."""
        was_training = self.training
        self.eval()
        try:
            logits, emb = self(wave)
        finally:
            self.train(was_training)
        return emb, (logits.float().softmax(dim=-1) if self.labels else None)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.frontend.float()  # the STFT stays float32: fp16 power spectra overflow
        self.norm_mean, self.norm_std = self.norm_mean.float(), self.norm_std.float()
        return self


__all__ = ["ARCHS", "ARCH_REGISTRY", "AudioModel", "Backbone", "SpecAugment", "create_backbone"]
