"""Incremental index build: walk the inputs, embed only new or changed files, keep the stored
vectors of unchanged ones, drop files that disappeared, and write a new generation.

What the index holds after a build: every file it held before that still exists on disk,
plus every audio file under the inputs. A file is unchanged when its size and mtime are the
same, or when they differ but its bytes hash the same. ``rebuild=True`` starts from scratch
with exactly the inputs (also the way to drop a folder or to change the model).

New vectors stream to disk inside the new generation while embedding, so memory does not
grow with the collection beyond what the FAISS index itself needs.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.audio import AUDIO_EXTENSIONS, find_audio_files
from sonicsearch.config import IndexConfig
from sonicsearch.errors import AudioError, DataError, IndexStoreError
from sonicsearch.index import layout as L
from sonicsearch.index.backends import (
    BACKEND_REGISTRY,
    after_commit,
    check_backend,
    same_backend,
)
from sonicsearch.index.codec import COMPACT, choose_vectors, vector_format
from sonicsearch.index.faiss_index import check_index_type, choose_index_type, resolve_gpu
from sonicsearch.index.store import Store
from sonicsearch.index.style import WINDOW_MEAN
from sonicsearch.index.types import BuildReport, EmbeddedFile, Embedder, FileRecord
from sonicsearch.index.writer import (
    NEW_VECTORS,
    GenerationPlan,
    NewRows,
    OldRows,
    Previous,
    RowSource,
    write_generation,
)

Progress = Callable[[int, int, str], None]  # (files done, files to embed, current path)


def build_index(
    inputs: Iterable[str | Path],
    embedder: Embedder,
    index_dir: str | Path,
    config: IndexConfig | None = None,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> BuildReport:
    """Build or update the index in ``index_dir`` from audio files and folders.

    Args:
        inputs: audio files and/or folders (searched recursively).
        embedder: the model; must be the one the index was built with unless ``rebuild``.
        index_dir: the index directory (created when missing).
        config: index type and its parameters; defaults to ``IndexConfig()``.
        rebuild: ignore the existing index and embed everything again.
        progress: called as ``progress(done, total, path, windows, audio_seconds)`` before and
            after each embedded file (windows and seconds embedded so far in this build).

    Returns:
        A BuildReport; ``written`` is False when nothing changed (no new generation).

    Raises:
        IndexStoreError: another build holds the lock; the existing index is damaged or was
            built with another model or window settings (pass ``rebuild=True``).
        AudioError: an input does not exist.
        ConfigError: an unknown index type, or ``config.device`` names a missing GPU.
        DataError: the inputs hold no audio files, or none usable; the old index is untouched.
    """
    t0 = time.monotonic()
    config = config or IndexConfig()
    check_index_type(config.index_type)  # bad settings fail now, not after embedding
    check_backend(config.backend, config.uri)
    resolve_gpu(config.device)
    inputs = [Path(p) for p in inputs]
    layout = L.IndexLayout(index_dir)
    report = BuildReport(index_dir=str(layout.root))
    created = not layout.root.exists()
    try:
        with layout.lock():
            try:
                return _locked(inputs, embedder, layout, config, rebuild, report, progress, t0)
            except BaseException as exc:  # a failed first build leaves nothing misleading
                layout.first_build_failed(created, _why(exc))
                raise
    except OSError as exc:  # disk full, permissions: the live index is untouched
        raise IndexStoreError(f"cannot write index {layout.root}: "
                              f"{exc.strerror or exc}") from None


def _why(exc: BaseException) -> str:
    """A failed build's reason in a few words, for FAILED."""
    if isinstance(exc, OSError):
        return f"cannot write the index ({exc.strerror or exc})"
    return str(exc) or exc.__class__.__name__


def _locked(inputs, embedder, layout, config, rebuild, report, progress, t0) -> BuildReport:
    try:
        layout.cleanup()  # leftovers of killed builds
    except IndexStoreError:
        if not rebuild:  # a damaged CURRENT; a rebuild replaces it and cleans up after
            raise
    prev = None if rebuild else _open_previous(layout)
    if prev is not None:
        _check_compatible(prev.meta, embedder, layout.root)
    try:
        return _build(inputs, embedder, layout, config, prev, report, progress, t0)
    finally:
        if prev is not None:
            prev.store.close()


def _build(inputs, embedder, layout, config, prev, report, progress, t0) -> BuildReport:
    """The build's steps (plan, embed, write, commit, clean up) under one lock, in the
    order that keeps a killed build harmless: one function, so the order is in one place."""
    found = [p.resolve() for p in find_audio_files(inputs, report.skipped)]
    if not found:
        raise DataError(f"no audio files found in {', '.join(map(str, inputs))} (looked for "
                        f"{', '.join(sorted(AUDIO_EXTENSIONS))})")
    old = prev.store.by_path if prev else {}
    old_records = prev.store.records if prev else []
    candidates = set(map(str, found)) | {p for p in old if os.path.isfile(p)}
    report.removed = sorted(p for p in old if p not in candidates)

    kept: dict[str, tuple[FileRecord, int]] = {}  # path -> (record, first row in prev)
    to_embed: list[tuple[str, os.stat_result, str | None]] = []  # path, stat, known sha256
    meta_changed = False
    for path in sorted(candidates):
        try:
            st = os.stat(path)
            rec = old_records[old[path]] if path in old else None
            if rec is not None and (rec.size, rec.mtime_ns) == (st.st_size, st.st_mtime_ns):
                kept[path] = (rec, rec.first_row)
                continue
            sha = L.file_sha256(path) if rec is not None else None
        except OSError as exc:
            report.skipped.append((path, f"unreadable ({exc.strerror})"))
            continue
        if rec is not None and sha == rec.sha256:  # touched, same bytes
            kept[path] = (dataclasses.replace(rec, size=st.st_size, mtime_ns=st.st_mtime_ns),
                          rec.first_row)
            meta_changed = True
        else:
            to_embed.append((path, st, sha))

    gen = layout.new_generation() if to_embed else None
    try:
        new = _embed(embedder, to_embed, gen, report, progress) if to_embed else {}
        for path, _, _ in to_embed:
            if path in old:  # changed: either re-embedded, or now bad and dropped
                (report.updated if path in new else report.removed).append(path)
            elif path in new:
                report.added.append(path)
        report.removed.sort()
        report.unchanged = len(kept)
        usable = set(kept) | set(new)
        if not any(str(p) in usable for p in found):
            raise DataError(f"no usable audio in {', '.join(map(str, inputs))}: all "
                            f"{len(found)} files were skipped ({_reasons(report)})")
        records, sources = _assemble(kept, new)
        n_vectors = sum(r.n_windows for r in records)
        vectors = choose_vectors(n_vectors, embedder.dim, prev.meta if prev else None,
                                 config.vectors, config.compact_dim)
        compact = (vectors[0] == COMPACT  # a backend that searches the compact rows
                   and getattr(BACKEND_REGISTRY.get(config.backend), "compact_index", False))
        index_type, params, reason = choose_index_type(n_vectors, vectors[1], config,
                                                       compact=compact)
        report.files, report.vectors = len(records), n_vectors
        report.index_type, report.reason = index_type, reason
        same_vectors = prev is not None and not new and not report.removed
        same_vectors = same_vectors and vector_format(prev.meta) == vectors[0]
        same_index = (same_vectors and prev.meta["index_type"] == index_type
                      and _build_params(prev.meta["index_params"]) == _build_params(params)
                      and same_backend(prev.meta, config.backend, config.uri, layout.root))
        if (same_index and not meta_changed and prev.meta["index_params"] == params
                and "style" in prev.meta):  # an index from before style vectors gets them
            if gen is not None:  # everything that was to be embedded failed
                shutil.rmtree(gen, ignore_errors=True)
            report.generation = prev.gen.name
            return _finish(report, t0)
        gen = gen or layout.new_generation()
        write_generation(GenerationPlan(
            gen, prev, records, sources, embedder, index_type, params, reason, config,
            same_vectors=same_vectors, same_index=same_index, vectors=vectors))
        layout.commit(gen)
    except BaseException:
        if gen is not None:
            shutil.rmtree(gen, ignore_errors=True)
        raise
    report.written, report.generation = True, gen.name
    layout.cleanup()
    after_commit(layout.root, L.read_index_json(gen), prev.meta if prev else None)
    return _finish(report, t0)


def _embed(embedder, to_embed, gen, report, progress) -> dict[str, tuple[FileRecord, NewRows]]:
    """Embed files, appending their vectors to a raw file in ``gen``; bad files are skipped.

    Returns path -> (record, where its rows are in the raw file).
    """
    new: dict[str, tuple[FileRecord, NewRows]] = {}
    info = {path: (st, sha) for path, st, sha in to_embed}
    total, row = len(to_embed), 0
    if progress:
        progress(0, total, "", 0, 0.0)
    with open(gen / NEW_VECTORS, "wb") as raw:
        for done, (path, result) in enumerate(embedder.embed_files([p for p, _, _ in to_embed])):
            path = str(path)
            if isinstance(result, AudioError):
                report.skipped.append((path, result.reason))
            elif (problem := _check(result, embedder)) is not None:
                report.skipped.append((path, problem))
            else:
                st, sha = info[path]
                try:
                    sha = sha or L.file_sha256(path)
                except OSError as exc:
                    report.skipped.append((path, f"unreadable ({exc.strerror})"))
                    continue
                vectors = np.ascontiguousarray(result.vectors, dtype=np.float32)
                raw.write(vectors.tobytes())
                rec = FileRecord(path, st.st_size, st.st_mtime_ns, sha, float(result.duration),
                                 int(result.sample_rate), _label(result.probs, embedder.labels),
                                 len(vectors))
                probs = None if result.probs is None else np.asarray(result.probs, np.float32)
                new[path] = (rec, NewRows(row, np.asarray(result.spans, np.float64), probs,
                                          result.style))
                row += len(vectors)
                report.audio_seconds += float(result.duration)
            if progress:
                progress(done + 1, total, path, row, report.audio_seconds)
    return new


def _check(result: EmbeddedFile, embedder: Embedder) -> str | None:
    """Why an embedding cannot be indexed, or None."""
    v, n_labels = result.vectors, len(embedder.labels)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] != embedder.dim:
        return f"embedder returned vectors of shape {v.shape}"
    if np.asarray(result.spans).shape != (len(v), 2):
        return f"embedder returned spans of shape {np.asarray(result.spans).shape}"
    if result.probs is not None and result.probs.shape != (len(v), n_labels):
        return f"embedder returned probabilities of shape {result.probs.shape}"
    if not np.isfinite(v).all():
        return "embedding has NaN or infinite values"
    if result.style is None and getattr(embedder, "style_kind", WINDOW_MEAN) != WINDOW_MEAN:
        return "the model's style head gave no style vectors"
    if result.style is not None and not (np.isfinite(result.style.file).all()
                                         and np.isfinite(result.style.segments).all()):
        return "style vectors have NaN or infinite values"
    return None


def _label(probs: np.ndarray | None, labels: list[str]) -> str | None:
    if probs is None or not labels:
        return None
    return labels[int(np.argmax(np.asarray(probs).mean(axis=0)))]


def _assemble(kept, new) -> tuple[list[FileRecord], list[RowSource]]:
    """Records in path order with renumbered rows, and where each one's rows come from."""
    records: list[FileRecord] = []
    sources: list[RowSource] = []
    row = 0
    for path in sorted(set(kept) | set(new)):
        source: RowSource
        if path in kept:
            rec, old_first = kept[path]
            source = OldRows(old_first)
        else:
            rec, source = new[path]
        records.append(dataclasses.replace(rec, first_row=row))
        sources.append(source)
        row += rec.n_windows
    return records, sources


def _open_previous(layout: L.IndexLayout) -> Previous | None:
    gen = layout.current()
    if gen is None:
        return None
    try:
        meta = L.read_index_json(gen)
        L.verify(gen, meta, [L.META_DB])  # what the build reads and carries over
        return Previous(gen, meta, Store(gen))
    except IndexStoreError as exc:
        if "--rebuild" in str(exc):
            raise
        raise IndexStoreError(f"{exc}; pass --rebuild to build it again from scratch") from None


def _check_compatible(meta: dict[str, Any], embedder: Embedder, root: Path) -> None:
    model = meta["model"]
    if model["sha256"] != embedder.model_sha256:
        raise IndexStoreError(
            f"index {root} was built with model {model['sha256'][:12]} ({model['arch']}); this "
            f"model is {embedder.model_sha256[:12]} ({embedder.arch}): pass --rebuild to "
            "re-embed everything with it")
    old, fc = meta["features"], embedder.feature_config
    if (old["window_seconds"], old["hop_seconds"]) != (fc.window_seconds, fc.hop_seconds):
        raise IndexStoreError(
            f"index {root} was built with {old['window_seconds']:g} s windows every "
            f"{old['hop_seconds']:g} s; this build uses {fc.window_seconds:g} s every "
            f"{fc.hop_seconds:g} s: pass --rebuild to re-embed everything with them")


def _build_params(params: dict[str, Any]) -> dict[str, Any]:
    """Params that shape the FAISS file (search-time nprobe / efSearch are applied on open)."""
    return {k: v for k, v in params.items() if k not in ("nprobe", "ef_search")}


def _reasons(report: BuildReport) -> str:
    return ", ".join(f"{n} {r}" for r, n in report.skipped_by_reason().items()) or "none"


def _finish(report: BuildReport, t0: float) -> BuildReport:
    report.seconds = time.monotonic() - t0
    return report
