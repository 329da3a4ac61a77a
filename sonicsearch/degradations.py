"""What a query suffers on its way back to a search box, defined once: the fixed settings the
benchmarks measure (:mod:`sonicsearch.eval.degrade`, numpy) and the random ranges the
training views draw from around them (:mod:`sonicsearch.training.views`, torch).

Only numbers and one small function live here, so both stages import it without pulling
in the other's stack.
"""

from __future__ import annotations

# A telephone line: 300-3400 Hz through an 8 kHz channel. Views draw each band edge from a
# range around it, so the network meets many lines, the benchmark's among them.
TELEPHONE_BAND = (300.0, 3400.0)
TELEPHONE_RATE = 8000
TELEPHONE_HIGHPASS_RANGE = (200.0, 400.0)
TELEPHONE_LOWPASS_RANGE = (3000.0, 3700.0)

# A room: discrete early reflections between these delays (seconds), then a diffuse tail
# that builds up over TAIL_ONSET seconds and decays faster at high frequencies.
EARLY_REFLECTIONS = (0.003, 0.06)
TAIL_ONSET = 0.02
BENCHMARK_RT60 = 0.6  # the plain decaying-noise room of the benchmarks
BENCHMARK_ROOM_RT60 = 0.7  # the measured-room-like one

# Fixed points the benchmarks measure; the views' ranges (PretrainConfig) span them.
BENCHMARK_SNR_DB = (20.0, 10.0, 0.0)
BENCHMARK_GAIN_DB = (-12.0, 6.0)
BENCHMARK_SPEEDS = (0.95, 0.97, 1.03, 1.05)
MP3_LOW_QUALITY = 0.2  # about 40 kbit/s
OGG_LOW_QUALITY = 0.0  # Vorbis' lowest


def band_rt60(rt60: float, centre_hz: float) -> float:
    """The reverberation time of the band around ``centre_hz`` in a room whose RT60 at
    1 kHz is ``rt60``: up to 1.5x longer in the bass, down to half in the top octaves, as
    walls and air absorb high frequencies faster."""
    return rt60 * min(1.5, max(0.5, (centre_hz / 1000.0) ** -0.3))
