"""Self-supervised pretraining: views, NT-Xent, a tiny run that pulls views together, the
label-free model file into train / build-index / query, resume, the CLI and the joint
objective of train."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_train import separable_corpus
from typer.testing import CliRunner

from sonicsearch.cli import app
from sonicsearch.config import load_config, save_config
from sonicsearch.data.excerpts import ExcerptBatches, scan_audio
from sonicsearch.training.objectives import nt_xent
from sonicsearch.training.pretrain import build_pretrain_model, pretrain
from sonicsearch.training.views import ViewMaker

SR = 8000
TINY = {
    "features.sample_rate": SR, "features.n_mels": 32, "features.n_fft": 512,
    "features.hop_length": 256, "features.window_seconds": 1.0, "features.hop_seconds": 0.5,
    "model.weights": "none", "train.num_workers": 0, "train.batch_size": 16,
    "train.crops_per_file": 2, "train.phase1_epochs": 1, "train.phase2_epochs": 1,
    "train.val_fraction": 0.2, "train.test_fraction": 0.2,
    "pretrain.epochs": 2, "pretrain.batch_size": 16, "pretrain.windows_per_file": 1,
    "pretrain.normalization_excerpts": 16, "pretrain.reverb_max_seconds": 0.3,
    "pretrain.time_mask_frames": 4, "pretrain.freq_mask_bins": 4,
}


@pytest.fixture(scope="session")
def audio(tmp_path_factory):
    return separable_corpus(tmp_path_factory.mktemp("unlabelled") / "four", per=6)


@pytest.fixture(scope="session")
def pretrained(audio, tmp_path_factory):
    """A tiny pretraining through the CLI, on a folder that also holds a broken file."""
    root = tmp_path_factory.mktemp("pre")
    (audio / "broken.wav").write_bytes(b"RIFF not really a wav file")
    # enough steps to learn something: 4 epochs of 9 steps at a higher rate
    save_config(load_config(None, {**TINY, "pretrain.epochs": 4, "pretrain.windows_per_file": 6,
                                   "pretrain.lr": 0.003}), root / "tiny.yaml")
    res = CliRunner().invoke(app, ["pretrain", str(audio), "--config", str(root / "tiny.yaml"),
                                   "--out", str(root / "run"), "--arch", "resnet18"])
    (audio / "broken.wav").unlink()
    assert res.exit_code == 0, res.output
    return root, res.output


def _excerpts(audio, n: int = 16) -> torch.Tensor:
    from sonicsearch.audio import load_audio

    files = sorted(audio.rglob("*.wav"))[:: max(1, 24 // n)][:n]
    return torch.stack([torch.from_numpy(load_audio(f, SR, 0.5, 1.55)[0]) for f in files])


def _view_gap(model, excerpts: torch.Tensor, config) -> tuple[float, float]:
    """Mean cosine of two views of one excerpt minus that of views of different excerpts,
    and the fraction of excerpts whose two views are closer than their mean to the others."""
    views = ViewMaker(config.pretrain, SR, config.features.window_samples)
    v1, v2 = views.pair(excerpts, torch.Generator().manual_seed(123))
    with torch.no_grad():
        a = F.normalize(model.embed(v1)[0], dim=1)
        b = F.normalize(model.embed(v2)[0], dim=1)
    sim = a @ b.T
    n = sim.shape[0]
    pos = sim.diag().mean().item()
    neg = ((sim.sum() - sim.diag().sum()) / (n * n - n)).item()
    others = (sim.sum(dim=1) - sim.diag()) / (n - 1)
    return pos - neg, (sim.diag() > others).float().mean().item()


def test_nt_xent_prefers_matching_views():
    z = torch.randn(8, 16)
    assert nt_xent(z, z + 0.01 * torch.randn(8, 16)) < nt_xent(z, torch.randn(8, 16))
    with pytest.raises(ValueError, match="two"):
        nt_xent(z, z[:4])
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z, 0.0)


def test_views_are_repeatable_degraded_and_window_long():
    cfg = load_config(None, TINY)
    views = ViewMaker(cfg.pretrain, SR, SR)
    x = torch.sin(torch.arange(views.span_samples()) * 0.05)[None].repeat(6, 1) * 0.3
    a1, a2 = views.pair(x, torch.Generator().manual_seed(5))
    b1, _ = views.pair(x, torch.Generator().manual_seed(5))
    assert a1.shape == (6, SR) and torch.isfinite(a1).all()
    assert torch.equal(a1, b1)
    assert not torch.allclose(a1, a2)
    assert not torch.allclose(a1[:, :100], x[:, :100])


def test_excerpt_batches_are_planned_per_epoch(audio):
    files, skipped = scan_audio([audio], 0.5)
    assert len(files) == 24 and not skipped
    data = ExcerptBatches(files, SR, 9000, batch_size=8, per_file=2, seed=1)
    assert len(data) == 6 and sorted(np.bincount(data.order)) == [2] * 24
    data.set_epoch(3)
    a = data[2]
    data.set_epoch(4)
    assert not torch.equal(a, data[2])
    data.set_epoch(3)
    assert torch.equal(a, data[2]) and a.shape == (8, 9000)


def test_pretraining_pulls_views_of_an_excerpt_together(pretrained, audio):
    from sonicsearch.model.checkpoint import load_checkpoint

    root, _ = pretrained
    cfg = load_config(root / "run" / "config.yaml")
    after, _ = load_checkpoint(root / "run" / "model.pt")
    torch.manual_seed(cfg.runtime.seed)
    before = build_pretrain_model(cfg)  # the same initial weights
    before.norm_mean.copy_(after.norm_mean)
    before.norm_std.copy_(after.norm_std)
    x = _excerpts(audio)
    gap_before, _ = _view_gap(before, x, cfg)
    gap_after, closer = _view_gap(after, x, cfg)
    assert gap_after > 0.05 and closer >= 0.5
    assert gap_after > gap_before + 0.05


def test_pretrain_run_files_and_skips(pretrained):
    root, output = pretrained
    run = root / "run"
    for name in ("model.pt", "last.pt", "config.yaml", "metrics.jsonl", "model.sha256"):
        assert (run / name).is_file(), name
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert "broken.wav" in output and "skipped 1 files" in output
    obj = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    assert obj["labels"] == [] and not any("projection" in k for k in obj["state_dict"])
    assert not any(k.startswith("backbone.head") for k in obj["state_dict"])


def test_pretrained_model_fine_tunes_from_its_backbone_and_normalisation(pretrained, audio):
    from sonicsearch.data.manifest import load_dataset
    from sonicsearch.training.finetune import fit

    root, _ = pretrained
    src = torch.load(root / "run" / "model.pt", map_location="cpu", weights_only=True)
    cfg = load_config(None, {**TINY, "model.weights": str(root / "run" / "model.pt"),
                             "train.phase2_epochs": 0})
    ds = load_dataset(audio, 0.2, 0.2, seed=0)
    result = fit(cfg, ds, root / "ft", show_progress=False)  # phase 1: backbone frozen
    sd = torch.load(result.model_path, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in src["state_dict"].items():
        if key.startswith("backbone.net.") or key.startswith("norm_"):
            assert torch.equal(sd[key], value), key
    assert sd["backbone.head.fc.weight"].shape[0] == len(ds.labels) == 4


def test_train_cli_accepts_the_pretrained_model(pretrained, audio):
    root, _ = pretrained
    res = CliRunner().invoke(app, ["train", str(audio), "--config", str(root / "tiny.yaml"),
                                   "--weights", str(root / "run" / "model.pt"),
                                   "--out", str(root / "ft-cli"), "--epochs", "1"])
    assert res.exit_code == 0, res.output
    obj = torch.load(root / "ft-cli" / "model.pt", map_location="cpu", weights_only=True)
    assert sorted(obj["labels"]) == ["clicks", "high", "low", "noise"]


def test_build_index_and_query_with_a_label_free_model(pretrained, audio):
    root, _ = pretrained
    runner = CliRunner()
    idx = root / "idx"
    res = runner.invoke(app, ["build-index", str(audio), "--model", str(root / "run" / "model.pt"),
                              "--index", str(idx), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    clip = sorted(audio.rglob("*.wav"))[13]  # low01.wav: a tone
    res = runner.invoke(app, ["query", str(clip), "--index", str(idx), "--json", "--k", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["predicted_label"] is None
    assert out["results"][0]["path"] == str(clip.resolve())
    assert all(r["label"] is None for r in out["results"])
    text = runner.invoke(app, ["query", str(clip), "--index", str(idx)])
    assert text.exit_code == 0 and "predicted" not in text.output
    info = runner.invoke(app, ["info", "--index", str(idx), "--json"])
    assert json.loads(info.stdout)["model"]["labels"] == []


@pytest.mark.parametrize("method", ["ntxent", "byol"])
def test_resume_gives_the_uninterrupted_result(audio, tmp_path, method):
    cfg = load_config(None, {**TINY, "pretrain.method": method})
    full = pretrain(cfg, [audio], tmp_path / "full", show_progress=False)

    class Killed(Exception):
        pass

    def kill_after_one(epoch, _row):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        pretrain(cfg, [audio], tmp_path / "cut", report=kill_after_one, show_progress=False)
    resumed = pretrain(cfg, [audio], tmp_path / "cut", resume=True, show_progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert np.allclose([r["loss"] for r in full.history], [r["loss"] for r in resumed.history],
                       rtol=1e-5, atol=1e-6)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
    la = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["objective"]
    lb = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["objective"]
    assert all(torch.allclose(la[k].float(), lb[k].float(), atol=1e-5) for k in la)
    if method == "byol":  # the EMA target resumes too
        assert any(k.startswith("target.backbone") for k in la)


def test_byol_pulls_views_together_and_keeps_only_the_online_model(audio, tmp_path):
    from sonicsearch.model.checkpoint import load_checkpoint

    cfg = load_config(None, {**TINY, "pretrain.method": "byol", "pretrain.epochs": 4,
                             "pretrain.windows_per_file": 6, "pretrain.lr": 0.003,
                             "pretrain.ema_decay": 0.9})  # 36 steps: a target that moves
    res = pretrain(cfg, [audio], tmp_path / "byol", show_progress=False)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    after, info = load_checkpoint(res.model_path)
    assert info["labels"] == []
    sd = torch.load(res.model_path, map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.startswith(("target", "predictor", "projection")) for k in sd)
    torch.manual_seed(cfg.runtime.seed)
    before = build_pretrain_model(cfg)
    before.norm_mean.copy_(after.norm_mean)
    before.norm_std.copy_(after.norm_std)
    x = _excerpts(audio)
    gap_before, _ = _view_gap(before, x, cfg)
    gap_after, closer = _view_gap(after, x, cfg)
    assert gap_after > gap_before + 0.05 and closer >= 0.5


def test_byol_target_follows_the_online_model_by_ema():
    from types import SimpleNamespace

    from sonicsearch.training.objectives import BYOLObjective

    online = torch.nn.Linear(4, 4)
    online.backbone = SimpleNamespace(embed_dim=4)
    pc = SimpleNamespace(projection_hidden=8, projection_dim=4, ema_decay=0.9)
    obj = BYOLObjective(online, pc)
    start = obj.target.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    obj.after_step(online, 0.0)  # decay 0.9 at the start: a tenth of the way
    assert torch.allclose(obj.target.weight, start + 0.1)
    obj.after_step(online, 1.0)  # decay 1 at the end: the target stays
    assert torch.allclose(obj.target.weight, start + 0.1)
    assert not any(p.requires_grad for p in obj.target.parameters())
    assert {id(p) for p in obj.trainable_parameters()}.isdisjoint(
        {id(p) for p in obj.target.parameters()})


def test_unknown_method_is_a_one_line_error(audio, tmp_path):
    from sonicsearch.errors import ConfigError

    with pytest.raises(ConfigError, match="pretrain.method must be one of ntxent, byol"):
        pretrain(load_config(None, {**TINY, "pretrain.method": "simsiam"}), [audio],
                 tmp_path / "x", show_progress=False)
    res = CliRunner().invoke(app, ["pretrain", str(audio), "--method", "simsiam"])
    assert res.exit_code == 2
    # the CLI's choices are the objectives pretrain knows, listed in two places
    from sonicsearch.cli.pretrain import Method
    from sonicsearch.training.objectives import PRETRAIN_METHODS

    assert [m.value for m in Method] == list(PRETRAIN_METHODS)


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["pretrain", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "no usable audio" in str(res.exception)
    res = runner.invoke(app, ["pretrain", str(tmp_path / "missing")])
    assert res.exit_code != 0
    res = runner.invoke(app, ["pretrain", str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                              "--resume"])
    assert res.exit_code != 0
    assert runner.invoke(app, ["pretrain", "--help"]).exit_code == 0
    assert runner.invoke(app, ["pretrain", str(tmp_path), "--epochs", "0"]).exit_code == 2


def test_resume_without_a_run_is_a_clear_error(audio, tmp_path):
    from sonicsearch.errors import TrainingError

    with pytest.raises(TrainingError, match="cannot resume"):
        pretrain(load_config(None, TINY), [audio], tmp_path / "none", resume=True,
                 show_progress=False)


def test_joint_objective_changes_training_and_is_dropped_from_the_model(audio, tmp_path):
    from sonicsearch.data.manifest import load_dataset
    from sonicsearch.training.finetune import fit

    ds = load_dataset(audio, 0.2, 0.2, seed=0)
    plain = fit(load_config(None, TINY), ds, tmp_path / "plain", show_progress=False)
    cfg = load_config(None, {**TINY, "train.contrastive_weight": 0.5})
    joint = fit(cfg, ds, tmp_path / "joint", show_progress=False)
    # phase 1 (frozen backbone) has no contrastive term; phase 2 adds it
    assert joint.history[0]["train_loss"] == pytest.approx(plain.history[0]["train_loss"])
    assert joint.history[1]["train_loss"] != pytest.approx(plain.history[1]["train_loss"])
    obj = torch.load(tmp_path / "joint" / "model.pt", map_location="cpu", weights_only=True)
    assert not any("projection" in k for k in obj["state_dict"])
    last = torch.load(tmp_path / "joint" / "last.pt", map_location="cpu", weights_only=True)
    assert "projection" in last


def test_evaluate_refuses_a_label_free_model(pretrained, audio):
    res = CliRunner().invoke(app, ["evaluate", str(audio), "--model",
                                   str(pretrained[0] / "run" / "model.pt")])
    assert res.exit_code != 0 and "no labels" in str(res.exception)


@pytest.mark.gpu
def test_pretrain_on_gpu_with_mixed_precision(audio, tmp_path):
    cfg = load_config(None, {**TINY, "train.device": "cuda", "pretrain.epochs": 1})
    res = pretrain(cfg, [audio], tmp_path / "gpu", show_progress=False)
    assert np.isfinite(res.history[0]["loss"])
    assert next(res.model.parameters()).is_cuda
