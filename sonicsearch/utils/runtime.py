"""Where and how the work runs: the device, and the process-wide CPU settings.

Training, pretraining, tuning, evaluation and the Embedder all resolve ``--device`` here and
call :func:`prepare_torch` once, so the rules live in one place.
"""

from __future__ import annotations

import torch

from sonicsearch.errors import DeviceError


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error.

    Raises:
        DeviceError: ``cuda`` was asked for and no CUDA GPU is available.
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but no CUDA GPU is available; "
                          "use --device cpu or auto")
    return torch.device(name)


def prepare_torch() -> None:
    """Process-wide settings for model work: denormals flushed to zero (denormal floats make
    CPU convolutions many times slower; they appear in late training and in quiet audio)."""
    torch.set_flush_denormal(True)
