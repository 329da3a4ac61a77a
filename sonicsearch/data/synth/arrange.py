"""Arrangement: draw a clip's sections, parts and instruments, and write every note and hit.

Each part is written a bar at a time on the clip's 16th-note grid: drums from
:data:`~sonicsearch.data.synth.recipes.PATTERNS`, bass lines, chord comping and a melody
that wanders the scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sonicsearch.data.synth.instruments import drum_kit
from sonicsearch.data.synth.recipes import PATTERNS, SCALES, VELOCITY

if TYPE_CHECKING:
    from sonicsearch.data.synth.render import Clip


def _semis(scale: tuple[int, ...], degree: int) -> int:
    return 12 * (degree // len(scale)) + scale[degree % len(scale)]


def compose(clip: Clip) -> None:
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
    kit = drum_kit(str(pick(r.kits)), rng, clip.sr)
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


def _hit(clip: Clip, kit: dict, piece: str, step: float, vel: float) -> None:
    t = clip.time(step) + clip.rng.normal(0, 0.004)
    if clip.audible(t, kit[piece].size / clip.sr):
        clip.add("drums", t, vel * kit[piece])


def _drum_bar(clip: Clip, kit: dict, pattern: str, s0: int, vel: float, last: bool) -> None:
    rng = clip.rng
    for piece, row in PATTERNS[pattern].items():
        for i, ch in enumerate(row):
            if ch != "." and rng.random() > 0.05:
                _hit(clip, kit, piece, s0 + i, vel * VELOCITY[ch] * rng.uniform(0.8, 1.1))
            elif piece in ("hat", "snare") and rng.random() < 0.04:
                _hit(clip, kit, piece, s0 + i, vel * 0.25)
    if last and rng.random() < 0.4:  # a fill into the next section
        for i in range(12, 16):
            _hit(clip, kit, "snare", s0 + i, vel * rng.uniform(0.4, 0.9))


def _bass_bar(clip: Clip, style: str, tb: str, chord: list[int], s0: int, vel: float) -> None:
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


def _comp_bar(clip: Clip, style: str, tb: str, chord: list[int], s0: int, vel: float,
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


def _lead_bar(clip: Clip, tb: str, scale: tuple[int, ...], deg: int, s0: int,
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
