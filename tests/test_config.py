from __future__ import annotations

from pathlib import Path

import pytest

from sonicsearch.config import Config, load_config, save_config
from sonicsearch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_default_yaml_matches_the_code():
    assert load_config(ROOT / "configs" / "default.yaml") == Config()


def test_partial_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  head_lr: 0.1\n  phase2_epochs: 3\nmodel:\n  arch: resnet34\n")
    cfg = load_config(path, {"train.seed": 7, "model.arch": None})
    assert cfg.train.head_lr == 0.1 and cfg.train.phase2_epochs == 3
    assert cfg.model.arch == "resnet34" and cfg.runtime.seed == 7
    assert cfg.features.sample_rate == Config().features.sample_rate


def test_round_trip(tmp_path):
    cfg = load_config(None, {"train.head_lr": 0.2})
    save_config(cfg, tmp_path / "r.yaml")
    assert load_config(tmp_path / "r.yaml") == cfg


@pytest.mark.parametrize(
    "text, match",
    [
        ("trian:\n  seed: 1\n", "unknown config section"),
        ("train:\n  head_rl: 1\n", "valid keys"),
        ("train:\n  batch_size: 2.5\n", "expects int"),
        ("train: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_file_and_unknown_override(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(None, {"train.nope": 1})


def test_old_configs_with_runtime_keys_under_train_still_load(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("train:\n  seed: 4\n  device: cpu\n  num_workers: 0\n  amp: false\n"
                    "  channels_last: false\n  head_lr: 0.1\n")
    cfg = load_config(path)
    assert (cfg.runtime.seed, cfg.runtime.device, cfg.runtime.num_workers) == (4, "cpu", 0)
    assert cfg.runtime.amp is False and cfg.runtime.channels_last is False
    assert cfg.train.head_lr == 0.1 and not hasattr(cfg.train, "seed")
    # the deprecated dotted spellings of the CLI and the benchmarks keep working
    assert load_config(None, {"train.seed": 9, "train.num_workers": 1}).runtime.seed == 9
    path.write_text("train:\n  seed: 4\nruntime:\n  seed: 5\n")
    with pytest.raises(ConfigError, match="train.seed .* runtime.seed .* disagree"):
        load_config(path)
    path.write_text("train:\n  seed: 5\nruntime:\n  seed: 5\n")
    assert load_config(path).runtime.seed == 5


def test_pretrain_reads_the_runtime_section_not_train():
    import inspect

    from sonicsearch.training import pretrain

    source = inspect.getsource(pretrain)
    assert "config.runtime" in source and "config.train" not in source
