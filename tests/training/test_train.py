"""Fine-tuning end to end on a tiny synthetic corpus, evaluate, resume, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sonicsearch.cli import app
from sonicsearch.config import load_config
from sonicsearch.data.manifest import load_dataset
from sonicsearch.errors import DataError, TrainingError
from sonicsearch.model.checkpoint import load_checkpoint
from sonicsearch.training.finetune import fit

TINY = {
    "features.sample_rate": 8000, "features.n_mels": 32, "features.n_fft": 512,
    "features.hop_length": 256, "features.window_seconds": 1.0, "features.hop_seconds": 0.5,
    "model.weights": "none", "train.num_workers": 0, "train.batch_size": 16,
    "train.crops_per_file": 4, "train.phase1_epochs": 1, "train.phase2_epochs": 4,
    "train.head_lr": 0.05, "train.backbone_lr": 0.02, "train.val_fraction": 0.2,
    "train.test_fraction": 0.2, "train.patience": 10,
}


def separable_corpus(root, per: int = 10, seconds: float = 3.0, sr: int = 16000):
    """Four easily told apart classes with random variation (low tone, high tone, noise,
    clicks): a training test that checks the machinery learns, in seconds."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    for label in ("low", "high", "noise", "clicks"):
        (root / label).mkdir(parents=True)
        for i in range(per):
            amp = rng.uniform(0.1, 0.5)
            if label == "low":
                x = amp * np.sin(2 * np.pi * rng.uniform(100, 300) * t)
            elif label == "high":
                x = amp * np.sin(2 * np.pi * rng.uniform(2000, 3500) * t)
            elif label == "noise":
                x = amp * rng.standard_normal(t.size) * 0.5
            else:
                x = np.zeros(t.size)
                x[rng.integers(0, t.size, int(seconds * rng.uniform(4, 12)))] = amp * 2
            x = x + 0.01 * rng.standard_normal(t.size)
            sf.write(root / label / f"{label}{i:02d}.wav", x.astype(np.float32), sr)
    return root


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    return separable_corpus(tmp_path_factory.mktemp("corpus") / "four")


@pytest.fixture(scope="session")
def trained(corpus, tmp_path_factory):
    cfg = load_config(None, TINY)
    ds = load_dataset(corpus, 0.2, 0.2, seed=0)
    out = tmp_path_factory.mktemp("run")
    result = fit(cfg, ds, out, show_progress=False)
    return cfg, ds, out, result


def test_tiny_training_beats_chance_and_writes_the_run(trained):
    cfg, ds, out, result = trained
    for name in ("model.pt", "config.yaml", "split.csv", "metrics.jsonl", "metrics.json",
                 "training_curves.png", "confusion_test.png", "model.sha256"):
        assert (out / name).is_file(), name
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows][:2] == [1, 2]
    assert result.best["val_macro_f1"] >= 0.6  # chance is 0.25 for 4 balanced labels
    assert result.test is not None and result.test["n"] == len(ds.split("test"))
    # no style head to start from (weights none): none fitted, the model has none
    assert json.loads((out / "metrics.json").read_text())["style_head"] is None
    assert load_checkpoint(out / "model.pt")[0].style_head is None


def test_checkpoint_loads_weights_only_and_is_deterministic(trained):
    from sonicsearch.model.checkpoint import load_checkpoint

    _, ds, out, _ = trained
    torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    model, info = load_checkpoint(out / "model.pt")
    assert info["labels"] == ds.labels and info["arch"] == "resnet18"
    wave = torch.randn(2, 8000) * 0.1
    a, b = model.embed(wave), model.embed(wave)
    assert torch.equal(a[0], b[0])


def test_evaluate_matches_sklearn_on_the_same_predictions(trained):
    from sklearn.metrics import accuracy_score, f1_score

    from sonicsearch.model.checkpoint import load_checkpoint
    from sonicsearch.training.evaluate import evaluate_model

    _, ds, out, _ = trained
    report = evaluate_model(ds, out / "model.pt", split="test", quiet=True)
    model, _ = load_checkpoint(out / "model.pt")
    from sonicsearch.audio import frame_windows, load_audio

    y_true, y_pred = [], []
    for it in ds.split("test"):
        wave, _ = load_audio(it.path, 8000)
        windows, _ = frame_windows(wave, 8000, 1.0, 0.5)
        with torch.no_grad():
            logits, _ = model(torch.from_numpy(windows))
        y_pred.append(int(logits.mean(0).argmax()))
        y_true.append(ds.labels.index(it.label))
    assert report["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, average="macro", labels=sorted(set(y_true)),
                 zero_division=0))


def test_phase1_freezes_backbone_and_batchnorm(corpus):
    cfg = load_config(None, {**TINY, "train.phase1_epochs": 1, "train.phase2_epochs": 0})
    ds = load_dataset(corpus, 0.2, 0.2, seed=0)
    result = fit(cfg, ds, None, show_progress=False)
    model = result.model
    fresh_cfg = cfg
    torch.manual_seed(fresh_cfg.runtime.seed)
    from sonicsearch.model.backbones import AudioModel

    fresh = AudioModel.from_config(cfg.features, cfg.model, ds.labels, cfg.train)
    trained_sd, fresh_sd = model.backbone.state_dict(), fresh.backbone.state_dict()
    head_keys = {k for k in trained_sd if "fc" in k.split(".")[-2:][0]}
    changed = [k for k in trained_sd if k not in head_keys
               and not torch.equal(trained_sd[k].cpu(), fresh_sd[k])]
    assert changed == []  # neither weights nor BN running statistics moved
    assert any(not torch.equal(trained_sd[k], fresh_sd[k]) for k in head_keys)


def test_resume_gives_the_uninterrupted_result(corpus, tmp_path):
    ds = load_dataset(corpus, 0.2, 0.2, seed=0)
    base = {**TINY, "train.phase1_epochs": 1, "train.phase2_epochs": 2}
    full = fit(load_config(None, base), ds, tmp_path / "full", show_progress=False)
    # an interrupted run: the same config, killed after epoch 2 (the report hook raises)
    class Killed(Exception):
        pass

    def kill_after_two(epoch, _row):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        fit(load_config(None, base), ds, tmp_path / "cut", report=kill_after_two,
            show_progress=False)
    resumed = fit(load_config(None, base), ds, tmp_path / "cut", resume=True,
                  show_progress=False)
    a = [r["train_loss"] for r in full.history]
    b = [r["train_loss"] for r in resumed.history]
    assert np.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_resume_without_a_run_is_a_clear_error(corpus, tmp_path):
    ds = load_dataset(corpus, 0.2, 0.2, seed=0)
    with pytest.raises(TrainingError, match="cannot resume"):
        fit(load_config(None, TINY), ds, tmp_path / "none", resume=True, show_progress=False)


def test_evaluate_refuses_unknown_labels(trained, tmp_path):
    from audio_files import tone, write_audio

    from sonicsearch.training.evaluate import evaluate_model

    _, _, out, _ = trained
    for label in ("polka", "low"):
        for i in range(3):
            (tmp_path / "d" / label).mkdir(parents=True, exist_ok=True)
            write_audio(tmp_path / "d" / label / f"{i}.wav", tone(2, 8000, 300 + i), 8000)
    ds = load_dataset(tmp_path / "d", 0.0, 0.0)
    with pytest.raises(DataError, match="polka"):
        evaluate_model(ds, out / "model.pt", quiet=True)


def test_cli_evaluate_json_and_errors(trained, corpus):
    _, _, out, _ = trained
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(corpus), "--model", str(out / "model.pt"),
                              "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(report) == {"n", "accuracy", "macro_precision", "macro_recall", "macro_f1",
                           "absent_labels", "per_class"}
    bad = runner.invoke(app, ["evaluate", str(corpus), "--model", str(corpus / "nope.pt")])
    assert bad.exit_code != 0


def test_cli_evaluate_names_a_label_absent_from_the_data_and_leaves_it_out(trained, corpus,
                                                                          tmp_path):
    import shutil

    _, _, out, _ = trained
    data = tmp_path / "three"
    for label in ("low", "high", "noise"):  # no "clicks" file: one of the model's 4 labels
        shutil.copytree(corpus / label, data / label)
    runner = CliRunner()
    args = ["evaluate", str(data), "--model", str(out / "model.pt"), "--split", "all"]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["absent_labels"] == ["clicks"] and report["n"] == 30
    assert report["per_class"]["clicks"]["support"] == 0
    present = [m["f1"] for lab, m in report["per_class"].items() if lab != "clicks"]
    assert report["macro_f1"] == pytest.approx(np.mean(present))
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    assert "macro over the 3 labels present (absent from the split: clicks)" in text.stdout
    assert any(line.startswith("clicks") and line.endswith("absent")
               for line in text.stdout.splitlines())


def test_cli_evaluate_splits_with_the_models_config_or_the_given_one(trained, corpus, tmp_path,
                                                                     monkeypatch):
    import sonicsearch.data.manifest as manifest
    from sonicsearch.config import save_config

    _, _, out, _ = trained
    seen = []
    real = manifest.load_dataset

    def spy(data, val_fraction, test_fraction, seed, *args, **kwargs):
        seen.append((val_fraction, test_fraction, seed))
        return real(data, val_fraction, test_fraction, seed, *args, **kwargs)

    monkeypatch.setattr(manifest, "load_dataset", spy)
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(corpus), "--model", str(out / "model.pt"),
                              "--json"])
    assert res.exit_code == 0, res.output
    assert seen[-1] == (0.2, 0.2, 0)  # TINY's fractions, saved in the model, not 0.15
    save_config(load_config(None, {**TINY, "train.val_fraction": 0.25,
                                   "train.test_fraction": 0.1, "runtime.seed": 3}),
                tmp_path / "c.yaml")
    res = runner.invoke(app, ["evaluate", str(corpus), "--model", str(out / "model.pt"),
                              "--config", str(tmp_path / "c.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    assert seen[-1] == (0.25, 0.1, 3)
