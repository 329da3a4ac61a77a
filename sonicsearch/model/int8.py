"""The int8 embedding path (``build-index --fast``): the backbone quantised to 8 bits for
x86 CPUs, derived at load time from the float weights and a stored calibration.

PyTorch's FX graph-mode post-training static quantisation with the ``x86`` backend:
convolutions are folded with their BatchNorm, weights quantised per output channel from
their own min / max (deterministic, so nothing binary is stored), and activations per
tensor with the ranges that a calibration on real windows measured. Those ranges are a
small JSON file per model (``sonicsearch/assets/base-v2-int8.json`` for the shipped model,
written by ``benchmarks/int8_calibration.py``): the model file stays float and loads with
``weights_only=True``; the quantised network is rebuilt from the two in a few seconds.

The quantised network gives what the float one gives to an index: the embedding and each
stage's channel means and standard deviations (the style head's input, as
:func:`sonicsearch.model.style.forward_with_stats`), computed in float from the dequantised
stage outputs. Its window vectors are close to the float path's (cosine 0.998 or more on
real music; benchmarks/embed_speed.py) and stay comparable with float queries, so a query
of a ``--fast`` index embeds in float as always.

The front end (log-mel) stays float32. ResNets only (the shipped model is a ResNet-18).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sonicsearch.errors import ModelError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BACKEND = "x86"
ARCHS = ("resnet18", "resnet34")
FORMAT = 1  # of the calibration file


@torch.fx.wrap
def stage_stats(x: torch.Tensor) -> torch.Tensor:
    """Channel means and population standard deviations of a feature map, in float (an FX
    leaf: the quantiser dequantises its input and leaves it alone)."""
    x = x.float()
    return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3), correction=0)], 1)


class StatsNet(nn.Module):
    """A ResNet backbone's stages in order, giving ``(embedding (B, D), stage statistics
    (B, 2 * sum(channels)))`` in one pass: the graph that is quantised."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        if backbone.arch not in ARCHS:
            raise ModelError(f"the int8 path supports {', '.join(ARCHS)}, not {backbone.arch}")
        self.stages = nn.ModuleList(nn.Sequential(*g) for g in backbone.spec.stages(backbone.net))
        self.pool = backbone.net.avgpool

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stats = []
        for stage in self.stages:
            x = stage(x)
            stats.append(stage_stats(x))
        return torch.flatten(self.pool(x), 1), torch.cat(stats, 1)


def _observer_config(fixed: bool):
    """The x86 backend's default mapping; ``fixed`` swaps the activation observers for
    min / max ones whose ranges are set from a calibration file."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import MinMaxObserver

    mapping = get_default_qconfig_mapping(BACKEND)
    if not fixed:
        return mapping
    default = mapping.global_qconfig
    act = MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=True)
    return mapping.set_global(QConfig(activation=act, weight=default.weight))


def _prepare(model: nn.Module, fixed: bool) -> nn.Module:
    from torch.ao.quantization import quantize_fx

    torch.backends.quantized.engine = BACKEND
    net = StatsNet(copy.deepcopy(model.backbone).float().cpu().eval()).eval()
    example = torch.zeros(2, 1, model.feature_config.n_mels, 8)
    with warnings.catch_warnings():  # FX quantisation is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_fx.prepare_fx(net, _observer_config(fixed), example_inputs=(example,))


def _observers(prepared: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in prepared.named_modules()
            if name.startswith("activation_post_process")}


def _convert(prepared: nn.Module) -> nn.Module:
    from torch.ao.quantization import quantize_fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_fx.convert_fx(prepared).eval()


@torch.no_grad()
def calibrate(model: nn.Module, windows: np.ndarray | torch.Tensor, batch: int = 32) -> dict:
    """Measure the activation ranges of ``model``'s backbone on real waveform windows
    ``(n, samples)`` (histogram observers, the x86 default) and return them as the
    calibration file's dict (model sha256 left for the caller to add)."""
    prepared = _prepare(model, fixed=False)
    x_all = torch.as_tensor(np.ascontiguousarray(windows))
    for i in range(0, len(x_all), batch):
        prepared(model.features(x_all[i: i + batch].float()))
    ranges = {}
    for name, obs in _observers(prepared).items():
        scale, zero = obs.calculate_qparams()
        lo, hi = obs.quant_min, obs.quant_max
        s, z = float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0])
        ranges[name] = [(lo - z) * s, (hi - z) * s]  # the min / max that give (s, z) back
    return {"format": FORMAT, "backend": BACKEND, "arch": model.arch, "windows": len(x_all),
            "ranges": ranges}


@torch.no_grad()
def quantize(model: nn.Module, calibration: dict) -> nn.Module:
    """The int8 :class:`StatsNet` of ``model``'s backbone with ``calibration``'s ranges.

    Raises:
        ModelError: the calibration does not fit the network (another architecture).
    """
    prepared = _prepare(model, fixed=True)
    observers, ranges = _observers(prepared), calibration.get("ranges", {})
    if set(observers) != set(ranges):
        raise ModelError(f"the int8 calibration does not fit this {model.arch} "
                         f"({len(ranges)} ranges for {len(observers)} activations)")
    for name, obs in observers.items():
        lo, hi = ranges[name]
        obs.min_val.copy_(torch.tensor(float(lo)))
        obs.max_val.copy_(torch.tensor(float(hi)))
    return _convert(prepared)


def calibration_path(sha256: str) -> Path:
    """Where the shipped calibration of a model would be (by the model's checksum)."""
    return ASSETS / f"int8-{sha256[:16]}.json"


def load_calibration(sha256: str, arch: str) -> dict:
    """The stored calibration of the model with checksum ``sha256``.

    Raises:
        ModelError: none is stored for that model, or it is damaged.
    """
    path = calibration_path(sha256)
    if not path.is_file():
        raise ModelError(f"no int8 calibration for model {sha256[:12]} ({arch}): --fast works "
                         "with the shipped base model; build without --fast")
    try:
        cal = json.loads(path.read_text())
        ok = cal["format"] == FORMAT and cal["sha256"] == sha256 and isinstance(
            cal["ranges"], dict)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ModelError(f"the int8 calibration {path} is damaged; reinstall sonicsearch")
    return cal


def int8_available() -> bool:
    """Whether this PyTorch can run the x86 int8 kernels."""
    return BACKEND in torch.backends.quantized.supported_engines


__all__ = ["StatsNet", "calibrate", "calibration_path", "int8_available", "load_calibration",
           "quantize", "stage_stats"]
