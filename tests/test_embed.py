"""The torch Embedder without a checkpoint (a stub model): waveforms are embedded a block of
windows at a time with the same result, windowing changes make a new object, and importing
it does not import FAISS."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from sonicsearch.audio import frame_windows
from sonicsearch.config import FeatureConfig
from sonicsearch.embed import embedder as embed_mod
from sonicsearch.embed.types import EmbedderProtocol, with_windows

SR = 8000


class StubModel(torch.nn.Module):
    """Band energies of each window as its embedding; two labels."""

    def __init__(self):
        super().__init__()
        self.feature_config = FeatureConfig(sample_rate=SR, window_seconds=1.0, hop_seconds=0.5,
                                            min_seconds=0.25)
        self.backbone = type("B", (), {"embed_dim": 16})()
        self.batches: list[int] = []

    def embed(self, x: torch.Tensor):
        self.batches.append(len(x))
        spec = torch.fft.rfft(x, dim=1).abs()[:, 1:3201].reshape(len(x), 16, -1).mean(dim=2)
        return spec, torch.softmax(spec[:, :2], dim=1)


@pytest.fixture
def embedder(tmp_path):
    info = {"arch": "stub", "sha256": "0" * 64, "labels": ["a", "b"]}
    return embed_mod.Embedder(StubModel(), info, tmp_path / "model.pt", torch.device("cpu"),
                              batch_size=8)


def wave(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def test_a_long_waveform_is_embedded_block_by_block(embedder, monkeypatch):
    w = wave(40.3)  # 80 windows and an end-aligned tail
    whole = embedder.embed_waveform(w, SR)
    windows, spans = frame_windows(w, SR, 1.0, 0.5)  # what the model must see, in order
    assert len(whole.vectors) == len(windows) and np.allclose(whole.spans, spans)
    monkeypatch.setattr(embed_mod, "WAVEFORM_BLOCK_WINDOWS", 7)
    cuts = []
    run = embedder._run

    def counting(windows):
        cuts.append(len(windows))  # windows cut and held at one time
        return run(windows)

    monkeypatch.setattr(embedder, "_run", counting)
    blocked = embedder.embed_waveform(w, SR)
    assert cuts and max(cuts) <= 7 and sum(cuts) == len(windows)  # never all windows at once
    assert np.allclose(blocked.vectors, whole.vectors, atol=1e-6)
    assert np.allclose(blocked.probs, whole.probs, atol=1e-6)
    assert np.array_equal(blocked.spans, whole.spans) and blocked.duration == whole.duration


def test_with_windows_returns_a_new_embedder(embedder):
    other = embedder.with_windows(2.0, 1.0)
    assert other is not embedder and other.model is embedder.model
    assert (other.feature_config.window_seconds, other.feature_config.hop_seconds) == (2.0, 1.0)
    assert embedder.feature_config.window_seconds == 1.0  # unchanged
    assert len(other.embed_waveform(wave(5.0), SR).vectors) == 4
    assert with_windows(embedder) is embedder and isinstance(other, EmbedderProtocol)


def test_importing_embed_does_not_import_faiss():
    code = "import sys, sonicsearch.embed.embedder; print('faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def quiet_then_loud(sr: int = SR) -> np.ndarray:
    """4 s of hiss at -70 dBFS RMS, then 4 s of noise at -20 dBFS RMS."""
    rng = np.random.default_rng(1)
    quiet = 10 ** (-70 / 20) * rng.standard_normal(4 * sr)
    loud = 10 ** (-20 / 20) * rng.standard_normal(4 * sr)
    return np.concatenate([quiet, loud]).astype(np.float32)


def test_quiet_windows_are_left_out_of_waveforms_and_files(embedder, tmp_path):
    import soundfile as sf

    w = quiet_then_loud()
    kept = embedder.embed_waveform(w, SR)
    every = embed_mod.Embedder(embedder.model, embedder.info, embedder.model_path,
                               embedder.device, batch_size=8, quiet_dbfs=None)
    whole = every.embed_waveform(w, SR)
    levels = embed_mod.window_rms_dbfs(frame_windows(w, SR, 1.0, 0.5)[0])
    assert len(whole.vectors) == len(levels) > len(kept.vectors)
    loud = levels >= embed_mod.QUIET_DBFS
    assert np.allclose(kept.spans, whole.spans[loud]) and np.allclose(kept.vectors,
                                                                      whole.vectors[loud])
    assert kept.spans[0, 0] >= 3.0  # the first kept window reaches into the loud half
    assert kept.probs.shape == (len(kept.vectors), 2)
    path = tmp_path / "q.wav"
    sf.write(path, w, SR)
    from_file = embedder.embed_file(path)
    assert np.allclose(from_file.spans, kept.spans) and len(from_file.vectors) == loud.sum()
    assert from_file.duration == pytest.approx(8.0)


def test_a_quiet_clip_keeps_all_its_windows(embedder):
    w = quiet_then_loud()[: 4 * SR]  # only the -70 dBFS hiss (its peak is above -80 dBFS)
    out = embedder.embed_waveform(w, SR)
    assert len(out.vectors) == len(frame_windows(w, SR, 1.0, 0.5)[0])
    assert embed_mod.loud_mask(np.array([-90.0, -65.0]), -60.0).all()
    assert embed_mod.loud_mask(np.array([-90.0, -30.0]), None).all()
    assert embed_mod.window_rms_dbfs(np.zeros((2, 10))).tolist() == [-200.0, -200.0]


class LengthModel(StubModel):
    """The stub's band energies of any length of input, and the lengths it was given."""

    def embed(self, x: torch.Tensor):
        self.batches.append(x.shape[1])
        spec = torch.fft.rfft(x, n=2 * 3200, dim=1).abs()[:, 1:3201].reshape(len(x), 16, -1)
        return spec.mean(dim=2) / x.shape[1], None


def test_a_clip_shorter_than_a_window_is_embedded_as_it_is_not_padded(tmp_path):
    import soundfile as sf

    model = LengthModel()
    e = embed_mod.Embedder(model, {"arch": "stub", "sha256": "0" * 64, "labels": []},
                           tmp_path / "model.pt", torch.device("cpu"), batch_size=8)
    clip = wave(0.5)  # half a window, at least min_seconds
    out = e.embed_waveform(clip, SR)
    assert model.batches == [clip.size]  # the model saw the clip, no zeros after it
    assert out.vectors.shape == (1, 16) and out.spans.tolist() == [[0.0, 0.5]]
    path = tmp_path / "short.wav"
    sf.write(path, clip, SR, subtype="FLOAT")
    model.batches.clear()
    from_file = e.embed_file(path)  # indexing a short file gives the query's vector
    assert model.batches == [clip.size]
    assert np.allclose(from_file.vectors, out.vectors, atol=1e-5)
    assert from_file.spans.tolist() == [[0.0, 0.5]]
    long = e.embed_waveform(wave(2.4), SR)  # longer clips: full windows, the tail end-aligned
    assert set(model.batches[1:]) == {SR} and np.allclose(long.spans[-1], [1.4, 2.4])
