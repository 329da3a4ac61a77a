"""Compound captures: several degradations stacked in the order a real capture meets them.

A clip recorded with a phone in a room went through a loudspeaker, the room, the room's
background, the phone's microphone band, its automatic gain and a speech codec; a clip
off the radio went through a mastering chain and a broadcast processor. Each degradation
alone is in :mod:`sonicsearch.eval.degrade`; the chains here compose them with strengths
drawn from ``rng`` within the documented ranges, so a benchmark row is many different
captures of one kind, repeatable from its seed. Filters, dynamics, the GSM codec, MP3,
pitch shifting and time stretching are pedalboard's (a maintained DSP library); the room
and the noise are :mod:`~sonicsearch.eval.degrade`'s; Opus is libsndfile's.

Registered benchmark settings (:data:`sonicsearch.eval.degrade.DEGRADATIONS`), each
``f(x, sr, rng) -> y`` on mono float32:

- ``phone_room``: :func:`phone_in_room` with pink noise as the background (a benchmark
  with recordings passes its own, see ``benchmarks/robust_music.py``);
- ``eq_comp``: :func:`mastering` (EQ tilt and peak, 3-band compression, limiter);
- ``broadcast``: :func:`mastering`, then an FM-like band and a 64 kbit/s-like MP3;
- ``pitch_+1st``, ``tempo_1.06``, ``speed_1.08``: one semitone up at the same tempo, 6 %
  faster at the same pitch, 8 % faster tape-style (pitch and tempo together).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import soundfile as sf

from sonicsearch.audio import load_audio
from sonicsearch.degradations import TELEPHONE_RATE, register_benchmark
from sonicsearch.eval import degrade

PHONE_SNR_DB = (7.0, 13.0)  # background under the music at the phone
PHONE_RT60 = (0.4, 0.9)  # living rooms to small halls
PHONE_CODEC_KBPS = (6.0, 12.0)  # Opus speech; GSM full rate is 13 kbit/s
PHONE_LEVEL_DB = (-14.0, -6.0)  # what reaches the recorder after the phone's gain
EQ_TILT_DB = 6.0  # +-, low shelf against high shelf
EQ_PEAK_DB = 4.0  # +-, one bell in 0.3-5 kHz
SPLITS_HZ = (200.0, 3000.0)  # the 3 bands of the multiband compressor


def _pedalboard():
    try:
        import pedalboard
    except ImportError as e:  # a dependency: only a broken install lacks it
        raise ImportError("compound degradations need pedalboard (pip install pedalboard)") from e
    return pedalboard


def _run(chain, x: np.ndarray, sr: int) -> np.ndarray:
    y = _pedalboard().Pedalboard(list(chain))(np.ascontiguousarray(x, dtype=np.float32), sr)
    return np.asarray(y, dtype=np.float32).reshape(-1)


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def _fit_level(y: np.ndarray, ref: np.ndarray, db: float = 0.0) -> np.ndarray:
    """``y`` at ``ref``'s RMS plus ``db``, clipped to full scale like a real converter."""
    r_ref = float(np.sqrt(np.mean(np.square(ref, dtype=np.float64)))) if ref.size else 0.0
    r_y = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    if r_ref == 0.0 or r_y == 0.0:
        return y.astype(np.float32)
    return np.clip(y * (r_ref / r_y) * 10.0 ** (db / 20.0), -1.0, 1.0).astype(np.float32)


def speech_codec(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A phone's speech codec at 8 kHz: GSM full rate (13 kbit/s) or Opus at 6-12 kbit/s
    (half and half), returned at ``sr``. Opus needs libsndfile >= 1.0.29; without it, GSM."""
    pb = _pedalboard()
    narrow = _run([pb.Resample(TELEPHONE_RATE)], x, sr) if sr != TELEPHONE_RATE else x
    narrow = np.clip(narrow, -1.0, 1.0)
    use_opus = rng.random() < 0.5 and "OPUS" in sf.available_subtypes("OGG")
    kbps = _u(rng, PHONE_CODEC_KBPS)
    if not use_opus:
        coded = _run([pb.GSMFullRateCompressor()], narrow, TELEPHONE_RATE)
    else:
        fd, path = tempfile.mkstemp(suffix=".opus", prefix="sonicsearch-codec-")
        os.close(fd)
        try:
            level = float(np.clip(1.0 - (kbps - 6.0) / 250.0, 0.0, 1.0))  # 256..6 kbit/s
            sf.write(path, narrow, TELEPHONE_RATE, format="OGG", subtype="OPUS",
                     compression_level=level)
            coded, rate = load_audio(path)
            coded = degrade._mono(coded)
            if rate != TELEPHONE_RATE:
                coded = degrade._resample(coded, rate, TELEPHONE_RATE)
        finally:
            os.unlink(path)
    y = _run([pb.Resample(sr)], coded, TELEPHONE_RATE) if sr != TELEPHONE_RATE else coded
    return degrade._fit(y, x.size)


def phone_in_room(x: np.ndarray, sr: int, rng: np.random.Generator,
                  noise: np.ndarray | None = None) -> np.ndarray:
    """Music played in a room and recorded by a phone, as the phone sends it.

    In order: a small loudspeaker (high-pass at 120-250 Hz, a +2..+6 dB bump at 1.5-4 kHz,
    gentle clipping), a room (:func:`~sonicsearch.eval.degrade.room_reverb`, RT60
    0.4-0.9 s, direct-to-reverberant -3..+3 dB), the room's background at 7-13 dB SNR
    (``noise``: a recording at ``sr``; pink noise when None), the phone's microphone and
    line (:func:`~sonicsearch.eval.degrade.telephone`: 300-3400 Hz through 8 kHz), its
    automatic gain (a compressor: threshold -30..-18 dB, ratio
    3-6), a speech codec (:func:`speech_codec`) and the level the recorder gets (-14..-6 dB
    below the music's).
    """
    pb = _pedalboard()
    x = degrade._mono(x)
    speaker = [pb.HighpassFilter(_u(rng, (120.0, 250.0))),
               pb.PeakFilter(_u(rng, (1500.0, 4000.0)), _u(rng, (2.0, 6.0)), 1.0),
               pb.Distortion(_u(rng, (0.0, 6.0)))]
    y = _fit_level(_run(speaker, x, sr), x)
    y = degrade.room_reverb(y, sr, _u(rng, PHONE_RT60), rng, drr_db=_u(rng, (-3.0, 3.0)))
    snr = _u(rng, PHONE_SNR_DB)
    y = (degrade.mix_noise(y, noise, snr, rng) if noise is not None
         else degrade.add_noise(y, sr, snr, rng, color="pink"))
    agc = pb.Compressor(_u(rng, (-30.0, -18.0)), _u(rng, (3.0, 6.0)), 5.0, 200.0)
    y = _fit_level(_run([agc], degrade.telephone(y, sr), sr), x)
    return _fit_level(speech_codec(y, sr, rng), x, _u(rng, PHONE_LEVEL_DB))


def mastering(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A mastering or broadcast chain: EQ, multiband compression, limiting, make-up gain.

    An EQ tilt (a low shelf at 150-400 Hz and a high shelf at 3-6 kHz of opposite signs,
    up to +-6 dB) and one bell of +-4 dB at 0.3-5 kHz; a 3-band compressor (bands split at
    200 Hz and 3 kHz; each band: threshold -32..-18 dB, ratio 2-8, attack 1-20 ms, release
    50-300 ms); a limiter at -6..-1 dB; the result 0-6 dB louder than the input (loudness
    processing), clipped at full scale.
    """
    pb = _pedalboard()
    x = degrade._mono(x)
    tilt = _u(rng, (-EQ_TILT_DB, EQ_TILT_DB))
    eq = [pb.LowShelfFilter(_u(rng, (150.0, 400.0)), tilt, 0.7),
          pb.HighShelfFilter(_u(rng, (3000.0, 6000.0)), -tilt, 0.7),
          pb.PeakFilter(float(np.exp(rng.uniform(np.log(300.0), np.log(5000.0)))),
                        _u(rng, (-EQ_PEAK_DB, EQ_PEAK_DB)), 1.0)]
    y = _run(eq, x, sr)
    low = _run([pb.LowpassFilter(SPLITS_HZ[0])], y, sr)
    high = _run([pb.HighpassFilter(SPLITS_HZ[1])], y, sr)
    bands = [low, y - low - high, high]

    def comp():
        return pb.Compressor(_u(rng, (-32.0, -18.0)), _u(rng, (2.0, 8.0)),
                             _u(rng, (1.0, 20.0)), _u(rng, (50.0, 300.0)))

    y = sum(_run([comp()], b, sr) for b in bands)
    y = _fit_level(y, x, _u(rng, (0.0, 6.0)))
    return np.clip(_run([pb.Limiter(_u(rng, (-6.0, -1.0)), 100.0)], y, sr), -1.0, 1.0)


def broadcast(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """:func:`mastering`, then an FM-like band (30 Hz-15 kHz) and a lossy MP3 (VBR quality
    5-8 of LAME's 0-9, about 64-100 kbit/s at 44.1 kHz)."""
    pb = _pedalboard()
    y = mastering(x, sr, rng)
    chain = [pb.HighpassFilter(30.0), pb.LowpassFilter(min(15000.0, 0.45 * sr)),
             pb.MP3Compressor(_u(rng, (5.0, 8.0)))]
    return np.clip(degrade._fit(_run(chain, y, sr), x.size), -1.0, 1.0)


def pitch_shift(x: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Pitch moved by ``semitones`` at the same tempo (pedalboard's phase vocoder)."""
    return _run([_pedalboard().PitchShift(semitones)], degrade._mono(x), sr)


def tempo(x: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """``factor`` times faster at the same pitch (about ``len(x) / factor`` samples)."""
    if factor <= 0:
        raise ValueError(f"tempo factor must be positive, got {factor}")
    y = _pedalboard().time_stretch(np.ascontiguousarray(degrade._mono(x))[None, :], sr,
                                   stretch_factor=factor)
    return np.asarray(y, dtype=np.float32).reshape(-1)


COMPOUND = ("phone_room", "eq_comp", "broadcast", "pitch_+1st", "tempo_1.06", "speed_1.08")
"""The compound and hard single settings, in the order benchmarks report them."""

register_benchmark("phone_room", lambda x, sr, rng: phone_in_room(x, sr, rng))
register_benchmark("eq_comp", mastering)
register_benchmark("broadcast", broadcast)
register_benchmark("pitch_+1st", lambda x, sr, rng: pitch_shift(x, sr, 1.0))
register_benchmark("tempo_1.06", lambda x, sr, rng: tempo(x, sr, 1.06))
register_benchmark("speed_1.08", lambda x, sr, rng: degrade.speed(x, sr, 1.08))
