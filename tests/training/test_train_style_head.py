"""Fine-tuning from a model with a style head fits a new head for the user's labels: the
model file carries it, metrics.json reports it, and it ranks by those labels better than
the start's head does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from style_models import label_free_model
from test_train import TINY, separable_corpus

from sonicsearch.config import load_config
from sonicsearch.data.manifest import load_dataset
from sonicsearch.embed.embedder import Embedder
from sonicsearch.model.checkpoint import load_checkpoint, save_checkpoint
from sonicsearch.model.style import StyleHead
from sonicsearch.training import style_head as SH
from sonicsearch.training.finetune import fit


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("styleft")
    corpus = separable_corpus(root / "four", per=8)
    cfg = load_config(None, {**TINY, "train.phase2_epochs": 2})
    start = root / "start.pt"
    save_checkpoint(start, label_free_model(cfg.features, cfg.model, (32, 16)),
                    config=cfg.to_dict(), labels=[])
    cfg = load_config(None, {**TINY, "train.phase2_epochs": 2, "model.weights": str(start)})
    ds = load_dataset(corpus, 0.25, 0.25, seed=0)
    out = root / "run"
    result = fit(cfg, ds, out, show_progress=False)
    return cfg, ds, out, result, start


def test_the_fine_tuned_file_carries_a_new_style_head_and_its_report(tuned):
    _, _, out, result, start = tuned
    model, info = load_checkpoint(out / "model.pt")
    assert isinstance(model.style_head, StyleHead)
    assert model.style_head.shape() == {"in_dim": 2048, "hidden": 32, "dim": 16}
    start_head = load_checkpoint(start)[0].style_head
    assert not torch.equal(model.style_head.net[0].weight, start_head.net[0].weight)
    report = json.loads((out / "metrics.json").read_text())["style_head"]
    assert report == info["extra"]["style_head"]
    assert report["weight"] in SH.WEIGHTS
    assert set(report["val_map"]) == {str(w) for w in SH.WEIGHTS}
    # the labels are easy to hear, the start head is random: the new head ranks by them
    assert report["test_map"] > report["test_map_start"] + 0.1
    assert 0.0 <= report["test_map_window_mean"] <= 1.0
    assert 0.0 <= report["test_probe_f1_start"] <= 1.0
    assert (out / "model.sha256").read_text().split()[0] == result.sha256
    emb = Embedder.from_checkpoint(out / "model.pt", device="cpu")
    assert emb.style_kind == "head" and emb.style_dim == 16


def test_distillation_alone_reproduces_the_start_heads_vectors():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    teacher = StyleHead(24, hidden=32, dim=8)
    with torch.no_grad():
        teacher.mu.normal_()
    stats = [(rng.standard_normal((20, 24)) + rng.standard_normal(24)).astype(np.float32)
             for _ in range(30)]
    data = SH.SpanStats(stats, stats, np.arange(30) % 3)
    head = SH.train_head(data, teacher.eval(), weight=0.0, per_clip=10, steps=400)
    x = torch.from_numpy(np.stack([s[:10].mean(0) for s in stats]))
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(head(x), teacher(x))
    assert float(cos.mean()) > 0.9


def test_supcon_pulls_labels_together_and_is_zero_without_positives():
    z = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]]),
                                      dim=1)
    good = SH.supcon(z, torch.tensor([0, 0, 1, 1]))
    bad = SH.supcon(z, torch.tensor([0, 1, 0, 1]))
    assert good < bad
    assert float(SH.supcon(z, torch.tensor([0, 1, 2, 3]))) == 0.0


def test_label_map_is_nan_when_no_label_has_two_files():
    rows = [np.ones((3, 4), np.float32) * i for i in range(1, 4)]
    data = SH.SpanStats(rows, rows, np.array([0, 1, 2]))
    assert np.isnan(SH.label_map(data, lambda v: v))
    data = SH.SpanStats(rows, rows, np.array([0, 0, 1]))
    assert 0.0 <= SH.label_map(data, lambda v: v) <= 1.0
