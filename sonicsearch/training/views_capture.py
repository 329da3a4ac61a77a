"""Training views of compound captures: EQ and dynamics, batched on the model's device.

A real capture stacks degradations (:mod:`sonicsearch.eval.compound` measures such chains
with pedalboard); two of its stages are missing from the steps of
:mod:`sonicsearch.training.views`, and are registered here, after them, so they run after
the room and the noise, where a phone's microphone response and automatic gain, or a
broadcast processor, sit:

- ``eq`` (``pretrain.eq_prob``): a tilt of up to +-6 dB (lows against highs around a pivot
  at 300-3000 Hz, smooth in log frequency) and one bell of up to +-4 dB at 0.3-5 kHz;
- ``dynamics`` (``pretrain.dynamics_prob``): a compressor on the RMS envelope (frames of
  5-50 ms, one length per batch; threshold 6-24 dB under the loudest frame, ratio 2-8),
  then a soft limiter (tanh, 1-6 dB under the peak); loudness kept.

Both draw nothing when their probability is 0 (``draws_when_off=False``), so recipes
written before them give the same views. Importing :mod:`sonicsearch.training.views`
imports this module.
"""

from __future__ import annotations

import math

import torch

import sonicsearch.training.views  # noqa: F401 - its steps register first, then these
from sonicsearch.degradations import register_view

EQ_TILT_DB = 6.0
EQ_PEAK_DB = 4.0


def _uniform(maker, n: int, lo: float, hi: float, gen, like: torch.Tensor) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=like.device)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=1, keepdim=True).sqrt()


@register_view("eq", prob="eq_prob", draws_when_off=False)
def equalise(maker, x: torch.Tensor, gen) -> torch.Tensor:
    """A random tilt and bell (see the module's docstring); loudness kept."""
    b, nyq = x.shape[0], maker.sr / 2
    spec = torch.fft.rfft(x)
    f = torch.linspace(0, nyq, spec.shape[1], device=x.device)[None].clamp_min(20.0)
    log_f = torch.log2(f)
    pivot = torch.log2(_uniform(maker, b, 300.0, min(3000.0, nyq / 2), gen, x))[:, None]
    tilt = _uniform(maker, b, -EQ_TILT_DB, EQ_TILT_DB, gen, x)[:, None]
    centre = _uniform(maker, b, math.log2(300.0), math.log2(min(5000.0, nyq / 2)), gen, x)
    peak = _uniform(maker, b, -EQ_PEAK_DB, EQ_PEAK_DB, gen, x)[:, None]
    width = _uniform(maker, b, 0.5, 1.5, gen, x)[:, None]  # octaves
    db = (tilt * torch.tanh((log_f - pivot) / 1.5)
          + peak * torch.exp(-0.5 * ((log_f - centre[:, None]) / (width / 2)) ** 2))
    y = torch.fft.irfft(spec * 10.0 ** (db / 20.0), n=x.shape[1])
    return y * (_rms(x) / _rms(y).clamp_min(1e-8))


@register_view("dynamics", prob="dynamics_prob", draws_when_off=False)
def compress(maker, x: torch.Tensor, gen) -> torch.Tensor:
    """A compressor and a soft limiter (see the module's docstring); loudness kept."""
    b, n = x.shape
    frame = float(_uniform(maker, 1, 0.005, 0.05, gen, x))  # one per batch
    threshold = _uniform(maker, b, 6.0, 24.0, gen, x)[:, None]
    ratio = _uniform(maker, b, 2.0, 8.0, gen, x)[:, None]
    ceiling = _uniform(maker, b, 1.0, 6.0, gen, x)[:, None]
    hop = max(1, int(0.005 * maker.sr))
    power = torch.nn.functional.avg_pool1d(x.pow(2)[:, None], hop, hop, ceil_mode=True)[:, 0]
    kernel = max(1, round(frame * maker.sr / hop))
    smooth = torch.nn.functional.avg_pool1d(
        torch.nn.functional.pad(power[:, None], (kernel // 2, kernel - 1 - kernel // 2),
                                mode="replicate"), kernel, 1)[:, 0]
    level = 10.0 * torch.log10(smooth.clamp_min(1e-10))
    over = (level - (level.amax(dim=1, keepdim=True) - threshold)).clamp_min(0.0)
    gain_db = -over * (1.0 - 1.0 / ratio)
    gain = torch.nn.functional.interpolate((10.0 ** (gain_db / 20.0))[:, None], size=n,
                                           mode="linear", align_corners=False)[:, 0]
    y = x * gain
    peak = y.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
    limit = peak * 10.0 ** (-ceiling / 20.0)
    y = limit * torch.tanh(y / limit)
    return y * (_rms(x) / _rms(y).clamp_min(1e-8))


__all__ = ["compress", "equalise"]
