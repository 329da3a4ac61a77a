"""The roll-ups: how one file's window similarities make its score (``rollup=``), one
registered function each; :mod:`sonicsearch.index.search` documents what each computes.

A roll-up is ``f(x, v, query_starts, file_spans, hop, floor) -> (score, start, end)``: the
query's window vectors ``x`` (nq, dim), the file's ``v`` (nw, dim), the query windows'
start seconds, the file windows' spans, the index's hop, and (for roll-ups registered
with ``background=True``) each query window's background similarity, else None. Adding
one is a registered function: the CLI's ``--rollup`` choices, the server's schema, the
no-match calibration and the error messages read the names from :data:`ROLLUP_REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from sonicsearch.registry import Registry

QUERY_BLOCK = 512  # query windows per FAISS search and per similarity block
SCORE_DECIMALS = 6  # scores are reported, and ranked, to this many decimals
MEAN_TOP_M = 3

RollupFn = Callable[..., tuple[float, float, float]]


@dataclass(frozen=True)
class RollupSpec:
    score: RollupFn
    background: bool = False  # needs each query window's background (``floor``)


ROLLUP_REGISTRY: Registry[RollupSpec] = Registry("rollup")


def register_rollup(name: str, background: bool = False) -> Callable[[RollupFn], RollupFn]:
    """Decorator: register a roll-up function under ``name``."""

    def add(fn: RollupFn) -> RollupFn:
        ROLLUP_REGISTRY.register(name, RollupSpec(fn, background))
        return fn

    return add


def similarity_blocks(x: np.ndarray, v: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first query window, S block) of the cosine similarities x @ v.T."""
    for a in range(0, len(x), QUERY_BLOCK):
        yield a, (x[a : a + QUERY_BLOCK] @ v.T).astype(np.float64)


class OffsetVotes:
    """The votes of a query's windows over one file's offset buckets: what ``vote`` ranks
    by its best bucket and occurrences (:mod:`sonicsearch.index.occurrences`) by every
    peak. A query window at ``q`` s and the file's window at ``t`` s vote for the bucket
    ``round((t - q) / hop)`` with their similarity above the query window's background
    (``floor``), once per bucket pair (b, b+1). ``totals[b]`` is bucket b's sum; the
    offset of bucket b is ``(b + lo) * hop`` seconds (file time minus query time)."""

    def __init__(self, x: np.ndarray, v: np.ndarray, query_starts: np.ndarray,
                 file_spans: np.ndarray, hop: float, floor: np.ndarray):
        self.x, self.v, self.query_starts, self.file_spans = x, v, query_starts, file_spans
        self.hop, self.floor = (hop if hop > 0 else 1.0), floor
        starts = file_spans[:, 0]
        self.lo = int(np.rint((starts.min() - query_starts.max()) / self.hop))
        self.n_buckets = int(np.rint((starts.max() - query_starts.min()) / self.hop)) - self.lo + 1
        one_block = len(x) <= QUERY_BLOCK  # keep it for the later passes; else recompute
        self._kept = list(self._blocks()) if one_block else None
        self.totals = np.zeros(self.n_buckets)
        for _, _, pair in self.blocks():
            self.totals += pair.sum(axis=0)
        # every query window matched perfectly scores 1.0
        self.most = max(float(np.sum(1.0 - floor)), 1e-12)

    def _blocks(self):
        starts = self.file_spans[:, 0]
        for a, s in similarity_blocks(self.x, self.v):
            s = s - self.floor[a : a + len(s), None]  # similarity above the background
            qs = self.query_starts[a : a + len(s)]
            bucket = np.rint((starts[None, :] - qs[:, None]) / self.hop).astype(np.int64) - self.lo
            votes = np.zeros((len(s), self.n_buckets + 1))
            rows = np.broadcast_to(np.arange(len(s))[:, None], s.shape)
            np.maximum.at(votes, (rows, bucket), np.maximum(s, 0.0))  # one vote per bucket
            yield s, bucket, np.maximum(votes[:, :-1], votes[:, 1:])  # buckets b, b+1 merged

    def blocks(self):
        """(S above the background, bucket of each pair, merged votes) per query block."""
        return iter(self._kept) if self._kept is not None else self._blocks()

    def voters(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(file windows, query windows) that voted for bucket ``b``, as masks; when none
        voted, the file windows near it and no query window."""
        voted = np.zeros(len(self.v), bool)
        near_any = np.zeros(len(self.v), bool)
        asked = np.zeros(len(self.x), bool)
        a = 0
        for s, bucket, pair in self.blocks():
            near = (bucket == b) | (bucket == b + 1)
            yes = near & (s > 0) & (s >= pair[:, b : b + 1])
            voted |= yes.any(axis=0)
            asked[a : a + len(s)] = yes.any(axis=1)
            near_any |= near.any(axis=0)
            a += len(s)
        return (voted if voted.any() else near_any), asked

    def score(self, b: int) -> float:
        """Bucket ``b``'s votes, 1.0 when every query window matched perfectly."""
        return float(self.totals[b] / self.most)


@register_rollup("vote", background=True)
def vote(x: np.ndarray, v: np.ndarray, query_starts: np.ndarray, file_spans: np.ndarray,
         hop: float, floor: np.ndarray) -> tuple[float, float, float]:
    """Time-consistent voting above the background: the file's best offset bucket."""
    votes = OffsetVotes(x, v, query_starts, file_spans, hop, floor)
    b = int(np.argmax(np.round(votes.totals, 9)))  # ties as computed in any block size
    voted, _ = votes.voters(b)
    return (votes.score(b), float(file_spans[voted, 0].min()),
            float(file_spans[voted, 1].max()))


def _best_matches(x: np.ndarray, v: np.ndarray, file_spans: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Each file window's best match over the query, and the windows best first (the
    earliest of windows that tie as reported)."""
    best = np.full(len(v), -np.inf)
    for _, s in similarity_blocks(x, v):
        best = np.maximum(best, s.max(axis=0))
    return best, np.lexsort((file_spans[:, 0], -np.round(best, SCORE_DECIMALS)))


@register_rollup("max")
def best_pair(x: np.ndarray, v: np.ndarray, query_starts: np.ndarray, file_spans: np.ndarray,
              hop: float, floor: None = None) -> tuple[float, float, float]:
    """The file's best window pair; the span is that window."""
    best, order = _best_matches(x, v, file_spans)
    w = int(order[0])
    return float(best[w]), float(file_spans[w, 0]), float(file_spans[w, 1])


@register_rollup("mean-top")
def mean_top(x: np.ndarray, v: np.ndarray, query_starts: np.ndarray, file_spans: np.ndarray,
             hop: float, floor: None = None) -> tuple[float, float, float]:
    """The mean of the file windows' ``MEAN_TOP_M`` best matches; the span is the best."""
    best, order = _best_matches(x, v, file_spans)
    w = int(order[0])
    score = float(np.mean(best[order[: max(1, min(MEAN_TOP_M, len(v)))]]))
    return score, float(file_spans[w, 0]), float(file_spans[w, 1])


ROLLUPS: tuple[str, ...] = ROLLUP_REGISTRY.names()  # the roll-ups registered above
ROLLUP_DEFAULT = ROLLUP_REGISTRY.check("vote")  # measured: benchmarks/rollups.py, README
