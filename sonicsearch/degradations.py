"""What a query suffers on its way back to a search box, defined once: the fixed settings the
benchmarks measure (:mod:`sonicsearch.eval.degrade`, numpy) and the random ranges the
training views draw from around them (:mod:`sonicsearch.training.views`, torch).

One registry, :data:`DEGRADATIONS`, names every degradation. A name has a benchmark setting
(``f(x, sr, rng) -> y`` on numpy, registered with :func:`register_benchmark`), a training
view (a batched torch step drawn with a probability from the ``pretrain`` config,
registered with :func:`register_view`), or both (``telephone``, ``reverb``). Adding a
degradation to the benchmarks or to the views is one registered function; the views apply
theirs in the order they were registered, and the benchmarks list theirs in theirs.

Only numbers, the registry and one small function live here, so both stages import it
without pulling in the other's stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sonicsearch.errors import UnknownNameError
from sonicsearch.registry import Registry

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


@dataclass
class Degradation:
    """One registry entry: what a name does in the benchmarks and in the training views."""

    benchmark: Callable[..., Any] | None = None  # f(x, sr, rng) -> y, numpy, fixed settings
    view: Callable[..., Any] | None = None  # f(view_maker, x, gen) -> x, torch, random
    prob: str | None = None  # the PretrainConfig field with the view's probability
    draws_when_off: bool = True  # False: probability 0 draws nothing (added after recipes)
    benchmark_rank: int = -1  # registration order among benchmarks / among views
    view_rank: int = -1


DEGRADATIONS: Registry[Degradation] = Registry("degradation")


def _entry(name: str) -> Degradation:
    if name not in DEGRADATIONS:
        DEGRADATIONS.register(name, Degradation())
    return DEGRADATIONS.get(name)


def register_benchmark(name: str, fn: Callable[..., Any] | None = None) -> Callable:
    """Register ``fn`` (or decorate it) as the benchmark setting ``name``.

    Raises:
        ValueError: ``name`` already has a benchmark setting.
    """

    def add(f: Callable[..., Any]) -> Callable[..., Any]:
        entry = _entry(name)
        if entry.benchmark is not None:
            raise ValueError(f"degradation '{name}' has a benchmark setting already")
        entry.benchmark = f
        entry.benchmark_rank = sum(d.benchmark is not None for _, d in DEGRADATIONS.items())
        return f

    return add(fn) if fn is not None else add


def register_view(name: str, prob: str, draws_when_off: bool = True) -> Callable:
    """Decorate a training-view step ``f(view_maker, x, gen) -> x`` applied to the examples
    a draw with probability ``config.<prob>`` hits. ``draws_when_off=False`` for a step
    added after recipes existed: with probability 0 it draws nothing, so their random
    streams stay as they were.

    Raises:
        ValueError: ``name`` already has a view.
    """

    def add(f: Callable[..., Any]) -> Callable[..., Any]:
        entry = _entry(name)
        if entry.view is not None:
            raise ValueError(f"degradation '{name}' has a view already")
        entry.view, entry.prob, entry.draws_when_off = f, prob, draws_when_off
        entry.view_rank = sum(d.view is not None for _, d in DEGRADATIONS.items())
        return f

    return add


def views() -> list[tuple[str, Degradation]]:
    """The registered view steps, in registration order."""
    found = [(n, d) for n, d in DEGRADATIONS.items() if d.view is not None]
    return sorted(found, key=lambda item: item[1].view_rank)


class Benchmarks(Mapping):
    """The benchmark settings as a read-only ``name -> f(x, sr, rng)`` mapping, in
    registration order, read live from :data:`DEGRADATIONS`."""

    def _names(self) -> list[str]:
        found = [(d.benchmark_rank, n) for n, d in DEGRADATIONS.items()
                 if d.benchmark is not None]
        return [n for _, n in sorted(found)]

    def __getitem__(self, name: str) -> Callable[..., Any]:
        entry = DEGRADATIONS.get(name) if name in DEGRADATIONS else None
        if entry is None or entry.benchmark is None:
            raise UnknownNameError(f"unknown degradation '{name}'; choose one of: "
                                   f"{', '.join(self._names())}")
        return entry.benchmark

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())
