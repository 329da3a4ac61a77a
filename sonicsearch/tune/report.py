"""What a tuning study leaves beside it: a summary table of trials (printed and trials.csv),
the optimisation history, parameter importance and, with two objectives, the Pareto front
as PNGs."""

from __future__ import annotations

import csv
import sys
import warnings
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from sonicsearch.config import Config, save_config
from sonicsearch.utils.progress import log

SECOND_LABEL = {"f1+latency": "latency ms/window", "f1+retrieval": "retrieval mAP@10"}


def write_best(study: optuna.Study, objective: str, study_dir: Path,
               out: str | Path | None = None) -> tuple[Path | None, list[Path]]:
    """Write the best trial's config to ``out`` (two objectives: the Pareto trial with the
    best F1, and every Pareto trial under ``pareto/``); (None, []) without a complete trial."""
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not complete:
        return None, []
    best_trials = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    best_trials = [t for t in best_trials if "config" in t.user_attrs]
    if not best_trials:
        return None, []
    top = max(best_trials, key=lambda t: (t.values[0], -t.number))
    path = Path(out) if out is not None else study_dir / "best.yaml"
    write_trial_config(top, path, study.study_name, objective)
    pareto: list[Path] = []
    if len(study.directions) > 1:
        folder = study_dir / "pareto"
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("trial-*.yaml"):
            old.unlink()
        for t in sorted(best_trials, key=lambda t: t.number):
            pareto.append(folder / f"trial-{t.number:03d}.yaml")
            write_trial_config(t, pareto[-1], study.study_name, objective)
    return path, pareto


def write_trial_config(trial: optuna.trial.FrozenTrial, path: Path, study_name: str,
                       objective: str) -> None:
    """Save a trial's resolved config as a training config (``train --config`` takes it)."""
    config = Config.from_dict(trial.user_attrs["config"])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_config(config, path)
    values = ", ".join(f"{v:.4g}" for v in trial.values)
    header = (f"# sonicsearch tune: study '{study_name}', trial {trial.number}, "
              f"objective {objective} = {values}\n"
              f"# params: {trial.params}\n")
    path.write_text(header + path.read_text(encoding="utf-8"), encoding="utf-8")


def trial_rows(study: optuna.Study) -> list[dict]:
    """One dict per trial: number, state, values, epochs, seconds, params and a note."""
    rows = []
    for t in study.trials:
        note = t.user_attrs.get("fail_reason", "")
        if t.state == TrialState.PRUNED:
            note = f"pruned after epoch {t.user_attrs.get('pruned_at_epoch', '?')}"
        elif t.state == TrialState.FAIL and not note:
            note = "stopped (process ended without finishing the trial)"
        if "retry_of" in t.user_attrs:
            note = (note + f"; redo of trial {t.user_attrs['retry_of']}").lstrip("; ")
        rows.append({
            "number": t.number, "state": t.state.name, "values": list(t.values or []),
            "epochs": t.user_attrs.get("epochs", 0),
            "seconds": t.duration.total_seconds() if t.duration else None,
            "params": dict(t.params), "note": note,
        })
    return rows


def format_params(params: dict) -> str:
    """``name=value`` pairs, floats to 3 significant digits."""
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in params.items())


def print_summary(study: optuna.Study, objective: str = "f1", file=None) -> None:
    """The trials as a table on stdout (rich on a terminal, aligned text otherwise)."""
    file = file or sys.stdout
    rows = trial_rows(study)
    best = _best_numbers(study)
    heads = ["trial", "state", "val F1"] + ([SECOND_LABEL[objective]]
                                            if objective in SECOND_LABEL else [])
    heads += ["epochs", "time s", "params", "note"]
    table = []
    for r in rows:
        values = [f"{v:.4g}" for v in r["values"]] or ["-"] * (len(heads) - 6)
        table.append([f"{r['number']}{'*' if r['number'] in best else ''}",
                      r["state"].lower(), *values, str(r["epochs"]),
                      f"{r['seconds']:.0f}" if r["seconds"] is not None else "-",
                      format_params(r["params"]), r["note"]])
    title = (f"study '{study.study_name}': {len(rows)} trials "
             f"(* = best{' / Pareto front' if len(study.directions) > 1 else ''})")
    if file.isatty():
        from rich.console import Console
        from rich.table import Table

        t = Table(*heads, title=title)
        for row in table:
            t.add_row(*row)
        Console(file=file).print(t)
        return
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h)
              for i, h in enumerate(heads)]
    print(title, file=file)
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip(), file=file)
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=file)


def write_reports(study: optuna.Study, objective: str, folder: str | Path) -> list[Path]:
    """trials.csv, history.png, importance.png (>= 2 complete trials with varied parameters)
    and pareto.png (two objectives) in ``folder``; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [write_csv(study, folder / "trials.csv")]
    if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials):
        written.append(plot_history(study, folder / "history.png"))
    importance = plot_importance(study, folder / "importance.png")
    if importance is not None:
        written.append(importance)
    if len(study.directions) > 1 and _complete(study):
        written.append(plot_pareto(study, objective, folder / "pareto.png"))
    return written


def write_csv(study: optuna.Study, path: Path) -> Path:
    """All trials, one row each, one column per parameter."""
    rows = trial_rows(study)
    names = sorted({k for r in rows for k in r["params"]})
    n_values = len(study.directions)
    value_cols = ["value"] if n_values == 1 else [f"value_{i}" for i in range(n_values)]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "state", *value_cols, "epochs", "seconds", *names, "note"])
        for r in rows:
            values = r["values"] or [""] * n_values
            w.writerow([r["number"], r["state"], *values, r["epochs"],
                        "" if r["seconds"] is None else f"{r['seconds']:.1f}",
                        *(r["params"].get(n, "") for n in names), r["note"]])
    return path


def plot_history(study: optuna.Study, path: Path) -> Path:
    """Validation macro-F1 per trial (complete: dots; pruned: its last reported value) and
    the best so far."""
    # deferred: matplotlib loads only when a figure is drawn
    from sonicsearch.utils.plots import plt, save_figure
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [(t.number, t.values[0]) for t in study.trials if t.state == TrialState.COMPLETE]
    pruned = [(t.number, t.intermediate_values[max(t.intermediate_values)])
              for t in study.trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if done:
        ax.scatter(*zip(*done), label="complete", zorder=3)
        running, best = [], -1.0
        for n, v in sorted(done):
            best = max(best, v)
            running.append((n, best))
        ax.step(*zip(*running), where="post", color="C1", label="best so far")
    if pruned:
        ax.scatter(*zip(*pruned), marker="x", color="grey", label="pruned (last report)")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation macro-F1")
    ax.set_title(f"optimisation history: {study.study_name}")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return path


def plot_importance(study: optuna.Study, path: Path) -> Path | None:
    """Parameter importance for validation macro-F1 (Optuna's default evaluator); None,
    with a note, when there are too few complete trials or nothing varied."""
    complete = _complete(study)
    if len(complete) < 2:
        log(f"parameter importance needs 2 complete trials, the study has {len(complete)}: "
            "no importance.png")
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        log(f"no importance.png: {exc}")
        return None
    if not imp:
        log("no importance.png: no parameter varied across the complete trials")
        return None
    # deferred: matplotlib loads only when a figure is drawn
    from sonicsearch.utils.plots import plt, save_figure
    names = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.5))
    ax.barh(names, [imp[n] for n in names])
    ax.set_xlabel("importance for validation macro-F1")
    ax.set_title(f"parameter importance ({len(complete)} complete trials)")
    ax.grid(alpha=0.3, axis="x")
    save_figure(fig, path)
    return path


def plot_pareto(study: optuna.Study, objective: str, path: Path) -> Path:
    """Complete trials in the plane of the two objectives, the Pareto front highlighted."""
    # deferred: matplotlib loads only when a figure is drawn
    from sonicsearch.utils.plots import plt, save_figure
    front = {t.number for t in study.best_trials}
    fig, ax = plt.subplots(figsize=(6, 4.5))
    pts = [(t.values[1], t.values[0], t.number in front) for t in _complete(study)]
    ax.scatter([p[0] for p in pts if not p[2]], [p[1] for p in pts if not p[2]],
               color="grey", label="dominated")
    best = sorted((p[0], p[1]) for p in pts if p[2])
    ax.plot(*zip(*best), "o-", color="C3", label="Pareto front")
    ax.set_xlabel(SECOND_LABEL.get(objective, "objective 2"))
    ax.set_ylabel("validation macro-F1")
    ax.set_title(f"Pareto front: {study.study_name}")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return path


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.trials if t.state == TrialState.COMPLETE]


def _best_numbers(study: optuna.Study) -> set[int]:
    if not _complete(study):
        return set()
    if len(study.directions) > 1:
        return {t.number for t in study.best_trials}
    return {study.best_trial.number}
