"""How long a clip has to be: recall of the source track by query length, on a catalogue
of real tracks, for ``benchmarks/short_queries.py``.

A catalogue is the queried tracks (file i = ``tracks[i]``) followed by distractor tracks
that are never queried (:func:`pick_distractors`). Each excerpt is cut once, at a seeded
offset, a little longer than the longest query (:data:`HEADROOM`: a faster playback
shortens it); each degradation is applied to that whole excerpt, and the query of length
L is its first L seconds. So every length of one (excerpt, degradation) starts at the same
place and the longer query contains the shorter one, sample for sample: the lengths
differ in nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from sonicsearch.audio import load_audio
from sonicsearch.eval.tracks import plan_excerpts
from sonicsearch.eval.window_index import QUIET_PEAK, Degrade, WindowIndex
from sonicsearch.index.search import search

HEADROOM = 1.1  # the excerpt cut is this much longer than the longest query (speed +8 %)


def pick_distractors(rows: Sequence[dict], n: int | None, seed: int, min_seconds: float,
                     exclude: Sequence[str] = ()) -> list[dict]:
    """``n`` distractor tracks (all of them for None): the ``rows`` of at least
    ``min_seconds`` whose path is not in ``exclude``, in a seeded order (so a smaller
    ``n`` takes a prefix of a larger one's draw)."""
    skip = set(exclude)
    pool = sorted((r for r in rows if r["duration"] >= min_seconds and r["path"] not in skip),
                  key=lambda r: r["path"])
    order = np.random.default_rng((seed, 2)).permutation(len(pool))
    return [pool[i] for i in order[: len(pool) if n is None else max(0, n)]]


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a rate of ``hits`` in ``n`` (95 % by default)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return round(max(0.0, mid - half), 4), round(min(1.0, mid + half), 4)


def recall_by_length(system, index: WindowIndex, tracks: Sequence[dict], per_track: int,
                     lengths: Sequence[float], names: Sequence[str],
                     degrade: Mapping[str, Degrade], seed: int, rollup: str,
                     sample_rate: int, ks: Sequence[int] = (1, 10),
                     progress: Callable[[str], None] | None = None) -> dict:
    """Recall@k of the source track for every (degradation, query length).

    Args:
        system: what made ``index`` (:mod:`sonicsearch.eval.systems`); it embeds queries.
        index: the catalogue's window index; its first files are ``tracks``.
        per_track: excerpts of every queried track. An excerpt whose first ``min(lengths)``
            seconds are quiet (peak below :data:`QUIET_PEAK`) is left out at every length.
        degrade: ``degrade[name](x, sr, rng)``, ``rng`` seeded by (seed, excerpt, name).
        progress: called with a line now and then.

    Returns:
        ``{"cells": {name: {length: {"n", "R@k", "R@1_95": [lo, hi]}}}, "mean":
        {length: {"R@k"}}, "excerpts", "left_out"}``; lengths as ``"%g"`` strings.
    """
    longest = max(lengths)
    plan = plan_excerpts(tracks, per_track, longest * HEADROOM, seed)
    hits: dict[tuple[str, float], list[int]] = {}
    left_out = 0
    for qi, (ti, offset, length) in enumerate(plan):
        clean, _ = load_audio(tracks[ti]["path"], sample_rate, offset, length)
        head = clean[: int(round(min(lengths) * sample_rate))]
        if clean.size < longest * sample_rate or np.abs(head).max(initial=0.0) < QUIET_PEAK:
            left_out += 1
            continue
        for j, name in enumerate(names):
            wave = degrade[name](clean, sample_rate, np.random.default_rng((seed, qi, j)))
            for seconds in lengths:
                clip = wave[: int(round(seconds * sample_rate))]
                hits.setdefault((name, seconds), []).append(
                    rank_of(system, index, clip, sample_rate, ti, rollup, max(ks)))
        if progress and (qi + 1) % 10 == 0:
            progress(f"{qi + 1}/{len(plan)} excerpts queried")
    return summarise(hits, names, lengths, ks, len(plan) - left_out, left_out)


def rank_of(system, index: WindowIndex, clip: np.ndarray, sample_rate: int, target: int,
            rollup: str, depth: int) -> int:
    """The 1-based rank of file ``target`` among the first ``depth`` results of ``clip``
    (``depth + 1`` when it is not among them, or when every window of the clip is too
    quiet to search)."""
    vectors, spans = system.query(clip, sample_rate)
    if len(vectors) == 0:
        return depth + 1
    found = search(index.backend, index.store, vectors, spans, depth, rollup, system.hop,
                   exact=index.vectors)
    ranked = [h.file for h in found[:depth]]
    return ranked.index(target) + 1 if target in ranked else depth + 1


def summarise(hits: Mapping[tuple[str, float], list[int]], names: Sequence[str],
              lengths: Sequence[float], ks: Sequence[int], excerpts: int,
              left_out: int) -> dict:
    """Ranks per (degradation, length) as recall@k with the 95 % interval of R@1."""
    cells: dict = {}
    for name in names:
        cells[name] = {}
        for seconds in lengths:
            ranks = np.asarray(hits.get((name, seconds), []))
            cell = {"n": int(ranks.size)}
            for k in ks:
                cell[f"R@{k}"] = round(float(np.mean(ranks <= k)), 4) if ranks.size else None
            cell["R@1_95"] = list(wilson(int((ranks <= 1).sum()), int(ranks.size)))
            cells[name][f"{seconds:g}"] = cell
    mean = {f"{s:g}": {f"R@{k}": round(float(np.mean([cells[n][f'{s:g}'][f'R@{k}'] or 0.0
                                                      for n in names])), 4) for k in ks}
            for s in lengths}
    return {"cells": cells, "mean": mean, "excerpts": excerpts, "left_out": left_out}
