"""Writing one generation: vectors, probabilities, metadata, the FAISS index, the model and
index.json, each fsynced. The caller commits it (layout.IndexLayout.commit) afterwards.

Rows of files kept from the previous generation are copied from its ``vectors.npy`` (a
memory map); rows embedded by this build come from a raw float32 file that the build
streamed into the new generation while embedding.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from sonicsearch.index import layout as L
from sonicsearch.index.faiss_index import build_faiss_index
from sonicsearch.index.store import write_meta

NEW_VECTORS = "new-vectors.f32"  # raw float32 rows embedded by this build (temporary)


def write_generation(gen, prev, records, sources, embedder, same_vectors, same_index,
                      index_type, params, reason, config) -> None:
    n, dim, n_labels = sum(r.n_windows for r in records), embedder.dim, len(embedder.labels)
    has_probs = _has_probs(prev, sources)
    if same_vectors:  # only metadata or the index type changed: reuse the stored arrays
        for name in (L.VECTORS, L.PROBS):
            if (prev.gen / name).is_file():
                L.link_or_copy(prev.gen / name, gen / name)
        spans = prev.store.all_spans()
    else:
        old_vec = prev.store.vectors() if prev else None
        old_probs = prev.store.probs() if prev else None
        old_spans = prev.store.all_spans() if prev else None
        raw_path = gen / NEW_VECTORS
        raw = (np.memmap(raw_path, dtype=np.float32, mode="r").reshape(-1, dim)
               if raw_path.is_file() and raw_path.stat().st_size else None)
        vec = np.lib.format.open_memmap(gen / L.VECTORS, "w+", np.float32, (n, dim))
        probs = np.zeros((n, n_labels), np.float32) if has_probs else None
        spans = np.zeros((n, 2), np.float64)
        for rec, (kind, src) in zip(records, sources):
            a, b = rec.first_row, rec.first_row + rec.n_windows
            if kind == "old":
                vec[a:b] = old_vec[src : src + rec.n_windows]
                spans[a:b] = old_spans[src : src + rec.n_windows]
                if probs is not None:
                    probs[a:b] = old_probs[src : src + rec.n_windows]
            else:
                offset, new_spans, new_probs = src
                vec[a:b] = raw[offset : offset + rec.n_windows]
                spans[a:b] = new_spans
                if probs is not None:
                    probs[a:b] = new_probs
        vec.flush()
        del vec, raw
        L.fsync_file(gen / L.VECTORS)
        if probs is not None:
            _save_npy(gen / L.PROBS, probs)
    (gen / NEW_VECTORS).unlink(missing_ok=True)
    write_meta(gen, records, spans)
    backend = {"name": "faiss"}
    if config.backend != "faiss":  # vectors searched elsewhere (index/backends)
        from sonicsearch.index.backends import write_backend_index
        backend = write_backend_index(gen, prev.meta if prev else None, records, dim,
                                      same_index, index_type, params, config.uri)
    elif same_index:
        L.link_or_copy(prev.gen / L.INDEX_FILE, gen / L.INDEX_FILE)
    else:
        vectors = np.load(gen / L.VECTORS, mmap_mode="r")
        index = build_faiss_index(vectors, index_type, params, device=config.device)
        try:
            faiss.write_index(index, str(gen / L.INDEX_FILE))
        except RuntimeError as exc:
            raise OSError(f"cannot write {L.INDEX_FILE} ({str(exc).splitlines()[0]})") \
                from None
        L.fsync_file(gen / L.INDEX_FILE)
        del index
    L.install_model(gen, Path(embedder.model_path), embedder.model_sha256,
                    prev.gen if prev else None)
    meta = _index_json(prev, embedder, records, n, index_type, params, reason)
    meta["backend"] = backend
    meta["sizes"] = L.file_sizes(gen)
    L.write_json(gen / L.INFO, meta)


def _has_probs(prev, sources) -> bool:
    """Whether the model gives probabilities (all files agree: they share the model)."""
    kind, src = sources[0]
    return (src[2] is not None) if kind == "new" else (prev.gen / L.PROBS).is_file()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())


def _index_json(prev, embedder, records, n, index_type, params, reason) -> dict[str, Any]:
    from sonicsearch._version import __version__

    now = datetime.now(UTC).isoformat(timespec="seconds")
    return {
        "format_version": L.FORMAT_VERSION,
        "sonicsearch_version": __version__,
        "created": prev.meta["created"] if prev else now,
        "updated": now,
        "model": {"arch": embedder.arch, "sha256": embedder.model_sha256,
                  "labels": list(embedder.labels), "file": L.MODEL},
        "features": dataclasses.asdict(embedder.feature_config),
        "dim": int(embedder.dim),
        "metric": "inner_product",
        "index_type": index_type,
        "index_params": params,
        "index_reason": reason,
        "counts": {"files": len(records), "vectors": int(n)},
    }
