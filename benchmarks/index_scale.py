"""How does the index scale? FAISS on synthetic embeddings of the model's dimension, built
with the factory sonicsearch ships (sonicsearch.index.faiss_index), for exact, HNSW,
IVF-Flat and IVF-PQ: build time, bytes per vector, queries/s at batch 1 and batch 1000,
recall@10 against exact search, and what ``--index-type auto`` picks at each size.

The vectors mimic audio embeddings: L2-normalised, windows clustered around their file and
files around their genre; queries are new windows of indexed files.

    python benchmarks/index_scale.py --quick                  # 10^4 and 3*10^4
    python benchmarks/index_scale.py                          # 10^4 .. 10^6
    python benchmarks/index_scale.py --sizes 10000000         # on a large machine

Writes benchmarks/results/index_scale.{json,md}.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TYPES = ("flat", "hnsw", "ivf", "ivfpq")
PRESETS = {
    "tiny": {"sizes": "2000,12000", "dim": 32, "queries": 200, "single": 20},
    "quick": {"sizes": "10000,30000", "dim": 512, "queries": 1000, "single": 200},
    "full": {"sizes": "10000,100000,1000000", "dim": 512, "queries": 1000, "single": 200},
}
WINDOWS_PER_FILE = 20
GENRES = 64
K = 10


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=None, help="comma-separated numbers of vectors")
    p.add_argument("--dim", type=int, default=None, help="embedding dimension (resnet18: 512)")
    p.add_argument("--types", default=",".join(TYPES), help="comma-separated index types")
    p.add_argument("--queries", type=int, default=None, help="queries in the batch measurement")
    p.add_argument("--single", type=int, default=None, help="queries timed one at a time")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (GPU rows when FAISS "
                   "sees a GPU and the device allows)")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import faiss

    from sonicsearch.config import IndexConfig
    from sonicsearch.index.faiss_index import choose_index_type, resolve_gpu

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    types = args.types.split(",")
    gpu = resolve_gpu(args.device)
    C.log(f"sizes {sizes}, dim {args.dim}, types {types}, "
          f"{'GPU ' + str(gpu) if gpu is not None else 'no GPU'}")
    rows, auto = [], []
    for n in sizes:
        x, q = clustered(n, args.dim, args.queries, args.seed)
        kind, params, reason = choose_index_type(n, args.dim, IndexConfig())
        auto.append({"n": n, "index_type": kind, "factory": params["factory"], "reason": reason})
        with C.Timer() as t:
            exact = faiss.IndexFlatIP(args.dim)
            exact.add(x)
            _, truth = exact.search(q, K)
        C.log(f"n={n}: ground truth in {t.seconds:.1f}s; auto picks {kind}")
        del exact
        for kind in types:
            rows.append(measure(x, q, truth, kind, args, None))
            if gpu is not None and kind != "hnsw":
                rows.append(measure(x, q, truth, kind, args, gpu))
        del x, q
    picks = [{"n": n, **dict(zip(("index_type", "reason"),
                                 choose_index_type(n, args.dim, IndexConfig())[::2]))}
             for n in (10**4, 10**5, 10**6, 10**7, 10**8)]
    results = {"benchmark": "index_scale", "mode": C.mode(args), "machine": C.machine(),
               "dim": args.dim, "k": K, "queries": args.queries, "single_queries": args.single,
               "gpu": gpu, "rows": rows, "auto": auto, "auto_by_size": picks}
    sections = tables(results)
    js, md = C.write_results("index_scale", args.out, results, sections)
    print("\n\n".join(body for _, body in sections))
    C.log(f"wrote {js} and {md}")
    return results


def clustered(n: int, dim: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` vectors in files of WINDOWS_PER_FILE windows within GENRES genres, and ``nq``
    queries that are fresh windows of random indexed files (all float32, L2-normalised)."""
    rng = np.random.default_rng(seed)
    n_files = max(1, n // WINDOWS_PER_FILE)
    genres = _unit(rng.standard_normal((GENRES, dim), dtype=np.float32))
    files = _unit(genres[rng.integers(0, GENRES, n_files)]
                  + 0.8 * _unit(rng.standard_normal((n_files, dim), dtype=np.float32)))
    x = np.empty((n, dim), dtype=np.float32)
    step = 1 << 16
    for i in range(0, n, step):  # in chunks: 10^7 x 512 must not need twice the memory
        m = min(step, n - i)
        owner = (np.arange(i, i + m) // WINDOWS_PER_FILE) % n_files
        x[i : i + m] = _unit(files[owner]
                             + 0.6 * _unit(rng.standard_normal((m, dim), dtype=np.float32)))
    owner = rng.integers(0, n_files, nq)
    q = _unit(files[owner] + 0.6 * _unit(rng.standard_normal((nq, dim), dtype=np.float32)))
    return x, q


def measure(x, q, truth, kind: str, args, gpu: int | None) -> dict:
    """Build one index with the shipped factory and time it."""
    import faiss

    from sonicsearch.config import IndexConfig
    from sonicsearch.index.faiss_index import (
        build_faiss_index,
        choose_index_type,
        index_cpu_to_gpu,
    )
    from sonicsearch.index.metrics import recall_at_k

    n, dim = x.shape
    device = "cpu" if gpu is None else f"cuda:{gpu}"
    got, params, reason = choose_index_type(n, dim, IndexConfig(index_type=kind))
    with C.Timer() as build:
        index = build_faiss_index(x, got, params, device=device)
    size = int(faiss.serialize_index(index).size)
    search = index
    if gpu is not None:
        try:
            search = index_cpu_to_gpu(index, got, params, gpu)
        except RuntimeError as exc:  # a layout the GPU code lacks: searched on the CPU
            C.log(f"  {kind}: no GPU copy ({str(exc).splitlines()[0][:80]})")
            gpu = None
    single = q[: args.single]
    search.search(single[:1], K)  # warm-up
    t0 = time.perf_counter()
    for i in range(len(single)):
        search.search(single[i : i + 1], K)
    t1 = time.perf_counter()
    _, ids = search.search(q, K)
    t2 = time.perf_counter()
    row = {"n": n, "type": kind, "built_as": got, "factory": params["factory"],
           "device": "cpu" if gpu is None else "gpu", "build_s": round(build.seconds, 3),
           "bytes_per_vector": round(size / n, 1), "qps_batch1": round(len(single) / (t1 - t0), 1),
           "qps_batch": round(len(q) / (t2 - t1), 1),
           "recall@10": round(recall_at_k(ids, truth, K), 4)}
    if got == "ivfpq":  # what queries get: a deeper search re-scored with the exact vectors
        row["recall@10_rescored"] = round(recall_at_k(_rescored(search, x, q), truth, K), 4)
    if got != kind:
        row["note"] = reason
    C.log(f"  {kind:>5} {row['device']}: build {row['build_s']:.1f}s, "
          f"{row['bytes_per_vector']:.0f} B/vec, {row['qps_batch1']:.0f} q/s single, "
          f"{row['qps_batch']:.0f} q/s batched, recall@10 {row['recall@10']:.3f}")
    del index, search
    return row


def _rescored(index, x: np.ndarray, q: np.ndarray) -> np.ndarray:
    from sonicsearch.index.search import CANDIDATE_DEPTH

    _, cand = index.search(q, max(K, CANDIDATE_DEPTH))  # the candidates a query scores
    out = np.full((len(q), K), -1, dtype=np.int64)
    for i, c in enumerate(cand):
        c = c[c >= 0]
        scores = x[c] @ q[i]
        out[i, : min(K, c.size)] = c[np.argsort(-scores, kind="stable")[:K]]
    return out


def tables(results: dict) -> list[tuple[str, str]]:
    head = ["vectors", "type", "device", "factory", "build s", "bytes/vector",
            "q/s batch 1", f"q/s batch {results['queries']}", "recall@10"]
    rows = []
    for r in results["rows"]:
        rec = r["recall@10"] if "recall@10_rescored" not in r else (
            f"{r['recall@10']:.3f} (re-scored {r['recall@10_rescored']:.3f})")
        kind = r["type"] if r["built_as"] == r["type"] else f"{r['type']} -> {r['built_as']}"
        rows.append([f"{r['n']:,}", kind, r["device"], f"`{r['factory']}`", r["build_s"],
                     r["bytes_per_vector"], r["qps_batch1"], r["qps_batch"], rec])
    gpu = "GPU rows where FAISS sees a GPU" if results["gpu"] is not None else "no GPU"
    text = (f"dim {results['dim']}, k = {results['k']}; {gpu}.\n\n"
            + C.markdown_table(head, rows))
    picks = C.markdown_table(["vectors", "auto picks", "why"],
                             [[f"{p['n']:,}", p["index_type"], p["reason"]]
                              for p in results["auto_by_size"]])
    return [("FAISS index types by size", text), ("What --index-type auto picks", picks)]


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)).astype(np.float32)


if __name__ == "__main__":
    main()
