"""The compound captures: each stage of a chain leaves its mark, strengths come from the seed."""

import numpy as np
import pytest

from sonicsearch.eval import compound as K
from sonicsearch.eval import degrade as D

SR = 22050


def _music(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f * t) * a for f, a in ((110, 0.3), (440, 0.2), (1760, 0.1),
                                                          (6000, 0.08)))
    return (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _band_share(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


def _rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_phone_in_a_room_is_narrow_band_quieter_and_drawn_from_the_seed():
    x = _music()
    y = K.phone_in_room(x, SR, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert _band_share(x, 4000, SR / 2) > 0.04  # the 6 kHz partial
    assert _band_share(y, 4000, SR / 2) < 0.005  # the phone's band and 8 kHz codec took it
    assert _band_share(y, 300, 3400) > 0.8
    assert -15.5 < _rms_db(y) - _rms_db(x) < -5.5  # the recorder's level
    z = K.phone_in_room(x, SR, np.random.default_rng(1))
    assert not np.allclose(y, z)


def test_phone_in_a_room_mixes_the_given_background():
    x = _music()
    hum = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(SR * 5) / SR)).astype(np.float32)
    quiet = np.zeros(SR * 5, np.float32)
    quiet[::97] = 1e-3  # a background with (almost) no 1 kHz content
    a = K.phone_in_room(x, SR, np.random.default_rng(3), noise=hum)
    b = K.phone_in_room(x, SR, np.random.default_rng(3), noise=quiet)
    assert _band_share(a, 950, 1050) > _band_share(b, 950, 1050) + 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_speech_codec_keeps_length_and_band(seed):
    x = _music(2.0, seed)
    y = K.speech_codec(x, SR, np.random.default_rng(seed))
    assert y.shape == x.shape and np.isfinite(y).all()
    assert _band_share(y, 4100, SR / 2) < 0.01
    assert np.corrcoef(D.telephone(x, SR)[2000:-2000], y[2000:-2000])[0, 1] > 0.0


def test_mastering_tilts_compresses_and_limits():
    x = _music(4.0)
    x[: SR] *= 0.05  # a quiet bar before a loud one: compression narrows the gap
    ys = [K.mastering(x, SR, np.random.default_rng(s)) for s in range(6)]
    for y in ys:
        assert y.shape == x.shape and np.abs(y).max() <= 1.0
        gap_x = _rms_db(x[SR:]) - _rms_db(x[:SR])
        assert _rms_db(y[SR:]) - _rms_db(y[:SR]) < gap_x - 3.0
    lows = [_band_share(y, 0, 300) for y in ys]
    assert max(lows) - min(lows) > 0.05  # the EQ tilt differs per draw


def test_broadcast_is_mastering_then_a_band_and_a_codec():
    x = _music(3.0)
    y = K.broadcast(x, SR, np.random.default_rng(0))
    assert y.shape == x.shape and np.isfinite(y).all() and np.abs(y).max() <= 1.0
    assert np.corrcoef(K.mastering(x, SR, np.random.default_rng(0))[4000:-4000],
                       y[4000:-4000])[0, 1] > 0.5


def test_pitch_moves_a_tone_a_semitone_and_tempo_keeps_it():
    tone = np.sin(2 * np.pi * 1000 * np.arange(2 * SR) / SR).astype(np.float32)

    def peak(y):
        spec = np.abs(np.fft.rfft(y[SR // 4: -SR // 4]))
        return np.fft.rfftfreq(y.size - SR // 2, 1 / SR)[np.argmax(spec)]

    up = K.pitch_shift(tone, SR, 1.0)
    assert up.shape == tone.shape and peak(up) == pytest.approx(1000 * 2 ** (1 / 12), abs=6)
    fast = K.tempo(tone, SR, 1.06)
    assert fast.size == pytest.approx(tone.size / 1.06, rel=0.01)
    assert peak(fast) == pytest.approx(1000, abs=6)
    with pytest.raises(ValueError, match="positive"):
        K.tempo(tone, SR, 0.0)


def test_the_compound_settings_are_registered_in_the_benchmark_order():
    assert list(D.DEGRADATIONS)[-len(K.COMPOUND):] == list(K.COMPOUND)
