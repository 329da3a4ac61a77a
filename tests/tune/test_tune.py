"""Tuning: the YAML search space, studies on a tiny corpus (complete, prune, resume, fail),
the written config going back into `train`, and the two-objective Pareto front."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from test_train import TINY, separable_corpus
from typer.testing import CliRunner

import sonicsearch.tune.study as tune_mod
from sonicsearch.cli import app
from sonicsearch.config import Config, load_config, save_config
from sonicsearch.data.manifest import load_dataset
from sonicsearch.errors import ConfigError, TrainingError
from sonicsearch.tune.objectives import loo_retrieval
from sonicsearch.tune.space import load_space, parse_space, stage_count
from sonicsearch.tune.study import open_study, tune

ROOT = Path(__file__).resolve().parents[2]
BASE = {**TINY, "train.device": "cpu", "train.phase1_epochs": 1, "train.phase2_epochs": 1,
        "train.crops_per_file": 2}
SPACE = {"params": [
    {"name": "head_lr", "key": "train.head_lr", "type": "float", "low": 0.01, "high": 0.1,
     "log": True},
    {"name": "backbone_lr", "key": "train.backbone_lr", "type": "float", "low": 0.005,
     "high": 0.05, "log": True},
    {"name": "unfreeze", "key": "train.unfreeze", "type": "int", "low": 1, "high": 5},
    {"name": "schedule", "key": "train.schedule", "type": "categorical",
     "choices": ["cosine", "step"]},
    {"name": "step_size", "key": "train.step_size", "type": "int", "low": 1, "high": 3,
     "when": {"schedule": "step"}},
    {"name": "phase2_epochs", "key": "train.phase2_epochs", "type": "int", "low": 0, "high": 1},
]}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A 4-label corpus of 6 short clips each, its dataset, base config and space file."""
    root = tmp_path_factory.mktemp("tune")
    corpus = separable_corpus(root / "four", per=6, seconds=2.0, sr=8000)
    base = load_config(None, BASE)
    save_config(base, root / "base.yaml")
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE))
    ds = load_dataset(corpus, 0.2, 0.2, seed=0)
    return {"corpus": corpus, "root": root, "base": base, "ds": ds,
            "space": load_space(root / "space.yaml")}


def _cli_tune(tiny, tmp_path, study: str, trials: int, *extra: str):
    args = ["tune", str(tiny["corpus"]), "--trials", str(trials), "--study", study,
            "--storage", f"sqlite:///{tmp_path / 'studies.db'}", "--space",
            str(tiny["root"] / "space.yaml"), "--config", str(tiny["root"] / "base.yaml"), *extra]
    return CliRunner().invoke(app, args)


def _load(tmp_path, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=f"sqlite:///{tmp_path / 'studies.db'}")


@pytest.fixture(scope="session")
def study3(tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study3")
    res = _cli_tune(tiny, tmp, "three", 3)
    return tmp, res


# --- the search space ---------------------------------------------------------------------

def test_shipped_space_is_valid_and_draws_valid_configs():
    load_space(ROOT / "configs" / "tune-resnet18.yaml").validate(Config())
    space = load_space(ROOT / "configs" / "tune.yaml")
    space.validate(Config())
    keys = {p.key for p in space.params}
    for needed in ("model.arch", "train.head_lr", "train.backbone_lr", "train.momentum",
                   "train.weight_decay", "train.batch_size", "train.unfreeze",
                   "train.phase1_epochs", "train.phase2_epochs", "train.mixup_alpha"):
        assert needed in keys, needed
    arch = next(p for p in space.params if p.key == "model.arch")
    assert set(arch.choices) >= {"resnet18", "resnet34", "densenet121", "alexnet"}
    assert any(c.startswith("vgg") for c in arch.choices)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        overrides = space.sample(trial)
        cfg = Config().with_overrides(overrides)
        assert 1 <= int(cfg.train.unfreeze) <= stage_count(cfg.model.arch)
        if cfg.model.arch in ("vgg11_bn", "alexnet"):
            assert cfg.train.head_lr <= 0.02  # the family's own, lower range
        assert ("train.step_size" in overrides) == (cfg.train.schedule == "step")
        seen.add(cfg.model.arch)
        study.tell(trial, 0.0)
    assert len(seen) == 5


@pytest.mark.parametrize("entry, message", [
    ({"key": "train.head_lr", "type": "float", "low": 0.1, "high": 1, "lo": 3},
     "entry 'head_lr': unknown field"),
    ({"key": "train.head_lr", "type": "float", "low": 1.0, "high": 0.1},
     "entry 'head_lr': low .* greater than high"),
    ({"key": "train.head_lr", "type": "double", "low": 0.1, "high": 1},
     "entry 'head_lr': unknown type 'double'"),
    ({"name": "lr", "key": "train.head_rl", "type": "float", "low": 0.1, "high": 1},
     "entry 'lr': unknown config key 'train.head_rl'"),
    ({"key": "train.head_lr", "type": "float", "low": 0.0, "high": 1, "log": True},
     "entry 'head_lr': a log scale needs low > 0"),
    ({"key": "train.momentum", "type": "float", "low": 0.1, "high": 1,
      "when": {"arch": "vgg11_bn"}}, "entry 'momentum': 'when' names 'arch'"),
    ({"key": "train.batch_size", "type": "categorical", "choices": []},
     "entry 'batch_size': 'choices' must be"),
])
def test_bad_space_entries_name_the_entry(entry, message):
    with pytest.raises(ConfigError, match=message):
        parse_space({"params": [entry]})


@pytest.mark.parametrize("params, base_arch, message", [
    ([{"key": "model.arch", "type": "categorical", "choices": ["resnet18", "alexnet"]},
      {"key": "train.unfreeze", "type": "int", "low": 1, "high": 5}], "resnet18",
     "entry 'unfreeze': alexnet has 4 stages"),
    ([{"key": "train.unfreeze", "type": "int", "low": 0, "high": 5}], "alexnet",
     "entry 'unfreeze': alexnet has 4 stages"),
    ([{"key": "model.arch", "type": "categorical", "choices": ["resnet18", "resnet19"]}],
     "resnet18", "entry 'arch': unknown arch 'resnet19'"),
    ([{"key": "train.batch_size", "type": "float", "low": 8, "high": 64}], "resnet18",
     "entry 'batch_size': train.batch_size takes whole numbers"),
    ([{"key": "train.unfreeze", "type": "categorical", "choices": [1, 6, "all"]}], "vgg16_bn",
     None),
])
def test_space_values_are_checked_against_the_config(params, base_arch, message):
    space = parse_space({"params": params})
    base = Config().with_overrides({"model.arch": base_arch})
    if message is None:
        space.validate(base)
        return
    with pytest.raises(ConfigError, match=message):
        space.validate(base)


def test_one_key_twice_needs_exclusive_conditions():
    arch = {"key": "model.arch", "type": "categorical", "choices": ["resnet18", "alexnet"]}
    lr = {"key": "train.head_lr", "type": "float", "low": 0.01, "high": 0.1}
    with pytest.raises(ConfigError, match="'head_lr' and 'lr2' both set train.head_lr"):
        parse_space({"params": [arch, lr, {**lr, "name": "lr2"}]})
    ok = parse_space({"params": [arch, {**lr, "when": {"arch": "resnet18"}},
                                 {**lr, "name": "lr2", "when": {"arch": ["alexnet"]}}]})
    with pytest.raises(ConfigError, match="name is used twice"):
        parse_space({"params": [arch, lr, {**lr, "name": "head_lr", "key": "train.backbone_lr"}]})
    assert len(ok.params) == 3


def test_space_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_space(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("params: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_space(tmp_path / "bad.yaml")
    (tmp_path / "top.yaml").write_text("param: []\n")
    with pytest.raises(ConfigError, match="one key, 'params'"):
        load_space(tmp_path / "top.yaml")


def test_loo_retrieval_scores_clusters():
    rng = np.random.default_rng(0)
    centers = np.eye(3) * 10
    targets = np.repeat(np.arange(3), 4)
    vecs = centers[targets] + rng.normal(0, 0.1, (12, 3))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    good = loo_retrieval(vecs, targets, k=10)
    assert good["k"] == 10 and good["map"] == pytest.approx(1.0)
    assert good["precision"] == pytest.approx(3 / 10)  # 3 relevant among 11 others
    mixed = loo_retrieval(rng.normal(size=(12, 3)), targets, k=3)
    assert mixed["map"] < 1.0


def test_study_for_another_objective_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    open_study("x", url, "f1")
    with pytest.raises(ConfigError, match="made for objective 'f1'"):
        open_study("x", url, "f1+latency")
    with pytest.raises(ConfigError, match="unknown pruner"):
        open_study("y", url, "f1", pruner="asha")
    assert isinstance(open_study("z", url, "f1", pruner="median").pruner,
                      optuna.pruners.MedianPruner)
    assert isinstance(open_study("x", url, "f1").pruner, optuna.pruners.HyperbandPruner)


# --- studies on the tiny corpus ------------------------------------------------------------

def test_three_trial_study_completes_with_summary_and_plots(study3):
    tmp, res = study3
    assert res.exit_code == 0, res.output
    study = _load(tmp, "three")
    assert len(study.trials) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert any(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(t.intermediate_values for t in study.trials)  # reported every epoch
    folder = tmp / "three"
    for name in ("best.yaml", "trials.csv", "history.png"):
        assert (folder / name).is_file(), name
    rows = list(csv.DictReader(open(folder / "trials.csv")))
    assert [r["number"] for r in rows] == ["0", "1", "2"]
    assert "study 'three': 3 trials" in res.stdout
    if sum(t.state == TrialState.COMPLETE for t in study.trials) >= 2:
        assert (folder / "importance.png").is_file()
    assert not list(folder.glob("trial-*"))  # trial models are not kept unless asked


def test_written_config_is_accepted_by_train(study3, tiny):
    tmp, res = study3
    assert res.exit_code == 0, res.output
    best = tmp / "three" / "best.yaml"
    cfg = load_config(best)
    trial = _load(tmp, "three").best_trial
    assert cfg == Config.from_dict(trial.user_attrs["config"])
    assert cfg.train.head_lr == pytest.approx(trial.params["head_lr"])
    run = CliRunner().invoke(app, ["train", str(tiny["corpus"]), "--config", str(best),
                                   "--out", str(tmp / "run")])
    assert run.exit_code == 0, run.output
    assert (tmp / "run" / "model.pt").is_file()


def test_forced_prune_records_pruned_trials_and_writes_no_config(tiny, tmp_path):
    never_good_enough = optuna.pruners.ThresholdPruner(lower=1.01)  # F1 never exceeds 1
    result = tune(tiny["ds"], tiny["base"], tiny["space"], trials=2, study_name="pruned",
                  storage=f"sqlite:///{tmp_path / 'studies.db'}", pruner=never_good_enough,
                  show_progress=False)
    states = [t.state for t in result.study.trials]
    assert states == [TrialState.PRUNED, TrialState.PRUNED]
    assert [t.user_attrs["pruned_at_epoch"] for t in result.study.trials] == [1, 1]
    assert result.best_config is None
    assert not (tmp_path / "pruned" / "best.yaml").exists()
    assert (tmp_path / "pruned" / "trials.csv").is_file()


def test_resumed_study_adds_up_its_trials(tiny, tmp_path):
    first = tune(tiny["ds"], tiny["base"], tiny["space"], trials=2, study_name="resume",
                 storage=f"sqlite:///{tmp_path / 'studies.db'}", pruner="none",
                 show_progress=False)
    assert first.ran == 2
    res = _cli_tune(tiny, tmp_path, "resume", 1, "--pruner", "none")
    assert res.exit_code == 0, res.output
    study = _load(tmp_path, "resume")
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert study.trials[2].params != study.trials[0].params  # the sampler did not restart
    assert "1 trials run now, 3 in study 'resume'" in res.output


def test_failed_trials_are_recorded_and_the_study_goes_on(tiny, tmp_path, monkeypatch):
    real_fit, calls = tune_mod.fit, []

    def flaky_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TrainingError("loss became nan in epoch 1; lower the learning rates")
        if len(calls) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(tune_mod, "fit", flaky_fit)
    result = tune(tiny["ds"], tiny["base"], tiny["space"], trials=3, study_name="flaky",
                  storage=f"sqlite:///{tmp_path / 'studies.db'}", pruner="none",
                  show_progress=False)
    trials = result.study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert "loss became nan" in trials[0].user_attrs["fail_reason"]
    assert trials[1].user_attrs["fail_reason"].startswith("out of memory")
    assert result.best_config is not None and result.best_config.is_file()
    rows = list(csv.DictReader(open(tmp_path / "flaky" / "trials.csv")))
    assert "out of memory" in rows[1]["note"]


def test_real_nan_loss_fails_the_trial(tiny, tmp_path):
    space = parse_space({"params": [
        {"key": "train.head_lr", "type": "float", "low": 1e12, "high": 1e13, "log": True}]})
    base = tiny["base"].with_overrides({"train.grad_clip": 0.0, "train.label_smoothing": 0.0,
                                        "train.mixup_alpha": 0.0})
    result = tune(tiny["ds"], base, space, trials=1, study_name="nan",
                  storage=f"sqlite:///{tmp_path / 'studies.db'}", show_progress=False)
    (trial,) = result.study.trials
    assert trial.state == TrialState.FAIL
    assert "loss became" in trial.user_attrs["fail_reason"]


def test_interrupted_trial_is_redone_on_resume(tiny, tmp_path, monkeypatch):
    real_fit = tune_mod.fit

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    monkeypatch.setattr(tune_mod, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune(tiny["ds"], tiny["base"], tiny["space"], trials=2, study_name="ctrl-c",
             storage=url, pruner="none", show_progress=False)
    monkeypatch.setattr(tune_mod, "fit", real_fit)
    result = tune(tiny["ds"], tiny["base"], tiny["space"], trials=1, study_name="ctrl-c",
                  storage=url, pruner="none", show_progress=False)
    first, redo = result.study.trials
    assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"] == "interrupted"
    assert redo.state == TrialState.COMPLETE and redo.user_attrs["retry_of"] == 0
    assert redo.params == first.params


def test_latency_objective_gives_a_pareto_front(tiny, tmp_path):
    out = tmp_path / "chosen.yaml"
    result = tune(tiny["ds"], tiny["base"], tiny["space"], trials=2, study_name="fast",
                  storage=f"sqlite:///{tmp_path / 'studies.db'}", objective="f1+latency",
                  out=out, show_progress=False)
    study = result.study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2 and all(len(t.values) == 2 and t.values[1] > 0 for t in done)
    assert result.pareto_configs and len(result.pareto_configs) == len(study.best_trials)
    for path in result.pareto_configs + [out]:
        load_config(path)
    assert out.is_file() and (result.study_dir / "pareto.png").is_file()
    top = max(study.best_trials, key=lambda t: t.values[0])
    assert load_config(out) == Config.from_dict(top.user_attrs["config"])


def test_retrieval_objective_with_kept_models(tiny, tmp_path):
    result = tune(tiny["ds"], tiny["base"], tiny["space"], trials=1, study_name="retr",
                  storage=f"sqlite:///{tmp_path / 'studies.db'}", objective="f1+retrieval",
                  keep_models=True, show_progress=False)
    done = [t for t in result.study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 1
    assert all(0.0 <= t.values[1] <= 1.0 for t in done)
    assert all(t.user_attrs["retrieval_map10"] == t.values[1] for t in done)
    for t in done:
        assert (tmp_path / "retr" / f"trial-{t.number:03d}" / "model.pt").is_file()


def test_cli_rejects_bad_input(tiny, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"params": [
        {"key": "train.head_lr", "type": "float", "low": 1.0, "high": 0.1}]}))
    res = CliRunner().invoke(app, ["tune", str(tiny["corpus"]), "--space", str(bad),
                                   "--storage", f"sqlite:///{tmp_path / 's.db'}"])
    assert isinstance(res.exception, ConfigError) and "head_lr" in str(res.exception)
    res = CliRunner().invoke(app, ["tune", str(tiny["corpus"]), "--trials", "0"])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["tune", str(tiny["corpus"]), "--objective", "speed"])
    assert res.exit_code == 2


def test_cli_without_a_completed_trial_fails_cleanly(tiny, tmp_path, monkeypatch):
    def diverges(*args, **kwargs):
        raise TrainingError("loss became nan in epoch 1")

    monkeypatch.setattr(tune_mod, "fit", diverges)
    res = _cli_tune(tiny, tmp_path, "none-done", 1)
    assert isinstance(res.exception, TrainingError)
    assert "no trial of study 'none-done' has completed" in str(res.exception)
    assert "loss became nan" in res.stdout  # the summary table gives the reason
