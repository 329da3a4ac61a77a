"""The int8 path (build-index --fast): a quantised backbone derived from the float weights
and a stored calibration gives the float path's vectors and stage statistics, closely."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from audio_files import tone, write_audio

from sonicsearch.config import load_config
from sonicsearch.embed.embedder import Embedder
from sonicsearch.errors import DeviceError, ModelError
from sonicsearch.model import base, int8
from sonicsearch.model.backbones import AudioModel
from sonicsearch.model.style import forward_with_stats

pytestmark = pytest.mark.skipif(not int8.int8_available(), reason="no x86 int8 kernels")
SR = 8000
CFG = load_config(None, {"features.sample_rate": SR, "features.n_mels": 32,
                         "features.n_fft": 512, "features.hop_length": 128,
                         "features.window_seconds": 1.0, "features.hop_seconds": 0.5,
                         "model.weights": "none"})


def _windows(n: int, seed: int) -> torch.Tensor:
    """Tones and noise at varied levels: windows with some structure for the convolutions."""
    rng = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    out = [rng.uniform(0.05, 0.5) * np.sin(2 * np.pi * rng.uniform(100, 3000) * t)
           + rng.uniform(0.0, 0.05) * rng.standard_normal(SR) for _ in range(n)]
    return torch.tensor(np.stack(out), dtype=torch.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, request):
    torch.manual_seed(0)
    model = AudioModel.from_config(CFG.features, CFG.model, []).eval()
    with torch.no_grad():  # realistic BatchNorm statistics: a few training passes
        model.train()
        for _ in range(3):
            model.backbone(model.features(_windows(16, 1)))
        model.eval()
    cal = int8.calibrate(model, _windows(8, 2), batch=8)
    return model, cal, int8.quantize(model, cal)


def test_int8_vectors_and_stats_are_close_to_float(tiny):
    model, _, q = tiny
    x = _windows(12, 3)
    with torch.no_grad():
        emb_f, _, stats_f = forward_with_stats(model, x)
        emb_q, stats_q = q(model.features(x).contiguous(memory_format=torch.channels_last))
    cos = torch.nn.functional.cosine_similarity(emb_f, emb_q, dim=1)
    assert emb_q.shape == emb_f.shape and stats_q.shape == stats_f.shape
    assert cos.min() > 0.98, cos
    assert torch.nn.functional.cosine_similarity(stats_f, stats_q, dim=1).min() > 0.98
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in q.modules())


def test_a_calibration_of_another_network_is_refused(tiny):
    model, cal, _ = tiny
    broken = {**cal, "ranges": dict(list(cal["ranges"].items())[:-1])}
    with pytest.raises(ModelError, match="does not fit"):
        int8.quantize(model, broken)


def test_embedder_int8_uses_the_stored_calibration(tiny, tmp_path, monkeypatch):
    model, cal, q = tiny
    emb = Embedder(model, {"arch": "resnet18", "sha256": "ab" * 32}, tmp_path / "m.pt",
                   torch.device("cpu"), batch_size=4)
    seen = []
    monkeypatch.setattr(int8, "quantize", lambda m, c: seen.append(c) or q)  # built above
    with pytest.raises(ModelError, match="no int8 calibration"):
        emb.int8()
    monkeypatch.setattr(int8, "ASSETS", tmp_path)
    int8.calibration_path(emb.model_sha256).write_text(json.dumps({**cal, "sha256": "x"}))
    with pytest.raises(ModelError, match="damaged"):
        emb.int8()
    int8.calibration_path(emb.model_sha256).write_text(
        json.dumps({**cal, "sha256": emb.model_sha256}))
    fast = emb.int8()
    assert seen[-1]["ranges"] == cal["ranges"]
    assert (fast.precision, fast.batch_size, emb.precision) == ("int8", 64, "float32")
    wav = tmp_path / "a.wav"
    write_audio(wav, 0.3 * tone(3.0, SR, 440), SR)
    a, b = emb.embed_file(wav), fast.embed_file(wav)
    assert a.vectors.shape == b.vectors.shape and np.allclose(a.spans, b.spans)
    assert (a.vectors * b.vectors).sum(1).min() > 0.98


def test_int8_is_refused_off_the_cpu(tiny, tmp_path):
    model, _, _ = tiny
    emb = Embedder(model, {"arch": "resnet18", "sha256": "ab" * 32}, tmp_path / "m.pt",
                   torch.device("meta"))
    with pytest.raises(DeviceError, match="runs on the CPU"):
        emb.int8()


def test_the_shipped_base_model_has_a_calibration():
    path = int8.calibration_path(base.SHA256)
    cal = int8.load_calibration(base.SHA256, base.ARCH)
    assert path.stat().st_size < 10_000 and cal["arch"] == base.ARCH and cal["windows"] >= 100


def test_build_index_fast_records_int8_and_float_queries_find_its_files(tmp_path):
    """The shipped calibration fits the base model end to end: ``build-index --fast``
    writes int8 vectors, says so in index.json, and a (float) query finds the source."""
    from typer.testing import CliRunner

    from sonicsearch.cli import app
    from sonicsearch.index import builder
    from sonicsearch.index import layout as L

    folder = tmp_path / "music"
    folder.mkdir()
    t = np.arange(4 * 16000) / 16000
    for i in range(2):
        clip = 0.3 * np.sin(2 * np.pi * (220 + 170 * i) * t * (1 + 0.5 * (t > 2 - i)))
        write_audio(folder / f"t{i}.wav", clip.astype(np.float32), 16000)
    runner, idx = CliRunner(), tmp_path / "idx"
    res = runner.invoke(app, ["build-index", str(folder), "--index", str(idx), "--fast"])
    assert res.exit_code == 0, res.output
    assert "int8 (--fast)" in res.output
    assert L.read_index_json(L.IndexLayout(idx).current())["embedding"] == "int8"
    # a later build keeps the index's path unless told (--no-fast, or the config's fast)
    assert builder.resolve_index_config(idx, None, None, None, None, None).fast
    assert not builder.resolve_index_config(idx, None, None, None, None, None, fast=False).fast
    yaml = tmp_path / "c.yaml"
    yaml.write_text("index:\n  fast: false\n")
    assert not builder.resolve_index_config(idx, yaml, None, None, None, None).fast
    res = runner.invoke(app, ["query", str(folder / "t1.wav"), "--index", str(idx), "--k", "1",
                              "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["results"][0]["path"].endswith("t1.wav")
