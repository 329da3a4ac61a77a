"""A calibrated confidence for each result of a recording query: the probability that the
clip comes from that file, from what the index knows about the match.

The features of a result (:func:`result_features`, names in :data:`FEATURES`):

- ``score``: its roll-up score (``vote``'s is already above each query window's own
  background, the crowd of indexed windows most like it);
- ``margin``: the score minus the best score of another result that is not the same audio
  (a byte-identical copy, or a file holding the result's matched span at one time offset:
  a re-encode, a ``-long`` / ``-short`` cut; see :class:`SameAudio`), 0 when there is
  none. A true match stands out from the next recording; a clip that is not in the
  collection scores about as well against several files;
- ``log_windows``: the log of the number of query windows (the query's length: a long clip
  of an outsider collects more chance votes than a short one).

A logistic model on them is fitted on the index itself
(:func:`sonicsearch.index.confidence_fit.fit_confidence`), per roll-up on its first query,
and kept in ``calibration.json`` beside the no-match threshold
(:mod:`sonicsearch.index.calibration`). Positives: excerpts of indexed files, decoded from
their paths, degraded with the project's own degradations in turn
(:data:`~sonicsearch.index.confidence_fit.FIT_DEGRADATIONS`), embedded with the index's
model and searched; the source's result gives the features. Negatives: the same excerpts
searched with the source left out; the best result that is neither a copy nor a variant
holding the excerpt gives them. Positives and negatives are about equally many (one each
per excerpt), so the confidence is a probability under even odds that a clip is in the
collection. A file that cannot be read gives its stored window vectors instead (clean, so
kinder than a real capture).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from sonicsearch.index.request import QueryRequest
from sonicsearch.index.types import QueryResult

if TYPE_CHECKING:
    from sonicsearch.index.reader import IndexReader

FEATURES = ("score", "margin", "log_windows")
DEPTH = 8  # results a query looks through for the margins, whatever k is
# ``--min-score auto`` keeps a result at this confidence or more: chosen on the training
# pool (benchmarks/no_match.py --data train_music.csv, 16 + 16 tracks: over the single
# degradations 0.5 accepted 3.1 % of clips of tracks not indexed, 0.7 0.26 % with 1.0 %
# false rejects), the lowest level of the sweep within the 1 % false-accept target
ACCEPT_CONFIDENCE = 0.7
# Two files are the same audio when at least half of one's matched windows meet the other's
# at this cosine, all at one time offset (a cut at an offset that is not a multiple of the
# hop scores 0.95-0.98 per window with the base model: calibration.COPY_COSINE)
SAME_AUDIO_COSINE = 0.9


def confidence(model: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """The probability of each row of ``features`` (n, len(FEATURES)) under ``model``."""
    z = (np.asarray(features, np.float64) - model["mean"]) / np.asarray(model["scale"])
    logit = z @ np.asarray(model["coef"], np.float64) + float(model["intercept"])
    return 1.0 / (1.0 + np.exp(-np.clip(logit, -50.0, 50.0)))


def result_features(index: IndexReader, results: list[dict], n_windows: int,
                    rows: list[int] | None = None) -> np.ndarray:
    """The :data:`FEATURES` of results of one query (best first): of ``rows`` (None: all),
    (len(rows), 3)."""
    scores = np.array([float(r["score"]) for r in results], np.float64)
    rows = list(range(len(results))) if rows is None else rows
    same = SameAudio(index, results)
    margins = np.zeros(len(rows))
    for n, i in enumerate(rows):
        nxt = next((scores[j] for j in range(len(results)) if j != i and not same(i, j)), 0.0)
        margins[n] = scores[i] - nxt
    windows = np.full(len(rows), math.log(max(1, n_windows)))
    return np.stack([scores[rows], margins, windows], axis=1).reshape(-1, len(FEATURES))


class SameAudio:
    """Whether two results of one query are the same audio: byte-identical files, or the
    first's matched span (its stored windows) held by the second (asked once a pair)."""

    def __init__(self, index: IndexReader, results: list[dict]):
        self.index, self.results = index, results
        self.ids = [index.store.by_path.get(r["path"]) for r in results]
        self.seen: dict[tuple[int, int], bool] = {}

    def __call__(self, i: int, j: int) -> bool:
        key = (min(i, j), max(i, j))
        if key not in self.seen:
            self.seen[key] = self._same(*key)
        return self.seen[key]

    def _same(self, i: int, j: int) -> bool:
        from sonicsearch.index.calibration import contains_excerpt

        a, b = self.ids[i], self.ids[j]
        if a is None or b is None:
            return False
        records = self.index.store.records
        if records[a].sha256 == records[b].sha256:
            return True
        r = self.results[i]
        spans = self.index.store.file_spans(a)
        inside = np.flatnonzero((spans[:, 0] >= r["start"] - 1e-3)
                                & (spans[:, 1] <= r["end"] + 1e-3))
        if not len(inside):
            inside = np.array([int(np.argmin(np.abs(spans[:, 0] - r["start"])))])
        rows = records[a].first_row + inside
        excerpt = np.asarray(self.index._exact[rows], np.float32)
        hop = self.index.meta["features"]["hop_seconds"]
        return contains_excerpt(self.index, excerpt, spans[inside], b, hop,
                                cosine=SAME_AUDIO_COSINE)


def applies(request: QueryRequest) -> bool:
    """Whether a request's results get a confidence: files of a recording query (not
    segments, occurrences or style)."""
    return request.mode == "recording" and not request.segments and not request.occurrences


def add_confidence(index: IndexReader, request: QueryRequest, result: QueryResult,
                   model: dict[str, Any] | None) -> None:
    """Give each result of ``request`` its ``confidence`` in place (None without a model).
    Margins are measured against the request's first DEPTH results without its filters
    and threshold, so neither changes a result's confidence."""
    if not result:
        return
    if model is None:
        for r in result:
            r["confidence"] = None
        return
    plain = (request.filters is None or not request.filters.active) and request.min_score is None
    context = list(result) if plain and (request.k or 0) >= DEPTH else list(index.search(
        request.replace(k=DEPTH, filters=None, min_score=None, thresholded=False)))
    paths = {r["path"] for r in context}
    merged = sorted(context + [r for r in result if r["path"] not in paths],
                    key=lambda r: -float(r["score"]))
    p = confidence(model, result_features(index, merged, len(request.vectors)))
    by_path = {r["path"]: round(float(v), 4) for r, v in zip(merged, p.tolist(), strict=True)}
    for r in result:
        r["confidence"] = by_path[r["path"]]


def search_with_confidence(index: IndexReader, request: QueryRequest,
                           model: dict[str, Any] | None) -> QueryResult:
    """``index.search(request)`` with each result's confidence. An unfiltered,
    unthresholded request is searched DEPTH deep and cut to its ``k`` (the results for
    ``k`` are the first ``k`` for any larger ``k``), so its margins need no second search."""
    plain = (request.filters is None or not request.filters.active) and request.min_score is None
    k = request.k
    if model is None or not plain or k is None or k >= DEPTH:
        result = index.search(request)
        add_confidence(index, request, result, model)
        return result
    deeper = request.replace(k=DEPTH)
    result = index.search(deeper)
    add_confidence(index, deeper, result, model)
    return QueryResult(result[:k], result.query, result.duration, result.predicted_label,
                       result.extra, mode=result.mode)


def accept_confident(result: QueryResult) -> QueryResult:
    """``min_score="auto"`` with a confidence model: the results (of an unthresholded
    request, with their confidence) whose confidence is ACCEPT_CONFIDENCE or more, ranked
    again from 1."""
    kept = [r for r in result if r["confidence"] >= ACCEPT_CONFIDENCE]
    for rank, r in enumerate(kept, 1):
        r["rank"] = rank
    extra = {**result.extra, "min_score": None, "min_confidence": ACCEPT_CONFIDENCE,
             "no_match": not kept}
    if result and not kept:
        best = max(result, key=lambda r: r["confidence"])
        extra["reason"] = (f"no result has a confidence of {ACCEPT_CONFIDENCE:g} or more "
                           f"(the most likely file: {best['confidence']:.3f}, score "
                           f"{best['score']:.3f})")
    return QueryResult(kept, result.query, result.duration, result.predicted_label, extra,
                       mode=result.mode)
