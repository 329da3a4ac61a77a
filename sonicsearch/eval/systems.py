"""Systems that an identification benchmark compares: each turns a track into window
vectors for an in-memory index (:mod:`sonicsearch.eval.window_index`) and a query clip
into window vectors to search it with.

A system has ``name``, ``key`` (what its cached vectors are filed under: a change of
settings is a new key), ``about`` (its settings, for the results file), ``hop`` (the index
hop, seconds, for the ``vote`` roll-up), ``labels`` (its head's, or none) and three steps:
``index_track(path)`` gives raw window vectors, spans and (a model) the head's mean
probabilities; ``fit(raw)`` turns all raw index vectors into searchable ones (and may learn
from them); ``query(wave, sr)`` gives a clip's searchable vectors and spans.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from sonicsearch.audio import load_audio
from sonicsearch.embed.embedder import QUIET_DBFS, Embedder
from sonicsearch.eval.baseline import mfcc_window_stats, unit_rows
from sonicsearch.index.codec import Projection

MFCC_SAMPLE_RATE = 22050


class MfccSystem:
    """MFCC (``n_mfcc``) + delta mean/std per window (the baseline's statistics at window
    level), standardised on the index's windows and L2-normalised; tracks are decoded at
    ``sample_rate``, and queries must come at it."""

    def __init__(self, window: float, hop: float, n_mfcc: int = 20,
                 sample_rate: int = MFCC_SAMPLE_RATE):
        self.name, self.window, self.hop, self.n_mfcc = "mfcc", window, hop, n_mfcc
        self.sample_rate = sample_rate
        self.key = f"mfcc{n_mfcc}-w{window:g}-h{hop:g}-{sample_rate}-v1"
        self.about = (f"MFCC ({n_mfcc}) + delta mean/std per {window:g}-s window (hop "
                      f"{hop:g} s), standardised on the index, L2-normalised")
        self.mean = self.std = None
        self.labels: list[str] = []

    def raw(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(raw stats (n, 4 * n_mfcc), spans (n, 2))`` of ``wave``, one per window."""
        return mfcc_window_stats(wave, self.sample_rate, self.window, self.hop, self.n_mfcc)

    def index_track(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        return self.raw(load_audio(path, self.sample_rate)[0])

    def fit(self, raw: np.ndarray) -> np.ndarray:
        """Standardise on the index's raw windows; return them as searchable vectors."""
        self.mean, self.std = raw.mean(axis=0), np.maximum(raw.std(axis=0), 1e-6)
        return self.finish(raw)

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """Raw windows as searchable vectors, standardised as :meth:`fit` learnt."""
        return unit_rows((raw - self.mean) / self.std).astype(np.float32)

    def query(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        raw, spans = self.raw(wave)
        return self.finish(raw), spans


INT8 = ":int8"  # a model spec's suffix: index on the int8 path
_QUERIES: dict[tuple[str, float], dict] = {}  # query vectors per model and query hop


class ModelSystem:
    """A checkpoint through :class:`sonicsearch.embed.Embedder`.

    Args:
        spec: ``[NAME=]PATH[:int8]`` of the model file (the name defaults to the file's
            stem); ``:int8`` embeds the index on the int8 path (``build-index --fast``)
            while queries stay float32, as the product's queries of such an index do.
        device: auto | cpu | cuda.
        index_hop: index window hop, seconds (None: the model's).
        query_hop: query window hop, seconds (None: the index's).
        quiet_dbfs: windows quieter than this are left out, as the product does (None:
            keep them all).
        window: window length, seconds, in index and queries (None: the model's).
    """

    def __init__(self, spec: str, device: str, index_hop: float | None = None,
                 query_hop: float | None = None, quiet_dbfs: float | None = QUIET_DBFS,
                 window: float | None = None):
        name, _, path = spec.rpartition("=")
        path, int8 = (path[:-len(INT8)], True) if path.endswith(INT8) else (path, False)
        self.embedder = Embedder.from_checkpoint(path, device=device, hop_seconds=index_hop,
                                                 quiet_dbfs=quiet_dbfs)
        native = self.embedder.feature_config.window_seconds
        if window is not None and window != native:
            self.embedder = self.embedder.with_windows(window_seconds=window)
        self.query_embedder = self.embedder.with_windows(hop_seconds=query_hop)
        if int8:
            self.embedder = self.embedder.int8()
        self.name = name or Path(path).stem
        fc = self.embedder.feature_config
        self.hop, self.labels = fc.hop_seconds, self.embedder.labels
        quiet = "all" if quiet_dbfs is None else f"q{quiet_dbfs:g}"
        self.key = f"model-{self.embedder.model_sha256}-hop{fc.hop_seconds:g}-{quiet}"
        if fc.window_seconds != native:  # the model's own window reuses the plain key
            self.key += f"-win{fc.window_seconds:g}"
        # float queries are the same for the int8 system of a model: one cache for both
        self._queries = _QUERIES.setdefault(
            (self.key, self.query_embedder.feature_config.hop_seconds), {})
        if int8:
            self.key += "-int8"
        self.about = {"path": path, "arch": self.embedder.arch,
                      "sha256": self.embedder.model_sha256, "sample_rate": fc.sample_rate,
                      "window_seconds": fc.window_seconds, "hop_seconds": fc.hop_seconds,
                      "query_hop_seconds": self.query_embedder.feature_config.hop_seconds,
                      "quiet_dbfs": quiet_dbfs, "index_embedding": self.embedder.precision}

    def index_track(self, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.embedder.embed_file(path)
        probs = out.probs.mean(axis=0) if out.probs is not None else np.zeros(0, np.float32)
        return out.vectors, out.spans, probs

    def fit(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def query(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """The clip's vectors and spans, remembered per clip (a :class:`CompactSystem`
        of this system asks for the same clips again)."""
        key = (hashlib.sha1(np.ascontiguousarray(wave).tobytes()).hexdigest(), sr)
        if key not in self._queries:
            out = self.query_embedder.embed_waveform(wave, sr)
            self._queries[key] = (out.vectors, out.spans)
        return self._queries[key]


class CompactSystem:
    """Another system's vectors in the index's compact format (``pca-int8``,
    :mod:`sonicsearch.index.codec`): the projection is fitted on the index's vectors, the
    index holds their decoded 8-bit codes, queries are projected (not quantised).

    Args:
        inner: the system whose vectors are compacted (its cache is shared).
        dim: dimensions kept.
    """

    def __init__(self, inner, dim: int):
        self.inner, self.dim = inner, int(dim)
        self.name = f"{inner.name}+pca{self.dim}-int8"
        self.key, self.hop, self.labels = inner.key, inner.hop, inner.labels
        self.about = {"of": inner.name, "vectors": "pca-int8", "dim": self.dim}
        self.projection: Projection | None = None

    def index_track(self, path: str):
        return self.inner.index_track(path)

    def fit(self, raw: np.ndarray) -> np.ndarray:
        vectors = self.inner.fit(raw)
        self.projection = Projection.fit(vectors, self.dim)
        return self.projection.decode(self.projection.encode(vectors))

    def query(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        vectors, spans = self.inner.query(wave, sr)
        return self.projection.project(vectors), spans
