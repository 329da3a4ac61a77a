"""The ``update`` part of backends.py: what an in-place update of a Milvus collection costs.

Generations are written as a build writes them (``vectors.npy``, ``meta.sqlite``) and indexed
by the build's own call, ``MilvusBackend.write_generation``; no audio is embedded, so only
the vector index's work is timed: a first build fills N windows (files of FILE_WINDOWS
windows each), the next one adds 10 files, the next removes 10 (each spread over the
collection, in path order). Each update's time covers its deletes, inserts, flush, index
wait and the row count; the clean-up after its commit (deleting rows no generation sees)
is timed apart. Single-query latency of a reader is taken on the first generation and on
the last (whose filter hides the removed files' rows), with recall@10 against exact search
over that generation's vectors.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

FILE_WINDOWS = 100  # windows per synthetic file
CHANGED = 10  # files added, then removed


def update_case(n: int, n_queries: int, seed: int, uri: str | None, vectors) -> dict:
    """Fill, add 10 files, remove 10 files; returns the timings (see the module docstring)."""
    from sonicsearch.index.backends import GenerationSpec
    from sonicsearch.index.backends.milvus_backend import MilvusBackend

    files = n // FILE_WINDOWS
    x, q = vectors((files + CHANGED) * FILE_WINDOWS, seed, n_queries)
    root = Path(tempfile.mkdtemp(prefix="ss-bench-u-"))
    uri = uri or str(root / "m.db")
    spec = GenerationSpec(x.shape[1], "flat", {"factory": "Flat"}, False, "cpu", uri)
    step = files // (CHANGED + 1)
    added = list(range(files, files + CHANGED))
    removed = [(i + 1) * step + 1 for i in range(CHANGED)]
    plan = [list(range(files)), list(range(files)) + added,
            [f for f in range(files) if f not in removed] + added]
    out: dict = {"n": files * FILE_WINDOWS, "file_windows": FILE_WINDOWS, "where":
                 "server" if "://" in uri else "milvus-lite", "steps": []}
    prev = None
    try:
        for g, present in enumerate(plan, 1):
            gen, records = _write_gen(root, g, present, x, step)
            t0 = time.perf_counter()
            entry, _ = MilvusBackend.write_generation(gen, prev, records, spec)
            seconds = time.perf_counter() - t0
            meta = {"dim": x.shape[1], "index_type": "flat", "index_params": spec.params,
                    "backend": entry, "counts": {"vectors": len(present) * FILE_WINDOWS}}
            (gen / "index.json").write_text(json.dumps(meta))
            t0 = time.perf_counter()
            MilvusBackend.after_commit(root, [entry] + ([prev[1]["backend"]] if prev else []))
            cleanup = time.perf_counter() - t0
            step_row = {"generation": g, "rows": len(present) * FILE_WINDOWS,
                        "inserted": entry["next_id"] - (prev[1]["backend"]["next_id"]
                                                        if prev else 0),
                        "hidden": sum(b - a for a, b in entry["hidden"]),
                        "seconds": round(seconds, 2), "cleanup_s": round(cleanup, 2),
                        "same_collection": prev is None
                        or entry["collection"] == prev[1]["backend"]["collection"]}
            if g in (1, len(plan)):
                step_row.update(_latency(root, gen, meta, present, x, q))
            out["steps"].append(step_row)
            prev = (gen, meta)
    finally:
        _drop(uri, root)
        shutil.rmtree(root, ignore_errors=True)
    fill = out["steps"][0]
    out["fill_rows_per_s"] = round(fill["rows"] / fill["seconds"])
    return out


def _name(f: int, step: int, files: int) -> str:
    """File names that put the added files between the first ones, in path order."""
    pos = f * 10 if f < files else ((f - files + 1) * step) * 10 + 5
    return f"/bench/{pos:09d}.wav"


def _write_gen(root: Path, g: int, present: list[int], x: np.ndarray, step: int):
    """A generation folder as a build writes it: vectors.npy and meta.sqlite."""
    from sonicsearch.index.store import write_meta
    from sonicsearch.index.types import FileRecord

    files = len(x) // FILE_WINDOWS - CHANGED
    order = sorted(present, key=lambda f: _name(f, step, files))
    gen = root / f"gen-{g:06d}"
    gen.mkdir()
    vec = np.lib.format.open_memmap(gen / "vectors.npy", "w+", np.float32,
                                    (len(order) * FILE_WINDOWS, x.shape[1]))
    records = []
    w = FILE_WINDOWS
    for j, f in enumerate(order):
        vec[j * w : (j + 1) * w] = x[f * w : (f + 1) * w]
        records.append(FileRecord(_name(f, step, files), 1, 1, f"sha-{f}", 150.0, 16000, "a",
                                  FILE_WINDOWS, first_row=j * FILE_WINDOWS))
    vec.flush()
    del vec
    write_meta(gen, records, np.zeros((len(order) * FILE_WINDOWS, 2)))
    return gen, records


def _latency(root: Path, gen: Path, meta: dict, present: list[int], x: np.ndarray,
             q: np.ndarray, k: int = 10) -> dict:
    """A reader's single-query p50 / p95 and recall@10 on generation ``gen``."""
    from sonicsearch.index.backends.milvus_backend import MilvusBackend

    vec = np.load(gen / "vectors.npy", mmap_mode="r")
    truth = np.concatenate([np.argsort(-(q[a : a + 8] @ np.asarray(vec).T), axis=1)[:, :k]
                            for a in range(0, len(q), 8)])
    backend = MilvusBackend.open_generation(root, gen, meta, (len(vec), len(present)))
    lat, ids = [], np.empty((len(q), k), np.int64)
    try:
        for i in range(len(q)):
            t = time.perf_counter()
            _, ids[i : i + 1] = backend.search(q[i : i + 1], k)
            lat.append(time.perf_counter() - t)
    finally:
        backend.close()
    ms = np.array(lat) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "recall_at_10": float(np.mean([len(set(a) & set(b)) / k
                                           for a, b in zip(ids, truth)]))}


def _drop(uri: str, root: Path) -> None:
    from sonicsearch.index.backends.milvus_backend import drop_stale

    try:
        drop_stale(uri, root, ())
    except Exception:  # noqa: BLE001 - best effort: a lite file goes with the folder
        pass
