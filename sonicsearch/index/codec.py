"""Compact window vectors: a projection fitted on the collection, then 8-bit codes.

    vectors.npy          float32 (n, D): the model's L2-normalised vectors (``float32``)
    vectors-q8.npy       int8 (n, d): the compact form (``pca-int8``), row i = id i
    projection.npz       ``basis`` float32 (d, D) with orthonormal rows, ``scale``
                         float32 (d,): what code 127 stands for in each dimension

A compact row is ``code = round(127 * y / scale)`` of ``y = P x / |P x|``, the model's
vector ``x`` projected on the top ``d`` eigenvectors of the collection's (uncentred) second
moment and normalised again, so that inner products of projected vectors are cosines.
A query vector is projected the same way (not quantised) and scored against the decoded
rows (normalised again): what the backend indexes, what candidates are re-scored from
and what duplicates, occurrences and calibration read. The projection is fitted once,
when an index first goes compact, and every later generation of that index keeps it (kept
rows are copied as codes; new rows are encoded), so all rows share one space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonicsearch.errors import ConfigError, IndexStoreError
from sonicsearch.index.layout import VECTORS, damaged, fsync_file
from sonicsearch.registry import Registry

AUTO, FLOAT32, COMPACT = "auto", "float32", "pca-int8"
VECTOR_FORMATS: Registry[str] = Registry("vector format")
VECTOR_FORMATS.register(AUTO, f"{COMPACT} from COMPACT_MIN_VECTORS windows, else {FLOAT32}")
VECTOR_FORMATS.register(FLOAT32, "the model's vectors as they are: 4 bytes per dimension")
VECTOR_FORMATS.register(COMPACT, "projected on the collection's principal axes, 8-bit codes")
CODES = "vectors-q8.npy"
PROJECTION = "projection.npz"
VECTOR_FILES = (VECTORS, CODES, PROJECTION)  # whichever of them a generation holds
COMPACT_MIN_VECTORS = 10_000  # fewer rows fit a poor projection: float32 until then
FIT_SAMPLE = 200_000  # rows the projection is fitted on (seeded sample above that)
ENCODE_CHUNK = 1 << 16
SIMILARITY_CHUNK = 2048  # rows decoded at a time when scoring candidates (cache-sized)
_LEVELS = 127.0


@dataclass(frozen=True)
class Projection:
    """A fitted projection and its per-dimension code scale."""

    basis: np.ndarray  # (d, D) float32, orthonormal rows
    scale: np.ndarray  # (d,) float32

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])

    @property
    def source_dim(self) -> int:
        return int(self.basis.shape[1])

    @classmethod
    def fit(cls, vectors: np.ndarray, dim: int, seed: int = 0) -> Projection:
        """Fit on ``vectors`` (n, D) (a seeded sample of at most FIT_SAMPLE rows)."""
        n, source = vectors.shape
        rows = (np.arange(n) if n <= FIT_SAMPLE
                else np.sort(np.random.default_rng(seed).choice(n, FIT_SAMPLE, replace=False)))
        x = np.asarray(vectors[rows], np.float64)
        _, eigvec = np.linalg.eigh(x.T @ x)  # ascending eigenvalues
        basis = np.ascontiguousarray(eigvec[:, ::-1][:, : min(dim, source)].T, np.float32)
        y = _normalise(np.asarray(vectors[rows], np.float32) @ basis.T)
        scale = np.maximum(np.abs(y).max(axis=0), 1e-6).astype(np.float32)
        return cls(basis, scale)

    def project(self, x: np.ndarray) -> np.ndarray:
        """(n, D) model vectors -> (n, d) float32, L2-normalised."""
        return _normalise(np.asarray(x, np.float32) @ self.basis.T)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(n, D) model vectors -> (n, d) int8 codes."""
        q = np.rint(self.project(x) * (_LEVELS / self.scale))
        return np.clip(q, -_LEVELS, _LEVELS).astype(np.int8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(n, d) int8 codes -> (n, d) float32, L2-normalised again (so that a row's inner
        product with itself is 1 and scores stay cosines)."""
        return _normalise(np.asarray(codes, np.float32) * (self.scale / _LEVELS))

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, basis=self.basis, scale=self.scale)

    @classmethod
    def load(cls, path: Path) -> Projection:
        with np.load(path, allow_pickle=False) as z:
            return cls(np.asarray(z["basis"], np.float32), np.asarray(z["scale"], np.float32))


class CompactVectors:
    """Read-only rows of a compact generation: ``codes`` (a memory map) decoded on access,
    so ``v[rows]`` / ``v[a:b]`` give float32 like the float32 format's memory map."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, codes: np.ndarray, projection: Projection):
        self.codes, self.projection = codes, projection

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.codes.shape[0]), int(self.codes.shape[1]))

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __getitem__(self, key) -> np.ndarray:
        return self.projection.decode(self.codes[key])

    def similarities(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``x @ self[rows].T`` as float64 (cosines with the decoded rows), without
        normalising the decoded rows: each column is divided by its row's norm instead
        (the same to float32 rounding), SIMILARITY_CHUNK rows at a time (they stay in
        the CPU's cache: twice as fast as one pass over all rows, measured)."""
        step = self.projection.scale / _LEVELS
        codes = self.codes[np.asarray(rows)]
        out = np.empty((len(x), len(codes)))
        for a in range(0, len(codes), SIMILARITY_CHUNK):
            y = codes[a : a + SIMILARITY_CHUNK].astype(np.float32)
            y *= step
            norms = np.maximum(np.sqrt(np.einsum("ij,ij->i", y, y)), 1e-12)
            out[:, a : a + SIMILARITY_CHUNK] = (x @ y.T) / norms
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.projection.decode(self.codes)
        return out if dtype is None else out.astype(dtype)


def similarities(stored: np.ndarray | CompactVectors, x: np.ndarray, rows: np.ndarray
                 ) -> np.ndarray:
    """(len(x), len(rows)) float64 cosines of query vectors ``x`` (in the stored space)
    with stored ``rows``, of either vector format."""
    if isinstance(stored, CompactVectors):
        return stored.similarities(x, rows)
    rows = np.asarray(rows)
    out = np.empty((len(x), len(rows)))
    for a in range(0, len(rows), SIMILARITY_CHUNK):
        out[:, a : a + SIMILARITY_CHUNK] = x @ np.asarray(stored[rows[a : a + SIMILARITY_CHUNK]],
                                                          np.float32).T
    return out


def same_space(a: Path, b: Path) -> bool:
    """Whether generations ``a`` and ``b`` store rows in one space: both float32, or both
    compact with byte-identical projections (a backend's rows of ``a`` then serve ``b``)."""
    ca, cb = (a / CODES).is_file(), (b / CODES).is_file()
    if ca != cb:
        return False
    if not ca:
        return True
    try:
        return (a / PROJECTION).read_bytes() == (b / PROJECTION).read_bytes()
    except OSError:
        return False


def stored_dim(meta: dict) -> int:
    """The dimension of a generation's stored rows (index.json; before the compact
    format, always the model's)."""
    return int(meta.get("vectors", {}).get("dim", meta["dim"]))


def vector_format(meta: dict) -> str:
    """A generation's vector format (index.json; ``float32`` before the compact format)."""
    return str(meta.get("vectors", {}).get("format", FLOAT32))


def open_vectors(gen: Path) -> np.ndarray | CompactVectors:
    """A generation's stored rows, read-only: the float32 memory map, or the compact codes
    decoded on access.

    Raises:
        IndexStoreError: a file is unreadable (the message names it).
    """
    if not (gen / CODES).is_file():
        return _load(gen, VECTORS)
    try:
        projection = Projection.load(gen / PROJECTION)
    except (OSError, ValueError, KeyError) as exc:
        raise damaged(gen, PROJECTION, f"is unreadable ({exc.__class__.__name__})") from None
    codes = _load(gen, CODES)
    if codes.shape[1] != projection.dim:
        raise damaged(gen, CODES, f"has {codes.shape[1]} dimensions; {PROJECTION} "
                      f"{projection.dim}")
    return CompactVectors(codes, projection)


def choose_vectors(n_vectors: int, dim: int, previous: dict | None, asked: str,
                   compact_dim: int) -> tuple[str, int, str, str]:
    """The vector format of a new generation: ``(format, stored dim, reason, asked)``;
    ``asked`` is what index.json records for later builds to keep (``asked`` itself, but
    ``float32`` for an index from before the compact format that ``auto`` leaves float32).

    A compact index stays compact (the model's float32 vectors are gone); ``auto`` and
    ``pca-int8`` go compact from COMPACT_MIN_VECTORS windows (fewer fit a poor
    projection: float32 until a build reaches it); ``auto`` keeps a model of at most
    ``compact_dim`` dimensions float32, and an index built before the compact format
    (whose float32 vectors a conversion would drop) too.

    Raises:
        ConfigError: an unknown format or a ``compact_dim`` outside 1..dim.
        IndexStoreError: float32 asked of a compact index (it needs a rebuild).
    """
    VECTOR_FORMATS.check(asked)
    if previous is not None and vector_format(previous) == COMPACT:
        if asked == FLOAT32:
            raise IndexStoreError("this index holds pca-int8 vectors, not the model's float32"
                                  " ones: pass --rebuild to embed everything again")
        return COMPACT, stored_dim(previous), "compact: the index's projection, kept", asked
    if asked == FLOAT32:
        return FLOAT32, int(dim), "float32 as asked", asked
    if asked == AUTO and previous is not None and "vectors" not in previous:
        return FLOAT32, int(dim), ("auto: an index built before the compact format stays "
                                   "float32 (ask for pca-int8 to convert it)"), FLOAT32
    if asked == AUTO and int(compact_dim) >= int(dim):
        why = f"auto: the model's {dim} dimensions <= compact_dim: float32"
        return FLOAT32, int(dim), why, asked
    if not 1 <= int(compact_dim) <= int(dim):
        raise ConfigError(f"index.compact_dim must be 1..{dim} (the model's dimension); "
                          f"got {compact_dim}")
    if n_vectors < COMPACT_MIN_VECTORS:
        return FLOAT32, int(dim), (f"{asked}: {n_vectors} vectors < {COMPACT_MIN_VECTORS} "
                                   "to fit a projection: float32"), asked
    return COMPACT, int(compact_dim), (f"{asked}: projected to {compact_dim} dimensions "
                                       "fitted on the collection, 8-bit codes"), asked


def compact_generation(gen: Path, dim: int) -> Projection:
    """Replace a generation's float32 ``vectors.npy`` by a projection fitted on it and the
    rows' codes (each file fsynced)."""
    vectors = np.load(gen / VECTORS, mmap_mode="r")
    projection = Projection.fit(vectors, dim)
    projection.save(gen / PROJECTION)
    fsync_file(gen / PROJECTION)
    codes = np.lib.format.open_memmap(gen / CODES, "w+", np.int8, (len(vectors), dim))
    for a in range(0, len(vectors), ENCODE_CHUNK):
        codes[a : a + ENCODE_CHUNK] = projection.encode(vectors[a : a + ENCODE_CHUNK])
    codes.flush()
    del codes, vectors
    fsync_file(gen / CODES)
    (gen / VECTORS).unlink()
    return projection


def _load(gen: Path, name: str) -> np.ndarray:
    try:
        array = np.load(gen / name, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise damaged(gen, name, f"is unreadable ({exc.__class__.__name__})") from None
    if array.ndim != 2:
        raise damaged(gen, name, f"has shape {array.shape}")
    return array


def _normalise(x: np.ndarray) -> np.ndarray:
    """Each vector (the last axis) to unit length: rows of a 2-D array, and the vectors of
    a (queries, neighbours, dim) gather like the vote background's."""
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
