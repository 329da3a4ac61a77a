"""Fine-tuning: ``fit()`` runs the freeze-then-unfreeze SGD recipe.

Phase 1 trains the head on a frozen backbone (BatchNorm of frozen parts in eval mode);
phase 2 unfreezes the top ``unfreeze`` stages at a lower learning rate than the head.
Each epoch ends with a validation pass (file- and window-level metrics); the best epoch by
validation macro-F1 is kept. The Optuna objective calls the same ``fit()``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, WeightedRandomSampler

from sonicsearch.config import Config, save_config
from sonicsearch.data.manifest import Dataset, write_split
from sonicsearch.data.windows import FileWindows, RandomCrops, collate_files
from sonicsearch.errors import TrainingError
from sonicsearch.model.backbones import AudioModel
from sonicsearch.model.checkpoint import file_sha256, save_checkpoint
from sonicsearch.progress import log, progress_bar
from sonicsearch.training.evaluate import evaluate_model, predict_files
from sonicsearch.training.objectives import JointObjective

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


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA GPU is available")
    return torch.device(name)


def fit(
    config: Config,
    dataset: Dataset,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    report: ReportFn | None = None,
    show_progress: bool = True,
) -> FitResult:
    """Train a model on ``dataset`` with ``config``; write the run to ``out_dir``.

    Args:
        config: the resolved config (features, model, train).
        dataset: a split dataset from :func:`sonicsearch.data.manifest.load_dataset`.
        out_dir: run folder for model.pt, last.pt, config.yaml, split.csv, metrics.jsonl
            and plots; None keeps nothing on disk (tuning).
        resume: continue from ``out_dir/last.pt``.
        report: called after every epoch with ``(epoch, metrics)``; may raise (pruning).
        show_progress: progress bars and the per-epoch table.

    Returns:
        FitResult with the best validation metrics, the history and test metrics.

    Raises:
        TrainingError: NaN loss, or resume without a last.pt.
    """
    t0 = time.monotonic()
    torch.set_flush_denormal(True)  # denormals make CPU convolutions many times slower
    tc, fc = config.train, config.features
    device = resolve_device(tc.device)
    out = Path(out_dir) if out_dir is not None else None
    say = log if show_progress else (lambda _msg: None)
    train_items, val_items = dataset.split("train"), dataset.split("val") or dataset.split("test")
    if not val_items:
        raise TrainingError("no validation files: give the data a val split")

    torch.manual_seed(tc.seed)
    model = AudioModel.from_config(fc, config.model, dataset.labels, tc)
    train_set = RandomCrops(train_items, dataset.labels, fc, tc.crops_per_file, tc.gain_db, tc.seed)
    val_loader = DataLoader(FileWindows(val_items, dataset.labels, fc), batch_size=4,
                            num_workers=tc.num_workers, collate_fn=collate_files)
    _fit_normalization(model, train_set)
    _pretrained_normalization(model, config.model.weights, say)
    model.to(device)
    if device.type == "cuda" and tc.channels_last:
        model.to(memory_format=torch.channels_last)
    joint = (JointObjective(config, model.backbone.embed_dim, device)
             if tc.contrastive_weight > 0 else None)

    class_weights = None
    if tc.balance == "weights":
        counts = np.bincount(train_set.targets, minlength=len(dataset.labels)).astype(float)
        class_weights = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)),
                                     dtype=torch.float32, device=device)

    total_epochs = tc.phase1_epochs + tc.phase2_epochs
    state = {"epoch": 0, "best_f1": -1.0, "best_epoch": 0, "stale": 0, "history": []}
    resume_opt = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume:
            state, resume_opt = _load_last(out, model, device, joint)
            say(f"resuming after epoch {state['epoch']} of {total_epochs}")
        else:
            save_config(config, out / "config.yaml")
            write_split(dataset, out / "split.csv")
            (out / "metrics.jsonl").write_text("")

    optimizer = scheduler = None
    while state["epoch"] < total_epochs and state["stale"] < tc.patience:
        epoch = state["epoch"] + 1
        phase = 1 if epoch <= tc.phase1_epochs else 2
        new_phase = epoch == tc.phase1_epochs + 1
        if optimizer is None or new_phase:
            optimizer, scheduler = _phase_optimizer(model, config, phase, len(train_set), epoch,
                                                    joint)
            if resume_opt is not None and not new_phase:
                optimizer.load_state_dict(resume_opt["optimizer"])
                scheduler.load_state_dict(resume_opt["scheduler"])
            resume_opt = None
        train_loss = train_one_epoch(model, train_set, optimizer, scheduler, config, epoch,
                                     device, class_weights, show_progress, joint=joint)
        metrics = evaluate(model, val_loader, device, dataset.labels)
        row = {"epoch": epoch, "phase": phase, "train_loss": train_loss,
               "lr_head": optimizer.param_groups[0]["lr"], **_flat(metrics)}
        state["history"].append(row)
        improved = row["val_macro_f1"] > state["best_f1"]
        if improved:
            state.update(best_f1=row["val_macro_f1"], best_epoch=epoch, stale=0)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        elif phase == 2:
            state["stale"] += 1
        state["epoch"] = epoch
        say(_table_row(row, improved, header=epoch == 1 or len(state["history"]) == 1))
        if out is not None:
            with open(out / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            if improved:
                save_checkpoint(out / "model.pt", model, config=config.to_dict(),
                                labels=dataset.labels, metrics={"val": metrics, "epoch": epoch})
            _save_last(out, model, optimizer, scheduler, state, joint)
        if report is not None:
            report(epoch, row)
    if state["stale"] >= tc.patience:
        say(f"early stop: no better validation macro-F1 for {tc.patience} epochs")

    result = FitResult(best=_best_row(state), history=state["history"])
    if out is None:
        if "best_state" in locals():
            model.load_state_dict(best_state)
        result.seconds = time.monotonic() - t0
        result.model = model
        return result
    result.model_path = out / "model.pt"
    result.sha256 = file_sha256(result.model_path)
    (out / "model.sha256").write_text(f"{result.sha256}  model.pt\n")
    _plot_curves(state["history"], out)
    if dataset.split("test"):
        result.test = evaluate_model(dataset, result.model_path, split="test", out_dir=out,
                                     device=str(device), quiet=not show_progress)
    result.seconds = time.monotonic() - t0
    summary = {"best_epoch": state["best_epoch"], "val": result.best, "test": result.test,
               "seconds": result.seconds, "sha256": result.sha256, "device": str(device)}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return result


def train_one_epoch(model, train_set, optimizer, scheduler, config: Config, epoch: int,
                    device, class_weights, show_progress: bool = True,
                    joint: JointObjective | None = None) -> float:
    """One pass over fresh random crops, with mixup, clipping and a NaN guard; mean loss.

    With ``joint`` the loss adds ``contrastive_weight * NT-Xent`` of two degraded views of
    the un-mixed crops (see :class:`~sonicsearch.training.objectives.JointObjective`).
    """
    tc = config.train
    torch.manual_seed(tc.seed * 100_003 + epoch)  # dropout, SpecAugment: repeatable per epoch
    gen = torch.Generator().manual_seed(tc.seed * 7919 + epoch)
    train_set.set_epoch(epoch)
    if tc.balance == "sampler":
        sampler = WeightedRandomSampler(train_set.sample_weights(), len(train_set),
                                        generator=gen)
        loader = DataLoader(train_set, tc.batch_size, sampler=sampler,
                            num_workers=tc.num_workers, drop_last=len(train_set) > tc.batch_size)
    else:
        loader = DataLoader(train_set, tc.batch_size, shuffle=True, generator=gen,
                            num_workers=tc.num_workers, drop_last=len(train_set) > tc.batch_size)
    model.train()
    amp = device.type == "cuda" and tc.amp
    total, count = 0.0, 0
    if joint is not None:
        joint.start_epoch(epoch)
    with progress_bar(len(loader), f"epoch {epoch}", enabled=show_progress) as bar:
        for wave, target in loader:
            wave, target = wave.to(device, non_blocking=True), target.to(device)
            clean, contrastive = wave, None
            lam, perm = 1.0, None
            if tc.mixup_alpha > 0:
                lam = float(np.random.default_rng((tc.seed, epoch, count)).beta(
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


@torch.no_grad()
def evaluate(model, loader, device, labels: list[str]) -> dict:
    """Validation metrics at file level (window logits averaged) and at window level."""
    from sonicsearch.eval.metrics import classification_report

    logits, owner, targets, _ = predict_files(model, loader, device)
    file_pred = [int(np.argmax(lg)) for lg in logits]
    win_true = np.concatenate([np.full(len(w), t) for w, t in zip(owner, targets)])
    win_pred = np.concatenate([np.argmax(w, axis=1) for w in owner])
    loss = float(np.mean([F.cross_entropy(torch.from_numpy(lg)[None], torch.tensor([t])).item()
                          for lg, t in zip(logits, targets)]))
    return {"file": classification_report(targets, file_pred, labels),
            "window": classification_report(win_true, win_pred, labels), "loss": loss}


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


def warmup_schedule(optimizer, steps_per_epoch: int, epochs: int, warmup_epochs: int,
                    step_decay: tuple[int, float] | None = None):
    """Per-step LambdaLR: linear warm-up over ``warmup_epochs`` (at most half the run), then
    cosine decay to 1 % of the rate, or, with ``step_decay=(size, gamma)``, the rate times
    gamma every ``size`` epochs."""
    total = max(1, epochs * steps_per_epoch)
    warm = min(warmup_epochs * steps_per_epoch, total // 2)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if step_decay is not None:
            return step_decay[1] ** ((step // steps_per_epoch) // max(1, step_decay[0]))
        t = (step - warm) / max(1, total - warm)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


def _table_row(row: dict, improved: bool, header: bool) -> str:
    line = (f"{row['epoch']:>5}  {row['phase']:>5}  {row['train_loss']:>10.4f}  "
            f"{row['val_loss']:>8.4f}  {row['val_accuracy']:>7.3f}  {row['val_macro_f1']:>7.3f}  "
            f"{row['val_window_macro_f1']:>7.3f}  {'*' if improved else ''}")
    if header:
        head = (f"{'epoch':>5}  {'phase':>5}  {'train_loss':>10}  {'val_loss':>8}  "
                f"{'val_acc':>7}  {'val_F1':>7}  {'win_F1':>7}  best")
        return head + "\n" + line
    return line


def _save_last(out: Path, model, optimizer, scheduler, state: dict,
               joint: JointObjective | None = None) -> None:
    tmp = out / "last.pt.tmp"
    extra = {"projection": joint.head.state_dict()} if joint is not None else {}
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "state": state, **extra}, tmp)
    tmp.replace(out / "last.pt")


def _load_last(out: Path, model, device, joint: JointObjective | None = None):
    path = out / "last.pt"
    if not path.is_file():
        raise TrainingError(f"cannot resume: {path} does not exist (start without --resume)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(ckpt["model"])
    if joint is not None and "projection" in ckpt:
        joint.head.load_state_dict(ckpt["projection"])
    return ckpt["state"], {"optimizer": ckpt["optimizer"], "scheduler": ckpt["scheduler"]}


def _pretrained_normalization(model, weights, say) -> None:
    """Starting from one of our model files (``--weights PATH``, e.g. a ``pretrain`` run),
    keep the input standardisation the backbone learned with, when the features match."""
    from dataclasses import asdict

    from sonicsearch.model.weights import MODEL_FILE_KIND, load_file

    if str(weights).lower() in ("imagenet", "none"):
        return
    from sonicsearch.model import base

    obj = load_file(base.resolve(weights), "weights file")
    if not isinstance(obj, dict) or obj.get("kind") != MODEL_FILE_KIND:
        return
    sd = obj.get("state_dict") or {}
    if obj.get("feature_config") != asdict(model.feature_config) or "norm_mean" not in sd:
        say(f"note: {weights} was trained with other features; input standardisation "
            "refitted on this data")
        return
    with torch.no_grad():
        model.norm_mean.copy_(sd["norm_mean"])
        model.norm_std.copy_(sd["norm_std"])


def _plot_curves(history: list[dict], out: Path) -> None:
    from sonicsearch.plots import plot_curves

    if history:
        plot_curves(history, out / "training_curves.png")
