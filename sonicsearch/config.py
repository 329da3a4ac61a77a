"""Configuration: dataclasses for features, model, runtime, training, index and
pretraining; YAML in and out.

``configs/default.yaml`` mirrors these defaults. A config file may set any subset of keys;
unknown keys are an error that names the valid ones, so a typo never passes silently.

Deprecated: ``seed``, ``device``, ``num_workers``, ``amp`` and ``channels_last`` used to be
``train:`` keys. They now live in ``runtime:`` (read by train, pretrain and tune alike). A
config or run folder that still sets them under ``train:`` loads as before: the values are
moved to ``runtime:`` (an error only when both sections set one to different values), and
the dotted overrides ``train.seed`` etc. are mapped the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sonicsearch.errors import ConfigError


@dataclass
class FeatureConfig:
    """Audio front end: resampling, windowing and the log-mel spectrogram."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 96
    f_min: float = 20.0
    f_max: float | None = None  # None: sample_rate / 2
    top_db: float | None = 80.0
    window_seconds: float = 3.0  # one model input
    hop_seconds: float = 1.5  # stride between windows at inference
    min_seconds: float = 0.5  # shorter clips are an error; shorter than a window are padded
    level: str = "absolute"  # absolute (dB re 1.0) | window (dB minus its mean) | pcen

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_seconds * self.sample_rate))


@dataclass
class ModelConfig:
    """Backbone choice and what it starts from."""

    arch: str = "resnet18"
    weights: str = "imagenet"  # imagenet | none | PATH to a state_dict or checkpoint
    dropout: float = 0.2  # before the classification head


@dataclass
class RuntimeConfig:
    """Where and how runs execute; shared by train, pretrain and tune."""

    seed: int = 0  # split, initialisation, crops, views: a run is repeatable from its seed
    device: str = "auto"  # auto | cpu | cuda
    num_workers: int = 2  # DataLoader processes decoding audio
    amp: bool = True  # bf16 mixed precision, GPU only
    channels_last: bool = True  # GPU only


RUNTIME_KEYS = tuple(f.name for f in dataclasses.fields(RuntimeConfig))


@dataclass
class TrainConfig:
    """The freeze-then-unfreeze SGD recipe and its regularisation."""

    batch_size: int = 32
    crops_per_file: int = 4  # random training windows drawn from each file per epoch
    # split, used when the data has no split column
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # phase 1: backbone frozen, head trained
    phase1_epochs: int = 2
    head_lr: float = 0.05
    # phase 2: the last `unfreeze` stages trained at backbone_lr, the head at head_lr
    phase2_epochs: int = 18
    unfreeze: str = "all"  # "all" or a number of stages counted from the top
    backbone_lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    schedule: str = "cosine"  # cosine | step
    step_size: int = 6
    step_gamma: float = 0.3
    grad_clip: float = 5.0
    label_smoothing: float = 0.1
    balance: str = "weights"  # weights | sampler | none
    # augmentation
    mixup_alpha: float = 0.2  # 0 turns mixup off
    gain_db: float = 6.0  # random gain in +-gain_db
    time_masks: int = 2
    time_mask_frames: int = 16
    freq_masks: int = 2
    freq_mask_bins: int = 12
    # joint contrastive objective (0 turns it off)
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.1
    # stopping and speed
    patience: int = 6  # epochs without a better validation macro-F1


@dataclass
class IndexConfig:
    """FAISS index choice and embedding batch size."""

    index_type: str = "auto"  # auto | flat | hnsw | ivf | ivfpq
    device: str = "auto"
    batch_size: int = 32
    exact_max_vectors: int = 200_000  # auto: exact search up to this many vectors
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nprobe: int = 32
    pq_bytes: int = 64  # bytes per vector for ivfpq
    memory_budget_gb: float = 8.0  # auto: above this, approximate indexes compress with PQ
    backend: str = "faiss"  # faiss | milvus (see sonicsearch/index/backends)
    vectors: str = "auto"  # auto | float32 | pca-int8 (stored vectors: index/codec.py)
    compact_dim: int = 128  # pca-int8: dimensions kept
    uri: str = ""  # milvus: http://host:19530, or a milvus-lite file ("": DIR/milvus.db)
    fast: bool = False  # embed on the int8 CPU path (build-index --fast; model/int8.py)


@dataclass
class PretrainConfig:
    """Self-supervised contrastive pretraining (``sonicsearch pretrain``) and the two-view
    augmentations it shares with the joint objective of ``train`` (contrastive_weight > 0).

    Seed, device, num_workers, amp and channels_last come from the ``runtime`` section.
    """

    epochs: int = 10
    batch_size: int = 32  # excerpts per step; each gives two views
    windows_per_file: int = 4  # random excerpts drawn from each file per epoch
    lr: float = 0.001  # AdamW, after warm-up, cosine to 1% at the end
    weight_decay: float = 0.0001
    warmup_epochs: int = 1
    method: str = "ntxent"  # ntxent (SimCLR / COLA) | byol (BYOL-A's objective)
    temperature: float = 0.1  # NT-Xent
    ema_decay: float = 0.99  # BYOL: the target's EMA decay at the start (rises to 1)
    projection_hidden: int = 512  # projection head (dropped after training)
    projection_dim: int = 128
    grad_clip: float = 5.0
    pair_shift_seconds: float = 0.5  # the two views start up to this far apart (0: same)
    normalization_excerpts: int = 64  # clean excerpts that set the input standardisation
    # views: each degradation is applied to an example with its probability
    noise_prob: float = 0.8
    noise_snr_min: float = 0.0  # dB; coloured noise, white to brown
    noise_snr_max: float = 30.0
    band_prob: float = 0.5  # random low-pass (1 kHz..Nyquist) and high-pass (0..500 Hz)
    telephone_prob: float = 0.0  # 200-400 .. 3000-3700 Hz band-pass, mu-law, saturation
    codec_prob: float = 0.3  # STFT bins under a per-frame quantile dropped, then low-passed
    reverb_prob: float = 0.3
    reverb_max_seconds: float = 0.6  # longest RT60 of the synthetic room
    reverb_room: bool = False  # early reflections + frequency-dependent decay (else plain)
    mix_prob: float = 0.0  # another excerpt of the batch mixed in as real background
    mix_snr_min: float = 5.0  # dB
    mix_snr_max: float = 20.0
    eq_prob: float = 0.0  # tilt +-6 dB and a bell +-4 dB (training/views_capture.py)
    dynamics_prob: float = 0.0  # compressor (ratio 2-8) and soft limiter
    gain_db: float = 6.0  # random gain in +-gain_db
    speed_prob: float = 0.5
    speed: float = 0.05  # speed (and pitch) change in +-speed
    time_masks: int = 2
    time_mask_frames: int = 16
    freq_masks: int = 2
    freq_mask_bins: int = 12


@dataclass
class Config:
    """Everything a run needs; saved beside every output as config.yaml."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Config:
        """Build a config from a (possibly partial) nested dict, rejecting unknown keys."""
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError("a config must be a mapping of sections")
        data = _move_runtime_keys(data)
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ConfigError(
                f"unknown config section(s) {', '.join(unknown)}; "
                f"choose from: {', '.join(sections)}"
            )
        kwargs = {}
        for f in dataclasses.fields(cls):
            section_cls = f.default_factory  # type: ignore[misc]
            kwargs[f.name] = _section_from_dict(section_cls, data.get(f.name) or {}, f.name)
        return cls(**kwargs)

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """Return a copy with dotted keys (``train.head_lr``) replaced; None values are skipped."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            if section == "train" and key in RUNTIME_KEYS:  # deprecated spelling
                section = "runtime"
            if section not in data or key not in data[section]:
                raise ConfigError(f"unknown config key '{dotted}'")
            data[section][key] = value
        return Config.from_dict(data)


def _move_runtime_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Move the deprecated ``train.seed`` (device, num_workers, amp, channels_last) of an
    older config into ``runtime:``; returns a new dict, ``data`` is not changed."""
    train = data.get("train")
    if not isinstance(train, dict) or not set(train) & set(RUNTIME_KEYS):
        return data
    runtime = data.get("runtime") or {}
    if not isinstance(runtime, dict):
        return data  # reported as a malformed section below
    runtime, train = dict(runtime), dict(train)
    for key in RUNTIME_KEYS:
        if key not in train:
            continue
        value = train.pop(key)
        if key in runtime and runtime[key] != value:
            raise ConfigError(f"train.{key} ({value!r}) and runtime.{key} ({runtime[key]!r}) "
                              f"disagree; set only runtime.{key} (train.{key} is deprecated)")
        runtime[key] = value
    return {**data, "train": train, "runtime": runtime}


def _section_from_dict(section_cls: type, values: dict[str, Any], name: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{name}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) in '{name}': {', '.join(unknown)}; "
            f"valid keys: {', '.join(fields)}"
        )
    defaults = section_cls()
    coerced = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        coerced[key] = _coerce(value, default, f"{name}.{key}")
    return section_cls(**coerced)


def _coerce(value: Any, default: Any, key: str) -> Any:
    """Coerce YAML scalars to the default's type (ints to floats, numbers to str, ...)."""
    if value is None or default is None:
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            raise ValueError
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"config key '{key}' expects {type(default).__name__}, got {value!r}"
        ) from None
    return value


def load_index_config(path: str | Path | None) -> tuple[IndexConfig, set[str]]:
    """The ``index:`` section of a config file (defaults without one), and the keys the file
    sets (so that unset ones can defer to an existing index). A file that sets
    ``runtime.device`` (or the older ``train.device``) but no ``index.device`` gives its
    device to the index too.

    Raises:
        ConfigError: as :func:`load_config`.
    """
    data = _read_yaml(path)
    full = Config.from_dict(data)
    cfg = full.index
    if path is None:
        return cfg, set()
    sections = data if isinstance(data, dict) else {}
    section = sections.get("index")
    keys = set(section) if isinstance(section, dict) else set()
    if "device" not in keys and any(
            isinstance(sections.get(s), dict) and "device" in sections[s]
            for s in ("runtime", "train")):
        cfg.device = full.runtime.device
        keys.add("device")
    return cfg, keys


def _read_yaml(path: str | Path | None) -> Any:
    if path is None:
        return {}
    import yaml  # here, not at import: a query never reads YAML (start-up)

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a YAML config over the built-in defaults, then apply dotted-key overrides.

    Args:
        path: a YAML file with any subset of the sections; None for the defaults.
        overrides: ``{"train.head_lr": 0.1, ...}``; None values are ignored (unset flags).

    Returns:
        The resolved Config.

    Raises:
        ConfigError: the file is missing, is not YAML, or has unknown keys or bad types.
    """
    config = Config.from_dict(_read_yaml(path))
    return config.with_overrides(overrides or {})


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    import yaml

    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
