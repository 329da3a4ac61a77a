"""Distributed embedding extraction with Ray Data, behind the ordinary Embedder interface.

:class:`RayEmbedder` wraps a local embedder (for the model's facts: dim, labels, sha256,
windowing, and for queries) and replaces ``embed_files``: the file list becomes a Ray
dataset, actors each load the model once (``num_gpus=1`` each when the cluster has GPUs)
and decode + embed batches of files in parallel; results stream back to the driver, which
writes them through the normal incremental build and atomic commit, to either backend.

Failures: a file that cannot be decoded comes back as its AudioError (a skipped file, as
in a local build). A worker process that dies (killed, out of memory) is restarted and its
batch retried (``max_restarts`` / ``max_task_retries``), so its files are still embedded.

``address``: None starts a local Ray with ``num_workers`` CPUs (stopped afterwards);
``"auto"`` or ``"ray://host:10001"`` joins a running cluster. Ray is imported only here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.config import FeatureConfig
from sonicsearch.embed.types import StyleVectors
from sonicsearch.errors import AudioError, ConfigError
from sonicsearch.index.types import EmbeddedFile, Embedder

BATCH_FILES = 4  # files per Ray task: small, so a retried task redoes little work
# Times a dead embedding actor is restarted (its batch retried each time). Ray 2.60 takes it
# as an extra map_batches keyword passed on to the actors' remote options, the way its own
# actor-pool operator documents (``map_batches(..., max_restarts=0)``); left out, Ray
# restarts forever, and a file that always kills its actor would never end the build.
MAX_RESTARTS = 3


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("--ray needs Ray Data: pip install 'sonicsearch[scale]' (or "
                          "'ray[data]')") from None
    return ray


class EmbedActor:
    """One Ray actor: loads the model once, embeds batches of paths."""

    def __init__(self, factory: Callable[[], Embedder], features: dict[str, Any],
                 threads: int = 1):
        try:
            import torch

            torch.set_num_threads(max(1, threads))
        except ImportError:  # a torch-free embedder
            pass
        self.embedder = factory()
        self.embedder.feature_config = FeatureConfig(**features)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {k: [] for k in ("path", "error", "vectors", "spans", "probs",
                                                 "n", "duration", "sample_rate", "style",
                                                 "style_spans")}
        for path, result in self.embedder.embed_files(list(batch["path"])):
            out["path"].append(str(path))
            ok = not isinstance(result, AudioError)
            out["error"].append("" if ok else result.reason)
            out["n"].append(len(result.vectors) if ok else 0)
            out["vectors"].append(np.asarray(result.vectors, np.float32).tobytes() if ok
                                  else b"")
            out["spans"].append(np.asarray(result.spans, np.float64).tobytes() if ok else b"")
            probs = result.probs if ok else None
            out["probs"].append(b"" if probs is None else np.asarray(probs, np.float32)
                                .tobytes())
            out["duration"].append(float(result.duration) if ok else 0.0)
            out["sample_rate"].append(int(result.sample_rate) if ok else 0)
            style = result.style if ok else None  # a style head's vectors: file row first
            out["style"].append(b"" if style is None else np.vstack(
                [style.file, style.segments]).astype(np.float32).tobytes())
            out["style_spans"].append(b"" if style is None else np.asarray(
                style.spans, np.float64).tobytes())
        return {k: np.array(v, dtype=object if k in _BYTES else None)
                for k, v in out.items()}


_BYTES = ("vectors", "spans", "probs", "style", "style_spans")


class RayEmbedder:
    """An Embedder whose ``embed_files`` runs on Ray; everything else is the local one's.

    Args:
        local: the model loaded in the driver.
        factory: builds the same model inside a worker (picklable, e.g. a
            ``functools.partial`` of :func:`sonicsearch.index.api.load_embedder`).
        address: None for a local Ray, else a cluster address (``auto``, ``ray://...``).
        num_workers: actors (local Ray: also its CPU count); None = all local CPUs.
        batch_files: files per task.
    """

    def __init__(self, local: Embedder, factory: Callable[[], Embedder],
                 address: str | None = None, num_workers: int | None = None,
                 batch_files: int = BATCH_FILES):
        if num_workers is not None and num_workers < 1:
            raise ConfigError(f"--ray-workers must be at least 1, got {num_workers}")
        self.local, self.factory, self.address = local, factory, address
        self.num_workers, self.batch_files = num_workers, batch_files
        self.dim, self.labels = local.dim, list(local.labels)
        self.model_sha256, self.model_path = local.model_sha256, Path(local.model_path)
        self.arch, self.feature_config = local.arch, local.feature_config
        self.style_kind = getattr(local, "style_kind", "window-mean")
        self.style_dim = getattr(local, "style_dim", local.dim)
        self.precision = getattr(local, "precision", "float32")  # the workers' path

    def embed_file(self, path: str | Path) -> EmbeddedFile:
        return self.local.embed_file(path)

    def embed_waveform(self, wave: np.ndarray, sample_rate: int) -> EmbeddedFile:
        return self.local.embed_waveform(wave, sample_rate)

    def embed_files(self, paths: Iterable[str | Path]
                    ) -> Iterator[tuple[Path, EmbeddedFile | AudioError]]:
        """Embed on Ray; results arrive as workers finish (not in input order)."""
        paths = [str(p) for p in paths]
        if not paths:
            return
        ray = _import_ray()
        started = not ray.is_initialized()
        if started:
            _init(ray, self.address, self.num_workers)
        try:
            yield from self._run(ray, paths)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, paths: list[str]) -> Iterator[tuple[Path, EmbeddedFile | AudioError]]:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        workers = self.num_workers or (gpus or cpus)
        if gpus:
            workers = min(workers, gpus)
        per_actor = 1 if gpus else max(1, cpus // workers)  # CPUs (torch threads) per actor
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ds = ray.data.from_items([{"path": p} for p in paths],
                                 override_num_blocks=max(1, min(len(paths) // self.batch_files,
                                                                1024)))
        ds = ds.map_batches(
            EmbedActor, batch_size=self.batch_files,
            fn_constructor_kwargs={"factory": self.factory,
                                   "features": dataclasses.asdict(self.feature_config),
                                   "threads": per_actor},
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(paths))),
            num_gpus=1 if gpus else 0, num_cpus=per_actor,
            max_restarts=MAX_RESTARTS, max_task_retries=-1)
        for row in ds.iter_rows():
            yield Path(row["path"]), _decode(row)


def _init(ray, address: str | None, num_workers: int | None) -> None:
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
    if address:
        ray.init(address=address, **kwargs)
    else:  # a local Ray on a small, busy machine may need more than its default 30 s
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
        ray.init(num_cpus=num_workers or os.cpu_count() or 1, **kwargs)


def _decode(row: dict[str, Any]) -> EmbeddedFile | AudioError:
    if row["error"]:
        return AudioError(row["path"], row["error"])
    n = int(row["n"])  # shapes as the worker sent them: the build checks them against dim
    vectors = np.frombuffer(row["vectors"], np.float32).reshape(n, -1)
    spans = np.frombuffer(row["spans"], np.float64).reshape(n, -1)
    probs = np.frombuffer(row["probs"], np.float32).reshape(n, -1) if len(row["probs"]) \
        else None
    style = None
    if len(row.get("style") or b""):
        spans_s = np.frombuffer(row["style_spans"], np.float64).reshape(-1, 2)
        rows = np.frombuffer(row["style"], np.float32).reshape(len(spans_s) + 1, -1)
        style = StyleVectors(rows[0].copy(), rows[1:].copy(), spans_s.copy())
    return EmbeddedFile(vectors, spans, probs, float(row["duration"]), int(row["sample_rate"]),
                        style)
