"""The base model that ships in the package: intact, loads without running code, embeds
real-looking audio, is level-invariant, and is what a new index and `--weights base` use."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from sonicsearch.errors import ModelError
from sonicsearch.model import base


def _clip(seconds: float = 5.0, sr: int = 22050, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    notes = 0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.5 * (t > seconds / 2)))
    return (notes * (1 + np.sin(3 * t)) + 0.02 * rng.standard_normal(t.size)).astype("float32")


def test_the_shipped_file_matches_its_checksum_and_size():
    data = base.FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == base.SHA256
    assert len(data) <= 30 * 2**20
    assert base.base_model_path() == base.FILE


def test_it_loads_weights_only_and_embeds_a_clip():
    from sonicsearch.embed.embedder import Embedder

    obj = torch.load(base.FILE, map_location="cpu", weights_only=True)
    assert obj["arch"] == base.ARCH and obj["labels"] == []
    emb = Embedder.from_checkpoint("base", device="cpu")
    vectors, spans = emb.embed(_clip(), 22050)  # resampled to the model's 16 kHz
    assert vectors.shape == (len(spans), 512) and np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_a_quieter_copy_embeds_the_same():
    from sonicsearch.embed.embedder import Embedder

    emb = Embedder.from_checkpoint("base", device="cpu")
    x = _clip()
    a, _ = emb.embed(x, 22050)
    b, _ = emb.embed(x * 10 ** (-12 / 20), 22050)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.99


def test_a_damaged_copy_is_refused(tmp_path):
    bad = tmp_path / "base-v1.pt"
    shutil.copy(base.FILE, bad)
    with open(bad, "r+b") as fh:
        fh.seek(1 << 20)
        fh.write(b"\0" * 16)
    with pytest.raises(ModelError, match="damaged"):
        base.base_model_path(bad)
    with pytest.raises(ModelError, match="missing"):
        base.base_model_path(tmp_path / "nothing.pt")


def test_weights_base_starts_a_resnet18_and_refuses_other_archs():
    from sonicsearch.model.backbones import create_backbone

    net = create_backbone("resnet18", 3, "base")
    shipped = torch.load(base.FILE, map_location="cpu", weights_only=True)["state_dict"]
    key = "backbone.net.layer1.0.conv1.weight"
    assert torch.equal(net.state_dict()[key[len("backbone."):]], shipped[key].float())
    with pytest.raises(ModelError, match="--arch resnet18"):
        create_backbone("resnet34", 3, "base")


def test_a_new_index_is_built_with_the_base_model(tmp_path):
    from typer.testing import CliRunner

    from sonicsearch.cli import app

    folder = tmp_path / "music"
    folder.mkdir()
    for i in range(3):
        sf.write(folder / f"t{i}.wav", _clip(4.0, 16000, seed=i) * (i + 1) / 3, 16000)
    runner = CliRunner()
    res = runner.invoke(app, ["build-index", str(folder), "--index", str(tmp_path / "idx")])
    assert res.exit_code == 0, res.output
    assert "base model" in res.output
    res = runner.invoke(app, ["query", str(folder / "t1.wav"), "--index", str(tmp_path / "idx"),
                              "--k", "1", "--json"])
    assert res.exit_code == 0, res.output
    import json

    assert json.loads(res.stdout)["results"][0]["path"].endswith("t1.wav")


def test_train_weights_base_without_a_config_takes_the_fine_tuning_rates(tmp_path,
                                                                        monkeypatch):
    """The scratch recipe's rates (0.05 / 0.01) undid the base model's start once the
    backbone unfroze; with no --config, --weights base now trains at a fifth of them, and a
    config file's rates are kept."""
    import numpy as np
    from audio_files import write_audio
    from typer.testing import CliRunner

    import sonicsearch.training.finetune as finetune
    from sonicsearch.cli import app

    seen = []

    def fake_fit(cfg, ds, out, **kw):
        seen.append((cfg.train.head_lr, cfg.train.backbone_lr))
        raise SystemExit(0)

    monkeypatch.setattr(finetune, "fit", fake_fit)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(3):
            write_audio(tmp_path / "data" / label / f"{i}.wav",
                        np.full((16000 * 3, 1), 0.1 * (i + 1), np.float32), 16000)
    own = tmp_path / "own.yaml"
    own.write_text("train:\n  head_lr: 0.03\n  backbone_lr: 0.004\n")
    runner = CliRunner()
    for extra in ([], ["--config", str(own)]):
        res = runner.invoke(app, ["train", str(tmp_path / "data"), "--weights", "base",
                                  "--out", str(tmp_path / f"run{len(seen)}"), *extra])
        assert res.exit_code == 0, res.output
    assert seen == [(0.01, 0.002), (0.03, 0.004)]
