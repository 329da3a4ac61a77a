"""Rendering: a clip's tempo map and part buffers, then the master bus that mixes them.

Effects on the master are noise-convolution reverb, a feedback (dub) delay, Butterworth
filters and an FFT EQ, then background noise and peak normalisation.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft
from scipy import signal

from sonicsearch.data.synth.arrange import compose
from sonicsearch.data.synth.filters import butter_sos, eq_gain
from sonicsearch.data.synth.instruments import TIMBRES, midi_hz, render_note
from sonicsearch.data.synth.recipes import GENRES, RECIPES, Recipe
from sonicsearch.errors import DataError

_TAIL_S = 3.0  # seconds rendered past the end so notes and reverb tails run on


def synth_clip(
    genre: str, seed: int = 0, index: int = 0, seconds: float = 30.0, sample_rate: int = 22050
) -> np.ndarray:
    """One clip of ``genre`` as float64 mono in [-0.99, 0.99]; the same one the corpus holds.

    Raises:
        DataError: an unknown genre.
    """
    if genre not in GENRES:
        raise DataError(f"unknown genre {genre!r}; choose one of: {', '.join(GENRES)}")
    if seconds <= 0 or sample_rate < 8000 or seed < 0:
        raise DataError(f"need seconds > 0, sample_rate >= 8000 and seed >= 0; got {seconds}, "
                        f"{sample_rate}, {seed}")
    g = GENRES.index(genre)
    rng = np.random.default_rng(np.random.SeedSequence([seed, g, index]))
    clip = Clip(RECIPES[g], rng, seconds, sample_rate)
    compose(clip)
    return _master(clip)


class Clip:
    """A clip being rendered: its draws, its tempo map and one buffer per part."""

    def __init__(self, recipe: Recipe, rng: np.random.Generator, seconds: float, sr: int):
        self.r, self.rng, self.sr = recipe, rng, sr
        self.n = int(round(seconds * sr))
        self.spb = 60.0 / rng.uniform(*recipe.bpm)  # seconds per beat
        self.swing = rng.uniform(*recipe.swing)
        self.t0 = rng.uniform(0, 4 * self.spb)  # the clip starts mid-song, off the downbeat
        self.rubato = recipe.rubato * rng.random()
        self.bars = int(np.ceil((seconds + self.t0) / (4 * self.spb))) + 1
        self.key = int(rng.integers(-5, 7))
        self.parts: dict[str, np.ndarray] = {}
        self.cache: dict[tuple, np.ndarray] = {}

    def time(self, step: float) -> float:
        """16th-note grid position -> seconds, with swing and rubato."""
        t = step * self.spb / 4
        u = self.r.swing_unit
        if self.swing and float(step).is_integer() and int(step) % (2 * u) == u:
            t += self.swing * u * self.spb / 4
        if self.rubato:
            t += self.rubato * self.spb * np.sin(2 * np.pi * step / 64)
        return t

    def audible(self, t: float, length: float) -> bool:
        """Whether a sound from ``t`` for ``length`` seconds overlaps the clip."""
        return t + length > self.t0 and t < self.t0 + self.n / self.sr

    def add(self, part: str, t: float, buf: np.ndarray) -> None:
        if part not in self.parts:
            self.parts[part] = np.zeros(self.n + int(_TAIL_S * self.sr))
        out = self.parts[part]
        i = int(round((t - self.t0) * self.sr))
        if i < 0:
            buf, i = buf[-i:], 0
        m = min(buf.size, out.size - i)
        if m > 0:
            out[i : i + m] += buf[:m]

    def note(self, part: str, timbre: str, step: float, steps: float, midi: float,
             vel: float, delay: float = 0.0) -> None:
        t = self.time(step) + delay
        dur = max(1, round((self.time(step + steps) - self.time(step)) * 40)) / 40
        if not self.audible(t, dur + 2.0):  # + the longest release
            return
        key = (timbre, int(midi), dur)
        if key not in self.cache:
            self.cache[key] = render_note(TIMBRES[timbre], midi_hz(midi), dur, self.sr, self.rng)
        self.add(part, t, vel * self.cache[key])


def _master(clip: Clip) -> np.ndarray:
    """Mix the parts; add delay, reverb, EQ tilt, background noise; normalise the peak."""
    r, rng, sr, n = clip.r, clip.rng, clip.sr, clip.n
    size = n + int(_TAIL_S * sr)
    parts = dict(clip.parts)
    for name in ("comp", "lead"):
        if name in parts and rng.random() < 0.3:  # darker or thinner instrument buses
            cut = rng.uniform(1500, 8000)
            lowpass = butter_sos("lowpass", min(cut, 0.45 * sr), sr)
            parts[name] = signal.sosfilt(lowpass, parts[name])
    mix = sum(parts.values(), np.zeros(size))
    sends = [parts[k] for k in ("comp", "lead") if k in parts]
    if sends and rng.random() < r.delay_prob:  # feedback echo on the melodic parts
        send = sum(sends)
        d, fb = int(clip.spb * rng.choice([0.5, 0.75]) * sr), rng.uniform(0.3, 0.6)
        for k in range(1, 6):
            if k * d < size:
                mix[k * d :] += fb**k * send[: size - k * d]
    # room (decaying-noise impulse response) and EQ in one frequency-domain pass
    wet, room = rng.uniform(*r.reverb), rng.uniform(*r.room)
    tt = np.arange(int(room * sr)) / sr
    ir = signal.sosfilt(butter_sos("lowpass", rng.uniform(3000, 8000), sr),
                        rng.standard_normal(tt.size)) * np.exp(-6.9 * tt / room)
    ir = np.concatenate([np.zeros(int(rng.uniform(0.005, 0.03) * sr)), ir / np.sqrt(
        (ir**2).sum())])
    nfft = sp_fft.next_fast_len(size + ir.size, real=True)
    spec = sp_fft.rfft(mix, nfft) * (1 + wet * sp_fft.rfft(ir, nfft))
    spec *= eq_gain(nfft, sr, rng.uniform(*r.tilt), rng.random() < r.lofi_prob, rng)
    mix = sp_fft.irfft(spec, nfft)[:n]
    mix /= np.sqrt(np.mean(mix**2)) + 1e-9
    mix += _noise(str(rng.choice(r.noise)), n, sr, rng) * 10 ** (rng.uniform(-60, -25) / 20)
    if rng.random() < 0.2:  # bus compression / tape saturation
        mix = np.tanh(mix / (np.abs(mix).max() + 1e-9) * rng.uniform(1.5, 4.0))
    fade = int(0.005 * sr)
    mix[:fade] *= np.linspace(0, 1, fade)
    mix[-fade:] *= np.linspace(1, 0, fade)
    return mix / (np.abs(mix).max() + 1e-9) * rng.uniform(0.3, 0.99)


def _noise(kind: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Background noise at unit RMS: tape hiss, vinyl crackle, mains hum or room tone."""
    white = rng.standard_normal(n)
    if kind == "hiss":
        x = signal.sosfilt(butter_sos("highpass", 2000, sr), white)
    elif kind == "vinyl":  # surface noise and rumble, plus sparse clicks a few times louder
        bed = signal.sosfilt(butter_sos("lowpass", 80, sr), white) * 3 + 0.3 * white
        clicks = (rng.random(n) < rng.uniform(5, 40) / sr) * rng.uniform(-6, 6, n)
        bed /= np.sqrt(np.mean(bed**2)) + 1e-9
        return bed + signal.sosfilt(butter_sos("highpass", 1000, sr), clicks)
    elif kind == "hum":
        t = np.arange(n) / sr
        base = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * base * h * t) / h for h in (1, 2, 3, 5)) + 0.3 * white
    else:  # room tone: pink-ish
        x = signal.lfilter([1.0], [1.0, -0.95], white)
    return x / (np.sqrt(np.mean(x**2)) + 1e-9)

