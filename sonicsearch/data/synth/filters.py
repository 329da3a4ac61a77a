"""Filters shared by the instruments and the master: cached Butterworth designs and EQ."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import fft as sp_fft
from scipy import signal


def butter_sos(kind: str, cutoff: float | tuple[float, float], sr: int) -> np.ndarray:
    """A 2nd-order Butterworth; cutoffs are rounded to 25 Hz so designs can be cached."""
    edges = tuple(round(c / 25) * 25 for c in np.atleast_1d(cutoff))
    return _butter(kind, edges, sr)


@lru_cache(maxsize=512)
def _butter(kind: str, edges: tuple[float, ...], sr: int) -> np.ndarray:
    wn = np.clip(np.asarray(edges, dtype=float) / (sr / 2), 1e-4, 0.999)
    if len(wn) > 1 and wn[0] >= 0.9 * wn[1]:  # a band at or above Nyquist (low rates)
        wn[0] = 0.9 * wn[1]
    return signal.butter(2, wn if len(wn) > 1 else wn[0], btype=kind, output="sos")


def eq_gain(nfft: int, sr: int, tilt: float, lofi: bool, rng: np.random.Generator
             ) -> np.ndarray:
    """A tilt (dB per octave around 1 kHz), optionally band-limited like a lo-fi record."""
    f = np.maximum(sp_fft.rfftfreq(nfft, 1 / sr).astype(np.float32), np.float32(20))
    gain = np.float32(10) ** (np.clip(np.float32(tilt) * np.log2(f / 1000), -12, 12) / 20)
    if lofi:
        lo, hi = rng.uniform(80, 300), rng.uniform(2500, 6000)
        gain /= np.sqrt(1 + (f / hi) ** 4) * np.sqrt(1 + (lo / f) ** 4)
    return gain
