"""Retrieval on a labelled corpus, side by side for several systems: label retrieval of
held-out whole files, and near-duplicate retrieval of degraded excerpts.

A system is an :class:`~sonicsearch.index.AudioIndex` (a model's windows, built exactly
by :func:`exact_index`, rolled up to files by the product's roll-ups) or the MFCC
baseline's whole-file search (:class:`MfccFileSearch`), kept under the name ``"mfcc"``.
Results are keyed ``"mfcc"`` and ``"NAME/ROLLUP"``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.preprocessing import StandardScaler

from sonicsearch.audio import load_audio
from sonicsearch.config import IndexConfig
from sonicsearch.eval.baseline import MfccBaseline, mfcc_stats, unit_rows
from sonicsearch.eval.degrade import apply
from sonicsearch.eval.metrics import (
    hit_rate_at_k,
    map_at_k,
    precision_at_k,
    relevant_recall_at_k,
)
from sonicsearch.index.api import AudioIndex
from sonicsearch.index.backends.faiss_backend import FaissBackend
from sonicsearch.index.types import Embedder

KS = (1, 5, 10)
Log = Callable[[str], None]


def exact_index(embedder: Embedder, paths: Sequence[str | Path], index_dir: Path,
                device: str, log: Log | None = None) -> AudioIndex:
    """A fresh exact (flat) index of ``paths`` in ``index_dir``, built by the library."""
    t0 = time.perf_counter()
    index = AudioIndex.build(list(paths), embedder, index_dir,
                             config=IndexConfig(index_type="flat", device=device),
                             rebuild=True, device=device)
    report = index.build_report
    if log:
        log(f"indexed {report.files} files ({report.vectors} windows) with {embedder.arch} "
            f"in {time.perf_counter() - t0:.1f}s; skipped {len(report.skipped)}")
    return index


class MfccFileSearch:
    """The MFCC baseline as an exact-search index of whole files: MFCC statistics,
    standardised on the files not in the ``test`` split, L2-normalised.

    Args:
        items: the corpus' items (``.path``, ``.split``).
        sample_rate: files are decoded at this rate; queries must come at it.
    """

    def __init__(self, items: Sequence, sample_rate: int, log: Log | None = None):
        self.sample_rate = sample_rate
        self.paths = [os.path.realpath(it.path) for it in items]
        t0 = time.perf_counter()
        raw = MfccBaseline(sample_rate=sample_rate).features([it.path for it in items])
        fit_on = [i for i, it in enumerate(items) if it.split != "test"]
        self.scaler = StandardScaler().fit(raw[fit_on])
        vectors = self._norm(raw)
        self.backend = FaissBackend.create(vectors.shape[1], "flat", vectors=vectors,
                                           device="cpu")
        if log:
            log(f"MFCC statistics of {len(self.paths)} files in "
                f"{time.perf_counter() - t0:.1f}s")

    def _norm(self, raw: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(unit_rows(self.scaler.transform(raw)), dtype=np.float32)

    def search(self, wave: np.ndarray, sr: int, k: int, exclude: str | None = None) -> list[str]:
        """The ``k`` nearest files' resolved paths, ``exclude`` (a resolved path) left out."""
        if sr != self.sample_rate:
            raise ValueError(f"queries must come at {self.sample_rate} Hz, got {sr}")
        _, ids = self.backend.search(self._norm(mfcc_stats(wave, sr)[None]), k + 1)
        out = [self.paths[i] for i in ids[0] if i >= 0 and self.paths[i] != exclude]
        return out[:k]

    def close(self) -> None:
        pass


def result_paths(res) -> list[str]:
    """Resolved paths of a query's results (a query JSON dict, see docs/formats.md, or a list
    of results)."""
    results = res["results"] if isinstance(res, dict) else res
    return [os.path.realpath(r["path"]) for r in results]


def pad(paths: Sequence[str], depth: int) -> list[str]:
    """``paths`` cut or padded with ``""`` to ``depth``."""
    return (list(paths) + [""] * depth)[:depth]


def label_retrieval(indexes: Mapping, ds, held: Sequence, rollups: Sequence[str],
                    ks: Sequence[int] = KS) -> dict:
    """precision/recall/mAP@k of held-out whole-file queries (their own file left out);
    relevant: a file of the query's label.

    Args:
        indexes: name -> AudioIndex, and ``"mfcc"`` -> :class:`MfccFileSearch`.
        ds: the corpus (``.items`` with ``.path``, ``.label``; ``.labels``).
        held: the items that query.
        rollups: the roll-ups each AudioIndex is queried with.

    Returns:
        ``{"queries": n, KEY: {"precision@k", "recall@k", "map@k"}}``, rounded to 4
        decimals.
    """
    depth = max(ks)
    label_of = {os.path.realpath(it.path): it.label for it in ds.items}
    count = {lab: sum(it.label == lab for it in ds.items) for lab in ds.labels}
    n_rel = np.array([count[it.label] - 1 for it in held])
    ranked: dict[str, list[list[str]]] = {}
    for it in held:
        me = os.path.realpath(it.path)
        for name, ix in indexes.items():
            if name == "mfcc":
                wave, sr = load_audio(it.path, ix.sample_rate)
                ranked.setdefault(name, []).append(ix.search(wave, sr, depth, exclude=me))
                continue
            emb = ix.embedder.embed_file(it.path)
            for r in rollups:
                res = ix.query_vectors(emb.vectors, emb.spans, None, k=depth, rollup=r,
                                       exclude=it.path)
                ranked.setdefault(f"{name}/{r}", []).append(result_paths(res))
    out: dict = {"queries": len(held)}
    for key, rows in ranked.items():
        rel = np.array([[label_of.get(p) == it.label for p in pad(row, depth)]
                        for it, row in zip(held, rows)], dtype=bool).reshape(len(held), depth)
        out[key] = {f"{m}@{k}": round(f(rel, k, n_rel) if m != "precision" else f(rel, k), 4)
                    for k in ks for m, f in (("precision", precision_at_k),
                                             ("recall", relevant_recall_at_k),
                                             ("map", map_at_k))}
    return out


def near_duplicates(indexes: Mapping, ds, held: Sequence, degradations: Sequence[str],
                    seed: int, n_queries: int, excerpt: tuple[float, float],
                    rollups: Sequence[str], sample_rate: int | None = None,
                    depth: int = max(KS)) -> dict:
    """recall@1 and @10 of the source file for degraded excerpts, per system and
    degradation.

    Sources: the held-out items, then the others, each group in seeded order, the first
    ``n_queries``; each gives one excerpt of ``excerpt`` = (min, max) seconds at a seeded
    offset, decoded and degraded at ``sample_rate`` (default: the MFCC system's).

    Returns:
        ``{"queries", "held_out_sources", "excerpt_seconds", KEY: {degradation:
        {"recall@1", "recall@10"}}}``, rounded to 4 decimals.
    """
    rng = np.random.default_rng(seed)
    others = [it for it in ds.items if it.split != "test"]
    pool = [held[i] for i in rng.permutation(len(held))]
    pool += [others[i] for i in rng.permutation(len(others))]
    sources = pool[:n_queries]
    lo, hi = (float(x) for x in excerpt)
    sr = sample_rate or indexes["mfcc"].sample_rate
    hits: dict[str, dict[str, list[list[bool]]]] = {}
    for i, it in enumerate(sources):
        length = min(float(rng.uniform(lo, hi)), it.duration)
        offset = float(rng.uniform(0.0, max(0.0, it.duration - length)))
        clean, _ = load_audio(it.path, sr, offset, length)
        me = os.path.realpath(it.path)
        for j, name in enumerate(degradations):
            wave = apply(name, clean, sr, np.random.default_rng((seed, i, j)))
            for key, paths in _found(indexes, wave, sr, rollups, depth).items():
                hits.setdefault(key, {}).setdefault(name, []).append(
                    [p == me for p in pad(paths, depth)])
    out: dict = {"queries": len(sources),
                 "held_out_sources": sum(it.split == "test" for it in sources),
                 "excerpt_seconds": [lo, hi]}
    for key, per in hits.items():
        out[key] = {name: {f"recall@{k}": round(hit_rate_at_k(np.array(rows, bool), k), 4)
                           for k in (1, 10)} for name, rows in per.items()}
    return out


def _found(indexes: Mapping, wave: np.ndarray, sr: int, rollups: Sequence[str],
           depth: int) -> dict[str, list[str]]:
    """Every system's ranked paths for one query clip, keyed as the results are."""
    found: dict[str, list[str]] = {}
    for model, ix in indexes.items():
        if model == "mfcc":
            found["mfcc"] = ix.search(wave, sr, depth)
            continue
        emb = ix.embedder.embed_waveform(wave, sr)
        for r in rollups:
            found[f"{model}/{r}"] = result_paths(ix.query_vectors(
                emb.vectors, emb.spans, None, k=depth, rollup=r))
    return found
