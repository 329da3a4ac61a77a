"""Embedder: a checkpoint -> L2-normalised window vectors with their time spans and the
head's label probabilities.

Decoding runs on a producer thread that streams windows into a bounded queue while the
model works on the previous batch, so the model is not starved and memory stays flat
however long the files are. An in-memory waveform is cut into windows a block at a time
(``WAVEFORM_BLOCK_WINDOWS``), never all at once.

Quiet windows (RMS below ``QUIET_DBFS``) are left out of a file's vectors, unless every
window of the file is quiet: near-silence looks alike in every file (more so through a
level-normalising front end), so a silent gap would match any other file's gap at a score
near 1.0 and carry no identity. This keeps the ``max`` roll-up and the no-match calibration
about the music.

This module does not import FAISS: the index contract it satisfies lives in
:mod:`sonicsearch.embed.types`.
"""

from __future__ import annotations

import copy
import dataclasses
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from sonicsearch.audio import (
    SILENCE_PEAK,
    audio_info,
    check_usable,
    iter_windows,
    resample,
    too_short,
    window_starts,
)
from sonicsearch.embed.types import (
    EmbeddedFile,
    StylePool,
    StyleVectors,
    check_hop,
    check_window,
    pool_style,
)
from sonicsearch.errors import AudioError
from sonicsearch.model.style import forward_with_stats
from sonicsearch.utils.runtime import prepare_torch, resolve_device

_END = object()
WAVEFORM_BLOCK_WINDOWS = 256  # windows cut from an in-memory waveform at a time
INT8_BATCH = 64  # windows per pass on the int8 path (as fast as 32 on one thread, faster on
# two in a first measurement; benchmarks/embed_speed.py --levers)
QUIET_DBFS = -60.0  # windows with an RMS below this are left out (unless all of a file's are)


def window_rms_dbfs(windows: np.ndarray) -> np.ndarray:
    """Each window's RMS level in dBFS, ``(n,)`` (-200 for digital silence)."""
    w = np.asarray(windows, dtype=np.float64)
    rms = np.sqrt(np.mean(w * w, axis=1)) if w.size else np.zeros(len(w))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def loud_mask(levels_dbfs: np.ndarray, quiet_dbfs: float | None) -> np.ndarray:
    """Which windows to keep: those at or above ``quiet_dbfs``, or all of them when none is
    (a quiet file is still indexed) or when ``quiet_dbfs`` is None."""
    keep = np.ones(len(levels_dbfs), bool)
    if quiet_dbfs is None:
        return keep
    loud = np.asarray(levels_dbfs) >= quiet_dbfs
    return loud if loud.any() else keep


class Embedder:
    """Loads a checkpoint once and embeds files or waveforms window by window.

    The same input always gives the same vectors (eval mode, no randomness). Windows
    quieter than ``quiet_dbfs`` are left out (see the module docstring); None keeps all.
    """

    def __init__(self, model, info: dict, model_path: Path, device: torch.device,
                 batch_size: int = 32, quiet_dbfs: float | None = QUIET_DBFS):
        prepare_torch()
        self.model = model.eval()
        self.info = info
        self.model_path = Path(model_path)
        self.device = device
        self.batch_size = batch_size
        self.feature_config = model.feature_config
        self.labels: list[str] = list(info.get("labels") or [])
        self.arch: str = info["arch"]
        self.model_sha256: str = info["sha256"]
        self.dim: int = int(model.backbone.embed_dim)
        self.quiet_dbfs = quiet_dbfs
        head = getattr(model, "style_head", None)
        self.style_head = head.eval() if head is not None else None
        self.style_dim: int = head.dim if head is not None else self.dim
        self.style_kind: str = "head" if head is not None else "window-mean"
        self.precision = "float32"  # or "int8": see :meth:`int8`
        self._int8: torch.nn.Module | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", batch_size: int = 32,
                        window_seconds: float | None = None,
                        hop_seconds: float | None = None,
                        quiet_dbfs: float | None = QUIET_DBFS) -> Embedder:
        """Load ``model.pt`` (from ``train`` or ``pretrain``), or ``"base"`` for the shipped
        base model, onto ``device``.

        Args:
            window_seconds, hop_seconds: window this embedder differently from the model's
                training default (an index's windowing); None keeps the model's.
            quiet_dbfs: leave out windows with an RMS below this (None: keep all).

        Raises:
            ModelError: missing or unreadable checkpoint.
        """
        # deferred: torchvision (the backbones) loads with a checkpoint, not with the index
        from sonicsearch.model.checkpoint import load_checkpoint

        dev = resolve_device(device)
        model, info = load_checkpoint(path, device=dev)
        return cls(model, info, Path(info["path"]), dev, batch_size,
                   quiet_dbfs).with_windows(window_seconds, hop_seconds)

    def with_windows(self, window_seconds: float | None = None,
                     hop_seconds: float | None = None) -> Embedder:
        """This model windowed differently, as a new Embedder sharing the loaded weights
        (this one is unchanged); None keeps a setting.

        Raises:
            ConfigError: a window too short for the front end, or a hop under one sample.
        """
        fc = self.feature_config
        window = fc.window_seconds if window_seconds is None else window_seconds
        hop = fc.hop_seconds if hop_seconds is None else hop_seconds
        check_window(fc, window)
        check_hop(fc, hop)
        other = copy.copy(self)
        other.feature_config = dataclasses.replace(fc, window_seconds=window, hop_seconds=hop)
        return other

    def int8(self, batch_size: int = INT8_BATCH) -> Embedder:
        """This model on the int8 path (``build-index --fast``), as a new Embedder sharing
        the float model (this one is unchanged): the backbone quantised for x86 CPUs from
        the model's stored calibration (:mod:`sonicsearch.model.int8`), ``batch_size``
        windows per pass at least.

        Raises:
            ModelError: no calibration is stored for this model, or its backbone is not a
                ResNet. DeviceError: the model is not on the CPU, or this PyTorch has no
                x86 int8 kernels.
        """
        from sonicsearch.errors import DeviceError
        from sonicsearch.model import int8

        if self.device.type != "cpu":
            raise DeviceError(f"the int8 path (--fast) runs on the CPU, not {self.device}; "
                              "use --device cpu, or drop --fast on a GPU")
        if not int8.int8_available():
            raise DeviceError("this PyTorch has no x86 int8 kernels; build without --fast")
        other = copy.copy(self)
        other._int8 = int8.quantize(self.model, int8.load_calibration(self.model_sha256,
                                                                      self.arch))
        other.precision, other.batch_size = "int8", max(self.batch_size, batch_size)
        return other

    def embed(self, source: str | Path | np.ndarray, sample_rate: int | None = None):
        """docs/api.md: ``(vectors (n, dim) float32, spans (n, 2) seconds)``."""
        out = (self.embed_waveform(source, sample_rate) if isinstance(source, np.ndarray)
               else self.embed_file(source))
        return out.vectors, out.spans

    def style(self, source: str | Path | np.ndarray,
              sample_rate: int | None = None) -> StyleVectors:
        """What a file or waveform sounds like: its :class:`StyleVectors` (one vector for
        the whole and one per segment of about 20 s), from the model's style head, or the
        mean of its window vectors for a model without one.

        Raises:
            AudioError: an unusable file or waveform.
        """
        out = (self.embed_waveform(source, sample_rate) if isinstance(source, np.ndarray)
               else self.embed_file(source))
        return out.style if out.style is not None else pool_style(out.vectors, out.spans)

    def embed_file(self, path: str | Path) -> EmbeddedFile:
        """Embed every window of a file. Raises AudioError for an unusable file."""
        for _, result in self.embed_files([path]):
            if isinstance(result, AudioError):
                raise result
            return result
        raise AudioError(path, "no windows")  # unreachable: embed_files yields once per file

    def embed_waveform(self, wave: np.ndarray, sample_rate: int | None = None) -> EmbeddedFile:
        """Embed an in-memory mono (or (n, channels)) waveform at ``sample_rate``."""
        fc = self.feature_config
        sr = sample_rate or fc.sample_rate
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 2:
            wave = wave.mean(axis=1)
        if not np.isfinite(wave).all():
            raise AudioError("<waveform>", "contains NaN or infinite samples")
        if sr != fc.sample_rate:
            wave = resample(torch.from_numpy(wave), sr, fc.sample_rate).numpy()
        check_usable(wave, fc.sample_rate, "<waveform>", fc.min_seconds)
        win = int(round(fc.window_seconds * fc.sample_rate))
        hop = int(round(fc.hop_seconds * fc.sample_rate))
        starts = window_starts(wave.size, win, hop)
        vecs, probs, levels = [], [], []
        pool = StylePool() if self.style_head is not None else None
        for i in range(0, len(starts), WAVEFORM_BLOCK_WINDOWS):  # bounded: one block of windows
            block = np.stack([wave[s : s + win] for s in starts[i : i + WAVEFORM_BLOCK_WINDOWS]])
            v, p, stats = self._run(block.astype(np.float32, copy=False))
            vecs.append(v)
            levels.append(window_rms_dbfs(block))
            if p is not None:
                probs.append(p)
            if pool is not None:
                first = np.asarray(starts[i : i + WAVEFORM_BLOCK_WINDOWS], np.float64)
                self._pool(pool, stats, first / fc.sample_rate, levels[-1])
        start = np.asarray(starts, dtype=np.float64)
        spans = np.stack([start, np.minimum(start + win, wave.size)], axis=1) / fc.sample_rate
        return self._result(vecs, probs, levels, spans, wave.size / fc.sample_rate, sr, pool)

    def embed_files(
        self, paths: Iterable[str | Path]
    ) -> Iterator[tuple[Path, EmbeddedFile | AudioError]]:
        """Embed many files in order, decoding ahead on a thread; bad files yield AudioError.

        The decode-ahead thread and the consumer loop share their queue and stop flag, so
        they live in one function.
        """
        fc = self.feature_config
        q: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()

        def produce() -> None:
            for p in paths:
                if stop.is_set():
                    return
                p = Path(p)
                try:
                    info = audio_info(p)
                    if info.duration < fc.min_seconds:
                        raise AudioError(p, too_short(info.duration, fc.min_seconds))
                    batch, starts = [], []
                    for start, w in iter_windows(p, fc.sample_rate, fc.window_seconds,
                                                 fc.hop_seconds):
                        batch.append(w)
                        starts.append(start)
                        if len(batch) == self.batch_size:
                            q.put(("windows", p, np.stack(batch), starts))
                            batch, starts = [], []
                    if batch:
                        q.put(("windows", p, np.stack(batch), starts))
                    q.put(("done", p, info, None))
                except AudioError as exc:
                    q.put(("error", p, exc, None))
                except Exception as exc:  # noqa: BLE001 - surfaced on the consumer side
                    q.put(("crash", p, exc, None))
                    return
            q.put(_END)

        thread = threading.Thread(target=produce, daemon=True, name="sonicsearch-decode")
        thread.start()
        vecs: list[np.ndarray] = []
        probs: list[np.ndarray] = []
        starts: list[float] = []
        levels: list[np.ndarray] = []
        peak = 0.0
        pool = StylePool() if self.style_head is not None else None
        try:
            while True:
                msg = q.get()
                if msg is _END:
                    return
                kind, p, payload, extra = msg
                if kind == "windows":
                    v, pr, stats = self._run(payload)
                    vecs.append(v)
                    if pr is not None:
                        probs.append(pr)
                    starts.extend(extra)
                    levels.append(window_rms_dbfs(payload))
                    peak = max(peak, float(np.abs(payload).max()))
                    if pool is not None:
                        self._pool(pool, stats, np.asarray(extra, np.float64), levels[-1])
                    continue
                if kind == "crash":
                    raise payload
                if kind == "error":
                    yield p, payload
                elif peak < SILENCE_PEAK:
                    yield p, AudioError(p, "silent (peak below -80 dBFS)")
                else:
                    yield p, self._assemble(vecs, probs, starts, levels, payload, pool)
                vecs, probs, starts, levels, peak = [], [], [], [], 0.0
                pool = StylePool() if self.style_head is not None else None
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)

    def _assemble(self, vecs, probs, starts, levels, info, pool) -> EmbeddedFile:
        fc = self.feature_config
        start = np.asarray(starts, dtype=np.float64)
        spans = np.stack([start, np.minimum(start + fc.window_seconds, info.duration)], axis=1)
        return self._result(vecs, probs, levels, spans, info.duration, info.sample_rate, pool)

    def _result(self, vecs, probs, levels, spans, duration, sample_rate,
                pool: StylePool | None = None) -> EmbeddedFile:
        """One source's windows as an EmbeddedFile, its quiet windows left out."""
        keep = loud_mask(np.concatenate(levels), self.quiet_dbfs)
        style = None
        if pool is not None:
            style = pool.vectors(self._project)
            style.spans[:, 1] = np.minimum(style.spans[:, 1], duration)
        return EmbeddedFile(np.concatenate(vecs)[keep], spans[keep],
                            np.concatenate(probs)[keep] if probs else None, duration,
                            sample_rate, style)

    def _pool(self, pool: StylePool, stats: np.ndarray, starts: np.ndarray,
              levels: np.ndarray) -> None:
        """Add one batch's stage statistics to a file's style pool."""
        spans = np.stack([starts, starts + self.feature_config.window_seconds], axis=1)
        loud = None if self.quiet_dbfs is None else levels >= self.quiet_dbfs
        pool.add(stats, spans, loud)

    @torch.no_grad()
    def _project(self, means: np.ndarray) -> np.ndarray:
        """Mean stage statistics -> the style head's vectors."""
        head = self.style_head
        x = torch.from_numpy(np.ascontiguousarray(means, dtype=np.float32))
        return head(x.to(next(head.parameters()).device)).float().cpu().numpy()

    @torch.no_grad()
    def _run(self, windows: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Normalised window vectors, head probabilities (None without labels) and, for a
        model with a style head, each window's stage statistics (else None)."""
        vecs, probs, stats = [], [], []
        for i in range(0, len(windows), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(windows[i : i + self.batch_size]))
            if self._int8 is not None:
                emb, pr, st = self._forward_int8(x)
                if self.style_head is not None:
                    stats.append(st.numpy())
            elif self.style_head is not None:
                emb, pr, st = forward_with_stats(self.model, x.to(self.device))
                stats.append(st.cpu().numpy())
            else:
                emb, pr = self.model.embed(x.to(self.device))
            emb = torch.nn.functional.normalize(emb.float(), dim=1)
            vecs.append(emb.cpu().numpy())
            if pr is not None:
                probs.append(pr.float().cpu().numpy())
        return (np.concatenate(vecs).astype(np.float32),
                np.concatenate(probs).astype(np.float32) if probs else None,
                np.concatenate(stats) if stats else None)

    def _forward_int8(self, x: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The int8 backbone on the float front end's log-mels (channels-last: the layout
        the x86 int8 convolutions use): embeddings, probabilities, stage statistics."""
        mel = self.model.features(x).contiguous(memory_format=torch.channels_last)
        emb, stats = self._int8(mel)
        probs = None
        if self.labels:
            probs = self.model.backbone.forward_head(emb).float().softmax(dim=-1)
        return emb, probs, stats
