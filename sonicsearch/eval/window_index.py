"""An in-memory window index for identification benchmarks, searched with the product's
search and roll-ups (:func:`sonicsearch.index.search.search`), and what is measured on it:
recall of the source track under degradations, label mAP of track means, the head's
macro-F1.

The index holds the window vectors of a :mod:`sonicsearch.eval.systems` system (any
system, the MFCC baseline too, which no model file describes), exact (a flat FAISS
backend), with a metadata store in memory. Raw window vectors are cached per system key
and file, so a rerun embeds nothing.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonicsearch.audio import load_audio
from sonicsearch.eval.metrics import classification_report, map_at_k
from sonicsearch.index.backends.faiss_backend import FaissBackend
from sonicsearch.index.search import search

QUIET_PEAK = 1e-3  # excerpts quieter than -60 dBFS at their peak are not queried
Degrade = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


class MemoryStore:
    """What :func:`sonicsearch.index.search.search` reads from a store, held in memory.

    Args:
        n_windows: windows of each file, in row order.
        spans: (rows, 2) start, end seconds of every window.
    """

    def __init__(self, n_windows: Sequence[int], spans: np.ndarray):
        self.n_windows = np.asarray(n_windows, dtype=np.int64)
        self.first_rows = np.concatenate([[0], np.cumsum(self.n_windows)[:-1]]).astype(np.int64)
        self._spans = spans

    def file_of_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.first_rows, np.asarray(rows), side="right") - 1

    def spans(self, rows: np.ndarray) -> np.ndarray:
        return self._spans[np.asarray(rows, dtype=np.int64)].reshape(-1, 2)

    def span_table(self) -> np.ndarray:
        """Every window's (start, end), as the batched scoring reads them."""
        return self._spans.reshape(-1, 2)

    def file_spans(self, f: int) -> np.ndarray:
        a = int(self.first_rows[f])
        return self._spans[a : a + int(self.n_windows[f])].reshape(-1, 2)


@dataclass
class WindowIndex:
    """The searchable vectors (row = backend id), the backend, the store, each file's mean
    head probabilities (empty for a system without a head) and the build's seconds."""

    backend: FaissBackend
    vectors: np.ndarray
    store: MemoryStore
    probs: list[np.ndarray]
    seconds: float = 0.0


def file_windows(system, path: str, folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``system.index_track(path)`` as ``(vectors, spans, probs)``, cached in ``folder`` under
    the file's resolved path, size and modification time."""
    st = os.stat(path)
    key = hashlib.sha256(f"{os.path.realpath(path)}|{st.st_size}|"
                         f"{st.st_mtime_ns}".encode()).hexdigest()[:24]
    f = folder / f"{key}.npz"
    if f.is_file():
        z = np.load(f)
        return z["vectors"], z["spans"], z["probs"]
    out = system.index_track(path)
    out = (*out[:2], out[2] if len(out) > 2 else np.zeros(0, np.float32))
    np.savez(f, vectors=out[0], spans=out[1], probs=out[2])
    return out


def build_window_index(system, paths: Sequence[str], cache: Path) -> WindowIndex:
    """Window vectors of every file (cached under ``cache/system.key``), made searchable by
    ``system.fit``, in an exact inner-product backend."""
    folder = cache / system.key
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vecs, spans, probs = [], [], []
    for path in paths:
        v, s, p = file_windows(system, path, folder)
        vecs.append(v)
        spans.append(s)
        probs.append(p)
    seconds = time.perf_counter() - t0
    vectors = np.ascontiguousarray(system.fit(np.concatenate(vecs)), dtype=np.float32)
    backend = FaissBackend.create(vectors.shape[1], "flat", vectors=vectors, device="cpu")
    return WindowIndex(backend, vectors, MemoryStore([len(v) for v in vecs],
                                                     np.concatenate(spans)), probs, seconds)


def identify(system, index: WindowIndex, tracks: Sequence[dict],
             queries: Sequence[tuple[int, float, float]], names: Sequence[str],
             degrade: Mapping[str, Degrade], seed: int, rollup: str, sample_rate: int,
             ks: Sequence[int] = (1, 10)) -> dict:
    """Recall@k of the source track for every (excerpt, degradation).

    Args:
        system: what made ``index``; it embeds the queries.
        index: the tracks' window index (file i = ``tracks[i]``).
        queries: ``(track index, offset, length)`` excerpts; a silent one (peak below
            :data:`QUIET_PEAK`) is left out.
        names: the degradations to apply, each ``degrade[name](x, sr, rng)`` with ``rng``
            seeded by ``(seed, excerpt, degradation)``.
        rollup: the product's roll-up that ranks the tracks.
        sample_rate: excerpts are decoded and degraded at this rate.

    Returns:
        ``{name: {"R@k": ...}}``, ``"all"`` (the mean over ``names``) and
        ``"queries_per_degradation"``; rates rounded to 4 decimals.
    """
    depth = max(ks)
    k = min(depth, len(tracks))
    hits: dict[str, list[list[bool]]] = defaultdict(list)
    for qi, (ti, offset, length) in enumerate(queries):
        clean, _ = load_audio(tracks[ti]["path"], sample_rate, offset, length)
        if float(np.abs(clean).max(initial=0.0)) < QUIET_PEAK:
            continue  # a silent passage identifies nothing: left out for every system
        for j, name in enumerate(names):
            wave = degrade[name](clean, sample_rate, np.random.default_rng((seed, qi, j)))
            vectors, spans = system.query(wave, sample_rate)
            found = search(index.backend, index.store, vectors, spans, k, rollup,
                           system.hop, exact=index.vectors)
            ranked = [h.file for h in found] + [-1] * depth
            hits[name].append([f == ti for f in ranked[:depth]])
    out = {name: {f"R@{kk}": round(float(np.mean([any(r[:kk]) for r in rows])), 4)
                  for kk in ks} for name, rows in hits.items()}
    out["all"] = {f"R@{kk}": round(float(np.mean([out[n][f"R@{kk}"] for n in names])), 4)
                  for kk in ks}
    out["queries_per_degradation"] = len(hits[names[0]]) if names else 0
    return out


def label_map(index: WindowIndex, labels: Sequence[str], k: int = 10) -> float:
    """mAP@k of label retrieval: each file's mean window vector ranks the other files
    (relevant: the same label), rounded to 4 decimals."""
    store, v = index.store, index.vectors
    means = np.stack([v[a:a + n].mean(axis=0) for a, n in zip(store.first_rows,
                                                               store.n_windows)])
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    sims = means @ means.T
    np.fill_diagonal(sims, -np.inf)
    labels = np.array(list(labels))
    order = np.argsort(-sims, axis=1, kind="stable")[:, : min(k, len(labels) - 1)]
    rel = labels[order] == labels[:, None]
    n_rel = np.array([(labels == lab).sum() - 1 for lab in labels])
    return round(map_at_k(rel, k, n_rel), 4)


def head_macro_f1(system, index: WindowIndex, labels: Sequence[str]) -> float | None:
    """Macro-F1 of the head's file-level prediction (its mean probabilities) against
    ``labels`` (one per file), rounded to 4 decimals; None when the head does not know
    every label (a head trained on other labels says nothing about these)."""
    wanted = sorted(set(labels))
    if not system.labels or not set(wanted) <= set(system.labels):
        return None
    head = list(system.labels)
    pred = [int(np.argmax(p)) for p in index.probs]
    truth = [head.index(lab) for lab in labels]
    return round(classification_report(truth, pred, head)["macro_f1"], 4)
