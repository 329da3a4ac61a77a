"""FAISS factory: the auto policy, explicit types and fallbacks, and recall of the
approximate types against exact Flat search on clustered vectors."""

from __future__ import annotations

import time

import faiss
import numpy as np
import pytest

from sonicsearch.config import IndexConfig
from sonicsearch.errors import ConfigError
from sonicsearch.index.faiss_index import (
    IVF_MIN_VECTORS,
    IVFPQ_MIN_VECTORS,
    build_faiss_index,
    choose_index_type,
    gpu_count,
    ivf_nlist,
    pq_subquantizers,
    resolve_gpu,
)
from sonicsearch.index.metrics import one_recall_at_k, recall_at_k

DIM = 128


def clustered(n: int, dim: int = DIM, clusters: int = 1000, noise: float = 0.7,
              seed: int = 0) -> np.ndarray:
    """Normalised points around random centres (a query's 10th neighbour at cosine ~0.67)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, clusters, n)]
    x = x + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def recall_data():
    x = clustered(20_200)
    base, queries = x[:20_000], x[20_000:]
    exact = faiss.IndexFlatIP(DIM)
    exact.add(base)
    _, truth = exact.search(queries, 10)
    return base, queries, truth


# -- choosing ------------------------------------------------------------------------------

def test_auto_small_is_exact_flat():
    kind, params, reason = choose_index_type(1_000, 512, IndexConfig())
    assert kind == "flat" and params["factory"] == "Flat"
    assert "exact" in reason


def test_auto_threshold_is_exact_max_vectors():
    cfg = IndexConfig(exact_max_vectors=10_000)
    assert choose_index_type(10_000, 512, cfg)[0] == "flat"
    assert choose_index_type(10_001, 512, cfg)[0] == "hnsw"


def test_auto_large_fits_memory_is_hnsw():
    kind, params, reason = choose_index_type(2_000_000, 512, IndexConfig(memory_budget_gb=8))
    assert kind == "hnsw"
    assert params["M"] == 32 and params["ef_search"] == 128 and params["ef_construction"] == 200
    assert "HNSW" in reason and "GiB" in reason


def test_auto_too_big_for_memory_is_ivfpq():
    cfg = IndexConfig(memory_budget_gb=8, pq_bytes=64)
    kind, params, reason = choose_index_type(50_000_000, 512, cfg)
    assert kind == "ivfpq"
    assert params["pq_m"] == 64 and params["factory"] == f"IVF{params['nlist']},PQ64"
    assert params["nlist"] == round(4 * np.sqrt(50_000_000))
    assert "memory budget" in reason


def test_explicit_types_are_honoured():
    for kind in ("flat", "hnsw", "ivf", "ivfpq"):
        got, params, reason = choose_index_type(100_000, 256, IndexConfig(index_type=kind))
        assert got == kind and reason == f"{kind} as asked"
    params = choose_index_type(100_000, 256, IndexConfig(index_type="ivf", ivf_nprobe=16))[1]
    assert params == {"factory": "IVF1265,Flat", "nlist": 1265, "nprobe": 16}


def test_ivf_with_too_few_vectors_falls_back_to_flat():
    kind, _, reason = choose_index_type(IVF_MIN_VECTORS - 1, 64, IndexConfig(index_type="ivf"))
    assert kind == "flat" and "ivf needs" in reason
    kind, _, reason = choose_index_type(IVFPQ_MIN_VECTORS - 1, 64,
                                        IndexConfig(index_type="ivfpq"))
    assert kind == "flat" and "ivfpq needs" in reason


def test_empty_and_unknown():
    assert choose_index_type(0, 64, IndexConfig(index_type="hnsw"))[0] == "flat"
    with pytest.raises(ConfigError, match="choose one of: auto, flat, hnsw, ivf, ivfpq"):
        choose_index_type(10, 64, IndexConfig(index_type="lsh"))


def test_helpers():
    assert ivf_nlist(1_000_000) == 4_000  # 4 * sqrt(n)
    assert ivf_nlist(20_000) == 512  # 566 capped: at least 39 training points per list
    assert ivf_nlist(1_000) == 25  # capped by n // 39
    assert pq_subquantizers(512, 64) == 64
    assert pq_subquantizers(100, 64) == 50  # largest divisor of dim <= pq_bytes
    assert pq_subquantizers(7, 64) == 7


# -- devices -------------------------------------------------------------------------------

def test_device_cpu_and_auto_without_gpu():
    assert resolve_gpu("cpu") is None
    if gpu_count() == 0:
        assert resolve_gpu("auto") is None


@pytest.mark.skipif(gpu_count() > 0, reason="a GPU is present")
def test_device_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="--device cuda was asked for"):
        resolve_gpu("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_gpu("tpu")


@pytest.mark.gpu
@pytest.mark.skipif(gpu_count() == 0, reason="FAISS sees no GPU")
def test_gpu_build_matches_cpu(recall_data):
    base, queries, truth = recall_data
    kind, params, _ = choose_index_type(len(base), DIM, IndexConfig(index_type="ivf"))
    index = build_faiss_index(base, kind, params, device="cuda")
    assert isinstance(index, faiss.IndexIVFFlat)  # saved form is always the CPU index
    assert recall_at_k(index.search(queries, 10)[1], truth, 10) >= 0.95


# -- building ------------------------------------------------------------------------------

def test_empty_index_builds_and_searches():
    index = build_faiss_index(np.zeros((0, 16), np.float32), "flat", {"factory": "Flat"})
    assert index.ntotal == 0
    _, ids = index.search(np.ones((1, 16), np.float32), 3)
    assert (ids == -1).all()


def test_build_is_repeatable():
    x = clustered(3_000, dim=32, clusters=20, noise=0.3)
    kind, params, _ = choose_index_type(len(x), 32, IndexConfig(index_type="ivf"))
    a = build_faiss_index(x, kind, params, device="cpu")
    b = build_faiss_index(x, kind, params, device="cpu")
    assert np.array_equal(a.search(x[:50], 5)[1], b.search(x[:50], 5)[1])
    assert faiss.extract_index_ivf(a).nprobe == params["nprobe"]


@pytest.mark.parametrize("kind,overrides,floor", [
    ("hnsw", {"hnsw_m": 16, "hnsw_ef_construction": 80}, 0.95),
    ("ivf", {}, 0.95),
    # 16 bytes for 128 floats: approximate scores; AudioIndex re-scores IVF-PQ hits
    # exactly from the stored vectors, checked below.
    ("ivfpq", {"pq_bytes": 16}, 0.5),
])
def test_recall_against_exact_flat(recall_data, kind, overrides, floor):
    base, queries, truth = recall_data
    cfg = IndexConfig(index_type=kind, **overrides)
    got, params, _ = choose_index_type(len(base), DIM, cfg)
    assert got == kind
    t0 = time.perf_counter()
    index = build_faiss_index(base, got, params, device="cpu")
    built = time.perf_counter() - t0
    scores, ids = index.search(queries, 80 if kind == "ivfpq" else 10)
    recall = recall_at_k(ids, truth, 10)
    print(f"\n{kind} {params['factory']}: recall@10 {recall:.3f}, "
          f"1-recall@10 {one_recall_at_k(ids, truth, 10):.3f}, built in {built:.1f}s")
    assert recall >= floor
    if kind != "ivfpq":  # exact scores from flat, HNSW and IVF-Flat
        assert np.allclose(scores[:, 0], np.einsum("ij,ij->i", queries, base[ids[:, 0]]),
                           atol=1e-5)
        return
    # what the query path does: 80 PQ candidates per window, re-scored from raw vectors
    exact = np.einsum("qd,qkd->qk", queries, base[ids])
    reranked = np.take_along_axis(ids, np.argsort(-exact, axis=1), axis=1)
    rerank_recall = recall_at_k(reranked, truth, 10)
    print(f"ivfpq re-scored from 80 candidates: recall@10 {rerank_recall:.3f}")
    assert rerank_recall >= 0.95


# -- metrics -------------------------------------------------------------------------------

def test_recall_at_k():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    assert recall_at_k(exact, exact, 3) == 1.0
    assert recall_at_k(np.array([[3, 2, 9], [7, 8, 9]]), exact, 3) == pytest.approx(2 / 6)
    assert recall_at_k(np.array([[1, -1, -1], [4, 5, -1]]), exact, 2) == pytest.approx(3 / 4)
    assert recall_at_k(np.zeros((0, 3)), np.zeros((0, 3)), 3) == 1.0
    assert one_recall_at_k(np.array([[9, 1], [5, 4]]), exact, 2) == 1.0
    with pytest.raises(ValueError):
        recall_at_k(exact[:1], exact, 3)
