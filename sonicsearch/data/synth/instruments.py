"""Instruments: the timbre table, one note of any timbre, and a clip's drum kit.

Sound sources, all vectorised numpy: wavetable additive synthesis, FM, Karplus-Strong
plucked strings, saturated (tanh) leads, and noise/sine drum synthesis.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

from sonicsearch.data.synth.filters import butter_sos

_SAW = tuple(1.0 / k for k in range(1, 25))
_SQUARE = tuple(1.0 / k if k % 2 else 0.0 for k in range(1, 25))


# Instruments, one constructor per kind. env: attack s, decay s, sustain level, release s.
def _add(harm: tuple[float, ...], env: tuple, **extra) -> dict:
    """Wavetable of harmonic amplitudes ``harm``. ``extra``: vib (rate Hz, depth),
    chorus (detune ratio), breath (noise level)."""
    return dict(kind="add", harm=harm, env=env, **extra)


def _fm(ratio: float, index: float, idecay: float, env: tuple) -> dict:
    """FM: carrier:modulator ``ratio``, modulation ``index`` decaying over ``idecay`` s."""
    return dict(kind="fm", ratio=ratio, index=index, idecay=idecay, env=env)


def _ks(bright: float, loss: float) -> dict:
    """Karplus-Strong string: ``bright``ness of the excitation, ``loss`` per period."""
    return dict(kind="ks", bright=bright, loss=loss)


def _dist(drive: float, env: tuple) -> dict:
    """A saw wavetable saturated by tanh with ``drive``."""
    return dict(kind="dist", harm=_SAW[:12], drive=drive, env=env)


TIMBRES: dict[str, dict] = {
    "organ": _add((1, .9, .5, 0, .45, 0, 0, .35, 0, 0, 0, .2), (.005, 1, 1, .05),
                  vib=(6.5, .003)),
    "piano": _add((1, .6, .35, .25, .15, .1, .07, .05, .03), (.003, 1.2, .05, .15)),
    "clav": _add((1, .9, .8, .7, .6, .5, .45, .4, .35, .3), (.002, .25, 0, .05)),
    "strings": _add(_SAW[:16], (.25, 5, .9, .5), vib=(5.5, .004), chorus=.006),
    "fiddle": _add(_SAW[:16], (.04, 3, .85, .15), vib=(6, .008)),
    "pad": _add(tuple(k ** -1.5 for k in range(1, 13)), (.8, 8, .9, 1.5), chorus=.008),
    "warm_pad": _add((1, .3, .1, .05), (1.5, 8, .9, 2), chorus=.005),
    "flute": _add((1, .25, .08, .03), (.06, 3, .9, .08), vib=(5, .005), breath=.06),
    "clarinet": _add((1, 0, .5, 0, .3, 0, .2, 0, .1), (.04, 3, .9, .06), vib=(5, .003)),
    "reed": _add((1, .7, .5, .5, .4, .3, .25, .2, .15, .1), (.03, 2, .85, .08),
                 vib=(5, .006), breath=.04),
    "harmonica": _add((1, .2, .6, .1, .4, .05, .3), (.02, 2, .8, .05), vib=(7, .01)),
    "saw_lead": _add(_SAW, (.01, 2, .8, .1)),
    "square_lead": _add(_SQUARE, (.01, 2, .8, .1)),
    "sine_lead": _add((1, .05), (.02, 3, .9, .2), vib=(5, .004)),
    "sub": _add((1, .08), (.005, 2, .9, .05)),
    "synthbass": _add(_SAW[:12], (.003, .3, .5, .05)),
    "epiano": _fm(1.0, 1.8, .3, (.002, 1.5, 0, .3)),
    "bell": _fm(3.5, 2.5, 1.0, (.001, 1.2, 0, .8)),
    "vibes": _fm(4.0, 1.0, .5, (.002, 1.0, 0, .4)),
    "brass": _fm(1.0, 3.0, 9.0, (.04, 2, .8, .1)),
    "fm_bass": _fm(1.0, 2.0, .15, (.002, .6, .3, .05)),
    "guitar": _ks(.7, .996),
    "steel": _ks(.9, .997),
    "nylon": _ks(.4, .995),
    "harp": _ks(.6, .998),
    "fingerbass": _ks(.5, .997),
    "upright": _ks(.3, .99),
    "dist_rock": _dist(4.0, (.005, 2, .8, .08)),
    "dist_metal": _dist(15.0, (.003, 2, .85, .06)),
}


def midi_hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


@lru_cache(maxsize=256)
def _table(harm: tuple[float, ...], kmax: int) -> np.ndarray:
    k = np.arange(1, min(len(harm), kmax) + 1)
    ph = np.arange(4096) / 4096
    table = (np.asarray(harm[: k.size])[:, None] * np.sin(2 * np.pi * k[:, None] * ph)).sum(0)
    return (table / (np.abs(table).max() + 1e-9)).astype(np.float32)


def _env(spec, dur: float, n: int, sr: int) -> np.ndarray:
    a, d, s, r = spec
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    env = np.minimum(np.float32(1), t / np.float32(a))
    env *= np.float32(s) + np.float32(1 - s) * np.exp(t * np.float32(-1 / d))
    held = int(dur * sr)
    env[held:] *= np.exp(t[: n - held] * np.float32(-5 / r))
    return env


def render_note(tb: dict, f: float, dur: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note: ``dur`` seconds held, then its release (or string decay)."""
    kind = tb["kind"]
    if kind == "ks":
        return _pluck(f, dur, sr, tb["bright"], tb["loss"], rng)
    n = int((dur + tb["env"][3]) * sr)
    t = np.arange(n) / sr  # phases in float64; sines and envelopes in float32
    env = _env(tb["env"], dur, n, sr)
    if kind == "fm":
        index = tb["index"] * np.exp(t.astype(np.float32) * np.float32(-1 / tb["idecay"]))
        mod = np.sin(_radians(tb["ratio"] * f * t))
        return env * np.sin(_radians(f * t) + index * mod)
    rate, depth = tb.get("vib", (5.0, 0.0))
    phase = f * (t + depth * (1 - np.cos(2 * np.pi * rate * t)) / (2 * np.pi * rate))
    table = _table(tb["harm"], max(1, int(0.45 * sr / f)))
    x = table[((phase % 1.0) * 4096).astype(np.int32)]
    if tb.get("chorus"):
        x = 0.5 * (x + table[((phase * (1 + tb["chorus"]) % 1.0) * 4096).astype(np.int32)])
    if kind == "dist":
        x2 = table[((phase * 1.004 % 1.0) * 4096).astype(np.int32)]
        x = np.tanh(tb["drive"] * 0.5 * (x + x2)) * 0.7
    if tb.get("breath"):
        x = x + tb["breath"] * rng.standard_normal(n, dtype=np.float32)
    return env * x


def _radians(cycles: np.ndarray) -> np.ndarray:
    return (cycles % 1.0).astype(np.float32) * np.float32(2 * np.pi)


def _pluck(f: float, dur: float, sr: int, bright: float, loss: float,
           rng: np.random.Generator) -> np.ndarray:
    """Karplus-Strong string, computed one period (a vector) at a time."""
    p = max(2, int(round(sr / f)))
    n = int((min(dur, 2.5) + 0.3) * sr)
    blocks = -(-n // p)
    out = np.empty(blocks * p)
    burst = rng.uniform(-1, 1, p)
    for _ in range(int((1 - bright) * 6)):  # darker strings: smooth the excitation
        burst = 0.5 * (burst + np.roll(burst, 1))
    out[:p] = burst - burst.mean()
    g = 0.5 * loss
    for k in range(1, blocks):
        prev = out[(k - 1) * p : k * p]
        carry = out[(k - 1) * p - 1] if k > 1 else 0.0
        out[k * p : (k + 1) * p] = g * (prev + np.concatenate(([carry], prev[:-1])))
    out = out[:n]
    held = int(dur * sr)
    if held < n:  # damped when the note ends
        out[held:] *= np.exp(-np.arange(n - held) / (0.05 * sr))
    return out / (np.abs(out[:p]).max() + 1e-9)


# kick drums per kit: ranges of start pitch (Hz), end pitch (Hz) and decay (s)
_KICKS = {"acoustic": ((90, 130), (45, 60), (0.12, 0.25)), "808": ((55, 80), (40, 50), (0.4, 0.9)),
          "electronic": ((120, 170), (45, 55), (0.15, 0.3)),
          "brush": ((70, 90), (45, 55), (0.1, 0.2))}


def drum_kit(kind: str, rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    """Drum sounds for one clip, from sines, metallic squares and filtered noise."""
    def t(s):
        return np.arange(int(s * sr)) / sr

    def noise(s, lo, hi, decay, attack=0.0):
        hi = min(hi, 0.45 * sr)
        band = (min(lo, 0.6 * hi), hi)
        x = signal.sosfilt(butter_sos("bandpass", band, sr), rng.standard_normal(int(s * sr)))
        tt = t(s)
        env = np.exp(-tt / decay) * (np.minimum(1.0, tt / attack) if attack else 1.0)
        return x * env / (np.abs(x).max() + 1e-9)

    def metal(s, decay, lo):
        tt = t(s)
        base = rng.uniform(0.9, 1.1)
        x = sum(np.sign(np.sin(2 * np.pi * f * base * tt)) for f in (205, 304, 370, 523, 540, 800))
        x = signal.sosfilt(butter_sos("highpass", lo, sr), x)
        return x * np.exp(-tt / decay) / (np.abs(x).max() + 1e-9)

    u = rng.uniform
    f0, f1, kd = (u(*r) for r in _KICKS[kind])
    tk = t(kd * 4)
    freq = f1 + (f0 - f1) * np.exp(-tk / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-tk / kd)
    kick[: int(0.004 * sr)] += u(0, 0.5) * rng.standard_normal(int(0.004 * sr))
    tone = u(160, 240)
    ts = t(0.4)
    snare_tone = np.sin(2 * np.pi * tone * ts) * np.exp(-ts / u(0.04, 0.1))
    brush = kind == "brush"
    snare = u(0.2, 0.6) * snare_tone + (
        noise(0.4, 400, 5000, u(0.08, 0.2), attack=0.015) if brush
        else noise(0.4, u(1000, 2000), 9000, u(0.06, 0.18)))
    clap = sum(np.roll(noise(0.3, 800, 6000, 0.02), int(i * 0.011 * sr)) for i in range(3))
    kit = {
        "kick": kick * (0.5 if brush else 1.0),
        "snare": snare,
        "clap": clap + noise(0.3, 900, 5000, u(0.08, 0.15)),
        "rim": noise(0.05, 1500, 6000, 0.01) + np.sin(2 * np.pi * 820 * t(0.05)) * 0.4,
        "hat": (metal(0.15, u(0.02, 0.06), 7000) if kind in ("808", "electronic")
                else noise(0.15, 6000, 11000, u(0.02, 0.05))) * (0.5 if brush else 0.7),
        "open": metal(0.6, u(0.15, 0.35), 6000) * 0.6,
        "ride": 0.5 * metal(1.5, u(0.6, 1.2), 3000) + 0.3 * noise(1.5, 4000, 10000, 0.8),
        "shaker": noise(0.12, 5000, 10000, 0.04, attack=0.02) * 0.5,
        "crash": metal(2.0, 1.0, 4000) * 0.5 + noise(2.0, 3000, 10000, 0.8) * 0.4,
    }
    return {k: v * u(0.6, 1.0) for k, v in kit.items()}
