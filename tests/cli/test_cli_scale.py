"""The CLI hooks of the scale features: build-index --backend milvus --uri FILE.db or
--uri http://host:19530 (milvus-lite and a Milvus server, the `milvus` fixture), and --ray,
with a real (tiny, random-init) model; query reads the backend from the index."""

from __future__ import annotations

import json

import pytest
import torch
from fake_embedder import make_corpus
from typer.testing import CliRunner

from sonicsearch.cli import app


@pytest.fixture
def model(tmp_path):
    from sonicsearch.config import Config, FeatureConfig, ModelConfig
    from sonicsearch.model.backbones import AudioModel
    from sonicsearch.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    fc = FeatureConfig(sample_rate=8000, n_mels=32, n_fft=512, hop_length=256,
                       window_seconds=1.0, hop_seconds=0.5)
    net = AudioModel.from_config(fc, ModelConfig("resnet18", "none"), ["a", "b"])
    cfg = Config()
    cfg.features = fc
    path = tmp_path / "model.pt"
    save_checkpoint(path, net, config=cfg.to_dict(), labels=["a", "b"])
    return path


def query(idx, clip) -> dict:
    res = CliRunner().invoke(app, ["query", str(clip), "--index", str(idx), "--json", "-k", "3",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_build_index_on_milvus_then_update_keeps_the_backend(tmp_path, model, milvus):
    runner = CliRunner()
    audio, idx = tmp_path / "audio", tmp_path / "idx"
    uri = milvus.uri or str((tmp_path / "collection.db").resolve())  # server, or a lite file
    files = make_corpus(audio, 4, seconds=2.0)
    res = runner.invoke(app, ["build-index", str(audio), "-m", str(model), "--index", str(idx),
                              "--device", "cpu", "--backend", "milvus", "--uri", uri])
    assert res.exit_code == 0, res.output
    meta = json.loads((idx / "gen-000001" / "index.json").read_text())
    assert meta["backend"]["name"] == "milvus" and meta["backend"]["uri"] == uri
    out = query(idx, files[2])
    assert out["results"][0]["path"] == str(files[2].resolve())
    faiss_dir = tmp_path / "faiss"
    res = runner.invoke(app, ["build-index", str(audio), "-m", str(model), "--index",
                              str(faiss_dir), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    ref = query(faiss_dir, files[2])
    assert [r["path"] for r in out["results"]] == [r["path"] for r in ref["results"]]
    assert [r["score"] for r in out["results"]] == pytest.approx(
        [r["score"] for r in ref["results"]], abs=1e-4)

    make_corpus(audio, 1, seed0=40, seconds=2.0)  # no --model, no --backend: the index's own
    res = runner.invoke(app, ["build-index", str(audio), "--index", str(idx), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    meta = json.loads((idx / "gen-000002" / "index.json").read_text())
    assert meta["backend"]["uri"] == uri and meta["counts"]["files"] == 5
    assert query(idx, files[1])["results"][0]["path"] == str(files[1].resolve())

    bad = runner.invoke(app, ["build-index", str(audio), "--index", str(idx), "--uri", "x.txt",
                              "--backend", "milvus"])
    assert bad.exit_code == 1 and "must end in .db" in str(bad.exception)


@pytest.mark.slow  # starts a Ray and a worker that loads torch: 20-90 s on a busy machine
def test_build_index_with_ray(tmp_path, model):
    pytest.importorskip("ray", reason="ray not installed (pip install 'sonicsearch[scale]')")
    audio = tmp_path / "audio"
    make_corpus(audio, 3, seconds=2.0)
    res = CliRunner().invoke(app, ["build-index", str(audio), "-m", str(model), "--index",
                                   str(tmp_path / "idx"), "--device", "cpu", "--ray",
                                   "--ray-workers", "1"])
    assert res.exit_code == 0, res.output
    assert "local Ray" in res.output and "3 added" in res.output  # the summary line
