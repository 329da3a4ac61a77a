"""Recall of an approximate index against exact search, as small pure functions
(after autofaiss ``metrics/recalls.py`` and faiss ``contrib/evaluation.py``)."""

from __future__ import annotations

import numpy as np


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k ids that the approximate top-k also returns.

    Args:
        approx_ids: (nq, >=k) ids from the index under test; -1 marks a missing result.
        exact_ids: (nq, >=k) ids from exact search.
        k: cut-off.

    Returns:
        Recall in [0, 1]; 1.0 for no queries.
    """
    approx = np.asarray(approx_ids)[:, :k]
    exact = np.asarray(exact_ids)[:, :k]
    if approx.shape[0] != exact.shape[0]:
        raise ValueError(f"{approx.shape[0]} approximate rows vs {exact.shape[0]} exact rows")
    if exact.shape[0] == 0:
        return 1.0
    hits = total = 0
    for a, e in zip(approx, exact):
        e = e[e >= 0]
        hits += np.intersect1d(a[a >= 0], e).size
        total += e.size
    return hits / total if total else 1.0


def one_recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Fraction of queries whose exact nearest neighbour is among the approximate top-k."""
    approx = np.asarray(approx_ids)[:, :k]
    first = np.asarray(exact_ids)[:, :1]
    if approx.shape[0] == 0:
        return 1.0
    return float((approx == first).any(axis=1).mean())
