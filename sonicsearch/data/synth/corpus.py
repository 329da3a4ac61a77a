"""The corpus on disk: every genre's clips as 16-bit WAV files in the GTZAN layout."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import soundfile as sf

from sonicsearch.data.synth.recipes import GENRES, MAX_GENRES
from sonicsearch.data.synth.render import synth_clip
from sonicsearch.errors import DataError


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

    One seeded pass over genres and clips; it stays in one function so that the random
    stream, and so the corpus, stays bit-identical.
    """
    out = Path(out)
    if not 2 <= genres <= MAX_GENRES:
        raise DataError(f"genres must be between 2 and {MAX_GENRES}, got {genres}")
    if per_genre < 1:
        raise DataError(f"per_genre must be at least 1, got {per_genre}")
    if not 1 <= seconds < float("inf"):  # nan and inf too
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
