"""The base model that ships in the package: what ``build-index`` uses when no model is
given, and what ``train --weights base`` / ``pretrain --weights base`` start from.

A ResNet-18 pretrained without labels (NT-Xent on two degraded views of each excerpt:
noise, recorded background, telephone line, room reverb, codec loss, speed and gain) on
about 6 hours of licence-clean Debian audio (game music and effects, speech prompts,
ambience); 16 kHz, 64 mels, 2 s windows, level-invariant front end (``features.level:
window``). From ``base-v2`` it also carries a style head (model/style.py): 128-d style
vectors distilled from a music tagger on the training pool's music, with base-v1's backbone
unchanged (the same window vectors). Weights are stored in fp16 (23.6 MiB) and load into a
float32 model. The model card is docs/base-model.md; the file's sha256 is checked before
first use.
"""

from __future__ import annotations

from pathlib import Path

from sonicsearch.config import FeatureConfig
from sonicsearch.errors import ModelError
from sonicsearch.utils.fileio import file_sha256

NAME = "base"  # what --model / --weights accept
VERSION = "base-v2"
FILE = Path(__file__).resolve().parent.parent / "assets" / f"{VERSION}.pt"
SHA256 = "7188369071c4b4f7de772a04167e9cfb721df5d720508b5b9872df889bb1cf35"
ARCH = "resnet18"
_verified: set[Path] = set()


def is_base(spec: str | Path | None) -> bool:
    """True for the name that selects the shipped model (``base``, any case)."""
    return spec is not None and str(spec).strip().lower() == NAME


def base_model_path(path: Path | None = None) -> Path:
    """The shipped model file, its checksum verified once per process.

    Raises:
        ModelError: the file is missing or does not match its checksum.
    """
    path = path or FILE
    if path in _verified:
        return path
    if not path.is_file():
        raise ModelError(f"the shipped base model is missing ({path}); reinstall sonicsearch "
                         "or pass --model PATH")
    if file_sha256(path) != SHA256:
        raise ModelError(f"the shipped base model {path} is damaged (checksum mismatch); "
                         "reinstall sonicsearch")
    _verified.add(path)
    return path


def resolve(spec: str | Path) -> Path:
    """``base`` -> the shipped file; any other spec is a path."""
    return base_model_path() if is_base(spec) else Path(spec)


def feature_config():
    """The base model's front end (a ``FeatureConfig``), read from the shipped file."""
    import torch

    obj = torch.load(base_model_path(), map_location="cpu", weights_only=True)
    return FeatureConfig(**{"level": "absolute", **obj["feature_config"]})


FINETUNE_RATES = {"head_lr": 0.01, "backbone_lr": 0.002}
"""``train --weights base`` without ``--config``: the default recipe at a fifth of its rates
(configs/finetune-pretrained.yaml). The recipe's own rates (0.05 / 0.01) are set for a
backbone trained from scratch; from the base model they threw away its start once the
backbone unfroze, while a fifth of them trained stably through 2 + 18 epochs (README,
"Find the recording": base + fine-tuned)."""


def adopt_finetune_rates(config):
    """``config`` with :data:`FINETUNE_RATES` when ``model.weights`` is ``base`` (for a
    ``train`` run given no config file: a file's rates are the user's); else unchanged."""
    import dataclasses

    if not is_base(config.model.weights):
        return config
    return dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                 **FINETUNE_RATES))


def adopt_features(config):
    """``config`` with the base model's front end when ``model.weights`` is ``base``: its
    filters were learned on that input (16 kHz, 64 mels, level-invariant), so fine-tuning or
    pretraining from it on another front end would start from weights that no longer fit.
    Other configs are returned unchanged."""
    import dataclasses

    if not is_base(config.model.weights):
        return config
    return dataclasses.replace(config, features=feature_config())
