"""Fine-tuning: ``fit()`` runs the freeze-then-unfreeze SGD recipe.

Phase 1 trains the head on a frozen backbone (BatchNorm of frozen parts in eval mode);
phase 2 unfreezes the top ``unfreeze`` stages at a lower learning rate than the head.
Each epoch ends with a validation pass (file- and window-level metrics); the best epoch by
validation macro-F1 is kept. The Optuna objective calls the same ``fit()``. The run
folder, epoch loop and schedule are :mod:`sonicsearch.training.run`'s, shared with
``pretrain``.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, WeightedRandomSampler

from sonicsearch.config import Config
from sonicsearch.data.manifest import Dataset, split_csv_text, write_split
from sonicsearch.data.windows import FileWindows, RandomCrops, collate_files
from sonicsearch.errors import TrainingError
from sonicsearch.model.backbones import AudioModel
from sonicsearch.model.checkpoint import copy_normalization, save_checkpoint
from sonicsearch.training import style_head as SH
from sonicsearch.training.evaluate import evaluate_model, validation_metrics
from sonicsearch.training.objectives import JointObjective
from sonicsearch.training.run import RunFolder, place_model, run_epochs, warmup_schedule
from sonicsearch.utils.progress import log, progress_bar
from sonicsearch.utils.runtime import prepare_torch, resolve_device

ReportFn = Callable[[int, dict], None]


@dataclass
class FitResult:
    """What ``fit()`` returns: the best validation metrics and where the model went."""

    best: dict
    history: list[dict] = field(default_factory=list)
    test: dict | None = None
    model_path: Path | None = None
    model: AudioModel | None = None  # the best model in memory, when fit() kept no files
    sha256: str | None = None
    seconds: float = 0.0


@dataclass
class _Run:
    """What :func:`fit` sets up before the first epoch, and the loop's mutable state."""

    model: AudioModel
    train_set: RandomCrops
    val_loader: DataLoader
    device: torch.device
    class_weights: torch.Tensor | None
    joint: JointObjective | None
    folder: RunFolder | None
    state: dict
    resume_opt: dict | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    best_state: dict | None = None  # the best weights, kept in memory when no folder


def fit(
    config: Config,
    dataset: Dataset,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    report: ReportFn | None = None,
    show_progress: bool = True,
) -> FitResult:
    """Train a model on ``dataset`` with ``config``; write the run to ``out_dir``.

    Args:
        config: the resolved config (features, model, runtime, train).
        dataset: a split dataset from :func:`sonicsearch.data.manifest.load_dataset`.
        out_dir: run folder for model.pt, last.pt, config.yaml, split.csv, metrics.jsonl
            and plots; None keeps nothing on disk (tuning).
        resume: continue from ``out_dir/last.pt`` (same config and data).
        overwrite: replace a previous run in ``out_dir`` (its files are deleted first).
        report: called after every epoch with ``(epoch, metrics)``; may raise (pruning).
        show_progress: progress bars and the per-epoch table.

    Returns:
        FitResult with the best validation metrics, the history and test metrics.

    Raises:
        TrainingError: NaN loss; ``out_dir`` holds a run and neither resume nor overwrite
            was given; resume without a usable last.pt, or with another config or data.
    """
    t0 = time.monotonic()
    prepare_torch()
    say = log if show_progress else (lambda _msg: None)
    run = _setup(config, dataset, out_dir, resume, overwrite, say)
    _epochs(config, dataset, run, report, show_progress, say)
    return _finish(config, dataset, run, t0, show_progress)


def _setup(config: Config, dataset: Dataset, out_dir: str | Path | None, resume: bool,
           overwrite: bool, say) -> _Run:
    """Model, data, normalisation, device, class weights and the run folder (resumed or
    fresh)."""
    rc, tc, fc = config.runtime, config.train, config.features
    device = resolve_device(rc.device)
    train_items, val_items = dataset.split("train"), dataset.split("val") or dataset.split("test")
    if not val_items:
        raise TrainingError("no validation files: give the data a val split")
    if out_dir is None and resume:
        raise TrainingError("cannot resume without an output folder")
    folder = None
    if out_dir is not None:
        folder = RunFolder.open(out_dir, config, resume=resume, overwrite=overwrite)
        _check_or_write_split(folder, dataset, resume)

    torch.manual_seed(rc.seed)
    model = AudioModel.from_config(fc, config.model, dataset.labels, tc)
    train_set = RandomCrops(train_items, dataset.labels, fc, tc.crops_per_file, tc.gain_db, rc.seed)
    val_loader = DataLoader(FileWindows(val_items, dataset.labels, fc), batch_size=4,
                            num_workers=rc.num_workers, collate_fn=collate_files)
    _fit_normalization(model, train_set)
    if not copy_normalization(model, config.model.weights):
        say(f"note: {config.model.weights} was trained with other features; input "
            "standardisation refitted on this data")
    place_model(model, device, rc.channels_last)
    joint = (JointObjective(config, model.backbone.embed_dim, device)
             if tc.contrastive_weight > 0 else None)
    class_weights = None
    if tc.balance == "weights":
        counts = np.bincount(train_set.targets, minlength=len(dataset.labels)).astype(float)
        class_weights = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)),
                                     dtype=torch.float32, device=device)
    run = _Run(model, train_set, val_loader, device, class_weights, joint, folder,
               {"epoch": 0, "best_f1": -1.0, "best_epoch": 0, "stale": 0, "history": []})
    if folder is not None and resume:
        ckpt = folder.load_last("model", "optimizer", "scheduler", "state")
        folder.restore("model", model, ckpt["model"])
        if joint is not None and "projection" in ckpt:
            folder.restore("projection head", joint.head, ckpt["projection"])
        run.state = ckpt["state"]
        run.resume_opt = {"optimizer": ckpt["optimizer"], "scheduler": ckpt["scheduler"]}
        folder.rewrite_metrics(run.state["history"])
        say(f"resuming after epoch {run.state['epoch']} of {tc.phase1_epochs + tc.phase2_epochs}")
    return run


def _check_or_write_split(folder: RunFolder, dataset: Dataset, resume: bool) -> None:
    path = folder.path / "split.csv"
    if not resume or not path.is_file():
        write_split(dataset, path)
        return
    rows = [list(csv.reader(io.StringIO(text))) for text in
            (path.read_text(encoding="utf-8"), split_csv_text(dataset))]
    if rows[0] != rows[1]:
        raise TrainingError(f"cannot resume: the data's split differs from the run's {path} "
                            "(other files, labels or split); resume with the same DATA or "
                            "start again with --overwrite")


def _epochs(config: Config, dataset: Dataset, run: _Run, report: ReportFn | None,
            show_progress: bool, say) -> None:
    """Phase 1 then phase 2, each epoch validated; the best epoch by validation macro-F1 is
    saved (model.pt, or kept in memory); stops early after ``patience`` stale epochs."""
    tc = config.train
    total = tc.phase1_epochs + tc.phase2_epochs
    state = run.state

    def one_epoch(epoch: int) -> dict:
        phase = 1 if epoch <= tc.phase1_epochs else 2
        new_phase = epoch == tc.phase1_epochs + 1
        if run.optimizer is None or new_phase:
            run.optimizer, run.scheduler = _phase_optimizer(
                run.model, config, phase, len(run.train_set), epoch, run.joint)
            if run.resume_opt is not None and not new_phase and run.folder is not None:
                run.folder.restore("optimizer", run.optimizer, run.resume_opt["optimizer"])
                run.folder.restore("scheduler", run.scheduler, run.resume_opt["scheduler"])
            run.resume_opt = None
        train_loss = train_one_epoch(
            run.model, run.train_set, run.optimizer, run.scheduler, config, epoch, run.device,
            run.class_weights, show_progress, joint=run.joint, total_epochs=total)
        metrics = validation_metrics(run.model, run.val_loader, run.device, dataset.labels)
        row = {"epoch": epoch, "phase": phase, "train_loss": train_loss,
               "lr_head": run.optimizer.param_groups[0]["lr"], **_flat(metrics)}
        improved = row["val_macro_f1"] > state["best_f1"]
        row["best"] = improved
        if improved:
            state.update(best_f1=row["val_macro_f1"], best_epoch=epoch, stale=0)
            if run.folder is not None:
                save_checkpoint(run.folder.model, run.model, config=config.to_dict(),
                                labels=dataset.labels, metrics={"val": metrics, "epoch": epoch})
            else:
                run.best_state = {k: v.detach().cpu().clone()
                                  for k, v in run.model.state_dict().items()}
        elif phase == 2:
            state["stale"] += 1
        return row

    first = [True]  # the table's header before the first epoch this process runs

    def describe(row: dict) -> str:
        header, first[0] = first[0], False
        return _table_row(row, row["best"], header=header, total=total)

    run_epochs(state, total, one_epoch, folder=run.folder,
               save_last=lambda: _save_last(run), describe=describe, say=say, report=report,
               keep_going=lambda: state["stale"] < tc.patience)
    if state["stale"] >= tc.patience:
        say(f"early stop: no better validation macro-F1 for {tc.patience} epochs")


def _finish(config: Config, dataset: Dataset, run: _Run, t0: float,
            show_progress: bool) -> FitResult:
    """The best model into the result (memory) or the folder's summaries: model.sha256,
    curves, test metrics and metrics.json."""
    state = run.state
    result = FitResult(best=_best_row(state), history=state["history"])
    if run.folder is None:
        if run.best_state is not None:
            run.model.load_state_dict(run.best_state)
        result.seconds = time.monotonic() - t0
        result.model = run.model
        return result
    folder = run.folder
    if not folder.model.is_file():
        raise TrainingError(f"no epoch ran, so {folder.model} was not written "
                            "(train.phase1_epochs + train.phase2_epochs is 0)")
    result.model_path = folder.model
    style = SH.add_style_head(config.model.weights, dataset, folder.model, run.device,
                              config.runtime.seed, log if show_progress else (lambda _m: None))
    result.sha256 = folder.finish_model()
    _plot_curves(state["history"], folder.path)
    if dataset.split("test"):
        result.test = evaluate_model(dataset, result.model_path, split="test",
                                     out_dir=folder.path, device=str(run.device),
                                     quiet=not show_progress)
    result.seconds = time.monotonic() - t0
    folder.write_json("metrics.json", {
        "best_epoch": state["best_epoch"], "val": result.best, "test": result.test,
        "style_head": style,
        "seconds": result.seconds, "sha256": result.sha256, "device": str(run.device)})
    return result


def train_one_epoch(model, train_set, optimizer, scheduler, config: Config, epoch: int,
                    device, class_weights, show_progress: bool = True,
                    joint: JointObjective | None = None, total_epochs: int | None = None
                    ) -> float:
    """One pass over fresh random crops, with mixup, clipping and a NaN guard; mean loss.

    With ``joint`` the loss adds ``contrastive_weight * NT-Xent`` of two degraded views of
    the un-mixed crops (see :class:`~sonicsearch.training.objectives.JointObjective`).
    """
    tc, rc = config.train, config.runtime
    torch.manual_seed(rc.seed * 100_003 + epoch)  # dropout, SpecAugment: repeatable per epoch
    gen = torch.Generator().manual_seed(rc.seed * 7919 + epoch)
    train_set.set_epoch(epoch)
    loader = _train_loader(train_set, config, gen)
    model.train()
    amp = device.type == "cuda" and rc.amp
    total, count = 0.0, 0
    if joint is not None:
        joint.start_epoch(epoch)
    label = f"epoch {epoch}" + (f"/{total_epochs}" if total_epochs else "")
    with progress_bar(len(loader), label, enabled=show_progress) as bar:
        for wave, target in loader:
            wave, target = wave.to(device, non_blocking=True), target.to(device)
            clean, contrastive = wave, None
            lam, perm = 1.0, None
            if tc.mixup_alpha > 0:
                lam = float(np.random.default_rng((rc.seed, epoch, count)).beta(
                    tc.mixup_alpha, tc.mixup_alpha))
                perm = torch.randperm(wave.shape[0], generator=gen).to(device)
                wave = lam * wave + (1 - lam) * wave[perm]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                if joint is None:
                    logits, _ = model(wave)
                else:
                    logits, contrastive = joint.forward(model, wave, clean)
                loss = _ce(logits, target, class_weights, tc.label_smoothing)
                if perm is not None:
                    loss = lam * loss + (1 - lam) * _ce(logits, target[perm], class_weights,
                                                        tc.label_smoothing)
                if contrastive is not None:
                    loss = loss + contrastive
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} in epoch {epoch}; lower the learning rates "
                    "(train.head_lr, train.backbone_lr) or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for g in optimizer.param_groups for p in g["params"]], tc.grad_clip)
            optimizer.step()
            scheduler.step()
            total += loss.item() * wave.shape[0]
            count += wave.shape[0]
            bar.advance(1, f"loss {total / count:.3f}")
    return total / max(count, 1)


def _train_loader(train_set: RandomCrops, config: Config, gen: torch.Generator) -> DataLoader:
    """This epoch's batches: shuffled, or drawn label-balanced with ``balance: sampler``."""
    tc, rc = config.train, config.runtime
    drop_last = len(train_set) > tc.batch_size
    if tc.balance == "sampler":
        sampler = WeightedRandomSampler(train_set.sample_weights(), len(train_set),
                                        generator=gen)
        return DataLoader(train_set, tc.batch_size, sampler=sampler,
                          num_workers=rc.num_workers, drop_last=drop_last)
    return DataLoader(train_set, tc.batch_size, shuffle=True, generator=gen,
                      num_workers=rc.num_workers, drop_last=drop_last)


def _ce(logits, target, weights, smoothing):
    return F.cross_entropy(logits.float(), target, weight=weights, label_smoothing=smoothing)


def _phase_optimizer(model, config: Config, phase: int, n_samples: int, epoch: int,
                     joint: JointObjective | None = None):
    tc = config.train
    backbone = model.backbone
    if phase == 1:
        backbone.set_trainable(0)
        epochs = tc.phase1_epochs
    else:
        unfreeze = tc.unfreeze if tc.unfreeze == "all" else int(tc.unfreeze)
        backbone.set_trainable(unfreeze)
        epochs = tc.phase2_epochs
    groups = backbone.param_groups(tc.head_lr, tc.backbone_lr, tc.weight_decay)
    if joint is not None:
        groups.append(joint.param_group(tc.head_lr, tc.weight_decay))
    optimizer = torch.optim.SGD(groups, lr=tc.head_lr, momentum=tc.momentum,
                                nesterov=tc.nesterov and tc.momentum > 0)
    steps_per_epoch = max(1, n_samples // tc.batch_size)
    step_decay = (tc.step_size, tc.step_gamma) if tc.schedule == "step" else None
    return optimizer, warmup_schedule(optimizer, steps_per_epoch, epochs, tc.warmup_epochs,
                                      step_decay)


def _fit_normalization(model, train_set: RandomCrops, n: int = 64) -> None:
    """Standardise inputs with statistics of training log-mels (a seeded sample of crops)."""
    idx = np.random.default_rng(train_set.seed).choice(len(train_set), min(n, len(train_set)),
                                                       replace=False)
    waves = torch.stack([train_set[int(i)][0] for i in idx])
    with torch.no_grad():
        model.fit_normalization(model.frontend(waves))


def _flat(metrics: dict) -> dict:
    f, w = metrics["file"], metrics["window"]
    return {"val_loss": metrics["loss"], "val_accuracy": f["accuracy"],
            "val_macro_precision": f["macro_precision"], "val_macro_recall": f["macro_recall"],
            "val_macro_f1": f["macro_f1"], "val_window_accuracy": w["accuracy"],
            "val_window_macro_f1": w["macro_f1"]}


def _best_row(state: dict) -> dict:
    rows = [h for h in state["history"] if h["epoch"] == state["best_epoch"]]
    return rows[0] if rows else {}


def _table_row(row: dict, improved: bool, header: bool, total: int) -> str:
    epoch = f"{row['epoch']}/{total}"
    line = (f"{epoch:>7}  {row['phase']:>5}  {row['train_loss']:>10.4f}  "
            f"{row['val_loss']:>8.4f}  {row['val_accuracy']:>7.3f}  {row['val_macro_f1']:>7.3f}  "
            f"{row['val_window_macro_f1']:>7.3f}  {'*' if improved else ''}")
    if header:
        head = (f"{'epoch':>7}  {'phase':>5}  {'train_loss':>10}  {'val_loss':>8}  "
                f"{'val_acc':>7}  {'val_F1':>7}  {'win_F1':>7}  best")
        return head + "\n" + line
    return line


def _save_last(run: _Run) -> None:
    extra = {"projection": run.joint.head.state_dict()} if run.joint is not None else {}
    run.folder.save_last({"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                          "scheduler": run.scheduler.state_dict(), "state": run.state, **extra})


def _plot_curves(history: list[dict], out: Path) -> None:
    # deferred: matplotlib loads only when a figure is drawn
    from sonicsearch.utils.plots import plot_curves

    if history:
        plot_curves(history, out / "training_curves.png")


__all__ = ["FitResult", "fit", "resolve_device", "train_one_epoch", "warmup_schedule"]
