"""Deterministic waveform degradations: what a copy of a recording suffers on its way back
to a search box (noise, lossy re-encoding, a telephone line, a room, a gain or speed change).

Every function takes and returns float32 mono numpy at the same sample rate, and the
output has the input's length except for :func:`speed`, which changes it by design. Any
randomness comes from an explicit ``numpy.random.Generator``, so the same seed gives the
same samples. Outputs are not clipped (they are float), except that :func:`reencode`
passes through a codec, which clips to [-1, 1].

The named settings used by ``benchmarks/recall_at_k.py`` are in :data:`DEGRADATIONS`, each a
callable ``f(x, sr, rng) -> y`` registered with
:func:`sonicsearch.degradations.register_benchmark` (the registry the training views share)::

    from sonicsearch.eval.degrade import DEGRADATIONS, add_noise
    rng = np.random.default_rng(0)
    y = DEGRADATIONS["mp3_low"](x, 22050, rng)
    z = add_noise(x, 22050, snr_db=10.0, rng=rng, color="pink")
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping
from fractions import Fraction

import numpy as np
import soundfile as sf
from scipy import signal

from sonicsearch.audio import load_audio
from sonicsearch.degradations import (
    BENCHMARK_ROOM_RT60,
    BENCHMARK_RT60,
    EARLY_REFLECTIONS,
    MP3_LOW_QUALITY,
    OGG_LOW_QUALITY,
    TAIL_ONSET,
    TELEPHONE_BAND,
    TELEPHONE_RATE,
    Benchmarks,
    band_rt60,
    register_benchmark,
)

Degradation = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

NOISE_COLORS = ("white", "pink")
CODECS = {"mp3": ("MP3", "MPEG_LAYER_III"), "ogg": ("OGG", "VORBIS")}
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def add_noise(x: np.ndarray, sr: int, snr_db: float, rng: np.random.Generator,
              color: str = "white") -> np.ndarray:
    """Add white or pink noise at a signal-to-noise ratio.

    Args:
        x: mono samples.
        sr: sample rate (unused by white noise; kept so every degradation looks alike).
        snr_db: 10 log10(signal power / noise power) of the result, exactly (the noise is
            scaled by its own measured power).
        rng: the noise source.
        color: white (flat spectrum) or pink (power falls 3 dB per octave).

    Returns:
        ``x + noise``, float32. A silent ``x`` is returned unchanged.

    Raises:
        ValueError: an unknown colour.
    """
    x = _mono(x)
    if color not in NOISE_COLORS:
        raise ValueError(f"unknown noise colour '{color}'; choose one of: "
                         f"{', '.join(NOISE_COLORS)}")
    power = float(np.mean(x.astype(np.float64) ** 2)) if x.size else 0.0
    if power == 0.0:
        return x.copy()
    noise = rng.standard_normal(x.size)
    if color == "pink":
        spectrum = np.fft.rfft(noise)
        f = np.arange(spectrum.size, dtype=np.float64)
        f[0] = 1.0  # no DC boost
        noise = np.fft.irfft(spectrum / np.sqrt(f), n=x.size)
    noise -= noise.mean()
    scale = math.sqrt(power / (float(np.mean(noise**2)) * 10.0 ** (snr_db / 10.0)))
    return (x + scale * noise).astype(np.float32)


def band_limit(x: np.ndarray, sr: int, low: float, high: float,
               rate: int | None = None) -> np.ndarray:
    """Keep only ``low``..``high`` Hz (4th-order Butterworth band-pass, zero phase), and
    optionally pass through a lower sample rate ``rate`` and back (which removes everything
    above rate / 2 as a real narrow-band channel does).

    Raises:
        ValueError: ``low`` >= ``high`` or not positive.
    """
    x = _mono(x)
    if not 0 < low < high:
        raise ValueError(f"band-limit needs 0 < low < high, got {low}..{high} Hz")
    high = min(high, 0.45 * sr)
    if x.size == 0:
        return x.copy()
    if rate is not None and rate < sr:
        narrow = _resample(x, sr, rate)
        y = _resample(_bandpass(narrow, rate, low, min(high, 0.45 * rate)), rate, sr)
    else:
        y = _bandpass(x, sr, low, high)
    return _fit(y, x.size)


def telephone(x: np.ndarray, sr: int) -> np.ndarray:
    """A narrow-band telephone line: 300-3400 Hz, through 8 kHz sampling and back."""
    return band_limit(x, sr, *TELEPHONE_BAND, rate=TELEPHONE_RATE)


def reverb(x: np.ndarray, sr: int, rt60: float, rng: np.random.Generator,
           drr_db: float = 0.0) -> np.ndarray:
    """Convolve with a synthetic room: a direct path plus an exponentially decaying noise
    tail that falls 60 dB in ``rt60`` seconds.

    Args:
        rt60: reverberation time, seconds (> 0); the tail lasts that long.
        rng: the tail's noise.
        drr_db: direct-to-reverberant energy ratio of the impulse response, dB.

    Returns:
        The reverberant signal cut to the input's length, at the input's RMS level.

    Raises:
        ValueError: ``rt60`` <= 0.
    """
    x = _mono(x)
    if rt60 <= 0:
        raise ValueError(f"rt60 must be positive, got {rt60}")
    n = max(2, int(round(rt60 * sr)))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-math.log(1000.0) * t / rt60)  # -60 dB at rt60
    tail[0] = 0.0
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / float(np.sum(tail**2)))
    ir = tail
    ir[0] = 1.0  # the direct path
    if x.size == 0:
        return x.copy()
    y = signal.fftconvolve(x.astype(np.float64), ir)[: x.size]
    return _fit(_match_rms(y, x), x.size)


ROOM_BANDS = (125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)  # octave centres, Hz


def room_ir(sr: int, rt60: float, rng: np.random.Generator, drr_db: float = 0.0,
            reflections: int = 10) -> np.ndarray:
    """An impulse response shaped like one measured in a real room (not a measured one).

    Built from what a measurement shows: the direct sound at t = 0; ``reflections``
    discrete early reflections between 3 and 60 ms, each weaker with its path length, of
    random sign; then a diffuse tail of noise that builds up over its first 20 ms (echo
    density grows) and decays with a different reverberation time in each octave band
    (:data:`ROOM_BANDS`): ``rt60`` at 1 kHz, up to 1.5x longer in the bass and down to half
    in the top octave, as walls and air absorb high frequencies faster.

    Args:
        rt60: reverberation time at 1 kHz, seconds (> 0).
        rng: the reflections and the tail.
        drr_db: direct-to-reverberant energy ratio (direct sound against reflections and
            tail), dB.

    Returns:
        float64 IR of ``1.2 * rt60 + 0.1`` seconds (at least 0.1 s), direct sound 1.0.

    Raises:
        ValueError: ``rt60`` <= 0.
    """
    if rt60 <= 0:
        raise ValueError(f"rt60 must be positive, got {rt60}")
    n = max(int(0.1 * sr), int(round((1.2 * rt60 + 0.1) * sr)))
    t = np.arange(n) / sr
    early = np.zeros(n)
    for when in rng.uniform(*EARLY_REFLECTIONS, reflections):
        early[int(when * sr)] += rng.choice((-1.0, 1.0)) * rng.uniform(0.4, 0.8) * math.sqrt(
            0.003 / when)
    tail = np.zeros(n)
    for i, fc in enumerate(ROOM_BANDS):
        lo, hi = fc / math.sqrt(2.0), fc * math.sqrt(2.0)
        if lo >= 0.45 * sr:
            break
        if i == 0:
            sos = signal.butter(4, hi, btype="lowpass", fs=sr, output="sos")
        elif hi >= 0.45 * sr or i == len(ROOM_BANDS) - 1:
            sos = signal.butter(4, lo, btype="highpass", fs=sr, output="sos")
        else:
            sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
        band = signal.sosfilt(sos, rng.standard_normal(n))
        tail += band * np.exp(-math.log(1000.0) * t / band_rt60(rt60, fc))  # -60 dB there
    tail *= (1.0 - np.exp(-t / TAIL_ONSET)) * (t >= EARLY_REFLECTIONS[0])
    # the diffuse tail carries 4x the energy of the early reflections
    tail *= math.sqrt(4.0 * max(float(np.sum(early**2)), 1e-12) / max(float(np.sum(tail**2)),
                                                                     1e-30))
    reverberant = early + tail
    reverberant *= math.sqrt(10.0 ** (-drr_db / 10.0) / float(np.sum(reverberant**2)))
    reverberant[0] = 1.0  # the direct sound
    return reverberant


def convolve(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Play ``x`` through an impulse response: cut to the input's length, at its RMS level."""
    x = _mono(x)
    if x.size == 0:
        return x.copy()
    y = signal.fftconvolve(x.astype(np.float64), np.asarray(ir, dtype=np.float64))[: x.size]
    return _fit(_match_rms(y, x), x.size)


def room_reverb(x: np.ndarray, sr: int, rt60: float, rng: np.random.Generator,
                drr_db: float = 0.0) -> np.ndarray:
    """Convolve with a new :func:`room_ir` drawn from ``rng``."""
    return convolve(x, room_ir(sr, rt60, rng, drr_db))


def mix_noise(x: np.ndarray, noise: np.ndarray, snr_db: float,
              rng: np.random.Generator) -> np.ndarray:
    """Add a recorded noise (crowd, wind, an engine...) at a signal-to-noise ratio.

    A random stretch of ``noise`` (same sample rate; repeated end to end when shorter than
    ``x``) is scaled so that 10 log10(signal power / noise power) is ``snr_db`` exactly.
    A silent ``x`` or a silent stretch of noise returns ``x`` unchanged.
    """
    x = _mono(x)
    noise = _mono(noise)
    power = float(np.mean(x.astype(np.float64) ** 2)) if x.size else 0.0
    if power == 0.0 or noise.size == 0:
        return x.copy()
    if noise.size < x.size:
        noise = np.tile(noise, -(-x.size // noise.size))
    start = int(rng.integers(0, noise.size - x.size + 1))
    part = noise[start: start + x.size].astype(np.float64)
    part -= part.mean()
    n_power = float(np.mean(part**2))
    if n_power == 0.0:
        return x.copy()
    return (x + math.sqrt(power / (n_power * 10.0 ** (snr_db / 10.0))) * part).astype(
        np.float32)


def gain(x: np.ndarray, db: float) -> np.ndarray:
    """Scale by ``db`` decibels."""
    return (_mono(x) * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def speed(x: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (tape-style: pitch moves too), by resampling.

    The result has about ``len(x) / factor`` samples. The factor is taken as a ratio of
    integers up to 1000 (1.05 -> 21/20).

    Raises:
        ValueError: ``factor`` <= 0.
    """
    x = _mono(x)
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    ratio = Fraction(factor).limit_denominator(1000)
    if ratio == 1:
        return x.copy()
    return signal.resample_poly(x, ratio.denominator, ratio.numerator).astype(np.float32)


def reencode(x: np.ndarray, sr: int, format: str = "mp3", quality: float = 0.2) -> np.ndarray:
    """Encode with a lossy codec through libsndfile and decode it back.

    The encoded file is written to a temporary file and decoded with
    :func:`sonicsearch.audio.load_audio`, the same path every query takes. MP3 needs an
    MPEG sample rate: other rates go through the next higher one (48 kHz at most) and back.

    Args:
        format: mp3 (LAME, constant bit rate) or ogg (Vorbis).
        quality: 0 (smallest file) .. 1 (best); libsndfile's compression level is
            ``1 - quality``. The bit rate this gives depends on the sample rate: at
            22.05 kHz mono, MP3 at 0.2 is about 40 kbit/s (0.05: 16 kbit/s) and Vorbis at 0
            about 40 kbit/s; at 44.1 kHz, MP3 at 0.2 is about 100 kbit/s.

    Returns:
        The decoded signal, trimmed or zero-padded to the input's length (codec delay and
        frame padding are not undone: a real re-encoded copy has them too).

    Raises:
        ValueError: an unknown format or a quality outside [0, 1].
    """
    x = _mono(x)
    if format not in CODECS:
        raise ValueError(f"unknown format '{format}'; choose one of: {', '.join(CODECS)}")
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"quality must be in [0, 1], got {quality}")
    rate = sr
    if format == "mp3" and sr not in MP3_RATES:
        rate = next((r for r in MP3_RATES if r >= sr), MP3_RATES[-1])
    data = np.clip(_resample(x, sr, rate) if rate != sr else x, -1.0, 1.0)
    container, subtype = CODECS[format]
    fd, path = tempfile.mkstemp(suffix=f".{format}", prefix="sonicsearch-degrade-")
    os.close(fd)
    try:
        kwargs = {"compression_level": 1.0 - quality}
        if format == "mp3":  # libsndfile's LAME rejects level 1.0 (a zero bit rate)
            kwargs.update(compression_level=min(1.0 - quality, 0.99), bitrate_mode="CONSTANT")
        sf.write(path, data, rate, format=container, subtype=subtype, **kwargs)
        y, _ = load_audio(path)
    finally:
        os.unlink(path)
    if rate != sr:
        y = _resample(y, rate, sr)
    return _fit(y, x.size)


register_benchmark("clean", lambda x, sr, rng: _mono(x).copy())
register_benchmark("noise_snr20", lambda x, sr, rng: add_noise(x, sr, 20.0, rng))
register_benchmark("noise_snr10", lambda x, sr, rng: add_noise(x, sr, 10.0, rng))
register_benchmark("noise_snr0", lambda x, sr, rng: add_noise(x, sr, 0.0, rng))
register_benchmark("pink_snr10", lambda x, sr, rng: add_noise(x, sr, 10.0, rng, color="pink"))
register_benchmark("mp3_low", lambda x, sr, rng: reencode(x, sr, "mp3", quality=MP3_LOW_QUALITY))
register_benchmark("ogg_low", lambda x, sr, rng: reencode(x, sr, "ogg", quality=OGG_LOW_QUALITY))
register_benchmark("telephone", lambda x, sr, rng: telephone(x, sr))
register_benchmark("reverb", lambda x, sr, rng: reverb(x, sr, BENCHMARK_RT60, rng))
register_benchmark("gain_-12db", lambda x, sr, rng: gain(x, -12.0))
register_benchmark("gain_+6db", lambda x, sr, rng: gain(x, 6.0))
register_benchmark("speed_0.95", lambda x, sr, rng: speed(x, sr, 0.95))
register_benchmark("speed_1.05", lambda x, sr, rng: speed(x, sr, 1.05))
register_benchmark("speed_0.97", lambda x, sr, rng: speed(x, sr, 0.97))
register_benchmark("speed_1.03", lambda x, sr, rng: speed(x, sr, 1.03))
register_benchmark("reverb_room", lambda x, sr, rng: room_reverb(x, sr, BENCHMARK_ROOM_RT60, rng))
from sonicsearch.eval import compound  # noqa: E402, F401 - registers the compound settings

DEGRADATIONS: Mapping[str, Degradation] = Benchmarks()
"""The named settings of the near-duplicate benchmark, each ``f(x, sr, rng) -> y``:
``clean`` (identity, the reference row), white noise at 20/10/0 dB SNR, pink noise at
10 dB, MP3 at about 40 kbit/s and Vorbis at its lowest quality, a telephone line, a room
with RT60 0.6 s, -12 dB and +6 dB gain, and 5 % slower or faster playback; then 3 %
slower or faster, and a room shaped like a measured one (:func:`room_ir`, RT60 0.7 s at
1 kHz, a new room per call); then the compound captures and hard single settings of
:mod:`sonicsearch.eval.compound` (``phone_room``, ``eq_comp``, ``broadcast``,
``pitch_+1st``, ``tempo_1.06``, ``speed_1.08``). Recorded noise (:func:`mix_noise`)
needs recordings, so it is not here: ``benchmarks/robust_music.py`` adds it."""


def apply(name: str, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Apply the named degradation of :data:`DEGRADATIONS`.

    Raises:
        UnknownNameError: an unknown name (the message lists the known ones); a KeyError
            and a ConfigError.
    """
    return DEGRADATIONS[name](x, sr, rng)


def snr_db(clean: np.ndarray, degraded: np.ndarray) -> float:
    """Signal-to-noise ratio of ``degraded`` against ``clean`` (same length), in dB."""
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(degraded, dtype=np.float64) - clean
    return 10.0 * math.log10(float(np.sum(clean**2)) / max(float(np.sum(noise**2)), 1e-30))


def _mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected 1-D mono samples, got shape {x.shape}")
    return x


def _resample(x: np.ndarray, sr: int, new: int) -> np.ndarray:
    g = math.gcd(int(sr), int(new))
    return signal.resample_poly(x, new // g, sr // g).astype(np.float32)


def _bandpass(x: np.ndarray, sr: int, low: float, high: float) -> np.ndarray:
    sos = signal.butter(4, [low, high], btype="bandpass", fs=sr, output="sos")
    if x.size <= 6 * (2 * len(sos) + 1):  # too short for filtfilt's edge padding
        return signal.sosfilt(sos, x.astype(np.float64)).astype(np.float32)
    return signal.sosfiltfilt(sos, x.astype(np.float64)).astype(np.float32)


def _match_rms(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    ry, rr = float(np.sqrt(np.mean(y**2))), float(np.sqrt(np.mean(ref.astype(np.float64)**2)))
    return y * (rr / ry) if ry > 0 else y


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    if y.size >= n:
        return np.ascontiguousarray(y[:n])
    return np.pad(y, (0, n - y.size))
