"""The degradations added for benchmarks/robust_music.py: a room shaped like a measured one,
recorded noise at an SNR, and 3 % speed changes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from sonicsearch.eval import degrade as D

SR = 16000


def _decay_time(ir: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """RT60 of one band from Schroeder's backward integral (the -5..-25 dB slope, x3)."""
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
    e = signal.sosfilt(sos, ir) ** 2
    edc = 10 * np.log10(np.cumsum(e[::-1])[::-1] / e.sum() + 1e-30)
    t5, t25 = np.argmax(edc <= -5) / sr, np.argmax(edc <= -25) / sr
    return 3.0 * (t25 - t5)


def test_room_ir_has_a_direct_sound_early_reflections_and_a_frequency_dependent_tail():
    ir = D.room_ir(SR, 0.7, np.random.default_rng(0), drr_db=0.0)
    assert ir.size == int(round((1.2 * 0.7 + 0.1) * SR)) and ir[0] == 1.0
    rest = float(np.sum(ir[1:] ** 2))
    assert 10 * math.log10(1.0 / rest) == pytest.approx(0.0, abs=0.3)  # the DRR asked for
    assert np.count_nonzero(np.abs(ir[1:int(0.003 * SR)]) > 0.05) == 0  # nothing before 3 ms
    assert np.abs(ir[int(0.003 * SR):int(0.06 * SR)]).max() > 0.1  # discrete reflections
    low, mid, high = (_decay_time(ir, SR, a, b) for a, b in ((177, 354), (707, 1414),
                                                             (2828, 5657)))
    assert mid == pytest.approx(0.7, rel=0.25)
    assert low > mid > high  # the highs die away first
    again = D.room_ir(SR, 0.7, np.random.default_rng(0))
    np.testing.assert_array_equal(ir, again)
    with pytest.raises(ValueError):
        D.room_ir(SR, 0.0, np.random.default_rng(0))


def test_room_reverb_keeps_length_and_level():
    x = np.random.default_rng(1).standard_normal(SR).astype(np.float32) * 0.1
    y = D.room_reverb(x, SR, 0.7, np.random.default_rng(2))
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)


@pytest.mark.parametrize("snr", [10.0, 0.0])
def test_mix_noise_reaches_the_snr_and_loops_short_noise(snr):
    t = np.arange(2 * SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noise = np.random.default_rng(0).standard_normal(SR // 3).astype(np.float32)  # shorter
    y = D.mix_noise(x, noise, snr, np.random.default_rng(1))
    assert y.shape == x.shape and D.snr_db(x, y) == pytest.approx(snr, abs=0.01)
    assert not D.mix_noise(np.zeros(10, np.float32), noise, snr, np.random.default_rng(0)).any()
    np.testing.assert_array_equal(D.mix_noise(x, np.zeros(5, np.float32), snr,
                                              np.random.default_rng(0)), x)


def test_new_named_degradations():
    assert {"speed_0.97", "speed_1.03", "reverb_room"} <= set(D.DEGRADATIONS)
    x = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR).astype(np.float32)
    y = D.apply("speed_1.03", x, SR, np.random.default_rng(0))
    peak = np.fft.rfftfreq(y.size, 1 / SR)[np.argmax(np.abs(np.fft.rfft(y)))]
    assert peak == pytest.approx(1030, abs=3) and abs(y.size - SR / 1.03) <= 2
