"""A synthetic labelled "genre" corpus in the GTZAN layout, for demos, tests and benchmarks.

Each genre is a :class:`Recipe`: a tempo range, swing, drum patterns and kits, scales and
chord progressions, and palettes of bass, chord and lead instruments, noise and room. A clip
draws everything from its recipe with its own RNG (seeded from the corpus seed, the genre
index and the clip index), so the same arguments give byte-identical files (on one platform
and library versions: vector math may round differently elsewhere), and any one clip can be
made alone (:func:`synth_clip`).

Classes are meant to be hard, like real genres: every clip gets a random key, tempo,
instrument choices, mix, section changes, loudness, EQ tilt and background noise, and
neighbouring genres share instruments, patterns and tempi.

Sound sources, all vectorised numpy: wavetable additive synthesis, FM, Karplus-Strong
plucked strings, saturated (tanh) leads, and noise/sine drum synthesis; effects are
noise-convolution reverb, a feedback (dub) delay, Butterworth filters and an FFT EQ.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import fft as sp_fft
from scipy import signal

from sonicsearch.errors import DataError

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "harmonic": (0, 2, 3, 5, 7, 8, 11),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "pentatonic": (0, 2, 4, 7, 9),
    "minor_pent": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}

# Drum patterns: one 16th-note bar per piece; X accent, x hit, g ghost, . rest.
PATTERNS = {
    "four_floor": {"kick": "X...X...X...X...", "clap": "....X.......X...",
                   "hat": "x.x.x.x.x.x.x.x."},
    "disco": {"kick": "X...X...X...X...", "snare": "....X.......X...",
              "open": "..x...x...x...x.", "hat": "x.g.x.g.x.g.x.g."},
    "electro": {"kick": "X..x..X...x.....", "clap": "....X.......X...",
                "hat": "xgxgxgxgxgxgxgxg"},
    "trap": {"kick": "X......X..X.....", "clap": "........X.......",
             "hat": "xxxxxxxxxxxxxxxx"},
    "backbeat": {"kick": "X.......X.x.....", "snare": "....X.......X...",
                 "hat": "x.x.x.x.x.x.x.x."},
    "rock_drive": {"kick": "X.x.....X.x.x...", "snare": "....X.......X...",
                   "hat": "X.x.X.x.X.x.X.x."},
    "boombap": {"kick": "X......x..X.....", "snare": "....X.......X...",
                "hat": "x.x.x.x.x.x.x.xg"},
    "shuffle": {"kick": "X.....x.X.....x.", "snare": "....X.......X...",
                "hat": "x.x.x.x.x.x.x.x."},
    "jazz_ride": {"ride": "x...x.x.x...x.x.", "hat": "....x.......x...",
                  "kick": "g...g...g...g..."},
    "one_drop": {"kick": "........X.......", "rim": "........X.......",
                 "hat": "x.x.x.x.x.x.x.x."},
    "steppers": {"kick": "X...X...X...X...", "rim": "........X.......",
                 "hat": "x.x.x.x.x.x.x.x."},
    "double_kick": {"kick": "XxXxXxXxXxXxXxXx", "snare": "....X.......X...",
                    "hat": "X.x.X.x.X.x.X.x."},
    "halftime": {"kick": "X.........x.....", "snare": "........X.......",
                 "hat": "x.x.x.x.x.x.x.x."},
    "train": {"kick": "X.......X.......", "snare": "xgxgXgxgxgxgXgxg"},
    "light": {"shaker": "x.g.x.g.x.g.x.g.", "kick": "X.......X......."},
    "sparse": {"kick": "X...............", "rim": "..........x.....",
               "shaker": "....g.......g..."},
}
_VEL = {"X": 1.0, "x": 0.7, "g": 0.3}

_SAW = tuple(1.0 / k for k in range(1, 25))
_SQUARE = tuple(1.0 / k if k % 2 else 0.0 for k in range(1, 25))
# Instruments. kind: add (wavetable of harmonic amplitudes `harm`), fm (carrier:modulator
# `ratio`, `index` decaying over `idecay` s), ks (Karplus-Strong, `bright`ness, `loss` per
# period), dist (tanh-saturated wavetable, `drive`). env: attack s, decay s, sustain level,
# release s. Optional: vib (rate Hz, depth), chorus (detune ratio), breath (noise level).
TIMBRES: dict[str, dict] = {
    "organ": dict(kind="add", harm=(1, .9, .5, 0, .45, 0, 0, .35, 0, 0, 0, .2),
                  env=(.005, 1, 1, .05), vib=(6.5, .003)),
    "piano": dict(kind="add", harm=(1, .6, .35, .25, .15, .1, .07, .05, .03),
                  env=(.003, 1.2, .05, .15)),
    "clav": dict(kind="add", harm=(1, .9, .8, .7, .6, .5, .45, .4, .35, .3),
                 env=(.002, .25, 0, .05)),
    "strings": dict(kind="add", harm=_SAW[:16], env=(.25, 5, .9, .5), vib=(5.5, .004),
                    chorus=.006),
    "fiddle": dict(kind="add", harm=_SAW[:16], env=(.04, 3, .85, .15), vib=(6, .008)),
    "pad": dict(kind="add", harm=tuple(k ** -1.5 for k in range(1, 13)),
                env=(.8, 8, .9, 1.5), chorus=.008),
    "warm_pad": dict(kind="add", harm=(1, .3, .1, .05), env=(1.5, 8, .9, 2), chorus=.005),
    "flute": dict(kind="add", harm=(1, .25, .08, .03), env=(.06, 3, .9, .08),
                  vib=(5, .005), breath=.06),
    "clarinet": dict(kind="add", harm=(1, 0, .5, 0, .3, 0, .2, 0, .1), env=(.04, 3, .9, .06),
                     vib=(5, .003)),
    "reed": dict(kind="add", harm=(1, .7, .5, .5, .4, .3, .25, .2, .15, .1),
                 env=(.03, 2, .85, .08), vib=(5, .006), breath=.04),
    "harmonica": dict(kind="add", harm=(1, .2, .6, .1, .4, .05, .3), env=(.02, 2, .8, .05),
                      vib=(7, .01)),
    "saw_lead": dict(kind="add", harm=_SAW, env=(.01, 2, .8, .1)),
    "square_lead": dict(kind="add", harm=_SQUARE, env=(.01, 2, .8, .1)),
    "sine_lead": dict(kind="add", harm=(1, .05), env=(.02, 3, .9, .2), vib=(5, .004)),
    "sub": dict(kind="add", harm=(1, .08), env=(.005, 2, .9, .05)),
    "synthbass": dict(kind="add", harm=_SAW[:12], env=(.003, .3, .5, .05)),
    "epiano": dict(kind="fm", ratio=1.0, index=1.8, idecay=.3, env=(.002, 1.5, 0, .3)),
    "bell": dict(kind="fm", ratio=3.5, index=2.5, idecay=1.0, env=(.001, 1.2, 0, .8)),
    "vibes": dict(kind="fm", ratio=4.0, index=1.0, idecay=.5, env=(.002, 1.0, 0, .4)),
    "brass": dict(kind="fm", ratio=1.0, index=3.0, idecay=9.0, env=(.04, 2, .8, .1)),
    "fm_bass": dict(kind="fm", ratio=1.0, index=2.0, idecay=.15, env=(.002, .6, .3, .05)),
    "guitar": dict(kind="ks", bright=.7, loss=.996),
    "steel": dict(kind="ks", bright=.9, loss=.997),
    "nylon": dict(kind="ks", bright=.4, loss=.995),
    "harp": dict(kind="ks", bright=.6, loss=.998),
    "fingerbass": dict(kind="ks", bright=.5, loss=.997),
    "upright": dict(kind="ks", bright=.3, loss=.99),
    "dist_rock": dict(kind="dist", harm=_SAW[:12], drive=4.0, env=(.005, 2, .8, .08)),
    "dist_metal": dict(kind="dist", harm=_SAW[:12], drive=15.0, env=(.003, 2, .85, .06)),
}


@dataclass(frozen=True)
class Recipe:
    """How one genre sounds. Ranges are drawn uniformly; palettes (tuples of names) list the
    genre's staple first and are drawn with weights 1, 1/2.5, 1/4.2, ... (k ** -1.3)."""

    name: str
    description: str
    bpm: tuple[float, float]
    scales: tuple[str, ...]  # keys of SCALES
    progressions: tuple[tuple[int, ...], ...]  # scale degrees from 0, one chord per bar(s)
    drums: tuple[str, ...]  # keys of PATTERNS
    kits: tuple[str, ...]  # acoustic, brush, 808, electronic
    bass: tuple[str, ...]  # bass-line styles, see _bass_bar
    bass_timbres: tuple[str, ...]  # keys of TIMBRES, as are comp_timbres and lead_timbres
    comp: tuple[str, ...]  # chord styles, see _comp_bar
    comp_timbres: tuple[str, ...]
    lead_timbres: tuple[str, ...]
    noise: tuple[str, ...]  # hiss, vinyl, hum, room
    swing: tuple[float, float] = (0.0, 0.05)  # delay of the off-beat, fraction of its length
    swing_unit: int = 2  # 16ths per swung half-beat: 2 swings 8ths, 1 swings 16ths
    lead_scale: str | None = None  # the melody's scale when not the chords' one
    lead_steps: tuple[int, ...] = (2, 4)  # melody note lengths in 16ths
    lead_prob: float = 0.6  # chance that a section has a melody
    drum_prob: float = 0.9  # chance that a section has drums
    sevenths: float = 0.0  # chance that a clip voices four-note (7th) chords
    bars_per_chord: tuple[int, ...] = (1, 2)
    reverb: tuple[float, float] = (0.05, 0.3)  # wet level
    room: tuple[float, float] = (0.4, 1.5)  # reverb time (RT60), seconds
    delay_prob: float = 0.0  # chance of a feedback echo on chords and melody
    rubato: float = 0.0  # largest tempo wobble, in beats
    lofi_prob: float = 0.1  # chance of a band-limited (lo-fi) master
    tilt: tuple[float, float] = (-1.5, 1.5)  # master EQ tilt, dB per octave around 1 kHz


RECIPES: tuple[Recipe, ...] = (
    Recipe(
        "ambient", "slow evolving pads, bells and drones, sparse or no beat, long reverb",
        bpm=(60, 100), scales=("major", "lydian", "dorian", "minor"),
        progressions=((0, 3), (0, 5, 3, 4), (0, 6)), bars_per_chord=(2, 4), sevenths=0.4,
        drums=("sparse", "light"), kits=("electronic", "brush"), drum_prob=0.25,
        bass=("pedal", "root", "none"), bass_timbres=("sub", "warm_pad", "synthbass"),
        comp=("pad", "arp"), comp_timbres=("pad", "warm_pad", "strings", "bell"),
        lead_timbres=("bell", "sine_lead", "flute", "vibes"), lead_steps=(8, 16),
        lead_prob=0.5, noise=("room", "hiss"), reverb=(0.4, 0.75), room=(2.0, 4.0),
        delay_prob=0.4, tilt=(-2.5, 0.5)),
    Recipe(
        "blues", "12-bar dominant-7th shuffle: guitar, organ, harmonica, swung 8ths",
        bpm=(70, 130), scales=("mixolydian",), sevenths=0.9, bars_per_chord=(1,),
        progressions=((0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4), (0, 3, 0, 4)),
        drums=("shuffle", "backbeat"), kits=("acoustic", "brush"), swing=(0.15, 0.33),
        bass=("walking", "root", "twostep"), bass_timbres=("fingerbass", "upright", "sub"),
        comp=("strum", "block"), comp_timbres=("guitar", "organ", "piano"),
        lead_timbres=("harmonica", "guitar", "reed", "dist_rock", "organ"),
        lead_scale="blues", lead_steps=(1, 2, 2, 4), noise=("vinyl", "hiss", "hum"),
        tilt=(-1.5, 1.0)),
    Recipe(
        "classical", "strings, piano, winds and harp in functional harmony, rubato, no drums",
        bpm=(60, 130), scales=("major", "minor", "harmonic"),
        progressions=((0, 3, 4, 0), (0, 5, 1, 4), (0, 4, 5, 3)),
        drums=("sparse",), kits=("brush",), drum_prob=0.1,
        bass=("root", "pedal", "walking"), bass_timbres=("strings", "upright", "piano"),
        comp=("alberti", "arp", "block", "pad"),
        comp_timbres=("strings", "piano", "harp", "clarinet"),
        lead_timbres=("strings", "flute", "clarinet", "piano"), lead_steps=(2, 4, 4, 8),
        lead_prob=0.9, noise=("room", "hiss", "vinyl"), reverb=(0.15, 0.4), room=(1.2, 2.5),
        rubato=0.4, tilt=(-2.0, 0.5)),
    Recipe(
        "disco", "four-on-the-floor, offbeat open hats, octave bass, strings and clav",
        bpm=(108, 132), scales=("minor", "dorian", "major"), sevenths=0.5,
        progressions=((0, 3), (0, 5, 3, 4), (1, 4, 0, 0)),
        drums=("disco", "four_floor"), kits=("acoustic", "electronic"),
        bass=("octave", "eighths"), bass_timbres=("fingerbass", "synthbass", "fm_bass"),
        comp=("stab", "strum", "pad"),
        comp_timbres=("clav", "strings", "guitar", "epiano", "brass"),
        lead_timbres=("strings", "brass", "saw_lead", "reed"), lead_steps=(1, 2, 4),
        noise=("hiss", "vinyl", "room"), tilt=(-0.5, 2.0)),
    Recipe(
        "electro", "drum-machine beats, sub and saw bass, arpeggios, saw and square leads",
        bpm=(100, 140), scales=("minor", "phrygian", "dorian"),
        progressions=((0, 5, 6, 0), (0, 0, 5, 6), (0, 3)),
        drums=("four_floor", "electro", "trap"), kits=("808", "electronic"),
        bass=("arp", "sub808", "eighths"), bass_timbres=("synthbass", "sub", "fm_bass"),
        comp=("arp", "stab", "pad"), comp_timbres=("pad", "saw_lead", "square_lead", "bell"),
        lead_timbres=("saw_lead", "square_lead", "sine_lead"), lead_steps=(1, 2, 2, 4),
        noise=("hiss", "room"), delay_prob=0.4, tilt=(-0.5, 2.0)),
    Recipe(
        "folk", "strummed steel and nylon guitars, fiddle and flute, light percussion",
        bpm=(80, 140), scales=("major", "mixolydian", "dorian"), swing=(0.0, 0.15),
        progressions=((0, 3, 4, 0), (0, 4, 5, 3), (0, 6, 3)),
        drums=("light", "train", "sparse"), kits=("brush", "acoustic"), drum_prob=0.6,
        bass=("root", "twostep", "pedal"), bass_timbres=("upright", "fingerbass"),
        comp=("strum", "arp"), comp_timbres=("steel", "nylon", "guitar", "harp"),
        lead_timbres=("fiddle", "flute", "harmonica", "reed"), lead_steps=(2, 4),
        noise=("room", "hiss"), tilt=(-1.0, 1.5)),
    Recipe(
        "hiphop", "boom-bap or trap beats with swung 16ths, 808 sub, dusty keys, crackle",
        bpm=(72, 100), scales=("minor", "dorian", "phrygian"), sevenths=0.6,
        progressions=((0, 5), (0, 3, 6, 5), (1, 4, 0, 0)),
        drums=("boombap", "trap", "halftime"), kits=("808", "acoustic"),
        swing=(0.05, 0.3), swing_unit=1,
        bass=("sub808", "root"), bass_timbres=("sub", "fm_bass", "fingerbass"),
        comp=("block", "stab", "pad", "comp"),
        comp_timbres=("epiano", "piano", "strings", "vibes", "guitar"),
        lead_timbres=("epiano", "sine_lead", "flute", "bell"), lead_prob=0.4,
        noise=("vinyl", "hiss"), lofi_prob=0.5, tilt=(-2.0, 0.5)),
    Recipe(
        "jazz", "swung ride, walking upright bass, ii-V-I sevenths on piano and vibes, sax",
        bpm=(90, 200), scales=("major", "dorian", "mixolydian"), sevenths=1.0,
        progressions=((1, 4, 0, 0), (0, 5, 1, 4), (1, 4)),
        drums=("jazz_ride",), kits=("brush", "acoustic"), swing=(0.15, 0.33),
        bass=("walking",), bass_timbres=("upright", "fingerbass"),
        comp=("comp", "block"), comp_timbres=("piano", "epiano", "vibes", "guitar"),
        lead_timbres=("reed", "brass", "vibes", "piano", "flute"), lead_steps=(1, 2, 2, 4),
        lead_prob=0.7, noise=("vinyl", "room", "hiss"), tilt=(-1.5, 1.0)),
    Recipe(
        "metal", "fast double kick, heavily distorted power-chord riffs, minor and phrygian",
        bpm=(100, 200), scales=("minor", "phrygian", "harmonic"),
        progressions=((0, 5, 6, 0), (0, 1, 0, 6), (0, 0, 5)),
        drums=("double_kick", "rock_drive", "halftime"), kits=("acoustic",),
        bass=("eighths", "root"), bass_timbres=("fingerbass", "synthbass"),
        comp=("power", "strum"), comp_timbres=("dist_metal", "dist_rock"),
        lead_timbres=("dist_metal", "dist_rock", "saw_lead"), lead_steps=(1, 1, 2),
        lead_prob=0.4, noise=("hiss", "room"), reverb=(0.05, 0.2), tilt=(-0.5, 2.0)),
    Recipe(
        "reggae", "one-drop or steppers, offbeat skank chords, syncopated bass, dub delay",
        bpm=(65, 95), scales=("major", "minor", "dorian"),
        progressions=((0, 3), (0, 4, 3, 0), (0, 6)),
        drums=("one_drop", "steppers"), kits=("acoustic", "electronic"), swing=(0.0, 0.2),
        bass=("reggae", "root"), bass_timbres=("sub", "fingerbass"),
        comp=("skank", "stab"), comp_timbres=("organ", "guitar", "clav", "epiano"),
        lead_timbres=("organ", "brass", "sine_lead", "harmonica"), lead_prob=0.4,
        noise=("vinyl", "hiss"), delay_prob=0.7, tilt=(-1.5, 1.0)),
    Recipe(
        "rock", "backbeat drums, crunchy guitar chords, root-eighths bass, major or minor",
        bpm=(95, 160), scales=("major", "mixolydian", "minor"),
        progressions=((0, 4, 5, 3), (0, 6, 3, 0), (0, 3, 4)),
        drums=("backbeat", "rock_drive", "halftime"), kits=("acoustic",),
        bass=("eighths", "root"), bass_timbres=("fingerbass", "synthbass"),
        comp=("power", "strum", "block"), comp_timbres=("dist_rock", "guitar", "organ", "piano"),
        lead_timbres=("dist_rock", "saw_lead", "organ", "harmonica"), lead_steps=(1, 2, 4),
        lead_prob=0.5, noise=("hiss", "room"), tilt=(-1.0, 1.5)),
    Recipe(
        "country", "train beat, twangy steel guitar, fiddle, root-fifth two-step bass, major",
        bpm=(90, 150), scales=("major", "mixolydian"), swing=(0.0, 0.15),
        progressions=((0, 3, 4, 0), (0, 0, 3, 4), (0, 4)),
        drums=("train", "backbeat", "light"), kits=("brush", "acoustic"),
        bass=("twostep",), bass_timbres=("upright", "fingerbass"),
        comp=("strum", "arp"), comp_timbres=("steel", "guitar", "piano"),
        lead_timbres=("fiddle", "steel", "harmonica"), noise=("room", "hiss"),
        tilt=(-1.0, 1.5)),
)
GENRES = tuple(r.name for r in RECIPES)
MAX_GENRES = len(RECIPES)
_TAIL_S = 3.0  # seconds rendered past the end so notes and reverb tails run on


def make_synth_corpus(
    out: str | Path,
    genres: int = 8,
    per_genre: int = 40,
    seconds: float = 30.0,
    sample_rate: int = 22050,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write a synthetic genre corpus as ``OUT/<genre>/<genre>.NNNNN.wav`` (16-bit PCM).

    The corpus is built in a hidden sibling folder and moved into place at the end, so an
    interrupted run leaves no half-made OUT.

    Args:
        out: a folder that does not exist yet, or is empty.
        genres: how many genres, the first ones of :data:`GENRES` (2 to :data:`MAX_GENRES`).
        per_genre: clips per genre (>= 1).
        seconds: length of every clip (>= 1).
        sample_rate: sample rate of the files (>= 8000).
        seed: corpus seed; the same arguments give byte-identical files.
        progress: called with 1 after each file is written (an increment, as ``bar.update``).

    Returns:
        ``{"path", "genres" (names), "per_genre", "files", "seconds", "sample_rate", "seed"}``.

    Raises:
        DataError: an argument out of range, or OUT exists and is not an empty folder.
    """
    out = Path(out)
    if not 2 <= genres <= MAX_GENRES:
        raise DataError(f"genres must be between 2 and {MAX_GENRES}, got {genres}")
    if per_genre < 1:
        raise DataError(f"per_genre must be at least 1, got {per_genre}")
    if seconds < 1:
        raise DataError(f"seconds must be at least 1, got {seconds}")
    if sample_rate < 8000:
        raise DataError(f"sample_rate must be at least 8000, got {sample_rate}")
    if seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} exists and is not an empty folder; choose a new one")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name in GENRES[:genres]:
            (tmp / name).mkdir()
            for i in range(per_genre):
                wave = synth_clip(name, seed, i, seconds, sample_rate)
                sf.write(tmp / name / f"{name}.{i:05d}.wav", wave, sample_rate, subtype="PCM_16")
                if progress is not None:
                    progress(1)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"path": str(out), "genres": list(GENRES[:genres]), "per_genre": per_genre,
            "files": genres * per_genre, "seconds": float(seconds),
            "sample_rate": sample_rate, "seed": seed}


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
    clip = _Clip(RECIPES[g], rng, seconds, sample_rate)
    _compose(clip)
    return _master(clip)


class _Clip:
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
            self.cache[key] = _tone(TIMBRES[timbre], _hz(midi), dur, self.sr, self.rng)
        self.add(part, t, vel * self.cache[key])


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _semis(scale: tuple[int, ...], degree: int) -> int:
    return 12 * (degree // len(scale)) + scale[degree % len(scale)]


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


def _tone(tb: dict, f: float, dur: float, sr: int, rng: np.random.Generator) -> np.ndarray:
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


def _sos(kind: str, cutoff: float | tuple[float, float], sr: int) -> np.ndarray:
    """A 2nd-order Butterworth; cutoffs are rounded to 25 Hz so designs can be cached."""
    edges = tuple(round(c / 25) * 25 for c in np.atleast_1d(cutoff))
    return _butter(kind, edges, sr)


@lru_cache(maxsize=512)
def _butter(kind: str, edges: tuple[float, ...], sr: int) -> np.ndarray:
    wn = np.clip(np.asarray(edges, dtype=float) / (sr / 2), 1e-4, 0.999)
    if len(wn) > 1 and wn[0] >= 0.9 * wn[1]:  # a band at or above Nyquist (low rates)
        wn[0] = 0.9 * wn[1]
    return signal.butter(2, wn if len(wn) > 1 else wn[0], btype=kind, output="sos")


# kick drums per kit: ranges of start pitch (Hz), end pitch (Hz) and decay (s)
_KICKS = {"acoustic": ((90, 130), (45, 60), (0.12, 0.25)), "808": ((55, 80), (40, 50), (0.4, 0.9)),
          "electronic": ((120, 170), (45, 55), (0.15, 0.3)),
          "brush": ((70, 90), (45, 55), (0.1, 0.2))}


def _kit(kind: str, rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    """Drum sounds for one clip, from sines, metallic squares and filtered noise."""
    def t(s):
        return np.arange(int(s * sr)) / sr

    def noise(s, lo, hi, decay, attack=0.0):
        hi = min(hi, 0.45 * sr)
        band = (min(lo, 0.6 * hi), hi)
        x = signal.sosfilt(_sos("bandpass", band, sr), rng.standard_normal(int(s * sr)))
        tt = t(s)
        env = np.exp(-tt / decay) * (np.minimum(1.0, tt / attack) if attack else 1.0)
        return x * env / (np.abs(x).max() + 1e-9)

    def metal(s, decay, lo):
        tt = t(s)
        base = rng.uniform(0.9, 1.1)
        x = sum(np.sign(np.sin(2 * np.pi * f * base * tt)) for f in (205, 304, 370, 523, 540, 800))
        x = signal.sosfilt(_sos("highpass", lo, sr), x)
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


def _compose(clip: _Clip) -> None:
    """Draw an arrangement (sections, parts, instruments) and render every note and hit."""
    r, rng = clip.r, clip.rng

    def pick(options):  # palettes list the genre's staple first: weights 1, 1/2.5, 1/4.2, ...
        w = np.arange(1, len(options) + 1) ** -1.3
        return options[int(rng.choice(len(options), p=w / w.sum()))]

    scale = SCALES[str(pick(r.scales))]
    lead_scale = SCALES[r.lead_scale] if r.lead_scale else scale
    prog = pick(r.progressions)
    bpc = int(pick(r.bars_per_chord))
    sevenths = rng.random() < r.sevenths
    kit = _kit(str(pick(r.kits)), rng, clip.sr)
    levels = {p: 10 ** (rng.uniform(-4, 2) / 20) for p in ("drums", "bass", "comp", "lead")}
    bass_style, bass_tb = str(pick(r.bass)), str(pick(r.bass_timbres))
    comp_style, comp_tb = str(pick(r.comp)), str(pick(r.comp_timbres))
    lead_tb = str(pick(r.lead_timbres))
    pattern = str(pick(r.drums)) if r.drums else ""
    lead_deg = len(lead_scale) + int(rng.integers(len(lead_scale)))
    bar = 0
    while bar < clip.bars:
        end = min(clip.bars, bar + int(rng.choice([4, 8, 8, 16])))
        if rng.random() < 0.25:  # a section change: new pattern, comping or instrument
            pattern = str(pick(r.drums)) if r.drums else ""
            comp_style, comp_tb = str(pick(r.comp)), str(pick(r.comp_timbres))
            lead_tb = str(pick(r.lead_timbres))
        if rng.random() < 0.15:  # a modulation, kept within -5..6
            clip.key = (clip.key + int(rng.choice([-2, 2, 5])) + 5) % 12 - 5
        drums_on = bool(pattern) and rng.random() < r.drum_prob
        lead_on = rng.random() < r.lead_prob
        bass_on = bass_style != "none" and rng.random() < 0.9
        energy = rng.uniform(0.5, 1.0)
        if drums_on and rng.random() < 0.5:
            _hit(clip, kit, "crash", bar * 16, energy * levels["drums"])
        for b in range(bar, end):
            deg = prog[(b // bpc) % len(prog)]
            chord = [clip.key + 48 + _semis(scale, deg + 2 * i) for i in range(3 + sevenths)]
            s0 = b * 16
            if drums_on:
                _drum_bar(clip, kit, pattern, s0, energy * levels["drums"], b == end - 1)
            if bass_on:
                _bass_bar(clip, bass_style, bass_tb, chord, s0, levels["bass"] * energy)
            _comp_bar(clip, comp_style, comp_tb, chord, s0, levels["comp"] * energy,
                      b % bpc == 0 or b == bar, bpc)
            if lead_on:
                lead_deg = _lead_bar(clip, lead_tb, lead_scale, lead_deg, s0, levels["lead"])
        bar = end


def _hit(clip: _Clip, kit: dict, piece: str, step: float, vel: float) -> None:
    t = clip.time(step) + clip.rng.normal(0, 0.004)
    if clip.audible(t, kit[piece].size / clip.sr):
        clip.add("drums", t, vel * kit[piece])


def _drum_bar(clip: _Clip, kit: dict, pattern: str, s0: int, vel: float, last: bool) -> None:
    rng = clip.rng
    for piece, row in PATTERNS[pattern].items():
        for i, ch in enumerate(row):
            if ch != "." and rng.random() > 0.05:
                _hit(clip, kit, piece, s0 + i, vel * _VEL[ch] * rng.uniform(0.8, 1.1))
            elif piece in ("hat", "snare") and rng.random() < 0.04:
                _hit(clip, kit, piece, s0 + i, vel * 0.25)
    if last and rng.random() < 0.4:  # a fill into the next section
        for i in range(12, 16):
            _hit(clip, kit, "snare", s0 + i, vel * rng.uniform(0.4, 0.9))


def _bass_bar(clip: _Clip, style: str, tb: str, chord: list[int], s0: int, vel: float) -> None:
    rng = clip.rng
    root = chord[0] - 24 if chord[0] - 24 >= 28 else chord[0] - 12
    third, fifth = root + chord[1] - chord[0], root + 7
    if style == "pedal":
        seq = [(0, 16, clip.key + 36)]
    elif style == "root":
        seq = [(0, 8, root), (8, 8, root if rng.random() < 0.6 else fifth)]
    elif style == "twostep":
        seq = [(0, 4, root), (8, 4, fifth - 12 if fifth > 40 else fifth)]
    elif style == "eighths":
        seq = [(i, 1.6, root) for i in range(0, 16, 2)]
    elif style == "octave":
        seq = [(i, 1.5, root + 12 * (i // 2 % 2)) for i in range(0, 16, 2)]
    elif style == "walking":
        approach = root + int(rng.choice([-2, -1, 1, 2, 10, 11]))  # chromatic approach
        tones = [root, third, fifth, approach]
        seq = [(i * 4, 3.6, tones[i]) for i in range(4)]
    elif style == "reggae":
        seq = [(2, 2, root), (4, 1, root), (6, 2, fifth), (10, 2, third), (12, 3, root)]
    elif style == "arp":
        seq = [(i, 0.9, (root, root + 12, fifth, root + 12)[i % 4]) for i in range(16)]
    else:  # sub808: long notes on the kick positions
        seq = [(0, 7, root), (7, 3, root), (10, 6, root if rng.random() < 0.7 else fifth)]
    for step, length, midi in seq:
        clip.note("bass", tb, s0 + step, length, midi, vel * rng.uniform(0.8, 1.0))


_RHYTHMS = {
    "strum": ((0, 8), (0, 4, 8, 12), (0, 6, 8, 12, 14), (0, 3, 6, 8, 11, 14)),
    "stab": ((2, 6, 10, 14), (0, 3, 6, 10, 12), (0, 3, 6, 10), (4, 12)),
    "skank": ((4, 12), (2, 6, 10, 14), (4, 6, 12, 14)),
    "block": ((0, 8), (0, 4, 8, 12), (0,)),
    "power": ((0, 2, 4, 6, 8, 10, 12, 14), (0, 3, 6, 8, 11, 14), (0, 8)),
}


def _comp_bar(clip: _Clip, style: str, tb: str, chord: list[int], s0: int, vel: float,
              chord_start: bool, bpc: int) -> None:
    rng = clip.rng
    if style == "pad":
        if chord_start:
            for m in chord:
                clip.note("comp", tb, s0, 16 * bpc, m, vel * 0.5)
        return
    if style in ("arp", "alberti"):  # broken chords: up the chord, or low-high-middle-high
        tones = [chord[0], chord[2], chord[1], chord[2]] if style == "alberti" else chord
        every = int(rng.choice([1, 2]))
        for i in range(0, 16, every):
            m = tones[(i // every) % len(tones)] + (12 if i % 8 >= 4 else 0)
            clip.note("comp", tb, s0 + i, every * 1.2, m, vel * rng.uniform(0.5, 0.8))
        return
    if style == "comp":  # jazz comping: a few syncopated voicings
        hits = np.sort(rng.choice(16, size=int(rng.integers(2, 5)), replace=False))
    else:
        rhythms = _RHYTHMS[style]
        hits = rhythms[int(rng.integers(len(rhythms)))]
    voices = [chord[0], chord[0] + 7, chord[0] + 12] if style == "power" else chord
    short = style in ("stab", "skank", "power") and rng.random() < 0.7
    for j, h in enumerate(hits):
        nxt = hits[j + 1] if j + 1 < len(hits) else 16
        length = 0.8 if short else max(1, nxt - h)
        for v, m in enumerate(voices):
            lag = v * rng.uniform(0.008, 0.02) if style == "strum" else 0.0
            clip.note("comp", tb, s0 + h, length, m, vel * rng.uniform(0.4, 0.7), delay=lag)


def _lead_bar(clip: _Clip, tb: str, scale: tuple[int, ...], deg: int, s0: int,
              vel: float) -> int:
    rng = clip.rng
    step = 0
    while step < 16:
        length = int(rng.choice(clip.r.lead_steps))
        if rng.random() < 0.25:
            step += length
            continue
        deg = int(np.clip(deg + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, 2 * len(scale)))
        clip.note("lead", tb, s0 + step, length * 0.95, clip.key + 60 + _semis(scale, deg),
                  vel * rng.uniform(0.5, 0.8))
        step += length
    return deg


def _master(clip: _Clip) -> np.ndarray:
    """Mix the parts; add delay, reverb, EQ tilt, background noise; normalise the peak."""
    r, rng, sr, n = clip.r, clip.rng, clip.sr, clip.n
    size = n + int(_TAIL_S * sr)
    parts = dict(clip.parts)
    for name in ("comp", "lead"):
        if name in parts and rng.random() < 0.3:  # darker or thinner instrument buses
            cut = rng.uniform(1500, 8000)
            parts[name] = signal.sosfilt(_sos("lowpass", min(cut, 0.45 * sr), sr), parts[name])
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
    ir = signal.sosfilt(_sos("lowpass", rng.uniform(3000, 8000), sr),
                        rng.standard_normal(tt.size)) * np.exp(-6.9 * tt / room)
    ir = np.concatenate([np.zeros(int(rng.uniform(0.005, 0.03) * sr)), ir / np.sqrt(
        (ir**2).sum())])
    nfft = sp_fft.next_fast_len(size + ir.size, real=True)
    spec = sp_fft.rfft(mix, nfft) * (1 + wet * sp_fft.rfft(ir, nfft))
    spec *= _eq_gain(nfft, sr, rng.uniform(*r.tilt), rng.random() < r.lofi_prob, rng)
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
        x = signal.sosfilt(_sos("highpass", 2000, sr), white)
    elif kind == "vinyl":  # surface noise and rumble, plus sparse clicks a few times louder
        bed = signal.sosfilt(_sos("lowpass", 80, sr), white) * 3 + 0.3 * white
        clicks = (rng.random(n) < rng.uniform(5, 40) / sr) * rng.uniform(-6, 6, n)
        bed /= np.sqrt(np.mean(bed**2)) + 1e-9
        return bed + signal.sosfilt(_sos("highpass", 1000, sr), clicks)
    elif kind == "hum":
        t = np.arange(n) / sr
        base = rng.choice([50.0, 60.0])
        x = sum(np.sin(2 * np.pi * base * h * t) / h for h in (1, 2, 3, 5)) + 0.3 * white
    else:  # room tone: pink-ish
        x = signal.lfilter([1.0], [1.0, -0.95], white)
    return x / (np.sqrt(np.mean(x**2)) + 1e-9)


def _eq_gain(nfft: int, sr: int, tilt: float, lofi: bool, rng: np.random.Generator
             ) -> np.ndarray:
    """A tilt (dB per octave around 1 kHz), optionally band-limited like a lo-fi record."""
    f = np.maximum(sp_fft.rfftfreq(nfft, 1 / sr).astype(np.float32), np.float32(20))
    gain = np.float32(10) ** (np.clip(np.float32(tilt) * np.log2(f / 1000), -12, 12) / 20)
    if lofi:
        lo, hi = rng.uniform(80, 300), rng.uniform(2500, 6000)
        gain /= np.sqrt(1 + (f / hi) ** 4) * np.sqrt(1 + (lo / f) ** 4)
    return gain
