"""A model file with a style head: saved and loaded with it, the same window vectors as
without it, its style vectors from one forward pass, and an index of kind ``head``."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from style_models import label_free_model

from sonicsearch.config import Config, FeatureConfig, ModelConfig
from sonicsearch.embed.embedder import Embedder
from sonicsearch.embed.types import pool_style
from sonicsearch.errors import ModelError
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.model.backbones import AudioModel
from sonicsearch.model.checkpoint import load_checkpoint, save_checkpoint
from sonicsearch.model.infer import stage_statistics
from sonicsearch.model.style import StyleHead, forward_with_stats
from sonicsearch.scale.ray_embed import EmbedActor, _decode

SMALL = FeatureConfig(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32,
                      window_seconds=1.0, hop_seconds=1.0, min_seconds=0.25)


def _model(head: bool) -> AudioModel:
    return label_free_model(SMALL, ModelConfig("resnet18", "none", 0.0),
                            (16, 8) if head else None)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("head")
    plain, headed = root / "plain.pt", root / "headed.pt"
    cfg = Config().to_dict()
    save_checkpoint(plain, _model(False), config=cfg, labels=[])
    save_checkpoint(headed, _model(True), config=cfg, labels=[])
    rng = np.random.default_rng(0)
    audio = root / "audio"
    audio.mkdir()
    t = np.arange(8000 * 26) / 8000
    for i in range(3):
        wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.02 * rng.standard_normal(len(t))
        wave[8000 * 5: 8000 * 7] = 0.0  # a silent gap: left out of windows and style alike
        sf.write(str(audio / f"f{i}.wav"), wave.astype(np.float32), 8000)
    return root, plain, headed, audio


def test_the_head_is_saved_loaded_and_only_adds_style(files):
    root, plain, headed, audio = files
    model, info = load_checkpoint(headed)
    assert isinstance(model.style_head, StyleHead) and info["style_head"] == {
        "in_dim": 2048, "hidden": 16, "dim": 8}
    assert load_checkpoint(plain)[0].style_head is None
    a = Embedder.from_checkpoint(plain, device="cpu")
    b = Embedder.from_checkpoint(headed, device="cpu")
    assert (a.style_kind, a.style_dim, b.style_kind, b.style_dim) == (
        "window-mean", 512, "head", 8)
    ea, eb = a.embed_file(audio / "f1.wav"), b.embed_file(audio / "f1.wav")
    assert np.array_equal(ea.vectors, eb.vectors) and np.array_equal(ea.spans, eb.spans)
    assert ea.style is None and eb.style.file.shape == (8,)
    assert eb.style.spans.tolist() == [[0.0, 26.0]]  # 26 s: the 6 s tail joins segment one
    assert np.allclose(b.style(audio / "f1.wav").file, eb.style.file)
    assert np.allclose(a.style(audio / "f1.wav").file, pool_style(ea.vectors, ea.spans).file)
    wave, _ = sf.read(str(audio / "f1.wav"), dtype="float32")
    ew = b.embed_waveform(wave, 8000)  # the waveform path pools the same windows
    assert np.allclose(ew.style.file, eb.style.file, atol=1e-5)


def test_one_forward_pass_gives_the_embedding_and_the_stage_statistics():
    model = _model(True)
    x = 0.1 * torch.randn(3, SMALL.window_samples)
    emb, probs, stats = forward_with_stats(model, x)
    with torch.no_grad():
        want, _ = model.embed(x)
    assert torch.equal(emb, want) and probs is None
    assert np.allclose(stats.numpy(), stage_statistics(model, x.numpy()), atol=1e-5)
    with pytest.raises(ModelError, match="damaged style head"):
        StyleHead.from_shape({"in_dim": "x"})


def test_the_style_by_hand_is_the_head_of_the_mean_statistics(files):
    root, plain, headed, audio = files
    b = Embedder.from_checkpoint(headed, device="cpu")
    out = b.embed_file(audio / "f0.wav")
    wave, _ = sf.read(str(audio / "f0.wav"), dtype="float32")
    windows = np.stack([wave[i * 8000:(i + 1) * 8000] for i in range(26)])
    loud = np.sqrt((windows ** 2).mean(axis=1)) > 1e-3
    stats = stage_statistics(b.model, windows[loud])
    with torch.no_grad():
        want = b.model.style_head(torch.from_numpy(stats.mean(axis=0, keepdims=True)))[0]
    want = want.numpy() / np.linalg.norm(want.numpy())
    assert np.allclose(out.style.file, want, atol=1e-4)


def test_an_index_of_a_style_head_model_stores_its_vectors(files, tmp_path):
    root, plain, headed, audio = files
    b = Embedder.from_checkpoint(headed, device="cpu")
    build_index([audio], b, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=b) as index:
        assert index.meta["style"]["kind"] == "head" and index.meta["style"]["dim"] == 8
        res = index.query(audio / "f2.wav", k=3, mode="style")
        assert res[0]["path"] == str((audio / "f2.wav").resolve())
        assert res[0]["score"] == pytest.approx(1.0, abs=2e-3)
        with pytest.raises(Exception, match="style vector"):  # no pooling for a head model
            index.query_vectors(np.ones((2, 512), np.float32), k=2, mode="style")


def test_ray_rows_carry_a_style_heads_vectors(files):
    root, plain, headed, audio = files
    actor = EmbedActor(lambda: Embedder.from_checkpoint(headed, device="cpu"),
                       {**SMALL.__dict__}, threads=1)
    out = actor({"path": np.array([str(audio / "f0.wav")], dtype=object)})
    row = {k: v[0] for k, v in out.items()}
    got = _decode(row)
    want = Embedder.from_checkpoint(headed, device="cpu").embed_file(audio / "f0.wav")
    assert np.allclose(got.style.file, want.style.file) and np.array_equal(
        got.style.spans, want.style.spans)


def test_embed_with_stats_is_embed_windows_and_stage_statistics_in_one_pass():
    from sonicsearch.model.infer import embed_windows
    from sonicsearch.model.style import embed_with_stats

    model = _model(False)
    w = (0.1 * np.random.default_rng(0).standard_normal((5, SMALL.window_samples))
         ).astype(np.float32)
    emb, stats = embed_with_stats(model, w, batch=2)
    assert np.allclose(emb, embed_windows(model, w), atol=1e-5)  # batch sizes differ
    assert np.allclose(stats, stage_statistics(model, w), atol=1e-5)
