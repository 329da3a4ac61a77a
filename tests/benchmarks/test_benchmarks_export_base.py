"""benchmarks/export_base.py: a run's model as a shippable fp16 file, checked and never
written over."""

from __future__ import annotations

import pytest
import torch
from bench_scripts import load_benchmark, tiny_checkpoint

from sonicsearch.model.checkpoint import load_checkpoint


def _model(path, labels=()):
    return tiny_checkpoint(path, labels, {"features.level": "window"},
                           metrics={"pretrain": {"loss": 1.5}},
                           extra={"pretrain": {"epochs": 2}})


def test_export_writes_fp16_weights_that_embed_like_the_float32_model(tmp_path, capsys):
    mod = load_benchmark("export_base")
    src = _model(tmp_path / "model.pt")
    out = tmp_path / "assets" / "base-vX.pt"
    res = mod.main([str(src), str(out), "--note", "a test export"])
    assert res["worst_cosine"] >= mod.MIN_COSINE and res["sha256"] in capsys.readouterr().out
    raw = torch.load(out, map_location="cpu", weights_only=True)
    floats = {k: v.dtype for k, v in raw["state_dict"].items() if v.is_floating_point()}
    backbone = [d for k, d in floats.items() if k.startswith("backbone.")]
    assert backbone and all(d == torch.float16 for d in backbone)
    assert floats["frontend.mel.mel_scale.fb"] == torch.float32  # the STFT stays float32
    assert out.stat().st_size < src.stat().st_size * 0.6
    model, info = load_checkpoint(out)
    assert next(model.parameters()).dtype == torch.float32  # loads into a float32 model
    assert info["extra"]["export"]["note"] == "a test export"
    assert info["metrics"]["pretrain"]["loss"] == 1.5 and info["labels"] == []
    with pytest.raises(SystemExit, match="never overwritten"):
        mod.main([str(src), str(out)])


def test_export_refuses_a_labelled_model(tmp_path):
    mod = load_benchmark("export_base")
    src = _model(tmp_path / "model.pt", ["a", "b"])
    with pytest.raises(SystemExit, match="label-free"):
        mod.main([str(src), str(tmp_path / "out.pt")])
    assert not (tmp_path / "out.pt").exists()


def test_export_adds_a_style_head_and_keeps_the_embeddings(tmp_path):
    from sonicsearch.model.infer import embed_windows
    from sonicsearch.model.style import StyleHead, forward_with_stats

    mod = load_benchmark("export_base")
    levers = load_benchmark("style_levers")
    src = _model(tmp_path / "model.pt")
    plain, _ = load_checkpoint(src)
    wave = 0.1 * torch.randn(3, int(plain.feature_config.window_seconds
                                    * plain.feature_config.sample_rate))
    with torch.no_grad():
        _, _, stats = forward_with_stats(plain, wave)
    head = levers.Head(stats.numpy(), hidden=8, dim=4)
    levers.save_head(head, tmp_path / "head.pt", {"lever": "distil", "steps": 1})
    out = tmp_path / "base-vX.pt"
    res = mod.main([str(src), str(out), "--style-head", str(tmp_path / "head.pt")])
    assert res["worst_cosine"] >= mod.MIN_COSINE
    model, info = load_checkpoint(out)
    assert isinstance(model.style_head, StyleHead) and info["style_head"]["dim"] == 4
    assert info["extra"]["style_head"]["lever"] == "distil"
    bare = tmp_path / "bare.pt"
    mod.main([str(src), str(bare)])
    assert (embed_windows(load_checkpoint(bare)[0], wave)
            == embed_windows(model, wave)).all()  # the head changes no window vector
    torch.save({"kind": "other"}, tmp_path / "bad.pt")
    with pytest.raises(SystemExit, match="not a style head"):
        mod.main([str(src), str(tmp_path / "x.pt"), "--style-head", str(tmp_path / "bad.pt")])
