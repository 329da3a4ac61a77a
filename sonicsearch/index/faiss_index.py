"""FAISS index factory: choose a type for a collection, train and fill it, move it to a GPU.

Every index uses inner product on L2-normalised vectors, i.e. cosine similarity. An index
is always built and saved as a CPU index; a GPU (when FAISS sees one and the device allows)
speeds up IVF training, adding and searching of flat and IVF indexes. HNSW stays on the CPU
(FAISS has no GPU HNSW).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import cache
from typing import Any

import faiss
import numpy as np

from sonicsearch.config import IndexConfig
from sonicsearch.errors import ConfigError
from sonicsearch.registry import Registry

Params = Callable[[int, int, IndexConfig], dict[str, Any]]
# index type -> its parameters for (n vectors, dim, config); None for "auto", which
# choose_index_type resolves to one of the others
INDEX_TYPE_REGISTRY: Registry[Params | None] = Registry("index type")
INDEX_TYPE_REGISTRY.register("auto", None)
IVF_MIN_VECTORS = 1_000  # fewer cannot train a useful coarse quantizer: exact flat instead
IVFPQ_MIN_VECTORS = 10_000  # PQ codebooks of 256 centroids want >= 39 * 256 training points
TRAIN_POINTS_PER_LIST = 128  # training sample: this many points per IVF list ...
TRAIN_MIN_POINTS = 50_000  # ... and at least this many (for the PQ codebooks)
TRAIN_SEED = 1234
GPU_MAX_K = 2048  # FAISS GPU indexes return at most this many neighbours per query
ADD_CHUNK = 1 << 20
_GIB = float(1 << 30)


def choose_index_type(
    n_vectors: int, dim: int, config: IndexConfig, compact: bool = False
) -> tuple[str, dict[str, Any], str]:
    """Pick the FAISS index type and its parameters for a collection.

    ``auto``: exact ``flat`` up to ``config.exact_max_vectors``; above that ``hnsw`` when the
    float vectors and the graph fit ``config.memory_budget_gb``, else ``ivfpq`` (compressed to
    ``config.pq_bytes`` per vector). An explicit type is honoured, except that ``ivf`` and
    ``ivfpq`` fall back to exact ``flat`` when there are too few vectors to train them (the
    reason says so): an index that grows past the threshold gets the asked-for type on the
    next build, and a small one is searched exactly, which is then cheap.

    Compact vectors (``compact``, index/codec.py) stay small: ``auto`` picks ``ivfpq``
    over ``hnsw``, with PQ codes of at most a quarter of the dimension in bytes.

    Args:
        n_vectors: vectors to index.
        dim: their dimension.
        config: index settings.
        compact: the vectors are stored in the compact format.

    Returns:
        ``(index_type, params, reason)``; params hold the FAISS factory string and the build
        and search settings (``nlist``, ``nprobe``, ``M``, ``ef_search``, ...).

    Raises:
        ConfigError: an unknown index type.
    """
    kind = check_index_type(config.index_type)
    n = int(n_vectors)
    if n == 0:
        return "flat", _params("flat", n, dim, config), "empty index: exact flat"
    if kind == "auto":
        if n <= config.exact_max_vectors:
            return "flat", _params("flat", n, dim, config), (
                f"auto: {n} vectors <= exact_max_vectors {config.exact_max_vectors}: "
                "exact search")
        if compact:
            params = _params("ivfpq", n, dim, _compact_pq(config, dim))
            return "ivfpq", params, (f"auto: {n} vectors > exact_max_vectors, compact "
                                     f"vectors: IVF-PQ at {params['pq_m']} bytes per vector")
        need = hnsw_bytes(n, dim, config.hnsw_m) / _GIB
        budget = config.memory_budget_gb
        if need <= budget:
            return "hnsw", _params("hnsw", n, dim, config), (
                f"auto: {n} vectors > exact_max_vectors {config.exact_max_vectors}; vectors "
                f"and graph need {need:.1f} GiB <= memory budget {budget:g} GiB: HNSW")
        params = _params("ivfpq", n, dim, config)
        return "ivfpq", params, (
            f"auto: {n} vectors would need {need:.1f} GiB as HNSW > memory budget "
            f"{budget:g} GiB: IVF-PQ at {params['pq_m']} bytes per vector")
    if kind == "ivf" and n < IVF_MIN_VECTORS:
        return "flat", _params("flat", n, dim, config), (
            f"ivf needs >= {IVF_MIN_VECTORS} vectors to train; {n} given: exact flat instead")
    if kind == "ivfpq" and n < IVFPQ_MIN_VECTORS:
        return "flat", _params("flat", n, dim, config), (
            f"ivfpq needs >= {IVFPQ_MIN_VECTORS} vectors to train; {n} given: "
            "exact flat instead")
    config = _compact_pq(config, dim) if compact else config
    return kind, _params(kind, n, dim, config), f"{kind} as asked"


def _compact_pq(config: IndexConfig, dim: int) -> IndexConfig:
    """PQ codes of at most a quarter of a compact vector's bytes (one byte per dimension)."""
    return dataclasses.replace(config, pq_bytes=max(1, min(config.pq_bytes, dim // 4)))


def check_index_type(kind: str) -> str:
    """Return ``kind`` if it is a registered index type, else raise ConfigError naming them."""
    return INDEX_TYPE_REGISTRY.check(kind)


def hnsw_bytes(n: int, dim: int, m: int) -> float:
    """Approximate RAM of an HNSWFlat index: float vectors plus ~2*M int32 links each."""
    return n * (4.0 * dim + 2 * m * 4 * 1.1)


def ivf_nlist(n: int) -> int:
    """About 4 * sqrt(n) lists, with at least 39 training points per list."""
    return max(1, min(int(round(4 * math.sqrt(n))), n // 39))


def pq_subquantizers(dim: int, pq_bytes: int) -> int:
    """The largest number of 8-bit sub-quantizers <= pq_bytes that divides dim."""
    for m in range(min(pq_bytes, dim), 0, -1):
        if dim % m == 0:
            return m
    return 1


def _params(kind: str, n: int, dim: int, config: IndexConfig) -> dict[str, Any]:
    return INDEX_TYPE_REGISTRY.get(kind)(n, dim, config)


@INDEX_TYPE_REGISTRY.register("flat")
def _flat(n: int, dim: int, config: IndexConfig) -> dict[str, Any]:
    return {"factory": "Flat"}


@INDEX_TYPE_REGISTRY.register("hnsw")
def _hnsw(n: int, dim: int, config: IndexConfig) -> dict[str, Any]:
    m = config.hnsw_m
    return {"factory": f"HNSW{m},Flat", "M": m, "ef_construction": config.hnsw_ef_construction,
            "ef_search": config.hnsw_ef_search}


def _ivf_lists(n: int, config: IndexConfig) -> dict[str, Any]:
    nlist = ivf_nlist(n)
    return {"nlist": nlist, "nprobe": min(config.ivf_nprobe, nlist)}


@INDEX_TYPE_REGISTRY.register("ivf")
def _ivf(n: int, dim: int, config: IndexConfig) -> dict[str, Any]:
    params = _ivf_lists(n, config)
    return {"factory": f"IVF{params['nlist']},Flat", **params}


@INDEX_TYPE_REGISTRY.register("ivfpq")
def _ivfpq(n: int, dim: int, config: IndexConfig) -> dict[str, Any]:
    params = _ivf_lists(n, config)
    m = pq_subquantizers(dim, config.pq_bytes)
    return {"factory": f"IVF{params['nlist']},PQ{m}", **params, "pq_m": m, "pq_nbits": 8}


INDEX_TYPES: tuple[str, ...] = INDEX_TYPE_REGISTRY.names()  # the types registered above


def build_faiss_index(
    vectors: np.ndarray,
    index_type: str,
    params: dict[str, Any],
    device: str = "auto",
    seed: int = TRAIN_SEED,
) -> faiss.Index:
    """Train (on a seeded sample) and fill an index; always returns a CPU index.

    Args:
        vectors: (n, dim) float32, L2-normalised (a memory map is fine); row i becomes id i.
            n may be 0.
        index_type: flat | hnsw | ivf | ivfpq, as chosen by :func:`choose_index_type`.
        params: its params.
        device: auto | cpu | cuda[:N]; a GPU trains and fills flat and IVF indexes.
        seed: sample seed (FAISS k-means has its own fixed seed), so builds are repeatable.

    Raises:
        ConfigError: ``device`` names a GPU that FAISS does not see.
    """
    x = vectors  # may be a memory map: read in chunks, never copied whole
    n, dim = x.shape
    index = faiss.index_factory(dim, params["factory"], faiss.METRIC_INNER_PRODUCT)
    if index_type == "hnsw":
        index.hnsw.efConstruction = int(params["ef_construction"])
    if index_type == "ivfpq":  # polysemous codes go unused and cost ~50x the PQ training
        faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
    gpu = resolve_gpu(device)
    gpu = gpu if index_type in ("ivf", "ivfpq") else None  # flat only copies; no GPU HNSW
    if not index.is_trained:
        ivf = faiss.extract_index_ivf(index)
        if gpu is not None:  # k-means on the GPU, the slow part of training
            ivf.clustering_index = faiss.index_cpu_to_gpu(
                _gpu_resources(gpu), gpu, faiss.IndexFlatIP(dim))
        want = min(n, max(TRAIN_MIN_POINTS, TRAIN_POINTS_PER_LIST * int(params["nlist"])))
        rows = np.sort(np.random.default_rng(seed).choice(n, size=want, replace=False))
        index.train(np.ascontiguousarray(x[rows], dtype=np.float32))
        ivf.clustering_index = None
    target = index
    if gpu is not None and n:
        try:
            target = index_cpu_to_gpu(index, index_type, params, gpu)
        except RuntimeError:  # a PQ layout the GPU code lacks: add on the CPU
            target = index
    for i in range(0, n, ADD_CHUNK):
        target.add(np.ascontiguousarray(x[i : i + ADD_CHUNK], dtype=np.float32))
    if target is not index:
        index = faiss.index_gpu_to_cpu(target)
    set_search_params(index, index_type, params)
    return index


def set_search_params(index: faiss.Index, index_type: str, params: dict[str, Any],
                      nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Apply nprobe (IVF) or efSearch (HNSW) from params, or the given overrides."""
    if index_type in ("ivf", "ivfpq"):
        faiss.extract_index_ivf(index).nprobe = int(nprobe or params["nprobe"])
    elif index_type == "hnsw":
        index.hnsw.efSearch = int(ef_search or params["ef_search"])


def resolve_gpu(device: str) -> int | None:
    """``device`` -> the GPU number FAISS should use, or None for the CPU.

    ``auto`` takes GPU 0 when FAISS sees one, silently the CPU otherwise; ``cuda`` or
    ``cuda:N`` without such a GPU is an error.
    """
    device = (device or "auto").lower()
    if device == "cpu":
        return None
    n_gpus = gpu_count()
    if device == "auto":
        return 0 if n_gpus > 0 else None
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        index = int(device[5:] or 0)
        if index >= n_gpus:
            raise ConfigError(
                f"--device {device} was asked for, but FAISS sees {n_gpus} GPU(s)"
                + ("" if n_gpus else " (is the faiss-gpu build installed and a GPU present?)"))
        return index
    raise ConfigError(f"unknown device '{device}'; choose one of: auto, cpu, cuda")


def gpu_count() -> int:
    """GPUs FAISS can use (0 with a CPU-only FAISS build)."""
    try:
        return int(faiss.get_num_gpus())
    except AttributeError:
        return 0


def index_cpu_to_gpu(index: faiss.Index, index_type: str, params: dict[str, Any],
                     gpu: int) -> faiss.Index:
    """A GPU copy of a flat or IVF index (nprobe carried over); HNSW is returned as is."""
    if index_type == "hnsw":
        return index
    options = faiss.GpuClonerOptions()
    # IVF-PQ with many bytes per code needs half-precision lookup tables on the GPU.
    options.useFloat16 = index_type == "ivfpq" and int(params.get("pq_m", 0)) >= 56
    return faiss.index_cpu_to_gpu(_gpu_resources(gpu), gpu, index, options)


@cache
def _gpu_resources(gpu: int):
    return faiss.StandardGpuResources()


def read_faiss_index(path: str) -> faiss.Index:
    """Read an index file written by :func:`faiss.write_index` (a CPU index)."""
    return faiss.read_index(path)
