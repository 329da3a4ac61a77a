"""`sonicsearch tune`: Optuna search over the training recipe; the best config comes out."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from sonicsearch.cli import app
from sonicsearch.cli.common import (
    POSITIVE,
    SEED,
    ArchOpt,
    ConfigOpt,
    DataArg,
    DeviceOpt,
    ExternalOpt,
    WeightsOpt,
)
from sonicsearch.config import load_config
from sonicsearch.data.manifest import class_count_table, load_dataset
from sonicsearch.errors import TrainingError
from sonicsearch.utils.progress import log


class Objective(str, Enum):
    f1 = "f1"
    f1_latency = "f1+latency"
    f1_retrieval = "f1+retrieval"


class Pruner(str, Enum):
    hyperband = "hyperband"
    sha = "sha"
    median = "median"
    none = "none"


@app.command()
def tune(
    data: DataArg,
    trials: Annotated[int, typer.Option(
        min=1, help="Trials to add to the study in this run.")] = 20,
    timeout: Annotated[float | None, typer.Option(
        callback=POSITIVE, metavar="SECONDS",
        help="Start no new trial after this many seconds.")] = None,
    study: Annotated[str, typer.Option(
        help="Study name; an existing one is resumed.")] = "sonicsearch",
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage URL (default: sqlite:///runs/tune/STUDY.db).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Best config (default: beside the study, STUDY/best.yaml).")] = None,
    space: Annotated[Path | None, typer.Option(
        help="Search-space YAML (default: configs/tune.yaml).")] = None,
    config: ConfigOpt = None,
    arch: ArchOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = None,
    seed: Annotated[int, typer.Option(min=0, callback=SEED, help="Sampler seed.")] = 0,
    train_seed: Annotated[int | None, typer.Option(
        min=0, callback=SEED, help="Training seed of every trial (split, init, crops).")] = None,
    objective: Annotated[Objective, typer.Option(
        help="f1, or a second objective for a Pareto front (NSGA-II, no pruning).")] = Objective.f1,
    pruner: Annotated[Pruner, typer.Option(help="Early stopping of poor trials.")] = (
        Pruner.hyperband),
    startup_trials: Annotated[int | None, typer.Option(
        min=1, help="Random trials before TPE (default: trials/3, within 3..10).")] = None,
    keep_models: Annotated[bool, typer.Option(
        help="Keep each trial's run (model.pt, ...) in STUDY/trial-NNN/.")] = False,
    allow_external_paths: ExternalOpt = False,
) -> None:
    """Search the training recipe's hyperparameters with Optuna; write the best config.

    \f
    It is long because typer declares every option in the signature; the body only calls
    run_study and prints its report.
    """
    # deferred: tuning loads Optuna, torchvision and scikit-learn, which --help does not need
    from sonicsearch.tune.report import format_params, print_summary
    from sonicsearch.tune.space import load_space
    from sonicsearch.tune.study import tune as run_tune

    cfg = load_config(config, {"model.arch": arch, "model.weights": weights,
                               "runtime.device": device.value if device else None,
                               "runtime.seed": train_seed})
    search = load_space(space)
    search.validate(cfg)
    tc = cfg.train
    ds = load_dataset(data, tc.val_fraction, tc.test_fraction, cfg.runtime.seed,
                      cfg.features.min_seconds, allow_external_paths)
    if ds.skipped:
        log(f"skipped {len(ds.skipped)} unusable files")
    log(f"{len(ds.items)} files, {len(ds.labels)} labels\n{class_count_table(ds)}")
    result = run_tune(ds, cfg, search, trials=trials, timeout=timeout, study_name=study,
                      storage=storage, out=out, objective=objective.value, pruner=pruner.value,
                      seed=seed, startup_trials=startup_trials, keep_models=keep_models)
    print_summary(result.study, objective.value)
    log(f"{result.ran} trials run now, {len(result.study.trials)} in study '{study}'; "
        f"summary and plots in {result.study_dir}")
    if result.best_config is None:
        raise TrainingError(f"no trial of study '{study}' has completed yet, so no config was "
                            "written; see the table above for why")
    if result.pareto_configs:
        log(f"Pareto front: {len(result.pareto_configs)} trials; their configs are in "
            f"{result.pareto_configs[0].parent}")
        for t in sorted(result.study.best_trials, key=lambda t: -t.values[0]):
            log(f"  trial {t.number}: F1 {t.values[0]:.3f}, {objective.value.split('+')[1]} "
                f"{t.values[1]:.4g}  {format_params(t.params)}")
    log(f"wrote the best config to {result.best_config}; train it with: sonicsearch train "
        f"{data} --config {result.best_config}")
