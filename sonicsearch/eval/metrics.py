"""Classification and retrieval metrics as small pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def classification_report(y_true: Sequence[int], y_pred: Sequence[int],
                          labels: Sequence[str]) -> dict:
    """The evaluate JSON (docs/formats.md): n, accuracy, macro P/R/F1 over the labels present,
    the labels absent, and per-class P/R/F1/support for every label.

    A label is present when some file of ``y_true`` has it; the macro averages are the
    unweighted means over the present labels only (scikit-learn's macro average with
    ``labels=`` the true labels). An absent label has no recall to measure, so counting it
    as F1 0 would only pull the average down by how many labels the split happens to miss.
    A file predicted as an absent label still counts: it is a miss in the recall (and F1) of
    its own, present, label and in the accuracy. ``per_class`` keeps every label, an absent
    one with support 0; ``absent_labels`` names them in ``labels`` order.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    present = s > 0
    return {
        "n": int(y_true.size),
        "accuracy": float((y_true == y_pred).mean()) if y_true.size else 0.0,
        "macro_precision": _mean_over(p, present),
        "macro_recall": _mean_over(r, present),
        "macro_f1": _mean_over(f, present),
        "absent_labels": [lab for i, lab in enumerate(labels) if not present[i]],
        "per_class": {
            lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                  "support": int(s[i])}
            for i, lab in enumerate(labels)
        },
    }


def _mean_over(values: np.ndarray, present: np.ndarray) -> float:
    return float(values[present].mean()) if present.any() else 0.0


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> np.ndarray:
    """Confusion matrix, rows = true label, columns = predicted."""
    return confusion_matrix(y_true, y_pred, labels=list(range(n_labels)))


def precision_at_k(relevant: np.ndarray, k: int) -> float:
    """Mean over queries of the fraction of the top k that is relevant.

    Args:
        relevant: (queries, >=k) booleans, ranked results of each query.
    """
    return float(np.asarray(relevant)[:, :k].mean()) if len(relevant) else 0.0


def hit_rate_at_k(relevant: np.ndarray, k: int) -> float:
    """Fraction of queries with at least one relevant result in the top k (recall@k as used
    for near-duplicate search, where each query has one right answer)."""
    return float(np.asarray(relevant)[:, :k].any(axis=1).mean()) if len(relevant) else 0.0


def relevant_recall_at_k(relevant: np.ndarray, k: int, n_relevant: np.ndarray) -> float:
    """Mean over queries of (relevant in the top k) / (all relevant items for that query).

    Not :func:`sonicsearch.index.metrics.recall_at_k`, which is the recall of an
    approximate index against exact search."""
    rel = np.asarray(relevant)[:, :k].sum(axis=1)
    n = np.maximum(np.asarray(n_relevant), 1)
    return float((rel / n).mean()) if len(rel) else 0.0


def map_at_k(relevant: np.ndarray, k: int, n_relevant: np.ndarray) -> float:
    """Mean average precision at k; each query's AP is normalised by min(k, n_relevant)."""
    rel = np.asarray(relevant)[:, :k].astype(float)
    if not len(rel):
        return 0.0
    prec = np.cumsum(rel, axis=1) / np.arange(1, rel.shape[1] + 1)
    denom = np.maximum(np.minimum(k, np.asarray(n_relevant)), 1)
    return float(((prec * rel).sum(axis=1) / denom).mean())


def wilson_interval(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """Wilson score interval of a proportion ``k / n`` (95 % for the default ``z``), its
    ends rounded to 4 decimals; None when ``n`` is 0."""
    if n == 0:
        return None
    p, zz = k / n, z * z
    centre = (p + zz / (2 * n)) / (1 + zz / n)
    half = z * math.sqrt(p * (1 - p) / n + zz / (4 * n * n)) / (1 + zz / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]
