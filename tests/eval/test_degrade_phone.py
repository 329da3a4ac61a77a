"""The phone-in-a-room compound capture of the no-match benchmark and the confidence fit."""

from __future__ import annotations

import numpy as np

from sonicsearch.eval import degrade as D


def test_phone_room_is_band_limited_quieter_and_keeps_the_length():
    sr = 22050
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(3 * sr)).astype(np.float32)  # full-band
    y = D.phone_room(x, sr, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert 10 * np.log10(np.mean(y**2) / np.mean(x**2)) < -10.0  # -10 dB and the band
    spec = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    assert spec[freqs > 4500].sum() < 1e-3 * spec[(freqs > 300) & (freqs < 3400)].sum()
    noise = np.random.default_rng(2).standard_normal(sr).astype(np.float32)
    z = D.phone_room(x, sr, np.random.default_rng(1), noise=noise)  # a recorded background
    assert z.shape == x.shape and not np.allclose(z, y)
