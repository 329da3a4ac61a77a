"""A catalogue of about 10^4 tracks grown from a few real ones, for the scale benchmark
(benchmarks/search_speed.py): query latency, bytes per window and identification as the
catalogue grows, on the product's own files and query path.

:func:`fill_index` writes one more generation of a real index (float32, built by
``build-index``): its real files as they are, plus synthetic tracks until the index holds
``n_windows`` rows. A synthetic track is a real *filler* track's window vectors blended
with another filler's (at a seeded offset), ``normalise(a + b)``, so its windows lie where
real music lies (a projection fitted on the collection sees the real distribution) but
repeat no real window. Files that are queried must not be fillers: a blend of a queried
track would sit near its windows (cosine ~0.8) and crowd its vote background as no real
catalogue does. The generation goes through :func:`sonicsearch.index.writer.write_generation`
and the index types and vector formats the build would choose, so its bytes on disk and its
search are what a build of that size writes. Synthetic paths do not exist on disk: a later
``build-index`` on the folder drops them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sonicsearch.config import IndexConfig
from sonicsearch.errors import ConfigError
from sonicsearch.index import layout as L
from sonicsearch.index.codec import FLOAT32, choose_vectors, vector_format
from sonicsearch.index.faiss_index import choose_index_type
from sonicsearch.index.store import Store
from sonicsearch.index.style import read_style
from sonicsearch.index.types import FileRecord
from sonicsearch.index.writer import (
    NEW_VECTORS,
    GenerationPlan,
    NewRows,
    OldRows,
    Previous,
    write_generation,
)

SYNTHETIC = "synthetic"  # the folder (under the index) synthetic tracks claim to be in


def fill_index(index_dir: str | Path, base_gen: str, embedder, n_windows: int,
               fillers: Sequence[int], config: IndexConfig, seed: int = 0) -> dict:
    """Write and commit a generation of ``index_dir``: generation ``base_gen``'s files plus
    synthetic tracks blended from its files ``fillers`` (ids), ``n_windows`` rows in all.

    Args:
        embedder: the index's model (its facts go into index.json; nothing is embedded).
        config: the index settings (index type and vector format are chosen from them).

    Returns:
        ``{"generation", "files", "vectors", "synthetic_files", "index_type",
        "vector_format"}``.

    Raises:
        ConfigError: fewer than two fillers, a base generation that is not float32, or
            ``n_windows`` below the base's rows.
    """
    layout = L.IndexLayout(index_dir)
    gen_path = layout.root / base_gen
    meta, store = L.read_index_json(gen_path), Store(gen_path)
    try:
        if len(fillers) < 2 or vector_format(meta) != FLOAT32 or n_windows < store.n_rows:
            raise ConfigError("fill_index needs >= 2 fillers, a float32 base generation and "
                              f"n_windows >= its {store.n_rows} rows")
        prev = Previous(gen_path, meta, store)
        records = list(store.records)
        sources: list = [OldRows(r.first_row) for r in records]
        gen = layout.new_generation()
        synth = _write_synthetic(gen, store, read_style(gen_path, meta), fillers,
                                 n_windows - store.n_rows, seed, layout.root)
        for rec, src in synth:
            records.append(rec)
            sources.append(src)
        first = 0
        for i, rec in enumerate(records):  # row order: kept files, then synthetic ones
            records[i] = dataclasses.replace(rec, first_row=first)
            first += rec.n_windows
        fmt = choose_vectors(first, embedder.dim, None, config.vectors, config.compact_dim)
        kind, params, why = choose_index_type(first, fmt[1], config, compact=fmt[0] != FLOAT32)
        write_generation(GenerationPlan(gen, prev, records, sources, embedder, kind, params,
                                        why, config, vectors=fmt))
        layout.commit(gen)
        return {"generation": gen.name, "files": len(records), "vectors": first,
                "synthetic_files": len(synth), "index_type": kind, "vector_format": fmt[0]}
    finally:
        store.close()


def _write_synthetic(gen: Path, store: Store, style, fillers: Sequence[int], rows: int,
                     seed: int, root: Path) -> list[tuple[FileRecord, NewRows]]:
    """Synthetic tracks of ``rows`` rows in all, their raw vectors appended to the
    generation's raw vector file (as a build streams them)."""
    vectors = store.vectors()
    probs = store.probs()
    rng = np.random.default_rng(seed)
    out: list[tuple[FileRecord, NewRows]] = []
    offset = 0
    with open(gen / NEW_VECTORS, "wb") as raw:
        while offset < rows:
            a, b = rng.choice(np.asarray(fillers), size=2, replace=False).tolist()
            ra, rb = store.records[a], store.records[b]
            n = min(ra.n_windows, rows - offset)
            va = np.asarray(vectors[ra.first_row : ra.first_row + n], np.float32)
            vb = np.asarray(vectors[rb.first_row : rb.first_row + rb.n_windows], np.float32)
            shift = int(rng.integers(rb.n_windows))
            mixed = va + vb[(np.arange(n) + shift) % rb.n_windows]
            mixed /= np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
            raw.write(np.ascontiguousarray(mixed, np.float32).tobytes())
            i = len(out)
            rec = FileRecord(str(root / SYNTHETIC / f"{i:06d}.wav"), 0, 0,
                             hashlib.sha256(f"synthetic {seed} {i}".encode()).hexdigest(),
                             float(ra.duration), int(ra.sample_rate), ra.label, n)
            p = None if probs is None else np.asarray(probs[ra.first_row : ra.first_row + n])
            out.append((rec, NewRows(offset, store.file_spans(a)[:n], p,
                                     style.of(a) if style is not None else None)))
            offset += n
    return out

