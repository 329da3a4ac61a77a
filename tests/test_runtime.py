"""runtime.resolve_device: the device rules every stage shares, and their error."""

from __future__ import annotations

import pytest
import torch

from sonicsearch.errors import ConfigError, DeviceError, TrainingError
from sonicsearch.utils.runtime import resolve_device


def test_cuda_without_a_gpu_is_a_device_error_not_a_training_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError) as caught:
        resolve_device("cuda")
    assert isinstance(caught.value, ConfigError)
    assert not isinstance(caught.value, TrainingError)
    assert str(caught.value) == ("--device cuda was asked for, but no CUDA GPU is available; "
                                 "use --device cpu or auto")


def test_auto_and_cpu_resolve(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
