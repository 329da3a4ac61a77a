"""Model files: one file per trained model, written atomically, read without running code.

A model file is ``torch.save`` of a dict of plain values and tensors only, so it loads with
``torch.load(..., weights_only=True)`` (no code runs on load): format_version, kind, arch,
labels, the feature / model / full resolved configs, the state_dict (normalisation stats
are buffers in it), metrics, library versions, creation time and an optional ``extra``.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sonicsearch._version import __version__
from sonicsearch.config import FeatureConfig, ModelConfig
from sonicsearch.errors import ModelError
from sonicsearch.model import base
from sonicsearch.model.backbones import AudioModel
from sonicsearch.model.style import StyleHead
from sonicsearch.model.weights import MODEL_FILE_KIND as KIND
from sonicsearch.model.weights import load_file
from sonicsearch.utils.fileio import atomic_torch_save, file_sha256
from sonicsearch.utils.runtime import resolve_device

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, model: AudioModel, *, config: dict, labels: list[str],
                    metrics: dict | None = None, extra: dict | None = None) -> str:
    """Write ``model`` to ``path`` as one file, atomically (fsynced temp file, then rename).

    Args:
        path: the model file (``model.pt``); its folder must exist.
        model: the model to save (weights are copied to the CPU).
        config: the full resolved config (``Config.to_dict()``).
        labels: class names in head order; empty for a label-free model.
        metrics: numbers to keep with the model (numpy scalars are converted).
        extra: anything else made of plain values and tensors (e.g. optimizer state).

    Returns:
        The sha256 hex digest of the written file.

    Raises:
        ModelError: labels do not match the head, or a value cannot be stored.
    """
    import torchaudio
    import torchvision

    labels = list(labels)
    if len(labels) != model.backbone.num_classes:
        raise ModelError(f"{len(labels)} labels given for a head of "
                         f"{model.backbone.num_classes} classes")
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "arch": model.arch,
        "labels": labels,
        "feature_config": dataclasses.asdict(model.feature_config),
        "model_config": dataclasses.asdict(model.model_config),
        "config": _plain(config),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "metrics": _plain(metrics or {}),
        "extra": _plain(extra or {}),
        "versions": {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
                     "torchaudio": str(torchaudio.__version__), "sonicsearch": str(__version__)},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if getattr(model, "style_head", None) is not None:
        payload["style_head"] = model.style_head.shape()
    path = Path(path)
    atomic_torch_save(payload, path)
    return file_sha256(path)


def load_checkpoint(path: str | Path,
                    device: str | torch.device = "cpu") -> tuple[AudioModel, dict]:
    """Load a model file written by :func:`save_checkpoint` (``weights_only=True``).

    Args:
        path: the model file, or ``"base"`` for the shipped base model.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a torch.device.

    Returns:
        ``(model, info)``: the model in eval mode on ``device`` (SpecAugment off), and the
        file's fields except the state_dict, plus ``sha256`` and ``path``.

    Raises:
        ModelError: a missing, corrupt or truncated file, not a model file, or an unknown
            format version.
    """
    path = base.resolve(path)
    obj = load_file(path, "model file")
    if not isinstance(obj, dict) or obj.get("kind") != KIND or "format_version" not in obj:
        raise ModelError(f"{path} is not a sonicsearch model file (a plain state_dict is "
                         "used with --weights PATH instead)")
    if obj["format_version"] != FORMAT_VERSION:
        raise ModelError(f"{path} has model format {obj['format_version']!r}; this version "
                         f"of sonicsearch reads format {FORMAT_VERSION}")
    try:
        # files from before features.level hold absolute dB: keep that meaning
        fc = FeatureConfig(**{"level": "absolute", **obj["feature_config"]})
        mc = dataclasses.replace(ModelConfig(**obj["model_config"]), weights="none")
        labels = [str(x) for x in obj["labels"]]
        with torch.random.fork_rng(devices=[]):  # building must not move the caller's RNG
            model = AudioModel.from_config(fc, mc, labels)
            if obj.get("style_head") is not None:
                model.style_head = StyleHead.from_shape(obj["style_head"])
        model.load_state_dict(obj["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else repr(exc)
        raise ModelError(f"{path} is a damaged model file ({reason})") from None
    model.to(resolve_device(device)).eval()
    info = {k: v for k, v in obj.items() if k != "state_dict"}
    info.update(sha256=file_sha256(path), path=str(path))
    return model, info


def copy_normalization(model: AudioModel, weights: str | Path) -> bool:
    """Starting from one of our model files (``--weights PATH``, e.g. a ``pretrain`` run),
    keep the input standardisation the backbone learned with.

    Returns:
        False when ``weights`` is one of our model files made with other features (the
        caller keeps the standardisation fitted on its data); True otherwise.

    Raises:
        ModelError: an unreadable weights file.
    """
    if str(weights).lower() in ("imagenet", "none"):
        return True
    obj = load_file(base.resolve(weights), "weights file")
    if not isinstance(obj, dict) or obj.get("kind") != KIND:
        return True
    sd = obj.get("state_dict") or {}
    if obj.get("feature_config") != dataclasses.asdict(model.feature_config) or (
            "norm_mean" not in sd):
        return False
    with torch.no_grad():
        model.norm_mean.copy_(sd["norm_mean"])
        model.norm_std.copy_(sd["norm_std"])
    return True


def _plain(value: Any) -> Any:
    """Only what ``torch.load(weights_only=True)`` reads back: dicts, lists, tuples, str,
    numbers, bool, None and tensors (numpy values, paths, enums, dataclasses converted)."""
    if value is None or type(value) in (str, bool, int, float):
        return value
    if isinstance(value, str):  # str subclasses such as torch's TorchVersion
        return str(value)
    if isinstance(value, bool | int | float):
        return type(value).__mro__[-2](value) if not isinstance(value, bool) else bool(value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {(k if isinstance(k, str | int) else str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_plain(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    raise ModelError(f"cannot store {type(value).__name__} values in a model file")
