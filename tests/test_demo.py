"""The demo's core on a tiny corpus and recipe: the same seed repeats its numbers, and a
corpus made with another seed is refused rather than quietly reused."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from sonicsearch.cli import app
from sonicsearch.cli.demo import run_demo
from sonicsearch.errors import DataError

TINY_CORPUS = {"genres": 3, "per_genre": 6, "seconds": 3.0, "sample_rate": 8000}
TINY_RECIPE = {
    "features.sample_rate": 8000, "features.n_mels": 32, "features.n_fft": 512,
    "features.hop_length": 256, "features.window_seconds": 1.0, "features.hop_seconds": 0.5,
    "runtime.num_workers": 0, "train.batch_size": 8, "train.crops_per_file": 2,
    "train.phase1_epochs": 1, "train.phase2_epochs": 1, "train.val_fraction": 0.2,
    "train.test_fraction": 0.2,
}


def _tiny(workdir, seed: int = 0) -> dict:
    numbers = run_demo(workdir, show=0, seed=seed, corpus_spec=TINY_CORPUS,
                       overrides=TINY_RECIPE)
    numbers.pop("seconds")
    return numbers


def test_the_same_seed_gives_the_same_numbers(tmp_path, capsys):
    first, second = _tiny(tmp_path / "a"), _tiny(tmp_path / "b")
    assert first == second and first["queries"] > 0
    out = capsys.readouterr().out
    # the thread count in force (conftest sets 2; an earlier test may have changed it)
    assert f"(seed 0, {torch.get_num_threads()} CPU threads:" in out
    a, b = tmp_path / "a", tmp_path / "b"
    wavs = sorted(p.relative_to(a) for p in (a / "corpus").rglob("*.wav"))
    assert wavs and all((a / w).read_bytes() == (b / w).read_bytes() for w in wavs)
    sa, sb = (torch.load(w / "run" / "model.pt", weights_only=True)["state_dict"] for w in (a, b))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

def test_a_corpus_of_another_seed_is_refused_and_kept(tmp_path):
    work = tmp_path / "w"
    (work / "corpus" / "blues").mkdir(parents=True)
    (work / "corpus" / "blues" / "x.wav").write_bytes(b"RIFF")
    with pytest.raises(DataError, match="corpus.json is missing"):
        _tiny(work)
    (work / "corpus.json").write_text('{"genres": 3, "per_genre": 6, "sample_rate": 8000, '
                                      '"seconds": 3.0, "seed": 0}')
    with pytest.raises(DataError, match="made with .*seed 0, not .*seed 1"):
        _tiny(work, seed=1)
    assert (work / "corpus" / "blues" / "x.wav").read_bytes() == b"RIFF"


def test_cli_demo_seed_must_be_non_negative(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path / "d"), "--seed", "-1"])
    assert res.exit_code == 2 and not (tmp_path / "d").exists()
    assert "greater than or equal to 0" in res.output  # not "no such option"
