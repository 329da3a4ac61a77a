"""The fit of the confidence model (:mod:`sonicsearch.index.confidence`) on the index itself:
degraded excerpts of indexed files as positives, the same excerpts with their own file and
its variants left out as negatives, one logistic regression per roll-up. Computed with the
no-match calibration (:mod:`sonicsearch.index.calibration`) and kept in
``calibration.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sonicsearch.errors import AudioError
from sonicsearch.index.confidence import (
    ACCEPT_CONFIDENCE,
    DEPTH,
    FEATURES,
    SAME_AUDIO_COSINE,
    result_features,
)
from sonicsearch.index.request import QueryRequest

if TYPE_CHECKING:
    from sonicsearch.index.reader import IndexReader

FIT_SAMPLES = 96  # excerpts per generation (fewer on a small index: FIT_PER_FILE each)
FIT_PER_FILE = 4
FIT_SECONDS = (3.0, 5.0, 8.0, 12.0)  # excerpt lengths, taking turns
# the project's degradations (sonicsearch.eval.degrade), taking turns
FIT_DEGRADATIONS = ("clean", "noise_snr10", "pink_snr10", "telephone", "reverb_room",
                    "mp3_low", "gain_-12db", "speed_0.97", "phone_room")
MIN_CLASS = 6  # fewest positives and negatives a fit needs
# the fit stops drawing excerpts once their query windows add up to this many (a dense
# hop makes every excerpt long in windows; 96 excerpts at a 0.5 s hop are about 1,300)
FIT_WINDOWS = 4000
L2 = 1.0  # ridge on the standardised features' weights


def fit_confidence(index: IndexReader, rollups: tuple[str, ...], samples: int = FIT_SAMPLES,
                   seed: int = 0, min_files: int = 3) -> dict[str, Any]:
    """Fit one logistic model per roll-up on excerpts of the index's own files.

    Returns:
        ``features``, ``degradations``, ``accept`` and ``fits``: per roll-up, ``model``
        (``mean``, ``scale``, ``coef``, ``intercept``; None when a class has fewer than
        MIN_CLASS samples or the index fewer than ``min_files`` distinct files, with a
        ``reason``) and the facts of the fit: ``excerpts``, ``positives``, ``negatives``,
        ``missed`` (positives whose source was not in the first DEPTH results), ``stored``
        (excerpts taken from stored vectors: the audio was unreadable).
    """
    records = index.store.records
    out: dict[str, Any] = {"features": list(FEATURES), "degradations": list(FIT_DEGRADATIONS),
                           "accept": ACCEPT_CONFIDENCE, "fits": {}}
    distinct = len({r.sha256 for r in records})
    if distinct < min_files:
        why = f"{distinct} distinct files; a confidence model needs at least {min_files}"
        out["fits"] = {r: {"model": None, "reason": why} for r in rollups}
        return out
    rng = np.random.default_rng(seed)
    n = min(samples, FIT_PER_FILE * len(records))
    order = np.concatenate([rng.permutation(len(records))
                            for _ in range(-(-n // len(records)))])[:n]
    rows: dict[str, tuple[list, list]] = {r: ([], []) for r in rollups}
    facts = {"excerpts": 0, "windows": 0, "missed": 0, "stored": 0}
    for i, f in enumerate(order.tolist()):
        if facts["windows"] >= FIT_WINDOWS:
            break
        query = _excerpt(index, f, FIT_SECONDS[i % len(FIT_SECONDS)],
                         FIT_DEGRADATIONS[i % len(FIT_DEGRADATIONS)], rng, facts)
        if query is None:
            continue
        facts["excerpts"] += 1
        facts["windows"] += len(query[0])
        for rollup in rollups:
            pos, neg = _pair(index, f, query, rollup)
            if pos is None:
                facts["missed"] += rollup == rollups[0]
            else:
                rows[rollup][0].append(pos)
            if neg is not None:
                rows[rollup][1].append(neg)
    for rollup, (pos, neg) in rows.items():
        fit = {**facts, "positives": len(pos), "negatives": len(neg), "model": None}
        if min(len(pos), len(neg)) >= MIN_CLASS:
            fit["model"] = _logistic(np.array(pos), np.array(neg))
        else:
            fit["reason"] = f"fewer than {MIN_CLASS} positives or negatives"
        out["fits"][rollup] = fit
    return out


def _excerpt(index: IndexReader, f: int, seconds: float, degradation: str,
             rng: np.random.Generator, facts: dict[str, int]
             ) -> tuple[np.ndarray, ...] | None:
    """(query vectors, spans, the source's stored vectors over the excerpt and their spans)
    of a degraded
    excerpt of file ``f``; its stored vectors when the audio is unreadable; None when the
    degraded excerpt is unusable (silent)."""
    from sonicsearch.audio import load_audio
    from sonicsearch.eval import degrade

    rec = index.store.records[f]
    offset = float(rng.uniform(0.0, max(0.0, rec.duration - seconds)))
    spans = index.store.file_spans(f)
    inside = np.flatnonzero((spans[:, 0] >= offset) & (spans[:, 1] <= offset + seconds))
    if not len(inside):
        inside = np.arange(min(len(spans), 1))
    stored = np.asarray(index._exact[rec.first_row + inside], np.float32)
    embedder = getattr(index, "embedder", None)
    try:
        if embedder is None or not Path(rec.path).is_file():
            raise AudioError(rec.path, "not readable")
        sr = embedder.feature_config.sample_rate
        wave, _ = load_audio(rec.path, sr, offset, seconds)
        wave = degrade.apply(degradation, wave, sr, rng)  # phone_room: eval/compound.py
        emb = embedder.embed_waveform(wave, sr)
        return emb.vectors, emb.spans, stored, spans[inside]
    except AudioError:
        if embedder is not None and Path(rec.path).is_file():
            return None  # decoded, but the degraded excerpt is unusable
    facts["stored"] += 1
    q = spans[inside] - spans[inside][0, 0]
    return stored, q, stored, spans[inside]


def _pair(index: IndexReader, f: int, query, rollup: str
          ) -> tuple[list[float] | None, list[float] | None]:
    """(the source's features, the best other recording's features) for one excerpt."""
    from sonicsearch.index.calibration import contains_excerpt

    vectors, spans, stored, stored_spans = query
    rec = index.store.records[f]
    res = index.search(QueryRequest(vectors=vectors, spans=spans, k=DEPTH, rollup=rollup))
    sources = [i for i, r in enumerate(res) if r["path"] == rec.path]
    pos = (result_features(index, list(res), len(vectors), sources[:1])[0].tolist()
           if sources else None)
    res = index.search(QueryRequest(vectors=vectors, spans=spans, k=DEPTH, rollup=rollup,
                                    exclude=rec.path))
    hop = index.meta["features"]["hop_seconds"]
    others = []
    for r in res:
        g = index.store.by_path.get(r["path"])
        if g is None or index.store.records[g].sha256 == rec.sha256 or contains_excerpt(
                index, stored, stored_spans, g, hop, cosine=SAME_AUDIO_COSINE):
            continue
        others.append(r)
    neg = result_features(index, others, len(vectors), [0])[0].tolist() if others else None
    return pos, neg


def _logistic(pos: np.ndarray, neg: np.ndarray) -> dict[str, Any]:
    """A ridge-regularised logistic regression of positives against negatives on
    standardised features (Newton's method: a few small linear solves)."""
    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1)
    w = np.zeros(z.shape[1])
    ridge = np.diag([L2] * (z.shape[1] - 1) + [0.0])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -50.0, 50.0)))
        grad = z.T @ (p - y) + ridge @ w
        hess = (z * (p * (1 - p))[:, None]).T @ z + ridge + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"mean": [round(float(v), 6) for v in mean],
            "scale": [round(float(v), 6) for v in scale],
            "coef": [round(float(v), 6) for v in w[:-1]], "intercept": round(float(w[-1]), 6)}
