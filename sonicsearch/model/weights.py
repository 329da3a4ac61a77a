"""Where a backbone's starting weights come from, and how they are fitted to it.

``--weights imagenet`` reads torchvision's file from the torch hub cache (downloading it
when missing and online; never silently skipped); ``--weights PATH`` reads a plain
torchvision state_dict or one of our model files. Either way the 3-channel first
convolution is folded to one channel and an ImageNet head (or a head of another size) is
dropped. Every file is read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import http.client
import os
import pickle
import socket
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch

from sonicsearch.errors import ModelError, WeightsUnavailableError
from sonicsearch.model import base

if TYPE_CHECKING:
    from sonicsearch.model.backbones import Backbone

MODEL_FILE_KIND = "sonicsearch.model"  # the "kind" field of our model files
_LOAD_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
                AttributeError, KeyError, IndexError, ImportError, zipfile.BadZipFile)


def load_weights(model: Backbone, weights: str | Path) -> None:
    """Load ``"imagenet"``, ``"base"`` (the shipped base model) or a weights file into
    ``model`` (see :func:`fit_state_dict`).

    Raises:
        WeightsUnavailableError: ImageNet weights are neither cached nor downloadable.
        ModelError: a missing, unreadable or non-fitting weights file.
    """
    if str(weights).lower() == "imagenet":
        fit_state_dict(model, imagenet_state_dict(model.spec.weights), "imagenet")
    elif base.is_base(weights):
        if model.arch != base.ARCH:
            raise ModelError(f"--weights base is a {base.ARCH}; use --arch {base.ARCH} "
                             f"(got {model.arch})")
        fit_state_dict(model, read_weights(base.base_model_path(), model.arch), base.VERSION)
    else:
        fit_state_dict(model, read_weights(weights, model.arch), str(weights))


def imagenet_cache_path(weights: Any) -> Path:
    """Where torch hub keeps a torchvision weights enum's file: ``<hub>/checkpoints/<name>``."""
    name = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def imagenet_state_dict(weights: Any) -> dict[str, torch.Tensor]:
    """The state_dict of a torchvision weights enum member, from the torch hub cache,
    downloaded into it when missing.

    Raises:
        WeightsUnavailableError: not cached and the download failed (the message names the
            cache file to provide, or ``--weights none``).
        ModelError: the cached file is corrupt.
    """
    path = imagenet_cache_path(weights)
    if not path.is_file():
        match = torch.hub.HASH_REGEX.search(path.name)
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)  # a dead network fails instead of hanging
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, str(path),
                                           match.group(1) if match else None, progress=False)
        except (OSError, RuntimeError, ValueError, http.client.HTTPException) as exc:
            raise WeightsUnavailableError(
                f"ImageNet weights {weights} are not in the torch cache and could not be "
                f"downloaded ({exc.__class__.__name__}); put {weights.url} at {path} "
                "or pass --weights none"
            ) from None
        finally:
            socket.setdefaulttimeout(old_timeout)
    state = load_file(path, "cached ImageNet weights file")
    if not _is_state_dict(state):
        raise ModelError(f"{path} is not a state_dict; delete it or pass --weights none")
    return state


def read_weights(path: str | Path, arch: str) -> dict[str, torch.Tensor]:
    """Backbone weights from a file: one of our model files (its ``backbone.*`` weights), an
    AudioModel / Backbone state_dict, or a plain torchvision state_dict.

    Raises:
        ModelError: missing, unreadable, of another arch, or not weights at all.
    """
    path = Path(path)
    obj = load_file(path, "weights file")
    if isinstance(obj, dict) and obj.get("kind") == MODEL_FILE_KIND:
        if obj.get("arch") != arch:
            raise ModelError(f"{path} holds a {obj.get('arch')} model, not {arch}")
        obj = obj.get("state_dict")
    if not _is_state_dict(obj):
        raise ModelError(f"{path} is neither a state_dict nor a sonicsearch model file")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return state


def fit_state_dict(model: Backbone, state: dict[str, torch.Tensor], source: str) -> None:
    """Load torchvision-named (``conv1.weight``) or Backbone-named (``net.conv1.weight``)
    weights into ``model``: a 3-channel conv1 is folded (summed over its input channels), a
    head of another size is dropped and the new head keeps its initialisation.

    Raises:
        ModelError: keys other than the head are missing or unexpected, or shapes differ.
    """
    own, head = model.state_dict(), model.spec.head + "."
    fixed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = _densenet_key(key) if model.arch.startswith("densenet") else key
        if key.startswith(head):
            key = "head.fc." + key[len(head):]
        elif not key.startswith(("net.", "head.")):
            key = "net." + key
        if key == f"net.{model.spec.conv1}.weight" and value.ndim == 4 and value.shape[1] == 3:
            value = value.sum(dim=1, keepdim=True)
        if key.startswith("head.") and (key not in own or own[key].shape != value.shape):
            continue  # a head of another size (or none wanted)
        fixed[key] = value
    missing = [k for k in own if k not in fixed and not k.startswith("head.")
               and not k.endswith("num_batches_tracked")]  # BatchNorm fills that one in
    unexpected = [k for k in fixed if k not in own]
    wrong = [k for k in fixed if k in own and own[k].shape != fixed[k].shape]
    for kind, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong)):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            raise ModelError(f"weights {source} do not fit {model.arch}: {kind} "
                             f"{', '.join(keys[:3])}{more}")
    model.load_state_dict(fixed, strict=False)


def load_file(path: Path, what: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one-line errors.

    Raises:
        ModelError: missing, unreadable, truncated or corrupt, or holding pickled objects.
    """
    if not path.is_file():
        raise ModelError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    except _LOAD_ERRORS as exc:
        if "Unsupported global" in str(exc):  # a pickled object: never executed
            raise ModelError(f"{path} holds Python objects besides weights; only plain "
                             f"weight files are loaded (torch.load weights_only)") from None
        raise ModelError(f"{path} is not a readable {what} (truncated, corrupt or not "
                         f"written by torch.save; {exc.__class__.__name__})") from None


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and bool(obj)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _densenet_key(key: str) -> str:
    # torchvision's published densenet files use the legacy names "norm.1" for "norm1".
    for part in ("norm", "relu", "conv"):
        for i in ("1", "2"):
            key = key.replace(f".{part}.{i}.", f".{part}{i}.")
    return key
