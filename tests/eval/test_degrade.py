"""sonicsearch.eval.degrade: achieved SNR, telephone band, codec round trips, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from sonicsearch.eval import degrade as D

SR = 22050


def _music(seconds: float = 2.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tones = sum(0.2 / (i + 1) * np.sin(2 * np.pi * f * t) for i, f in enumerate((220, 1500, 6000)))
    return (tones + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _band_energy(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum())


@pytest.mark.parametrize("color", D.NOISE_COLORS)
@pytest.mark.parametrize("snr", [20.0, 10.0, 0.0, -5.0])
def test_add_noise_achieves_the_snr(snr, color):
    x = _music()
    y = D.add_noise(x, SR, snr, np.random.default_rng(3), color=color)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert abs(D.snr_db(x, y) - snr) < 0.5


def test_pink_noise_has_more_low_than_high_energy():
    x = np.zeros(SR, np.float32)
    x[::100] = 1.0  # any non-silent signal: we look at the noise alone
    noise = D.add_noise(x, SR, 0.0, np.random.default_rng(0), color="pink") - x
    assert _band_energy(noise, SR, 50, 500) > 5 * _band_energy(noise, SR, 5000, 5450)


def test_add_noise_leaves_silence_and_rejects_unknown_colour():
    assert not D.add_noise(np.zeros(100, np.float32), SR, 10, np.random.default_rng(0)).any()
    with pytest.raises(ValueError, match="white, pink"):
        D.add_noise(_music(), SR, 10, np.random.default_rng(0), color="brown")


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100])
def test_telephone_removes_energy_above_4khz(sr):
    x = _music(sr=sr) + 0.1 * np.random.default_rng(1).standard_normal(2 * sr).astype(np.float32)
    y = D.telephone(x, sr)
    assert y.shape == x.shape and y.dtype == np.float32
    if sr > 8000:
        assert _band_energy(y, sr, 4200, sr / 2) < 1e-4 * _band_energy(x, sr, 4200, sr / 2)
    assert _band_energy(y, sr, 0, 150) < 0.01 * _band_energy(x, sr, 0, 150)
    assert _band_energy(y, sr, 500, 3000) > 0.5 * _band_energy(x, sr, 500, 3000)


@pytest.mark.parametrize("fmt", list(D.CODECS))
@pytest.mark.parametrize("sr", [16000, 22050, 20000])
def test_reencode_round_trips_with_the_same_length(fmt, sr):
    x = _music(1.5, sr)
    y = D.reencode(x, sr, fmt, quality=0.2)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all() and np.abs(y).max() > 0.05  # audio came back, not silence
    assert not np.allclose(x, y, atol=1e-3)  # and it is lossy
    np.testing.assert_array_equal(y, D.reencode(x, sr, fmt, quality=0.2))


def test_reencode_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mp3, ogg"):
        D.reencode(_music(), SR, "wma")
    with pytest.raises(ValueError, match="quality"):
        D.reencode(_music(), SR, "mp3", quality=1.5)


def test_lower_mp3_quality_loses_more():
    x = _music(2.0)
    err = [float(np.mean((D.reencode(x, SR, "mp3", q) - x) ** 2)) for q in (0.05, 0.8)]
    assert err[0] > err[1]


def test_reverb_keeps_length_and_level_and_smears_in_time():
    x = np.zeros(SR, np.float32)
    x[1000] = 1.0
    y = D.reverb(x, SR, 0.5, np.random.default_rng(0))
    assert y.shape == x.shape
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=1e-3)
    assert np.abs(y[1000 + SR // 10 : 1000 + SR // 5]).max() > 0  # a tail after the click
    assert np.abs(y[:1000]).max() < 1e-6  # and nothing before it (causal; FFT rounding)
    with pytest.raises(ValueError):
        D.reverb(x, SR, 0.0, np.random.default_rng(0))


def test_gain_and_speed():
    x = _music(1.0)
    np.testing.assert_allclose(D.gain(x, -20.0), x * 0.1, rtol=1e-5)
    fast, slow = D.speed(x, SR, 1.05), D.speed(x, SR, 0.95)
    assert abs(fast.size - x.size / 1.05) <= 2 and abs(slow.size - x.size / 0.95) <= 2
    np.testing.assert_array_equal(D.speed(x, SR, 1.0), x)
    # a 1 kHz tone played 5 % faster peaks at 1050 Hz
    tone = np.sin(2 * np.pi * 1000 * np.arange(SR) / SR).astype(np.float32)
    spec = np.abs(np.fft.rfft(D.speed(tone, SR, 1.05)))
    peak = np.fft.rfftfreq(D.speed(tone, SR, 1.05).size, 1 / SR)[np.argmax(spec)]
    assert peak == pytest.approx(1050, abs=3)


@pytest.mark.parametrize("name", list(D.DEGRADATIONS))
def test_every_named_degradation_is_deterministic(name):
    x = _music(1.5)
    a = D.apply(name, x, SR, np.random.default_rng(7))
    b = D.apply(name, x, SR, np.random.default_rng(7))
    assert a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    if not name.startswith(("speed", "tempo")):
        assert a.shape == x.shape
    random = ("noise", "pink", "reverb", "phone", "eq", "broadcast")
    if name.startswith(random):  # the seed matters for random ones
        assert not np.array_equal(a, D.apply(name, x, SR, np.random.default_rng(8)))


def test_apply_names_the_known_degradations():
    with pytest.raises(KeyError, match="noise_snr10"):
        D.apply("nope", _music(), SR, np.random.default_rng(0))


def test_degradations_do_not_modify_their_input():
    x = _music(1.0)
    keep = x.copy()
    for name in D.DEGRADATIONS:
        D.apply(name, x, SR, np.random.default_rng(0))
    np.testing.assert_array_equal(x, keep)
