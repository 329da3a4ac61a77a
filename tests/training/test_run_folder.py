"""Run folders of train and pretrain: one run per folder (refused, resumed or overwritten),
one-line errors for unusable last.pt files, atomic saves, and the epoch log's ETA."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_train import TINY, separable_corpus
from typer.testing import CliRunner

from sonicsearch.cli import app
from sonicsearch.config import load_config, save_config
from sonicsearch.data.manifest import load_dataset
from sonicsearch.errors import TrainingError
from sonicsearch.training.finetune import fit
from sonicsearch.training.pretrain import pretrain

ONE_EPOCH = {**TINY, "train.phase1_epochs": 1, "train.phase2_epochs": 0, "train.crops_per_file": 1}
PRE = {**TINY, "pretrain.epochs": 1, "pretrain.batch_size": 8, "pretrain.windows_per_file": 1,
       "pretrain.normalization_excerpts": 8}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("rf")
    data = separable_corpus(root / "data", per=5, seconds=1.5, sr=8000)
    ds = load_dataset(data, 0.2, 0.2, seed=0)
    run = root / "run"
    fit(load_config(None, ONE_EPOCH), ds, run, show_progress=False)
    save_config(load_config(None, ONE_EPOCH), root / "one.yaml")
    return data, ds, run, root


def _copy(run, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(run, dst)
    return dst


class _Pickled:  # any class: torch.save pickles it, weights_only refuses to load it
    pass


def _damage(path, how: str) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif how == "pickle":
        torch.save({"model": _Pickled()}, path)
    elif how == "wrong-arch":
        from sonicsearch.model.backbones import AudioModel

        cfg = load_config(None, {**ONE_EPOCH, "model.arch": "alexnet"})
        other = AudioModel.from_config(cfg.features, cfg.model, ["a", "b", "c", "d"])
        ckpt = torch.load(path, weights_only=True)
        ckpt["model"] = other.state_dict()
        torch.save(ckpt, path)


@pytest.mark.parametrize("how", ["truncated", "pickle", "wrong-arch"])
def test_resume_from_an_unusable_last_pt_is_one_line(small, tmp_path, how):
    data, ds, run, _ = small
    out = _copy(run, tmp_path)
    _damage(out / "last.pt", how)
    with pytest.raises(TrainingError) as err:
        fit(load_config(None, ONE_EPOCH), ds, out, resume=True, show_progress=False)
    message = str(err.value)
    assert "\n" not in message and str(out / "last.pt") in message
    assert "--overwrite" in message
    res = CliRunner().invoke(app, ["train", str(data), "--out", str(out), "--resume"])
    assert res.exit_code != 0 and isinstance(res.exception, TrainingError)


def test_pretrain_resume_from_a_truncated_last_pt_is_one_line(small, tmp_path):
    data, _, _, _ = small
    out = tmp_path / "pre"
    pretrain(load_config(None, PRE), [data], out, show_progress=False)
    _damage(out / "last.pt", "truncated")
    with pytest.raises(TrainingError, match="cannot resume: .*last.pt.*--overwrite"):
        pretrain(load_config(None, PRE), [data], out, resume=True, show_progress=False)


def test_a_used_folder_is_refused_without_resume_or_overwrite(small, tmp_path):
    data, ds, run, root = small
    out = _copy(run, tmp_path)
    before = (out / "model.pt").read_bytes()
    with pytest.raises(TrainingError, match="--resume .* --overwrite"):
        fit(load_config(None, ONE_EPOCH), ds, out, show_progress=False)
    assert (out / "model.pt").read_bytes() == before  # untouched
    res = CliRunner().invoke(app, ["train", str(data), "--out", str(out), "--config",
                                   str(root / "one.yaml")])
    assert res.exit_code != 0 and "--overwrite" in str(res.exception)
    res = CliRunner().invoke(app, ["pretrain", str(data), "--out", str(out)])
    assert res.exit_code != 0 and "--overwrite" in str(res.exception)


def test_overwrite_never_leaves_files_of_the_previous_run(small, tmp_path):
    _, ds, run, _ = small
    out = _copy(run, tmp_path)
    (out / "eval_val.json").write_text("{}")  # written by an `evaluate` of the old model

    class Killed(Exception):
        pass

    def stop(epoch, _row):
        raise Killed

    cfg = load_config(None, {**ONE_EPOCH, "runtime.seed": 5})
    with pytest.raises(Killed):
        fit(cfg, ds, out, overwrite=True, report=stop, show_progress=False)
    names = {p.name for p in out.iterdir()}
    # the stopped run has its model.pt and last.pt, but no sha256 / summary of the old one
    assert {"model.sha256", "metrics.json", "eval_val.json", "confusion_test.png"} & names == set()
    assert load_config(out / "config.yaml").runtime.seed == 5
    from sonicsearch.training.evaluate import model_config

    assert model_config(out / "model.pt").runtime.seed == 5
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_with_another_config_names_the_keys(small, tmp_path):
    _, ds, run, _ = small
    out = _copy(run, tmp_path)
    cfg = load_config(None, {**ONE_EPOCH, "train.head_lr": 0.2})
    with pytest.raises(TrainingError, match="differs .* in train.head_lr"):
        fit(cfg, ds, out, resume=True, show_progress=False)


def test_last_pt_is_replaced_atomically(small, tmp_path, monkeypatch):
    from sonicsearch.training.run import RunFolder

    _, _, run, _ = small
    out = _copy(run, tmp_path)
    before = (out / "last.pt").read_bytes()

    def broken_save(obj, fh, *a, **k):
        fh.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        RunFolder(out).save_last({"model": {}})
    assert (out / "last.pt").read_bytes() == before
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_epoch_lines_carry_an_eta_and_plain_progress_too(small, tmp_path, capsys):
    from sonicsearch.training.run import run_epochs
    from sonicsearch.utils.progress import _Plain

    lines: list[str] = []
    state = {"epoch": 0, "history": []}
    run_epochs(state, 3, lambda e: {"epoch": e}, folder=None, save_last=None,
               describe=lambda r: f"epoch {r['epoch']}/3", say=lines.append)
    assert [r["epoch"] for r in state["history"]] == [1, 2, 3]
    assert "ETA" in lines[0] and "ETA" in lines[1] and "ETA" not in lines[2]
    bar = _Plain(4, "epoch 1/3", every=0.0)
    bar.advance(1, "loss 1.0")
    assert "epoch 1/3: 1/4 loss 1.0 ETA" in capsys.readouterr().err


def test_metrics_rows_match_the_resumed_state(small, tmp_path):
    _, ds, run, _ = small
    out = _copy(run, tmp_path)
    with open(out / "metrics.jsonl", "a") as fh:  # an epoch logged after the last checkpoint
        fh.write(json.dumps({"epoch": 99}) + "\n")
    cfg = load_config(None, ONE_EPOCH)
    fit(cfg, ds, out, resume=True, show_progress=False)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]


def test_resume_with_other_data_is_refused(small, tmp_path):
    from dataclasses import replace

    _, ds, run, _ = small
    out = _copy(run, tmp_path)
    fewer = replace(ds, items=ds.items[1:])
    with pytest.raises(TrainingError, match="split differs"):
        fit(load_config(None, ONE_EPOCH), fewer, out, resume=True, show_progress=False)
