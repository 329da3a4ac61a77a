"""Every occurrence of a clip: each span of each indexed file where it occurs (a jingle
aired twelve times in a day of broadcast, a sample reused in several tracks), not just each
file's best span.

The search is ``vote``'s (:class:`sonicsearch.index.rollups.OffsetVotes`), kept for every
offset instead of the best one. Each query window's background is its
``BACKGROUND_RANK``-th most similar indexed window; only windows above it vote, so the files
among the query windows' ``BACKGROUND_RANK`` nearest windows are every file that can score
(a file outside them gets no vote at all), and each is scored exactly from all its stored
windows. In a file, each query window at ``q`` s and each file window at ``t`` s vote for
the offset ``t - q`` (in hops; buckets b and b+1 merged, as ``vote`` does) with their
similarity above the background; an offset's score is its votes over what a perfect match
would get (1.0), the same scale as ``vote``'s file scores, so ``min_score="auto"`` (the
calibrated no-match threshold of ``vote``) applies as it is.

An occurrence is an offset that scores at least the threshold with at least
``MIN_WINDOWS`` agreeing query windows (one for a one-window clip); offsets are taken best
first and one within ``NMS_SHARE`` of the clip's length of a kept one is suppressed (the
same airing seen one hop off), so two airings are told apart once they overlap by less
than half the clip. The span reported is that of the file windows that voted, and the
query span that of the query windows that did.

Limit: the background is the 64th most similar window. A clip that occurs so often that
its own copies fill those 64 places (with a 3 s window and a 1.5 s hop, about 30 airings
in the whole index) raises its own background and loses votes; search part of the
collection (``path_prefix``) then.
"""

from __future__ import annotations

import numpy as np

from sonicsearch.index.backends.base import FieldFilter, IndexBackend
from sonicsearch.index.rollups import SCORE_DECIMALS, OffsetVotes
from sonicsearch.index.search import (
    BACKGROUND_RANK,
    Hit,
    Neighbours,
    background,
    candidate_ids,
    eligible,
    file_vectors,
    selection_of,
)
from sonicsearch.index.store import Store

# An occurrence scores at least this when no min_score is given: half of a perfect match
# above the background. Measured with the base model on a 5 s jingle aired 7 times at -12
# to +3 dB under noise in programmes of game music (benchmarks/collection.py and a check on
# widelands' soundtrack): airings 0.785-0.94, any other offset at most 0.283 (a passage of
# similar music). The tests' fake model is weaker on gain (airings 0.39-0.66 against at
# most 0.15 elsewhere), so its tests pass 0.3.
MIN_SCORE = 0.5
MIN_WINDOWS = 2  # query windows that must agree on an offset (all of them when fewer)
NMS_SHARE = 0.5  # offsets closer than this share of the clip's length are one occurrence


def file_occurrences(votes: OffsetVotes, threshold: float, clip_seconds: float,
                     query_spans: np.ndarray, file_id: int) -> list[Hit]:
    """The occurrences in one file, best first: offset peaks scoring ``threshold`` or
    more, non-maximum-suppressed (see the module's docstring)."""
    scores = np.round(votes.totals / votes.most, SCORE_DECIMALS)
    above = np.flatnonzero(scores >= threshold)
    order = above[np.lexsort((above, -scores[above]))]
    need = min(MIN_WINDOWS, len(query_spans))
    gap = max(NMS_SHARE * clip_seconds, votes.hop) / votes.hop  # in buckets
    kept: list[int] = []
    out: list[Hit] = []
    for b in order.tolist():
        if any(abs(b - c) < gap for c in kept):
            continue
        files, asked = votes.voters(b)
        if int(asked.sum()) < need:
            continue
        kept.append(b)
        spans = votes.file_spans[files]
        q = query_spans[asked]
        out.append(Hit(file_id, votes.score(b), float(spans[:, 0].min()),
                       float(spans[:, 1].max()), float(q[:, 0].min()), float(q[:, 1].max())))
    return out


def occurrence_search(index: IndexBackend, store: Store, vectors: np.ndarray,
                      spans: np.ndarray, hop: float, threshold: float,
                      exact: np.ndarray | None = None, exclude: int | None = None,
                      allowed: np.ndarray | None = None,
                      fields: FieldFilter | None = None) -> list[Hit]:
    """Every occurrence of a query (its window ``vectors`` and their ``spans``) in the
    index, best first (ties: file id, then start), each a :class:`Hit` with the span in the
    file and the query's span.

    Args:
        index, store: the generation's backend and metadata.
        hop: the index's hop between windows, seconds.
        threshold: the lowest score an occurrence may have (see the module's docstring).
        exact: the stored raw vectors (None: read from ``store``).
        exclude: a file id to leave out. allowed: a mask over file ids (None: all).
        fields: ``allowed`` as conditions on stored fields, for a backend that filters.
    """
    if int(index.ntotal) == 0 or len(vectors) == 0:
        return []
    stored = exact if exact is not None else store.vectors()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    spans = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    clip_seconds = float(spans[:, 1].max() - spans[:, 0].min())
    depth = min(int(index.ntotal), BACKGROUND_RANK, index.max_k or BACKGROUND_RANK)
    near = Neighbours(index, x)
    floor = background(index, store, stored, x, exclude, index.max_k, near)
    keep = eligible(store, allowed, exclude)
    if keep is not None:
        near = Neighbours(index, x, selection_of(store, keep, fields, exclude))
    hits: list[Hit] = []
    for f in candidate_ids(near, store, depth, False, exclude, keep).tolist():
        votes = OffsetVotes(x, file_vectors(store, stored, f), spans[:, 0],
                            store.file_spans(f), hop, floor)
        hits += file_occurrences(votes, threshold, clip_seconds, spans, f)
    return sorted(hits, key=lambda h: (-round(h.score, SCORE_DECIMALS), h.file, h.start))
