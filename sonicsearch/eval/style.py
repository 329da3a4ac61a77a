"""Style retrieval ("sounds like this") measured the way a user meets it.

Each track gives a few clips (about 30 s: runs of consecutive window vectors, quiet windows
left out); a clip's vector is the mean of its windows' vectors. Each clip ranks the clips of
every *other* track by cosine; a clip is relevant when its track has the same label (the
soundtrack it came from). Reported:

- ``map``: mean average precision over the whole ranking (every candidate);
- ``p_at_10``: precision of the first ten;
- ``probe_f1``: macro-F1 of a logistic probe on the clip vectors, tracks split per label
  (a track's clips are all on one side), averaged over seeds, over the labels present;
- intervals from resampling the query tracks (:func:`bootstrap_map`).

The functions are pure: features in, numbers out, so a benchmark and a test measure the
same code (``benchmarks/style.py`` is the runner).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

CLIP_WINDOWS = 15
"""Windows per clip: 15 windows of 2 s every 2 s make the 30 s clips of the style sets."""
CLIPS_PER_TRACK = 4
QUIET_DBFS = -60.0


@dataclass(frozen=True)
class Clip:
    track: int  # index into the track list
    windows: np.ndarray  # window indices of the track, quiet ones left out


def make_clips(levels: Sequence[np.ndarray], labels: Sequence[str],
               clip_windows: int = CLIP_WINDOWS, per_track: int = CLIPS_PER_TRACK,
               quiet_dbfs: float = QUIET_DBFS, min_tracks: int = 2) -> list[Clip]:
    """Up to ``per_track`` evenly spread clips of ``clip_windows`` windows per track.

    Args:
        levels: per track, each window's level in dBFS.
        labels: per track, its label.
        min_tracks: a label with fewer tracks has no other track to be relevant to: left out.

    Returns:
        Clips whose loud windows are at least a third of the clip.
    """
    count = Counter(labels)
    out = []
    for ti, (lev, label) in enumerate(zip(levels, labels)):
        n = len(lev)
        if count[label] < min_tracks or n < clip_windows:
            continue
        k = min(per_track, n // clip_windows)
        for start in np.linspace(0, n - clip_windows, k).astype(int):
            idx = np.arange(start, start + clip_windows)
            loud = idx[np.asarray(lev)[idx] > quiet_dbfs]
            if len(loud) >= max(1, clip_windows // 3):
                out.append(Clip(ti, loud))
    return out


def clip_vectors(clips: Sequence[Clip], per_track: Sequence[np.ndarray],
                 rep: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """``(clips, D)``: ``rep`` of each clip's window rows (default: their mean)."""
    rep = rep or (lambda rows: rows.mean(0))
    return np.stack([rep(np.asarray(per_track[c.track][c.windows], dtype=np.float32))
                     for c in clips])


def standardise(fit: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``x`` with the per-dimension mean and std of ``fit`` (a constant dimension stays 0)."""
    mu, sd = fit.mean(0), fit.std(0)
    return (x - mu) / np.where(sd > 1e-6, sd, 1.0)


def per_query_ap(x: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                 k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average precision and precision@k of each clip against the clips of other groups.

    Returns:
        ``(ap, p_at_k, query_index)`` for the queries that have a relevant candidate.
    """
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = xn @ xn.T
    aps, pks, qs = [], [], []
    for i in range(len(x)):
        keep = groups != groups[i]
        rel = labels[keep] == labels[i]
        if not rel.any():
            continue
        ranked = rel[np.argsort(-sims[i, keep], kind="stable")]
        hits = np.cumsum(ranked)
        aps.append(float((hits / np.arange(1, len(ranked) + 1) * ranked).sum() / ranked.sum()))
        pks.append(float(ranked[:k].mean()))
        qs.append(i)
    return np.array(aps), np.array(pks), np.array(qs, dtype=int)


def style_map(x: np.ndarray, labels: Sequence[str], groups: Sequence[int],
              k: int = 10) -> tuple[float, float]:
    """(mAP, precision@k) of clip vectors ``x``; see the module docstring."""
    ap, pk, _ = per_query_ap(x, np.asarray(labels), np.asarray(groups), k)
    return float(ap.mean()), float(pk.mean())


def bootstrap_map(x: np.ndarray, labels: Sequence[str], groups: Sequence[int],
                  rounds: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mAP when the query tracks are resampled with replacement."""
    groups = np.asarray(groups)
    ap, _, qs = per_query_ap(x, np.asarray(labels), groups)
    g = groups[qs]
    tracks = np.unique(g)
    per_track = {t: ap[g == t] for t in tracks}
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(rounds):
        pick = rng.choice(tracks, len(tracks))
        means.append(np.concatenate([per_track[t] for t in pick]).mean())
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def probe_f1(x: np.ndarray, labels: Sequence[str], groups: Sequence[int], seeds: int = 5,
             test_fraction: float = 0.3) -> float:
    """Macro-F1 of a logistic probe, tracks split per label, mean over ``seeds`` splits."""
    y, g = np.asarray(labels), np.asarray(groups)
    scores = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        test: list[int] = []
        for label in np.unique(y):
            tracks = rng.permutation(np.unique(g[y == label]))
            test += tracks[:max(1, round(test_fraction * len(tracks)))].tolist()
        te = np.isin(g, test)
        if len(np.unique(y[~te])) < 2:
            continue
        scaler = StandardScaler().fit(x[~te])
        clf = LogisticRegression(max_iter=2000, C=0.5).fit(scaler.transform(x[~te]), y[~te])
        pred = clf.predict(scaler.transform(x[te]))
        scores.append(f1_score(y[te], pred, average="macro", labels=np.unique(y[te])))
    return float(np.mean(scores)) if scores else float("nan")


def style_report(x: np.ndarray, labels: Sequence[str], groups: Sequence[int],
                 probe: bool = True) -> dict[str, float]:
    """mAP, its interval, P@10 and (optionally) the probe's macro-F1, in one dict."""
    m, p = style_map(x, labels, groups)
    lo, hi = bootstrap_map(x, labels, groups)
    out = {"map": m, "map_lo": lo, "map_hi": hi, "p_at_10": p}
    if probe:
        out["probe_f1"] = probe_f1(x, labels, groups)
    return out


__all__ = ["CLIP_WINDOWS", "Clip", "bootstrap_map", "clip_vectors", "make_clips",
           "per_query_ap", "probe_f1", "standardise", "style_map", "style_report"]
