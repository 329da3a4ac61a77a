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
