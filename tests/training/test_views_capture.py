"""The capture views: EQ moves the spectral balance, dynamics narrow the level range, both
keep loudness, and with probability 0 they change nothing a recipe drew before."""

from __future__ import annotations

import math

import torch

from sonicsearch.config import PretrainConfig
from sonicsearch.training import views_capture as V
from sonicsearch.training.views import ViewMaker

SR = 16000
OFF = dict(noise_prob=0, band_prob=0, codec_prob=0, reverb_prob=0, gain_db=0, speed_prob=0,
           pair_shift_seconds=0.0)


def _maker(**kw) -> ViewMaker:
    return ViewMaker(PretrainConfig(**{**OFF, **kw}), SR, SR)


def _tones(b: int = 16) -> torch.Tensor:
    t = torch.arange(SR) / SR
    x = 0.3 * torch.sin(2 * math.pi * 100 * t) + 0.3 * torch.sin(2 * math.pi * 6000 * t)
    return x.repeat(b, 1)


def _low_share(x: torch.Tensor) -> torch.Tensor:
    spec = torch.fft.rfft(x).abs() ** 2
    return spec[:, :200].sum(dim=1) / spec.sum(dim=1)  # below 200 Hz of 8 kHz


def test_eq_tilts_the_balance_each_way_and_keeps_loudness():
    x = _tones()
    y = V.equalise(_maker(), x, torch.Generator().manual_seed(0))
    share = _low_share(y)
    assert share.max() > 0.6 and share.min() < 0.4  # 0.5 before: tilted both ways
    assert torch.allclose(y.pow(2).mean(1), x.pow(2).mean(1), rtol=1e-3)


def test_dynamics_narrow_the_gap_between_a_quiet_and_a_loud_half():
    x = _tones(8)
    x[:, : SR // 2] *= 0.03  # -30 dB
    y = V.compress(_maker(), x, torch.Generator().manual_seed(1))

    def gap(z):
        return 10 * torch.log10(z[:, SR // 2:].pow(2).mean(1) / z[:, : SR // 2].pow(2).mean(1))

    assert (gap(y) < gap(x) - 5.0).all()
    assert torch.isfinite(y).all()
    assert torch.allclose(y.pow(2).mean(1), x.pow(2).mean(1), rtol=1e-3)


def test_the_views_apply_them_at_their_probability_and_not_when_off():
    x = _tones(32) + 0.01 * torch.randn(32, SR, generator=torch.Generator().manual_seed(0))
    off = _maker()(x, torch.Generator().manual_seed(5))
    assert torch.allclose(off, x)  # nothing on: the views are the excerpts
    on = _maker(eq_prob=0.5, dynamics_prob=0.5)(x, torch.Generator().manual_seed(5))
    changed = ~torch.isclose(on, x, atol=1e-4).all(dim=1)
    assert 8 <= int(changed.sum()) <= 31
