"""Vector backends and distributed extraction, measured on this machine.

Part 1 (``index``): FAISS flat, FAISS HNSW and Milvus (FLAT and HNSW; milvus-lite, or the
server at ``--milvus-uri``) on N clustered unit vectors of dim 512: build time (for Milvus
also the insert alone, as rows/s), peak RSS, single-query latency p50 / p95 (k=10) and
recall@10 against exact search. Each case runs in its own process, so its peak RSS is its
own (a server's memory is the server's, not counted).

Part 3 (``update``, benchmarks/_milvus_update.py): an in-place update of a Milvus
collection (the server at ``--milvus-uri``, else milvus-lite) of N windows: the first
fill's rows/s, then 10 files added and 10 removed, each through the build's own backend
call; the p50 / p95 and recall@10 of a reader before and after.

Part 2 (``extract``): audio seconds embedded per wall second by today's single-process
build vs Ray Data with 1 and 2 local workers, on a small synthetic corpus and a tiny
random-init model, written to a FAISS index through the normal build.

    python benchmarks/backends.py --quick            # N = 1e5, a few minutes
    python benchmarks/backends.py --sizes 100000,1000000 --cases faiss-flat,milvus-flat
    python benchmarks/backends.py --parts index --cases milvus-flat \
        --milvus-uri http://127.0.0.1:19530          # a Milvus server
    python benchmarks/backends.py --parts update --sizes 100000,1000000 \
        --milvus-uri http://127.0.0.1:19530          # in-place updates on the server
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from _milvus_update import update_case  # noqa: E402

CASES = ("faiss-flat", "faiss-hnsw", "faiss-ivfpq", "milvus-flat", "milvus-hnsw")
DIM, K = 512, 10
MILVUS_URI_ENV = "SONICSEARCH_BENCH_MILVUS_URI"  # --milvus-uri, as the worker process sees it


def parse_args(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", default=None, help="comma-separated N (default 1e5; --tiny 2e3)")
    p.add_argument("--cases", default=",".join(CASES), help="index cases to run")
    p.add_argument("--queries", type=int, default=None, help="queries per case")
    p.add_argument("--parts", default="index,extract", help="index and/or extract")
    p.add_argument("--files", type=int, default=None, help="extract: synthetic clips")
    p.add_argument("--milvus-uri", default=None,
                   help="Milvus server for the milvus cases (default: a milvus-lite file)")
    p.add_argument("--worker", default=None, help=argparse_hidden())
    return p.parse_args(argv)


def argparse_hidden() -> str:
    return "internal: run one case (CASE:N:QUERIES:SEED) and print its JSON"


def vectors(n: int, seed: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors (sqrt(n) Gaussian clusters) and queries near data points."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(8, int(np.sqrt(n))), DIM)).astype(np.float32)
    x = np.empty((n, DIM), np.float32)
    for a in range(0, n, 100_000):
        b = min(a + 100_000, n)
        x[a:b] = centers[rng.integers(0, len(centers), b - a)]
        x[a:b] += 0.6 * rng.standard_normal((b - a, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.integers(0, n, n_queries)] + 0.3 * rng.standard_normal((n_queries, DIM)) / np.sqrt(
        DIM)
    return x, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def run_case(case: str, n: int, n_queries: int, seed: int, threads: int | None) -> dict:
    """Build one index, time single queries, score recall@10 against exact search."""
    import faiss

    if threads:  # FAISS's OpenMP threads spin badly on a busy machine
        faiss.omp_set_num_threads(threads)

    from sonicsearch.config import IndexConfig
    from sonicsearch.index.faiss_index import build_faiss_index, choose_index_type

    x, q = vectors(n, seed, n_queries)
    exact = faiss.IndexFlatIP(DIM)
    exact.add(x)
    _, truth = exact.search(q, K)
    del exact
    base_rss = _rss_now_mib()
    kind, params, _ = choose_index_type(n, DIM, IndexConfig(index_type=case.split("-")[1]))
    tmp = Path(tempfile.mkdtemp(prefix="ss-bench-"))
    t0 = time.perf_counter()
    if case.startswith("faiss"):
        from sonicsearch.index.backends.faiss_backend import FaissBackend

        backend = FaissBackend(build_faiss_index(x, kind, params, device="cpu"), kind, params)
    else:
        from sonicsearch.index.backends.milvus_backend import MilvusBackend

        uri = os.environ.get(MILVUS_URI_ENV) or str(tmp / "m.db")
        name = f"bench_{os.getpid()}_{time.time_ns()}"
        backend = MilvusBackend.create(uri, name, DIM, kind, params)
        for a in range(0, n, 50_000):
            backend.add(x[a : a + 50_000], np.arange(a, min(a + 50_000, n)))
        inserted = time.perf_counter() - t0
        backend.commit()
        backend.close()  # searched as a reader does (a writer reads strongly: +~200 ms)
        backend = MilvusBackend.open(uri, name, DIM, kind, params)
    build = time.perf_counter() - t0
    index_rss = _rss_now_mib() - base_rss
    lat, ids = [], np.empty((n_queries, K), np.int64)
    for i in range(n_queries):
        t = time.perf_counter()
        _, ids[i : i + 1] = backend.search(q[i : i + 1], K)
        lat.append(time.perf_counter() - t)
    recall = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, truth)]))
    rescored = None
    if kind == "ivfpq":  # what AudioIndex does: take more candidates, re-score them exactly
        _, cand = backend.search(q, 10 * K)
        cand = [c[c >= 0] for c in cand]
        exact_top = [c[np.argsort(-(x[c] @ qi))[:K]] for c, qi in zip(cand, q)]
        rescored = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(exact_top, truth)]))
    if case.startswith("faiss"):  # the index file's size: bytes per vector as stored
        faiss.write_index(backend.index, str(tmp / "index.faiss"))
    disk = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    milvus = None
    if case.startswith("milvus"):
        milvus = {"where": "server" if "://" in uri else "milvus-lite",
                  "insert_s": round(inserted, 2), "insert_rows_per_s": round(n / inserted)}
        if "://" in uri:
            backend.client.drop_collection(name)
    backend.close()
    shutil.rmtree(tmp, ignore_errors=True)
    lat_ms = np.array(lat) * 1000
    return {"case": case, "n": n, "dim": DIM, "build_s": round(build, 2),
            "peak_rss_mib": round(_rss_mib(), 1), "index_rss_mib": round(index_rss, 1),
            "vector_mib": round(x.nbytes / 2**20, 1), "index_disk_mib": round(disk / 2**20, 1),
            "bytes_per_vector": round(disk / n, 1),
            "p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
            "p95_ms": round(float(np.percentile(lat_ms, 95)), 3), "recall_at_10": recall,
            "recall_at_10_rescored_100": rescored,
            "index_type": kind, "params": {k: v for k, v in params.items() if k != "factory"},
            "milvus": milvus}


def _rss_mib() -> float:
    """Peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_now_mib() -> float:
    """Resident memory now (VmRSS; the peak where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _rss_mib()


def index_part(args) -> list[dict]:
    sizes = [int(float(s)) for s in (args.sizes or ("2000" if args.tiny else "100000"))
             .split(",")]
    n_queries = args.queries or (20 if args.tiny else 200)
    repo = str(C.HERE.parent)  # the worker imports this checkout's sonicsearch
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [repo, os.environ.get("PYTHONPATH")])),
        MILVUS_URI_ENV: args.milvus_uri or ""}
    rows = []
    for n in sizes:
        for case in args.cases.split(","):
            C.log(f"index: {case} at N={n}")
            proc = subprocess.run([sys.executable, __file__, "--worker",
                                   f"{case}:{n}:{n_queries}:{args.seed}:{args.threads or 0}"],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                C.log(f"{case} at N={n} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            if row.get("milvus"):
                row["case"] += f" ({row['milvus']['where']})"
                C.log(f"  insert {row['milvus']['insert_rows_per_s']:,} rows/s")
            C.log(f"  build {row['build_s']} s, peak RSS {row['peak_rss_mib']} MiB, p50 "
                  f"{row['p50_ms']} ms, p95 {row['p95_ms']} ms, recall@10 {row['recall_at_10']}")
            rows.append(row)
    return rows


def update_part(args) -> list[dict]:
    """In-place updates of a Milvus collection at each size (see _milvus_update.py)."""
    rows = []
    for n in [int(float(s)) for s in (args.sizes or ("2000" if args.tiny else "100000"))
              .split(",")]:
        C.log(f"update: N={n}")
        row = update_case(n, args.queries or (20 if args.tiny else 200), args.seed,
                          args.milvus_uri, vectors)
        for step in row["steps"]:
            C.log(f"  {step}")
        rows.append(row)
    return rows


def extract_part(args) -> list[dict]:
    """Single-process build vs Ray with 1 and 2 workers (same corpus, same tiny model)."""
    import functools

    from sonicsearch.index import build_index
    from sonicsearch.index.api import load_embedder
    from sonicsearch.scale.ray_embed import RayEmbedder

    files = args.files or (4 if args.tiny else 24)
    corpus = C.synth_corpus(args.cache, 2, -(-files // 2), 10.0, 16000, args.seed)
    model = tiny_model(args.cache / "models" / "backends-tiny.pt", args.seed)
    rows = []
    import ray

    for name, workers in (("single process", 0), ("ray, 1 worker", 1), ("ray, 2 workers", 2)):
        local = load_embedder(model, "cpu")
        t0 = time.perf_counter()
        if workers:  # started outside the timed build: a cluster is up before a build
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        startup = time.perf_counter() - t0
        emb = local if not workers else RayEmbedder(
            local, functools.partial(load_embedder, str(model), "cpu"), None, workers)
        out = Path(tempfile.mkdtemp(prefix="ss-bench-x-"))
        t0 = time.perf_counter()
        report = build_index([corpus], emb, out / "idx")
        wall = time.perf_counter() - t0
        shutil.rmtree(out, ignore_errors=True)
        if workers:
            ray.shutdown()
        rows.append({"run": name, "ray_start_s": round(startup, 1),
                     "files": len(report.added), "vectors": report.vectors,
                     "audio_s": round(report.audio_seconds, 1), "wall_s": round(wall, 2),
                     "audio_s_per_s": round(report.audio_seconds / wall, 1),
                     "windows_per_s": round(report.vectors / wall, 1)})
        C.log(f"extract: {rows[-1]}")
    return rows


def tiny_model(path: Path, seed: int) -> Path:
    """A random-init resnet18 on 64 mel bands, saved as a model.pt (made once)."""
    if path.is_file():
        return path
    import torch

    from sonicsearch.config import Config, FeatureConfig, ModelConfig
    from sonicsearch.model.backbones import AudioModel
    from sonicsearch.model.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    fc = FeatureConfig(sample_rate=16000, n_mels=64)
    model = AudioModel.from_config(fc, ModelConfig("resnet18", "none"), ["a", "b"])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, config=Config().to_dict(), labels=["a", "b"])
    return path


def tables(results: dict) -> list[tuple[str, str]]:
    out = []
    if results.get("index"):
        out.append(("Vector backends (dim 512, k=10, single queries)", C.markdown_table(
            ["case", "N", "build s", "index RSS MiB", "peak RSS MiB", "bytes / vector",
             "p50 ms", "p95 ms", "recall@10"],
            [[r["case"], f"{r['n']:,}", r["build_s"], r["index_rss_mib"], r["peak_rss_mib"],
              r.get("bytes_per_vector", "-"), r["p50_ms"], r["p95_ms"],
              f"{r['recall_at_10']:.3f}" + (
                  f" ({r['recall_at_10_rescored_100']:.3f} re-scored)"
                  if r.get("recall_at_10_rescored_100") is not None else "")]
             for r in results["index"]])))
    if results.get("update"):
        out.append(("In-place updates of a Milvus collection (dim 512, FLAT)", C.markdown_table(
            ["N", "where", "step", "rows", "inserted", "hidden", "s", "clean-up s",
             "p50 ms", "recall@10"],
            [[f"{r['n']:,}", r["where"], ("fill", "add 10 files", "remove 10 files")[
                s["generation"] - 1], f"{s['rows']:,}", f"{s['inserted']:,}", s["hidden"],
              s["seconds"], s["cleanup_s"], s.get("p50_ms", "-"), s.get("recall_at_10", "-")]
             for r in results["update"] for s in r["steps"]])))
    if results.get("extract"):
        out.append(("Extraction (tiny resnet18, synthetic 10 s clips)", C.markdown_table(
            ["run", "files", "windows", "Ray start s", "build wall s", "audio s / s",
             "windows / s"],
            [[r["run"], r["files"], r["vectors"], r["ray_start_s"], r["wall_s"], r["audio_s_per_s"],
              r["windows_per_s"]] for r in results["extract"]])))
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        case, n, nq, seed, threads = args.worker.split(":")
        C.set_threads(int(threads) or None)
        print(json.dumps(run_case(case, int(n), int(nq), int(seed), int(threads) or None)))
        return {}
    C.set_threads(args.threads)
    parts = args.parts.split(",")
    results = {"benchmark": "backends", "mode": C.mode(args), "machine": C.machine(),
               "index": index_part(args) if "index" in parts else [],
               "update": update_part(args) if "update" in parts else [],
               "extract": extract_part(args) if "extract" in parts else []}
    sections = tables(results)
    js, md = C.write_results("backends", args.out, results, sections)
    print("\n\n".join(body for _, body in sections))
    C.log(f"wrote {js} and {md}")
    return results


if __name__ == "__main__":
    main()
