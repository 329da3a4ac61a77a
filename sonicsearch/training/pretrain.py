"""Self-supervised pretraining: ``pretrain()`` learns embeddings from unlabelled audio.

Two views of one excerpt (two crops up to ``pair_shift_seconds`` apart, each degraded by
:class:`~sonicsearch.training.views.ViewMaker` and masked by SpecAugment) are pulled together by the
objective of ``pretrain.method`` (:mod:`sonicsearch.training.objectives`): NT-Xent (SimCLR / COLA),
which also pushes them away from the other excerpts of the batch, or BYOL (BYOL-A's), which
regresses an EMA target. Heads, predictor and target are dropped afterwards: ``out/model.pt``
is a label-free model file (``labels == []``) that ``train --weights`` fine-tunes and
``build-index --model`` indexes. ``out/last.pt`` holds what a resume needs (model,
objective, optimizer, scheduler, epoch); every random draw is seeded from ``(seed, epoch)``,
so a resumed run repeats the uninterrupted one on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from sonicsearch.config import Config
from sonicsearch.data.excerpts import AudioFile, ExcerptBatches, scan_audio
from sonicsearch.errors import DataError, TrainingError
from sonicsearch.model.backbones import AudioModel, SpecAugment
from sonicsearch.model.checkpoint import save_checkpoint
from sonicsearch.training.objectives import make_pretrain_objective
from sonicsearch.training.run import RunFolder, place_model, run_epochs, warmup_schedule
from sonicsearch.training.views import ViewMaker
from sonicsearch.utils.progress import log, progress_bar
from sonicsearch.utils.runtime import prepare_torch, resolve_device

ReportFn = Callable[[int, dict], None]


@dataclass
class PretrainResult:
    """What ``pretrain()`` returns."""

    history: list[dict] = field(default_factory=list)
    model_path: Path | None = None
    sha256: str | None = None
    files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    model: AudioModel | None = None


def build_pretrain_model(config: Config) -> AudioModel:
    """A label-free AudioModel with SpecAugment from the pretrain section. Seed before
    calling.

    Raises:
        ModelError, WeightsUnavailableError: as
            :func:`~sonicsearch.model.backbones.create_backbone`.
    """
    pc = config.pretrain
    model = AudioModel.from_config(config.features, config.model, [])
    model.spec_augment = SpecAugment(pc.time_masks, pc.time_mask_frames, pc.freq_masks,
                                     pc.freq_mask_bins)
    return model


def pretrain(
    config: Config,
    audio: Sequence[str | Path] | Sequence[AudioFile],
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    report: ReportFn | None = None,
    show_progress: bool = True,
) -> PretrainResult:
    """Pretrain ``config.model`` on unlabelled audio with ``config.pretrain.method``.

    Args:
        config: the resolved config; ``pretrain`` holds the recipe and the view strengths,
            ``runtime`` the seed, device, num_workers, amp and channels_last.
        audio: files and/or folders (searched recursively), or files from
            :func:`~sonicsearch.data.excerpts.scan_audio`.
        out_dir: run folder for model.pt, last.pt, config.yaml and metrics.jsonl; None keeps
            nothing on disk (the model is returned).
        resume: continue from ``out_dir/last.pt`` (same config).
        overwrite: replace a previous run in ``out_dir`` (its files are deleted first).
        report: called after every epoch with ``(epoch, row)``; may raise.
        show_progress: progress bar and per-epoch lines.

    Returns:
        PretrainResult: the per-epoch history and where the model went.

    Raises:
        DataError: no usable audio. TrainingError: NaN loss; ``out_dir`` holds a run and
        neither resume nor overwrite was given; resume without a usable last.pt or with
        another config. AudioError: an input that does not exist. ConfigError: an unknown
        method.

    Set-up, resume and the epoch loop stay in this one function, in the order that makes a
    resumed run equal an uninterrupted one.
    """
    t0 = time.monotonic()
    prepare_torch()
    pc, rc, fc = config.pretrain, config.runtime, config.features
    say = log if show_progress else (lambda _msg: None)
    files, skipped = _usable_files(audio, fc.min_seconds)
    device = resolve_device(rc.device)
    if out_dir is None and resume:
        raise TrainingError("cannot resume without an output folder")
    folder = (RunFolder.open(out_dir, config, resume=resume, overwrite=overwrite)
              if out_dir is not None else None)

    model, views, data, objective = _build(config, files, device)
    optimizer, scheduler = pretrain_optimizer(model, objective, pc, len(data))

    state: dict = {"epoch": 0, "history": []}
    if folder is not None and resume:
        state = _load_last(folder, model, objective, optimizer, scheduler)
        say(f"resuming after epoch {state['epoch']} of {pc.epochs}")
    say(f"pretraining {model.arch} ({pc.method}) on {len(files)} files "
        f"({data.durations.sum() / 3600:.2f} h), {len(data)} steps of {pc.batch_size} "
        f"excerpts per epoch, on {device}")

    def one_epoch(epoch: int) -> dict:
        loss = pretrain_one_epoch(model, objective, views, data, optimizer, scheduler, config,
                                  epoch, device, show_progress)
        row = {"epoch": epoch, "loss": loss, "lr": optimizer.param_groups[0]["lr"]}
        if folder is not None:
            save_checkpoint(folder.model, model, config=config.to_dict(), labels=[],
                            metrics={"pretrain": row},
                            extra={"pretrain": {"files": len(files), "epochs": epoch}})
        return row

    def save_last() -> None:
        folder.save_last({"model": model.state_dict(), "objective": objective.state_dict(),
                          "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "state": state})

    run_epochs(state, pc.epochs, one_epoch, folder=folder, save_last=save_last,
               describe=lambda r: f"epoch {r['epoch']}/{pc.epochs}: {pc.method} loss "
                                  f"{r['loss']:.4f}", say=say, report=report)
    result = PretrainResult(files=len(files), skipped=skipped, history=state["history"],
                            model=model)
    if folder is not None and folder.model.is_file():
        result.model_path = folder.model
        result.sha256 = folder.finish_model()
    result.seconds = time.monotonic() - t0
    return result


def _usable_files(audio, min_seconds: float) -> tuple[list[AudioFile], list[tuple[str, str]]]:
    if audio and all(isinstance(a, AudioFile) for a in audio):
        return list(audio), []
    files, skipped = scan_audio(audio, min_seconds)
    if not files:
        raise DataError(f"no usable audio files in {', '.join(map(str, audio)) or 'the input'}"
                        + (f" ({len(skipped)} skipped)" if skipped else ""))
    return files, skipped


def _build(config: Config, files: list[AudioFile], device: torch.device):
    """Seeded model, views, excerpt plan, input standardisation (clean excerpts) and the
    objective, on ``device``."""
    pc, rc, fc = config.pretrain, config.runtime, config.features
    torch.manual_seed(rc.seed)
    model = build_pretrain_model(config)
    views = ViewMaker(pc, fc.sample_rate, fc.window_samples)
    data = ExcerptBatches(files, fc.sample_rate, views.span_samples(), pc.batch_size,
                          pc.windows_per_file, rc.seed)
    clean = data.sample(pc.normalization_excerpts)
    start = (clean.shape[1] - fc.window_samples) // 2
    with torch.no_grad():
        model.fit_normalization(model.frontend(clean[:, start:start + fc.window_samples]))
    model.backbone.set_trainable("all")
    objective = make_pretrain_objective(pc.method, model, pc)  # BYOL's target copies the model
    place_model(model, device, rc.channels_last, objective)
    return model, views, data, objective


def pretrain_one_epoch(model: AudioModel, objective, views: ViewMaker,
                       data: ExcerptBatches, optimizer, scheduler, config: Config, epoch: int,
                       device: torch.device, show_progress: bool = True) -> float:
    """One pass over fresh excerpts: two views each, the objective's loss, clipping, NaN
    guard, then the objective's own update (BYOL's target); mean loss."""
    pc, rc = config.pretrain, config.runtime
    torch.manual_seed(rc.seed * 100_003 + epoch)  # SpecAugment: repeatable per epoch
    gen = torch.Generator(device=device).manual_seed(rc.seed * 7919 + epoch)
    data.set_epoch(epoch)
    loader = DataLoader(data, batch_size=None, shuffle=False, num_workers=rc.num_workers,
                        pin_memory=device.type == "cuda")
    model.train()
    objective.train()
    total_steps = max(1, len(data) * pc.epochs)
    amp = device.type == "cuda" and rc.amp
    params = [p for g in optimizer.param_groups for p in g["params"]]
    total, count = 0.0, 0
    label = f"pretrain epoch {epoch}/{pc.epochs}"
    with progress_bar(len(data), label, enabled=show_progress) as bar:
        for excerpts in loader:
            if excerpts.shape[0] < 2:  # no negatives: nothing to learn from
                bar.advance(1)
                continue
            v1, v2 = views.pair(excerpts.to(device, non_blocking=True), gen)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = objective.loss(model, v1, v2)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {loss.item()} in epoch {epoch}; lower "
                                    "pretrain.lr or check the audio")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if pc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, pc.grad_clip)
            optimizer.step()
            scheduler.step()
            objective.after_step(model, scheduler.last_epoch / total_steps)
            total += loss.item() * excerpts.shape[0]
            count += excerpts.shape[0]
            bar.advance(1, f"loss {total / count:.3f}")
    return total / max(count, 1)


def pretrain_optimizer(model: AudioModel, objective, pc, steps_per_epoch: int):
    """AdamW (no decay on biases and norms), linear warm-up, cosine to 1 % of the rate."""
    groups = model.backbone.param_groups(pc.lr, pc.lr, pc.weight_decay)
    heads = objective.trainable_parameters()
    groups += [{"params": [p for p in heads if p.ndim > 1], "lr": pc.lr,
                "weight_decay": pc.weight_decay, "name": "projection"},
               {"params": [p for p in heads if p.ndim <= 1], "lr": pc.lr,
                "weight_decay": 0.0, "name": "projection_no_decay"}]
    optimizer = torch.optim.AdamW(groups, lr=pc.lr, weight_decay=pc.weight_decay)
    return optimizer, warmup_schedule(optimizer, steps_per_epoch, pc.epochs, pc.warmup_epochs)


def _load_last(folder: RunFolder, model, objective, optimizer, scheduler) -> dict:
    ckpt = folder.load_last("model", "objective", "optimizer", "scheduler", "state")
    folder.restore("model", model, ckpt["model"])
    folder.restore(f"{objective.__class__.__name__} state (pretrain.method, projection sizes)",
                   objective, ckpt["objective"])
    folder.restore("optimizer", optimizer, ckpt["optimizer"])
    folder.restore("scheduler", scheduler, ckpt["scheduler"])
    return ckpt["state"]


__all__ = ["PretrainResult", "build_pretrain_model", "pretrain", "pretrain_one_epoch",
           "pretrain_optimizer"]
