"""Numeric options of every command are checked before any model or data is loaded: a
negative, zero-where-meaningless, too tiny or non-finite value is a usage error (exit 2,
the usage line and ``Error: Invalid value for '--flag'``), never a traceback and never a
silent fall-back to a default."""

from __future__ import annotations

import pytest
from cli_run import cli


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model (or anything heavy) fails the test: validation comes first."""
    from sonicsearch.index import api

    def refuse(*a, **kw):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(api, "load_embedder", refuse)


BAD = [
    # build-index: 0 used to mean "the model's", negatives and tiny values crashed
    ("build-index", "--window", "0"), ("build-index", "--hop", "0"),
    ("build-index", "--hop", "-1"), ("build-index", "--window", "-5"),
    ("build-index", "--window", "nan"), ("build-index", "--hop", "inf"),
    ("build-index", "--window", "1e309"),
    ("query", "--min-duration", "nan"), ("query", "--max-duration", "inf"),
    ("query", "--min-duration", "-1"), ("query", "--k", "0"),
    ("query", "--max-per-folder", "0"),
    ("serve", "--max-seconds", "inf"), ("serve", "--max-upload-mb", "nan"),
    ("serve", "--max-upload-mb", "0"), ("serve", "--threads", "0"), ("serve", "--port", "-1"),
    ("train", "--epochs", "-1"), ("train", "--seed", "-1"),
    ("pretrain", "--epochs", "0"), ("pretrain", "--seed", "-3"),
    ("tune", "--trials", "0"), ("tune", "--timeout", "0"), ("tune", "--timeout", "nan"),
    ("tune", "--seed", "-1"), ("tune", "--train-seed", str(2**32)),
    ("tune", "--startup-trials", "0"),
    ("make-dataset synth", "--seconds", "nan"), ("make-dataset synth", "--seconds", "inf"),
    ("make-dataset synth", "--genres", "1"), ("make-dataset synth", "--per-genre", "0"),
    ("make-dataset synth", "--sample-rate", "100"), ("make-dataset synth", "--seed", "-1"),
    ("make-dataset debian", "--pack-hours", "-1"), ("make-dataset debian", "--pack-hours", "inf"),
    ("make-dataset debian", "--min-seconds", "nan"), ("make-dataset debian", "--seed", "-1"),
]
POSITIONAL = {"build-index": ["AUDIO"], "query": ["CLIP"], "serve": [], "train": ["DATA"],
              "pretrain": ["AUDIO"], "tune": ["DATA"], "make-dataset synth": ["OUT"],
              "make-dataset debian": ["OUT.csv"]}


@pytest.mark.parametrize("command,flag,value", BAD, ids=lambda v: str(v))
def test_a_bad_number_is_a_usage_error_before_anything_loads(tmp_path, monkeypatch, capsys,
                                                             no_model, command, flag, value):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "AUDIO").mkdir()
    code, out, err = cli(monkeypatch, capsys, *command.split(), *POSITIONAL[command],
                         f"{flag}={value}")
    assert code == 2, err
    assert f"Invalid value for '{flag}'" in err and "Traceback" not in err
    assert "Usage:" in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AUDIO"]  # nothing written


def test_too_short_a_window_names_the_model_s_minimum(tmp_path, monkeypatch, capsys):
    """The minimum comes from the model's front end (its FFT), and one above it works."""
    from fake_embedder import FakeEmbedder, make_corpus

    from sonicsearch.embed.types import min_window_samples
    from sonicsearch.index import api

    make_corpus(tmp_path / "audio", 2)
    model = tmp_path / "model.pt"
    fc = FakeEmbedder(model).feature_config
    monkeypatch.setattr(api, "load_embedder", lambda path, *a, **kw: FakeEmbedder(path))
    low = min_window_samples(fc) / fc.sample_rate
    common = ("build-index", tmp_path / "audio", "--model", model, "--index", tmp_path / "idx")
    code, _, err = cli(monkeypatch, capsys, *common, "--window", f"{low * 0.9:.6f}")
    assert code == 2 and "Invalid value for '--window'" in err
    assert f"at least {low:.4g}s" in err and f"{fc.n_fft}-point FFT" in err
    assert not (tmp_path / "idx").exists()
    code, _, err = cli(monkeypatch, capsys, *common, "--hop", f"{0.4 / fc.sample_rate:.8f}")
    assert code == 2 and "Invalid value for '--hop'" in err and "under one sample" in err
    code, _, err = cli(monkeypatch, capsys, *common, "--window", f"{low * 1.01:.6f}",
                       "--hop", "0.5")
    assert code == 0, err


def test_build_index_checks_its_inputs_before_the_model(tmp_path, monkeypatch, capsys,
                                                        no_model):
    code, _, err = cli(monkeypatch, capsys, "build-index", tmp_path / "missing",
                       "--index", tmp_path / "idx")
    assert code == 1 and err.startswith("error: ") and "no such file or folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli(monkeypatch, capsys, "build-index", tmp_path / "empty",
                       "--index", tmp_path / "idx")
    assert code == 1 and err.startswith("error: no audio files found")


def test_the_library_refuses_a_zero_window_instead_of_using_the_model_s(tmp_path):
    from fake_embedder import FakeEmbedder

    from sonicsearch.embed.types import with_windows
    from sonicsearch.errors import ConfigError

    fake = FakeEmbedder(tmp_path / "model.pt")
    for window, hop in ((0, None), (None, 0), (float("nan"), None), (None, -1.0)):
        with pytest.raises(ConfigError):
            with_windows(fake, window, hop)
    assert with_windows(fake, None, None) is fake


@pytest.mark.parametrize("value", ["nan", "inf", "1e309", "-inf"])
def test_query_min_score_must_be_finite(tmp_path, monkeypatch, capsys, value):
    from sonicsearch.index import AudioIndex

    def refuse(*a, **kw):
        raise AssertionError("the index was opened before --min-score was checked")

    monkeypatch.setattr(AudioIndex, "open", classmethod(refuse))
    (tmp_path / "clip.wav").write_bytes(b"")
    code, out, err = cli(monkeypatch, capsys, "query", tmp_path / "clip.wav",
                         f"--min-score={value}")
    assert code == 2 and "Invalid value for '--min-score'" in err and "finite" in err
    assert out == "" and "Traceback" not in err
