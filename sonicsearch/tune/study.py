"""Hyperparameter search with Optuna: an objective that reuses ``fit()``, a study runner, and
the best trial written out as a training config.

Each trial draws overrides from the YAML search space (:mod:`sonicsearch.tune.space`) over a
base config and trains with the same ``fit()`` as ``sonicsearch train``. Single-objective
studies maximise validation macro-F1 with a seeded TPE sampler and report the best F1 so far
after every epoch, so a pruner (Hyperband by default) stops poor trials early. A second
objective (inference latency, or leave-one-out retrieval mAP@10 of validation files) switches
to NSGA-II and gives a Pareto front; Optuna cannot prune multi-objective trials. A trial
that fails (NaN loss, out of memory) is recorded with its reason and the study goes on.
Studies live in SQLite (``runs/tune/<study>.db``) and are loaded when they exist, so a
stopped tune resumes and several processes can share one study.
"""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from sonicsearch.config import Config
from sonicsearch.data.manifest import Dataset
from sonicsearch.errors import ConfigError, DeviceError, TrainingError
from sonicsearch.model.checkpoint import load_checkpoint
from sonicsearch.training.finetune import fit
from sonicsearch.tune.objectives import second_objective
from sonicsearch.tune.report import format_params, write_best, write_reports
from sonicsearch.tune.space import SearchSpace
from sonicsearch.utils.progress import log, progress_bar
from sonicsearch.utils.runtime import resolve_device

OBJECTIVES: dict[str, tuple[str, ...]] = {
    "f1": ("maximize",),
    "f1+latency": ("maximize", "minimize"),
    "f1+retrieval": ("maximize", "maximize"),
}
SECOND = {"f1+latency": "latency_ms", "f1+retrieval": "retrieval_map10"}
PRUNERS = ("hyperband", "sha", "median", "none")
TUNE_DIR = Path("runs/tune")


class TrialFailed(Exception):
    """A trial that cannot finish (NaN loss, out of memory); recorded as FAIL, study goes on."""


@dataclass
class TuneResult:
    """What :func:`tune` returns: the study, its folder and the configs written."""

    study: optuna.Study
    study_dir: Path
    best_config: Path | None = None
    pareto_configs: list[Path] = field(default_factory=list)
    ran: int = 0  # trials this call ran


def default_storage(study_name: str) -> str:
    """``sqlite:///runs/tune/<study>.db``, relative to the working folder."""
    return f"sqlite:///{(TUNE_DIR / f'{study_name}.db').as_posix()}"


def study_folder(study_name: str, storage: str) -> Path:
    """Where summaries, plots and kept models go: beside a SQLite file, else runs/tune/."""
    if storage.startswith("sqlite:///") and storage[10:] not in ("", ":memory:"):
        return Path(storage[10:]).parent / study_name
    return TUNE_DIR / study_name


def open_study(study_name: str, storage: str, objective: str = "f1",
               pruner: str | optuna.pruners.BasePruner = "hyperband", seed: int = 0,
               max_epochs: int = 20, startup_trials: int = 10) -> optuna.Study:
    """Create or load a study (``load_if_exists``), with a seeded sampler and the pruner.

    TPE (NSGA-II for two objectives) is seeded with ``seed`` plus the number of trials the
    study already has, so a resumed study does not redraw its first points.

    Raises:
        ConfigError: unknown objective or pruner, a bad storage URL, or a study of that name
            made for another objective.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{objective}'; choose one of: "
                          f"{', '.join(OBJECTIVES)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optimize_logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _QuietFailures) for f in optimize_logger.filters):
        optimize_logger.addFilter(_QuietFailures())
    directions = OBJECTIVES[objective]
    try:
        study = optuna.create_study(storage=_storage(storage), study_name=study_name,
                                    directions=list(directions), load_if_exists=True,
                                    pruner=_pruner(pruner, max_epochs, len(directions)))
    except (ValueError, ImportError, SQLAlchemyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot open storage {storage!r}: {reason}") from None
    made_for = study.user_attrs.get("objective")
    if (made_for or objective) != objective or len(study.directions) != len(directions):
        was = f"objective '{made_for}'" if made_for else f"{len(study.directions)} objective(s)"
        raise ConfigError(f"study '{study_name}' in {storage} was made for {was}, not "
                          f"'{objective}'; pick another --study")
    if made_for is None:
        study.set_user_attr("objective", objective)
    offset = seed + len(study.trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = (optuna.samplers.TPESampler(seed=offset, n_startup_trials=startup_trials,
                                                    multivariate=True, group=True)
                         if len(directions) == 1 else
                         optuna.samplers.NSGAIISampler(seed=offset,
                                                       population_size=max(4, startup_trials)))
    return study


def tune(dataset: Dataset, base: Config, space: SearchSpace, *, trials: int,
         timeout: float | None = None, study_name: str = "sonicsearch",
         storage: str | None = None, out: str | Path | None = None, objective: str = "f1",
         pruner: str | optuna.pruners.BasePruner = "hyperband", seed: int = 0,
         startup_trials: int | None = None, keep_models: bool = False,
         show_progress: bool = True) -> TuneResult:
    """Run ``trials`` more trials of a study, then write the best config, summary and plots.

    Args:
        dataset: a split dataset; trials train on its train split and score on val.
        base: the config every trial starts from (the space's draws override it).
        space: the search space, checked against ``base`` here.
        trials: trials to add in this call (a resumed study keeps its earlier ones).
        timeout: stop starting new trials after this many seconds.
        study_name, storage: the Optuna study; storage defaults to SQLite in runs/tune/.
        out: the best config's path (default: ``<study folder>/best.yaml``).
        objective: ``f1``, ``f1+latency`` or ``f1+retrieval``.
        pruner: hyperband, sha, median, none, or an Optuna pruner.
        seed: sampler seed (trials train with ``base.runtime.seed``).
        startup_trials: random trials before TPE models the space (default: trials / 3,
            between 3 and 10); the NSGA-II population for two objectives.
        keep_models: write each trial's run to ``<study folder>/trial-NNN/``.

    Returns:
        TuneResult; ``best_config`` is None when no trial completed.

    Raises:
        ConfigError: a bad space, objective, pruner or storage.
    """
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    space.validate(base)
    storage = storage or default_storage(study_name)
    study_dir = study_folder(study_name, storage)
    study_dir.mkdir(parents=True, exist_ok=True)
    max_epochs = (space.max_value("train.phase1_epochs", base.train.phase1_epochs)
                  + space.max_value("train.phase2_epochs", base.train.phase2_epochs))
    startup = startup_trials or min(10, max(3, trials // 3))
    study = open_study(study_name, storage, objective, pruner, seed, max(1, max_epochs), startup)
    _requeue_interrupted(study)
    func = trial_objective(dataset, base, space, objective, study_dir if keep_models else None)
    before = len(study.trials)
    with progress_bar(trials, "tuning", enabled=show_progress) as bar:
        def done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            bar.advance(1)
            if show_progress:
                log(_trial_line(trial, objective))

        study.optimize(func, n_trials=trials, timeout=timeout, catch=(TrialFailed,),
                       callbacks=[done])
    result = TuneResult(study, study_dir, ran=len(study.trials) - before)
    result.best_config, result.pareto_configs = write_best(study, objective, study_dir, out)
    write_reports(study, objective, study_dir)
    return result


def trial_objective(dataset: Dataset, base: Config, space: SearchSpace, objective: str = "f1",
                   keep_dir: Path | None = None) -> Callable[[optuna.Trial], float | tuple]:
    """The Optuna objective: draw overrides, ``fit()``, return F1 (and the second value).

    Each trial records its resolved config and metrics as user attributes; a failure raises
    :class:`TrialFailed` after recording ``fail_reason``.
    """
    multi = len(OBJECTIVES[objective]) > 1

    def run(trial: optuna.Trial) -> float | tuple[float, float]:
        config = base.with_overrides(space.sample(trial))
        trial.set_user_attr("config", config.to_dict())
        best = -1.0

        def report(epoch: int, row: dict) -> None:
            nonlocal best
            best = max(best, row["val_macro_f1"])
            trial.set_user_attr("epochs", epoch)
            if not multi:
                trial.report(best, epoch)
                if trial.should_prune():
                    trial.set_user_attr("pruned_at_epoch", epoch)
                    raise optuna.TrialPruned(f"pruned after epoch {epoch} (F1 {best:.3f})")

        out_dir = keep_dir / f"trial-{trial.number:03d}" if keep_dir is not None else None
        try:
            result = fit(config, dataset, out_dir, report=report, show_progress=False)
            if not result.best:
                _fail(trial, "no epoch ran (train.phase1_epochs + phase2_epochs is 0)")
            trial.set_user_attr("best_epoch", result.best["epoch"])
            trial.set_user_attr("val_accuracy", result.best["val_accuracy"])
            f1 = float(result.best["val_macro_f1"])
            if not multi:
                return f1
            model = _trained_model(result, config)
            second = second_objective(objective, model, dataset, config)
            trial.set_user_attr(SECOND[objective], second)
            return f1, second
        except (TrainingError, DeviceError) as exc:  # a trial's failure, as before DeviceError
            _fail(trial, str(exc))
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if not _is_oom(exc):
                raise
            _free_memory()
            _fail(trial, f"out of memory (batch size {config.train.batch_size}, "
                         f"{config.model.arch}): {str(exc).splitlines()[0][:160]}")
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        finally:
            if torch.cuda.is_available():  # the next trial may need another batch size
                torch.cuda.empty_cache()

    return run


def _trained_model(result, config: Config):
    model = result.model
    if model is None:  # fit wrote the run: reload its best checkpoint
        model, _ = load_checkpoint(result.model_path, device=resolve_device(config.runtime.device))
    return model


def _fail(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr("fail_reason", reason)
    raise TrialFailed(reason)


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return (isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text
            or "can't allocate memory" in text)


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _requeue_interrupted(study: optuna.Study) -> None:
    """Queue again, once, each trial that a Ctrl-C stopped, so a resumed tune redoes it."""
    retried = {t.user_attrs.get("retry_of") for t in study.trials}
    for t in study.trials:
        if (t.state == TrialState.FAIL and t.user_attrs.get("fail_reason") == "interrupted"
                and t.number not in retried and "retry_of" not in t.user_attrs):
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})


def _storage(url: str):
    if "://" not in url:
        raise ConfigError(f"--storage takes a database URL such as sqlite:///runs/tune/x.db, "
                          f"got {url!r}")
    if url.startswith("sqlite:///"):
        path = url[10:]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite")
            else None, heartbeat_interval=30, grace_period=120,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=1))


def _pruner(pruner: str | optuna.pruners.BasePruner, max_epochs: int, n_objectives: int):
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    if pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner '{pruner}'; choose one of: {', '.join(PRUNERS)}")
    if pruner == "none" or n_objectives > 1:  # Optuna prunes single-objective studies only
        return optuna.pruners.NopPruner()
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs,
                                              reduction_factor=3)
    if pruner == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)


def _trial_line(trial: optuna.trial.FrozenTrial, objective: str) -> str:
    state = trial.state.name.lower()
    if trial.state == TrialState.COMPLETE:
        what = f"val macro-F1 {trial.values[0]:.3f}"
        if objective in SECOND:
            what += f", {SECOND[objective]} {trial.values[1]:.4g}"
    elif trial.state == TrialState.PRUNED:
        what = f"after epoch {trial.user_attrs.get('pruned_at_epoch', '?')}"
    else:
        what = trial.user_attrs.get("fail_reason", "")
    secs = trial.duration.total_seconds() if trial.duration else 0.0
    return f"trial {trial.number}: {state} {what} ({secs:.0f}s)  {format_params(trial.params)}"


class _QuietFailures(logging.Filter):
    """Drop Optuna's warnings (with a traceback) about failed trials: a TrialFailed is logged
    once, plainly, and kept as ``fail_reason``; any other error stops the study and reaches
    the CLI, which prints it as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "failed with parameters" not in message and not message.endswith(
            "failed with value None.")
