"""Writing one generation: vectors, probabilities, metadata, the backend's index (through
index/backends), the model and index.json, each fsynced. The caller commits it
(layout.IndexLayout.commit) afterwards.

Rows of files kept from the previous generation are copied from its ``vectors.npy`` (a
memory map); rows embedded by this build come from a raw float32 file that the build
streamed into the new generation while embedding. A compact generation (index/codec.py)
copies a compact previous generation's codes and encodes new rows with its projection; the
first compact generation is written as float32, then fitted and encoded.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch._version import __version__
from sonicsearch.config import IndexConfig
from sonicsearch.embed.types import EmbedderProtocol, StyleVectors, pool_style
from sonicsearch.errors import IndexStoreError
from sonicsearch.index import layout as L
from sonicsearch.index.backends import GenerationSpec, write_backend
from sonicsearch.index.codec import (
    CODES,
    COMPACT,
    FLOAT32,
    PROJECTION,
    VECTOR_FILES,
    compact_generation,
    vector_format,
)
from sonicsearch.index.store import Store, write_meta
from sonicsearch.index.style import (
    STYLE_FILES,
    WINDOW_MEAN,
    pool_record,
    read_style,
    write_style,
)
from sonicsearch.index.types import FileRecord

NEW_VECTORS = "new-vectors.f32"  # raw float32 rows embedded by this build (temporary)


@dataclass(frozen=True)
class OldRows:
    """A kept file's rows: copied from the previous generation, starting at ``first_row``."""

    first_row: int


@dataclass(frozen=True)
class NewRows:
    """An embedded file's rows: at ``offset`` (rows) in this build's raw vector file."""

    offset: int
    spans: np.ndarray  # (n, 2) seconds
    probs: np.ndarray | None  # (n, labels); None for a label-free model
    style: StyleVectors | None = None  # a style head's; None: pooled from the window rows


RowSource = OldRows | NewRows


@dataclass
class Previous:
    """The generation a build starts from."""

    gen: Path
    meta: dict[str, Any]
    store: Store


@dataclass
class GenerationPlan:
    """Everything :func:`write_generation` writes into one new generation.

    ``records`` are in row order (``first_row`` renumbered); ``sources[i]`` says where the
    rows of ``records[i]`` come from. ``same_vectors``: no file was added or removed, so
    the previous vectors are linked as they are; ``same_index``: the backend's index too.
    """

    gen: Path
    prev: Previous | None
    records: list[FileRecord]
    sources: list[RowSource]
    embedder: EmbedderProtocol
    index_type: str
    params: dict[str, Any]
    reason: str
    config: IndexConfig
    same_vectors: bool = False
    same_index: bool = False
    # codec.choose_vectors: format, stored dim, why, and the format later builds keep
    vectors: tuple[str, int, str, str] = (FLOAT32, 0, "", FLOAT32)

    @property
    def n_rows(self) -> int:
        return sum(r.n_windows for r in self.records)


def write_generation(plan: GenerationPlan) -> None:
    """Write the generation ``plan`` describes, every file fsynced, index.json last (with
    the size and sha256 of every other file)."""
    gen, prev = plan.gen, plan.prev
    linked: list[str] = []
    if plan.same_vectors:  # only metadata or the index type changed: reuse the arrays
        for name in (*VECTOR_FILES, L.PROBS):
            if (prev.gen / name).is_file():
                L.link_or_copy(prev.gen / name, gen / name)
                linked.append(name)
        spans = prev.store.all_spans()
    else:
        spans = _write_arrays(plan)
    style = _write_style(plan, spans, linked)
    (gen / NEW_VECTORS).unlink(missing_ok=True)
    fmt, dim, why, asked = plan.vectors
    if fmt == COMPACT and not (gen / CODES).is_file():  # the index goes compact now
        compact_generation(gen, dim)
        linked[:] = [name for name in linked if name != L.VECTORS]
    write_meta(gen, plan.records, spans)
    spec = GenerationSpec(dim or int(plan.embedder.dim), plan.index_type, plan.params,
                          plan.same_index, plan.config.device, plan.config.uri or None)
    backend, reused = write_backend(plan.config.backend, gen,
                                    (prev.gen, prev.meta) if prev else None, plan.records, spec)
    linked += reused
    emb = plan.embedder
    L.install_model(gen, Path(emb.model_path), emb.model_sha256, prev.gen if prev else None)
    meta = _index_json(plan)
    meta["backend"] = backend
    meta["vectors"] = {"format": fmt, "dim": dim or int(emb.dim), "reason": why,
                       "asked": asked}
    if style is not None:  # (None only in tests that make an index of before style vectors)
        meta["style"] = style
    meta["sizes"] = L.file_sizes(gen)
    old_sums = prev.meta.get("sha256", {}) if prev else {}
    known = {name: old_sums[name] for name in linked if name in old_sums}
    meta["sha256"] = L.file_checksums(gen, {**known, L.MODEL: emb.model_sha256})
    L.write_index_json(gen, meta)


def _write_arrays(plan: GenerationPlan) -> np.ndarray:
    """vectors.npy (vectors-q8.npy after a compact generation) and probs.npy from kept and
    new rows; returns the spans of every row."""
    gen, prev, n = plan.gen, plan.prev, plan.n_rows
    dim, n_labels = plan.embedder.dim, len(plan.embedder.labels)
    old_vec = prev.store.vectors() if prev else None
    name, dtype, width, encode = L.VECTORS, np.float32, dim, None
    if prev is not None and vector_format(prev.meta) == COMPACT:  # codes in, codes out
        name, dtype, width, encode = CODES, np.int8, old_vec.shape[1], old_vec.projection.encode
        old_vec = old_vec.codes
        L.link_or_copy(prev.gen / PROJECTION, gen / PROJECTION)
    old_probs = prev.store.probs() if prev else None
    old_spans = prev.store.all_spans() if prev else None
    raw = _raw_rows(plan)
    vec = np.lib.format.open_memmap(gen / name, "w+", dtype, (n, width))
    probs = np.zeros((n, n_labels), np.float32) if _has_probs(plan) else None
    spans = np.zeros((n, 2), np.float64)
    for rec, src in zip(plan.records, plan.sources):
        a, b = rec.first_row, rec.first_row + rec.n_windows
        if isinstance(src, OldRows):
            old = slice(src.first_row, src.first_row + rec.n_windows)
            vec[a:b], spans[a:b] = old_vec[old], old_spans[old]
            if probs is not None:
                probs[a:b] = old_probs[old]
        else:
            rows = raw[src.offset : src.offset + rec.n_windows]
            vec[a:b] = rows if encode is None else encode(rows)
            spans[a:b] = src.spans
            if probs is not None:
                probs[a:b] = src.probs
    vec.flush()
    del vec, raw
    L.fsync_file(gen / name)
    if probs is not None:
        _save_npy(gen / L.PROBS, probs)
    return spans


def _write_style(plan: GenerationPlan, spans: np.ndarray, linked: list[str]) -> dict[str, Any]:
    """The generation's style files: a style head's vectors as the embedder gave them, kept
    files' from the previous generation, and any other file's pooled from its window rows
    (an index built before style vectors). Returns index.json's ``style`` entry.

    Raises:
        IndexStoreError: a style-head model and a kept file with no stored style vectors.
    """
    gen, prev = plan.gen, plan.prev
    kind = getattr(plan.embedder, "style_kind", WINDOW_MEAN)
    old = read_style(prev.gen, prev.meta) if prev is not None else None
    if old is not None and old.kind != kind:
        old = None
    if old is not None and plan.same_vectors:  # the same files: reuse them as they are
        for name in STYLE_FILES:
            L.link_or_copy(prev.gen / name, gen / name)
        linked += STYLE_FILES
        return dict(prev.meta["style"])
    old_id = {r.first_row: i for i, r in enumerate(prev.store.records)} if prev else {}
    raw = _raw_rows(plan)  # the model's vectors of new rows (kept rows: none in a compact
    vectors = (np.load(gen / L.VECTORS, mmap_mode="r")  # generation, whose style is kept)
               if (gen / L.VECTORS).is_file() else None)
    per_file: list[StyleVectors] = []
    for rec, src in zip(plan.records, plan.sources):
        if isinstance(src, NewRows) and src.style is not None:
            per_file.append(src.style)
        elif isinstance(src, OldRows) and old is not None:
            per_file.append(old.of(old_id[src.first_row]))
        elif kind != WINDOW_MEAN or (vectors is None and isinstance(src, OldRows)):
            raise IndexStoreError(f"{rec.path} has no style vectors of this model's style "
                                  "head: pass --rebuild to embed everything again")
        elif isinstance(src, NewRows):
            per_file.append(pool_style(raw[src.offset : src.offset + rec.n_windows],
                                       src.spans))
        else:
            per_file.append(pool_record(rec, vectors, spans))
    del vectors, raw
    return write_style(gen, per_file, kind)


def _raw_rows(plan: GenerationPlan) -> np.ndarray | None:
    """This build's raw float32 rows (a memory map), or None when it embedded nothing."""
    path = plan.gen / NEW_VECTORS
    if not path.is_file() or not path.stat().st_size:
        return None
    return np.memmap(path, dtype=np.float32, mode="r").reshape(-1, plan.embedder.dim)


def _has_probs(plan: GenerationPlan) -> bool:
    """Whether the model gives probabilities (all files agree: they share the model)."""
    src = plan.sources[0]
    if isinstance(src, NewRows):
        return src.probs is not None
    return (plan.prev.gen / L.PROBS).is_file()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())


def _index_json(plan: GenerationPlan) -> dict[str, Any]:
    prev, emb = plan.prev, plan.embedder
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return {
        "format_version": L.FORMAT_VERSION,
        "sonicsearch_version": __version__,
        "created": prev.meta["created"] if prev else now,
        "updated": now,
        "model": {"arch": emb.arch, "sha256": emb.model_sha256,
                  "labels": list(emb.labels), "file": L.MODEL},
        "features": dataclasses.asdict(emb.feature_config),
        "dim": int(emb.dim),
        "embedding": getattr(emb, "precision", "float32"),
        "metric": "inner_product",
        "index_type": plan.index_type,
        "index_params": plan.params,
        "index_reason": plan.reason,
        "counts": {"files": len(plan.records), "vectors": int(plan.n_rows)},
    }
