"""The training scaffold that ``fit`` (train) and ``pretrain`` share: the run folder, the
epoch loop with its per-epoch records and ETA, and the learning-rate schedule.

A run folder holds exactly one run. :meth:`RunFolder.open` refuses a folder that already
holds one unless the caller resumes it (the config must match the saved ``config.yaml``)
or overwrites it (the previous run's files are deleted first), so ``model.pt``,
``model.sha256``, ``metrics.jsonl`` and ``last.pt`` always come from the same run.
``last.pt`` and ``model.pt`` are written through a fsynced temporary file and a rename,
and read back with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sonicsearch.config import Config, load_config, save_config
from sonicsearch.errors import ConfigError, ModelError, TrainingError
from sonicsearch.model.weights import load_file
from sonicsearch.utils.fileio import atomic_torch_save, atomic_write_text, file_sha256
from sonicsearch.utils.progress import format_seconds

# Every file a train or pretrain run writes; --overwrite deletes these and nothing else.
RUN_FILES = ("model.pt", "model.sha256", "last.pt", "config.yaml", "split.csv",
             "metrics.jsonl", "metrics.json", "training_curves.png")
RUN_PATTERNS = ("confusion_*.png", "eval_*.json", ".model.pt.*.tmp", ".last.pt.*.tmp")
# Keys that may differ between a run and its resume: they do not change what is computed.
RESUME_MAY_CHANGE = ("runtime.device", "runtime.num_workers")

ReportFn = Callable[[int, dict], None]


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class RunFolder:
    """One run's output folder (``--out``): config.yaml, metrics.jsonl, last.pt, model.pt,
    model.sha256 and the summaries a command adds."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def model(self) -> Path:
        return self.path / "model.pt"

    def run_files(self) -> list[Path]:
        """The files of a previous run found in the folder."""
        if not self.path.is_dir():
            return []
        found = [self.path / n for n in RUN_FILES if (self.path / n).exists()]
        for pattern in RUN_PATTERNS:
            found += sorted(self.path.glob(pattern))
        return found

    @classmethod
    def open(cls, path: str | Path, config: Config, *, resume: bool = False,
             overwrite: bool = False) -> RunFolder:
        """Make ``path`` ready for a run of ``config``.

        Args:
            path: the run folder (created when missing).
            config: the resolved config of this run.
            resume: continue the run in ``path`` (needs its last.pt and a matching config).
            overwrite: delete the files of a previous run in ``path`` and start afresh.

        Returns:
            The RunFolder; a fresh run has its config.yaml and an empty metrics.jsonl.

        Raises:
            TrainingError: the folder holds a run and neither ``resume`` nor ``overwrite``
                was given; or a resume without a last.pt, or with another config.
        """
        folder = cls(path)
        folder.check(config, resume=resume, overwrite=overwrite)
        if resume:
            return folder
        previous = folder.run_files()
        folder.path.mkdir(parents=True, exist_ok=True)
        for p in previous:
            p.unlink(missing_ok=True)
        save_config(config, folder.path / "config.yaml")
        (folder.path / "metrics.jsonl").write_text("", encoding="utf-8")
        return folder

    def check(self, config: Config, *, resume: bool = False, overwrite: bool = False) -> None:
        """Raise now, before any work, what :meth:`open` would raise; writes nothing.

        Raises:
            TrainingError: as :meth:`open`.
        """
        if resume and overwrite:
            raise TrainingError("--resume and --overwrite exclude each other; pick one")
        if resume:
            self._check_resumable(config)
            return
        previous = self.run_files()
        if previous and not overwrite:
            raise TrainingError(
                f"{self.path} already holds a run ({previous[0].name}); pass --resume to "
                "continue it or --overwrite to replace it, or choose another --out")

    def _check_resumable(self, config: Config) -> None:
        if not self.last.is_file():
            raise TrainingError(f"cannot resume: {self.last} does not exist (start without "
                                "--resume, adding --overwrite if the folder holds a run)")
        saved_path = self.path / "config.yaml"
        if not saved_path.is_file():
            raise TrainingError(f"cannot resume: {saved_path} is missing; start again with "
                                "--overwrite")
        try:
            saved = _flat(load_config(saved_path).to_dict())
        except ConfigError as exc:
            raise TrainingError(f"cannot resume: {exc}; start again with --overwrite") from None
        now = _flat(config.to_dict())
        changed = [k for k in now if k not in RESUME_MAY_CHANGE and saved.get(k) != now[k]]
        if changed:
            more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
            raise TrainingError(
                f"cannot resume: this config differs from the run's {saved_path} in "
                f"{', '.join(changed[:3])}{more}; resume without --config (the run's own is "
                "used) or start again with --overwrite")

    def append_metrics(self, row: dict) -> None:
        """One line of metrics.jsonl per epoch."""
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def rewrite_metrics(self, history: list[dict]) -> None:
        """metrics.jsonl as the resumed state knows it (drops an epoch written after the
        last checkpoint of a killed run)."""
        atomic_write_text(self.path / "metrics.jsonl",
                          "".join(json.dumps(row) + "\n" for row in history))

    def save_last(self, payload: dict) -> None:
        """Write last.pt (what a resume needs) atomically."""
        atomic_torch_save(payload, self.last)

    def load_last(self, *keys: str) -> dict:
        """Read last.pt (``weights_only=True``) and check it holds ``keys``.

        Raises:
            TrainingError: truncated, corrupt, pickled objects, or not a sonicsearch last.pt.
        """
        try:
            ckpt = load_file(self.last, "checkpoint")
        except ModelError as exc:
            raise TrainingError(f"cannot resume: {exc}; start again with --overwrite") from None
        missing = [k for k in keys if not isinstance(ckpt, dict) or k not in ckpt]
        if missing:
            raise TrainingError(f"cannot resume: {self.last} is not a last.pt of this kind of "
                                f"run (no {missing[0]!r}); start again with --overwrite")
        return ckpt

    def restore(self, what: str, target: Any, state: dict) -> None:
        """``target.load_state_dict(state)`` with a one-line error when it does not fit
        (another arch, label set, objective or optimizer)."""
        try:
            target.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else repr(exc)
            raise TrainingError(
                f"cannot resume: the {what} in {self.last} does not fit this run's model "
                f"({reason}); start again with --overwrite") from None

    def finish_model(self) -> str:
        """Write model.sha256 for model.pt; returns the digest."""
        sha = file_sha256(self.model)
        atomic_write_text(self.path / "model.sha256", f"{sha}  model.pt\n")
        return sha

    def write_json(self, name: str, data: dict) -> None:
        atomic_write_text(self.path / name, json.dumps(data, indent=2))


class EpochClock:
    """Seconds per epoch of this process, and the ETA of the remaining ones."""

    def __init__(self, total: int):
        self.total, self.times, self.start = total, [], time.monotonic()

    def tick(self) -> float:
        """Close the current epoch; returns its seconds."""
        now = time.monotonic()
        self.times.append(now - self.start)
        self.start = now
        return self.times[-1]

    def eta(self, done: int, total: int | None = None) -> float:
        """Seconds left after ``done`` epochs (the mean epoch so far times those left)."""
        total = self.total if total is None else total
        if not self.times:
            return float("nan")
        return sum(self.times) / len(self.times) * max(0, total - done)


def run_epochs(state: dict, total: int, one_epoch: Callable[[int], dict], *,
               folder: RunFolder | None, save_last: Callable[[], None] | None,
               describe: Callable[[dict], str], say: Callable[[str], None],
               report: ReportFn | None = None,
               keep_going: Callable[[], bool] = lambda: True) -> None:
    """The epoch loop of train and pretrain: epochs ``state["epoch"] + 1 .. total``.

    Each epoch: ``row = one_epoch(epoch)``; the row (with ``seconds``) joins
    ``state["history"]`` and metrics.jsonl; last.pt is saved; a log line
    ``describe(row)`` gets the epoch's time and the run's ETA; then ``report(epoch, row)``
    (which may raise, e.g. to prune). ``keep_going()`` is asked before every epoch.
    """
    clock = EpochClock(total)
    while state["epoch"] < total and keep_going():
        epoch = state["epoch"] + 1
        row = one_epoch(epoch)
        row["seconds"] = round(clock.tick(), 3)
        state["history"].append(row)
        state["epoch"] = epoch
        if folder is not None:
            folder.append_metrics(row)
            if save_last is not None:
                save_last()
        eta = clock.eta(epoch)
        say(f"{describe(row)}  [{format_seconds(row['seconds'])}"
            + (f", ETA {format_seconds(eta)}" if epoch < total and math.isfinite(eta) else "")
            + "]")
        if report is not None:
            report(epoch, row)


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


def place_model(model: torch.nn.Module, device: torch.device, channels_last: bool,
                *others: torch.nn.Module) -> None:
    """Move the model (and objective modules) to ``device``; channels_last on a GPU."""
    for m in (model, *others):
        m.to(device)
        if device.type == "cuda" and channels_last:
            m.to(memory_format=torch.channels_last)


__all__ = ["RUN_FILES", "EpochClock", "RunFolder", "place_model",
           "run_epochs", "warmup_schedule"]
