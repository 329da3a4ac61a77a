"""The one windows -> model -> normalise -> per-file loop (sonicsearch.model.infer) gives what
the Embedder, evaluation and the tuning objectives each computed on their own before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from audio_files import tone, write_audio
from torch.utils.data import DataLoader

from sonicsearch.audio import frame_windows, load_audio
from sonicsearch.config import load_config
from sonicsearch.data.manifest import Item
from sonicsearch.data.windows import FileWindows, collate_files
from sonicsearch.model.backbones import AudioModel
from sonicsearch.model.infer import embed_windows, forward_windows, run_files

SR = 8000
CFG = load_config(None, {"features.sample_rate": SR, "features.n_mels": 32,
                         "features.n_fft": 512, "features.hop_length": 256,
                         "features.window_seconds": 1.0, "features.hop_seconds": 0.5,
                         "model.weights": "none"})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    torch.manual_seed(0)
    model = AudioModel.from_config(CFG.features, CFG.model, ["a", "b"]).eval()
    items = [Item(root / f"{i}.wav", "ab"[i % 2]) for i in range(3)]
    for i, it in enumerate(items):
        write_audio(it.path, tone(1.5 + i, SR, 200 + 300 * i), SR)
    return model, items


def test_files_are_grouped_and_match_window_by_window_inference(setup):
    model, items = setup
    loader = DataLoader(FileWindows(items, ["a", "b"], CFG.features), batch_size=2,
                        collate_fn=collate_files)
    out = run_files(model, loader, batch_size=3)
    assert out.files == [0, 1, 2] and out.targets == [0, 1, 0]
    for i, it in enumerate(items):
        wave, _ = load_audio(it.path, SR)
        windows, _ = frame_windows(wave, SR, 1.0, 0.5)
        logits, emb = forward_windows(model, windows, batch_size=64)
        assert np.allclose(out.logits[i], logits, atol=1e-5)
        assert np.allclose(out.embeddings[i], emb, atol=1e-5)
        assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
        mean = emb.mean(axis=0)
        assert np.allclose(out.file_vectors()[i], mean / np.linalg.norm(mean), atol=1e-5)
        assert np.allclose(out.file_logits()[i], logits.mean(axis=0), atol=1e-5)


def test_embed_windows_equals_the_embedders_vectors(setup):
    from sonicsearch.embed.embedder import Embedder

    model, items = setup
    wave, _ = load_audio(items[2].path, SR)
    windows, _ = frame_windows(wave, SR, 1.0, 0.5)
    emb = Embedder(model, {"arch": model.arch, "sha256": "x", "labels": ["a", "b"]},
                   items[2].path, torch.device("cpu"), batch_size=2)
    vectors = emb._run(windows)[0]
    assert np.allclose(embed_windows(model, windows, 5), vectors, atol=1e-5)
    assert embed_windows(model, windows[:0]).shape[0] == 0
