"""Shared fixtures: tiny audio files (tests/fixtures/audio_files.py), the Milvus targets
(tests/fixtures/milvus_targets.py), and the slow/gpu markers."""

from __future__ import annotations

import pytest
import torch
from audio_files import write_audio

torch.set_num_threads(2)

# the `milvus` fixture: milvus-lite and a Milvus server ($SONICSEARCH_MILVUS_URI)
pytest_plugins = ["milvus_targets"]


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


@pytest.fixture
def write():
    return write_audio
