"""For the tests that run a script of benchmarks/ in process: the script as a module, and a
tiny model file to feed it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """``benchmarks/NAME.py`` imported as ``bench_NAME`` (registered in ``sys.modules``, so
    its dataclasses resolve; ``benchmarks/`` on ``sys.path`` for its sibling imports)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def tiny_checkpoint(path: Path, labels=(), overrides: dict | None = None, **save) -> Path:
    """A resnet18 model file at random init (seeded) on a small front end (8 kHz, 32 mels,
    1-s windows every 0.5 s); ``overrides`` change config keys, ``save`` goes to
    ``save_checkpoint`` (``metrics=``, ``extra=``)."""
    import torch

    from sonicsearch.config import ModelConfig, load_config
    from sonicsearch.model.backbones import AudioModel
    from sonicsearch.model.checkpoint import save_checkpoint

    config = load_config(None, {"model.arch": "resnet18", "model.weights": "none",
                                "features.sample_rate": 8000, "features.n_mels": 32,
                                "features.n_fft": 512, "features.hop_length": 256,
                                "features.window_seconds": 1.0, "features.hop_seconds": 0.5,
                                **(overrides or {})})
    torch.manual_seed(0)
    model = AudioModel.from_config(config.features, ModelConfig("resnet18", "none", 0.0),
                                   list(labels))
    save_checkpoint(path, model, config=config.to_dict(), labels=list(labels), **save)
    return path
