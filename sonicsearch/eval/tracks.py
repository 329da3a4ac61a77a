"""Tracks for the identification benchmarks: a manifest's rows, a seeded pick with labels
taking turns, excerpt plans, audible excerpts, and a bank of recorded noises.

A track is a dict with ``path`` (resolved), ``label``, ``package`` and ``duration``
(seconds), as :func:`read_tracks` and :func:`track_rows` make them.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from sonicsearch.audio import SILENCE_PEAK, load_audio
from sonicsearch.errors import DataError

# path words of a noisy scene: the noise bank takes these recordings first
NOISE_WORDS = ("wind", "rain", "storm", "crowd", "people", "cheer", "applause", "engine",
               "motor", "car", "truck", "train", "traffic", "machine", "factory", "steam",
               "water", "river", "sea", "wave", "fire", "ambien", "forest", "bird", "city")
FACT_KEYS = ("path", "label", "package", "duration")


def read_tracks(path: str | Path) -> list[dict]:
    """The rows of a ``path,label[,package,duration]`` manifest as tracks.

    Paths are resolved against the manifest's folder; a missing duration is read from the
    file, a missing package is the label.

    Raises:
        DataError: the manifest is missing (the message says how to make it).
    """
    if not Path(path).is_file():
        raise DataError(f"{path} is missing: make it with `sonicsearch make-dataset debian "
                        f"{path} --pool {'eval' if 'eval' in Path(path).name else 'train'}`")
    base = Path(path).resolve().parent
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        p = Path(r["path"])
        r["path"] = str(p if p.is_absolute() else base / p)
        r["duration"] = float(r.get("duration") or sf.info(r["path"]).duration)
        r.setdefault("package", r["label"])
    return rows


def track_rows(folder: Path) -> list[dict]:
    """Tracks of every ``.wav`` under ``folder`` (sorted), labelled by their folder's name
    (the layout of a generated corpus)."""
    return [{"path": str(p), "label": p.parent.name, "package": p.parent.name,
             "duration": sf.info(str(p)).duration} for p in sorted(folder.rglob("*.wav"))]


def pick_tracks(rows: Sequence[dict], n: int, seed: int) -> list[dict]:
    """``n`` tracks, labels taking turns (each label's tracks in seeded order), sorted by
    path."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["path"]):
        by_label[r["label"]].append(r)
    queues = {lab: [v[i] for i in rng.permutation(len(v))] for lab, v in sorted(by_label.items())}
    out: list[dict] = []
    while len(out) < n and any(queues.values()):
        for q in queues.values():
            if q and len(out) < n:
                out.append(q.pop(0))
    return sorted(out, key=lambda r: r["path"])


def plan_excerpts(tracks: Sequence[dict], per: int, seconds: float, seed: int
                  ) -> list[tuple[int, float, float]]:
    """``(track index, offset, length)`` for ``per`` excerpts of every track, seeded; an
    excerpt is ``seconds`` long, or the whole of a shorter track."""
    rng = np.random.default_rng((seed, 1))
    plan = []
    for i, t in enumerate(tracks):
        length = min(seconds, t["duration"])
        plan += [(i, float(rng.uniform(0.0, t["duration"] - length)), length)
                 for _ in range(per)]
    return plan


def audible_excerpt(track: dict, offset: float, length: float, seed: tuple, sample_rate: int,
                    tries: int = 20) -> tuple[np.ndarray, float, bool]:
    """The excerpt at ``offset``, or, when it is silent (the product refuses silent
    queries, and nobody holds a phone to silence), one at a seeded random offset that is
    not.

    Returns:
        ``(wave, offset, redrawn)``; after ``tries`` silent draws, the last of them.
    """
    rng = np.random.default_rng(seed)
    for attempt in range(tries):
        wave, _ = load_audio(track["path"], sample_rate, offset, length)
        if wave.size and float(np.max(np.abs(wave))) >= SILENCE_PEAK:
            return wave, offset, attempt > 0
        offset = float(rng.uniform(0.0, max(0.0, track["duration"] - length)))
    return wave, offset, True  # silent throughout: the query records the product's error


def noise_bank(rows: Sequence[dict], seed: int, sample_rate: int, most: int = 24
               ) -> tuple[list[np.ndarray], list[str]]:
    """Recorded noises: effects/ambience tracks of at least 3 s whose path names a noisy
    scene (:data:`NOISE_WORDS`), else any ambience; at most ``most``, seeded, each at
    ``sample_rate`` scaled to unit RMS (60 s at the most).

    Returns:
        ``(noises, their paths)``.

    Raises:
        DataError: no usable recording among ``rows``.
    """
    pool = [r for r in rows if r["label"] in ("ambience", "effects", "noise")
            and r["duration"] >= 3.0]
    named = [r for r in pool if any(w in Path(r["path"]).name.lower() or w in
                                    Path(r["path"]).parent.name.lower() for w in NOISE_WORDS)]
    named += [r for r in pool if r["label"] == "ambience" and r not in named]
    rng = np.random.default_rng(seed)
    chosen = [named[i] for i in sorted(rng.permutation(len(named))[:most])]
    bank, files = [], []
    for r in chosen:
        x, _ = load_audio(r["path"], sample_rate, 0.0, min(r["duration"], 60.0))
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        if rms > 1e-3:
            bank.append((x / rms).astype(np.float32))
            files.append(r["path"])
    if not bank:
        raise DataError("no recorded noise found in the noise CSV (effects/ambience of >= 3 s)")
    return bank, files


def track_facts(tracks: Sequence[dict]) -> list[dict]:
    """What a results file records of each track (:data:`FACT_KEYS`)."""
    return [{k: t[k] for k in FACT_KEYS} for t in tracks]


def hours(tracks: Sequence[dict]) -> float:
    """Total duration of ``tracks``, hours."""
    return sum(t["duration"] for t in tracks) / 3600
