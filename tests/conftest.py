"""Shared fixtures: tiny audio files, and the slow/gpu markers."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

torch.set_num_threads(2)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


def tone(seconds: float, sr: int, freq: float = 440.0, channels: int = 1, amp: float = 0.5):
    """A sine (different per channel) as (frames, channels) float32."""
    t = np.arange(int(seconds * sr)) / sr
    chans = [amp / (c + 1) * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]
    return np.stack(chans, axis=1).astype(np.float32)


FORMATS = {
    "wav": {},
    "flac": {},
    "ogg": {"format": "OGG", "subtype": "VORBIS"},
    "opus": {"format": "OGG", "subtype": "OPUS"},
    "mp3": {"format": "MP3", "subtype": "MPEG_LAYER_III"},
}


def write_audio(path, data: np.ndarray, sr: int) -> str:
    """Write with the codec that the file's extension names."""
    ext = str(path).rsplit(".", 1)[-1]
    sf.write(str(path), data, sr, **FORMATS.get(ext, {}))
    return str(path)


@pytest.fixture
def write():
    return write_audio
