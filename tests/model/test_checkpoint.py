"""Model files: atomic one-file save, weights_only load, typed errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sonicsearch.config import Config, FeatureConfig, ModelConfig
from sonicsearch.errors import ModelError
from sonicsearch.model import checkpoint
from sonicsearch.model.backbones import AudioModel
from sonicsearch.model.checkpoint import file_sha256, load_checkpoint, save_checkpoint

SMALL = FeatureConfig(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32,
                      window_seconds=1.0, hop_seconds=0.5)


def _model(labels, arch="resnet18"):
    torch.manual_seed(0)
    model = AudioModel.from_config(SMALL, ModelConfig(arch, "none", 0.2), labels)
    wave = 0.1 * torch.randn(4, SMALL.window_samples)
    model.fit_normalization(model.frontend(wave), per_bin=True)
    return model, wave


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, wave = _model(["blues", "jazz", "rock"])
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    sha = save_checkpoint(path, model, config=Config().to_dict(), labels=model.labels,
                          metrics={"val": {"macro_f1": np.float64(0.5)}, "epoch": 3},
                          extra={"optimizer": {"state": {0: {"buf": torch.ones(2)}}}})
    return model, wave, path, sha


def test_round_trip_gives_identical_outputs_with_weights_only(saved, monkeypatch):
    model, wave, path, sha = saved
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded, info = load_checkpoint(path)
    assert calls and all(c.get("weights_only") is True for c in calls)
    assert not loaded.training and loaded.arch == "resnet18"
    model.eval()
    with torch.no_grad():
        for a, b in zip(model(wave), loaded(wave)):
            assert torch.equal(a, b)
    assert torch.equal(loaded.norm_std, model.norm_std)
    assert info["labels"] == ["blues", "jazz", "rock"] and info["arch"] == "resnet18"
    assert info["sha256"] == sha == file_sha256(path)
    assert info["metrics"]["val"]["macro_f1"] == 0.5 and info["feature_config"]["n_mels"] == 32
    assert set(info["versions"]) == {"torch", "torchvision", "torchaudio", "sonicsearch"}
    assert info["config"]["model"]["arch"] == "resnet18" and info["created"]
    assert torch.equal(info["extra"]["optimizer"]["state"][0]["buf"], torch.ones(2))
    assert "state_dict" not in info
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]  # no temp left


def test_loading_does_not_touch_the_global_rng(saved):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_checkpoint(saved[2])
    assert torch.equal(torch.rand(3), expected)


def test_label_free_model_round_trip(tmp_path):
    model, wave = _model([])
    save_checkpoint(tmp_path / "ssl.pt", model, config={}, labels=[])
    loaded, info = load_checkpoint(tmp_path / "ssl.pt")
    assert info["labels"] == [] and loaded.backbone.num_classes == 0
    emb, probs = loaded.embed(wave)
    assert probs is None and torch.equal(emb, model.embed(wave)[0])


def test_save_refuses_mismatched_labels_and_unstorable_values(tmp_path):
    model, _ = _model(["a", "b"])
    with pytest.raises(ModelError, match="3 labels"):
        save_checkpoint(tmp_path / "m.pt", model, config={}, labels=["a", "b", "c"])
    with pytest.raises(ModelError, match="cannot store object values"):
        save_checkpoint(tmp_path / "m.pt", model, config={"x": object()}, labels=["a", "b"])
    assert not list(tmp_path.iterdir())


def test_an_interrupted_save_keeps_the_old_file(saved, tmp_path, monkeypatch):
    model, _, path, _ = saved
    target = tmp_path / "model.pt"
    target.write_bytes(path.read_bytes())

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(target, model, config={}, labels=model.labels)
    assert target.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_bad_files_are_one_line_model_errors(saved, tmp_path):
    good = saved[2].read_bytes()
    cases = {
        "missing.pt": (None, "model file not found"),
        "truncated.pt": (good[: len(good) // 2], "not a readable model file"),
        "text.pt": (b"hello\n", "not a readable model file"),
        "empty.pt": (b"", "not a readable model file"),
    }
    for name, (data, message) in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelError, match=message) as err:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(err.value)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(ModelError, match="not a sonicsearch model file"):
        load_checkpoint(tmp_path / "plain.pt")
    future = torch.load(saved[2], weights_only=True)
    future["format_version"] = 99
    torch.save(future, tmp_path / "future.pt")
    with pytest.raises(ModelError, match="model format 99"):
        load_checkpoint(tmp_path / "future.pt")
    damaged = torch.load(saved[2], weights_only=True)
    del damaged["state_dict"]["backbone.net.conv1.weight"]
    torch.save(damaged, tmp_path / "damaged.pt")
    with pytest.raises(ModelError, match="damaged model file"):
        load_checkpoint(tmp_path / "damaged.pt")


def test_pickled_objects_are_refused_not_run(tmp_path):
    torch.save({"kind": "sonicsearch.model", "payload": np.random.default_rng(0)},
               tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="weights_only"):
        load_checkpoint(tmp_path / "evil.pt")


def test_file_sha256_of_a_missing_file_is_a_one_line_error(tmp_path):
    from sonicsearch.errors import SonicsearchError

    with pytest.raises(SonicsearchError, match="cannot read .*nope.pt: No such file") as err:
        file_sha256(tmp_path / "nope.pt")
    assert isinstance(err.value, OSError) and err.value.strerror  # index builds skip on OSError
