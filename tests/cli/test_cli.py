"""The real entry point (``main()``), run as a user runs it: exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_run import cli


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sonicsearch", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (("bogus",), "No such command 'bogus'"),
    (("query", "--k", "0", "clip.wav"), "Invalid value for '--k'"),
    (("info", "--json", "--nonsense"), "No such option"),
])
def test_usage_errors_exit_2_without_a_traceback(args, message):
    proc = run(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_user_errors_are_one_line_and_exit_1(tmp_path):
    proc = run("info", "--index", str(tmp_path / "missing"))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


def test_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("sonicsearch ")


# -- build-index / query / info, in process with the torch-free fake model ----------------

@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    from fake_embedder import FakeEmbedder

    from sonicsearch.index import api

    model = tmp_path / "model.pt"
    FakeEmbedder(model)
    monkeypatch.setattr(api, "load_embedder",
                        lambda path, device="auto", features=None, **kw: FakeEmbedder(path))
    return model


@pytest.fixture
def indexed(tmp_path, monkeypatch, capsys, fake_model):
    from fake_embedder import make_corpus

    files = make_corpus(tmp_path / "audio", 5)
    code, _, err = cli(monkeypatch, capsys, "build-index", tmp_path / "audio", "--model",
                       fake_model, "--index", tmp_path / "idx")
    assert code == 0, err
    return tmp_path, files


def test_build_index_prints_the_report_summary(indexed, monkeypatch, capsys):
    root, _ = indexed
    code, out, err = cli(monkeypatch, capsys, "build-index", root / "audio", "--index",
                         root / "idx")  # the index's own model
    assert code == 0 and out == ""
    assert "up to date (5 unchanged); index has 5 files, 35 vectors (flat:" in err


def test_build_index_config_reaches_the_index(tmp_path, monkeypatch, capsys, fake_model):
    from fake_embedder import make_corpus

    from sonicsearch.index import AudioIndex

    make_corpus(tmp_path / "audio", 4)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("index:\n  index_type: hnsw\n  hnsw_m: 12\n  hnsw_ef_search: 20\n")
    code, _, err = cli(monkeypatch, capsys, "build-index", tmp_path / "audio", "--model",
                       fake_model, "--index", tmp_path / "idx", "--config", cfg)
    assert code == 0, err
    with AudioIndex.open(tmp_path / "idx") as index:
        assert index.meta["index_type"] == "hnsw"
        assert index.meta["index_params"]["M"] == 12 and index.index.index.hnsw.efSearch == 20
    seen = []
    real_open = AudioIndex.open.__func__

    def spy(cls, *a, **kw):
        seen.append(kw)
        return real_open(cls, *a, **kw)

    monkeypatch.setattr(AudioIndex, "open", classmethod(spy))
    cfg.write_text("index:\n  hnsw_ef_search: 9\n")
    code, _, err = cli(monkeypatch, capsys, "query", tmp_path / "audio", "--index",
                       tmp_path / "idx", "--config", cfg, "--json")
    assert code == 0, err
    assert seen[-1]["ef_search"] == 9 and seen[-1]["nprobe"] is None  # only what it sets


@pytest.mark.parametrize("text,device", [
    ("runtime:\n  device: cpu\n", "cpu"),
    ("train:\n  device: cpu\n", "cpu"),  # the older spelling of runtime.device
    ("runtime:\n  device: cuda\nindex:\n  device: cpu\n", "cpu"),  # index: wins
    ("index:\n  batch_size: 8\n", "auto"),
])
def test_build_index_and_query_take_the_runtime_device(tmp_path, monkeypatch, capsys,
                                                      fake_model, text, device):
    from fake_embedder import FakeEmbedder, make_corpus

    from sonicsearch.index import AudioIndex, api

    make_corpus(tmp_path / "audio", 3)
    seen: list[str] = []

    def load(path, device="auto", features=None, **kw):
        seen.append(device)
        return FakeEmbedder(path)

    monkeypatch.setattr(api, "load_embedder", load)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    code, _, err = cli(monkeypatch, capsys, "build-index", tmp_path / "audio", "--model",
                       fake_model, "--index", tmp_path / "idx", "--config", cfg)
    assert code == 0, err
    assert seen == [device]  # loaded once: the build and its confidence measurement
    opened = []
    real_open = AudioIndex.open.__func__
    monkeypatch.setattr(AudioIndex, "open", classmethod(
        lambda cls, *a, **kw: opened.append(kw["device"]) or real_open(cls, *a, **{
            **kw, "device": "cpu"})))
    code, _, err = cli(monkeypatch, capsys, "query", tmp_path / "audio", "--index",
                       tmp_path / "idx", "--config", cfg, "--json")
    assert code == 0, err
    assert opened == [device]


def test_query_on_a_folder_without_audio_is_one_error(indexed, monkeypatch, capsys):
    root, _ = indexed
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no audio")
    code, out, err = cli(monkeypatch, capsys, "query", root / "empty", "--index", root / "idx")
    assert code == 1 and out == ""
    assert err.startswith("error: no audio files found") and err.count("\n") == 1


def test_a_bad_query_clip_is_reported_once(indexed, monkeypatch, capsys):
    root, _ = indexed
    bad = root / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    code, out, err = cli(monkeypatch, capsys, "query", bad, "--index", root / "idx")
    assert code == 1 and out == ""
    assert err.count("bad.wav") == 1 and err.startswith("error: ") and "Traceback" not in err


def test_query_table_names_predictions_and_spans(indexed, monkeypatch, capsys):
    root, files = indexed
    code, out, _ = cli(monkeypatch, capsys, "query", files[2], "--index", root / "idx",
                       "--k", "2")
    assert code == 0
    head, columns, first = out.splitlines()[:3]
    assert ", predicted: " in head
    assert columns.split() == ["rank", "score", "sure", "match", "predicted", "path"]
    assert first.split()[2].endswith("%")  # the match confidence, as the page shows it
    assert first.split()[3] == "0:00.0-0:04.0" and first.endswith(str(files[2].resolve()))
    code, out, _ = cli(monkeypatch, capsys, "query", files[2], "--index", root / "idx",
                       "--k", "2", "--segments")
    columns, first = out.splitlines()[1:3]
    assert columns.split() == ["rank", "score", "match", "query", "predicted", "path"]
    match, span = first.split()[2:4]  # segments are spans: no file confidence
    assert match == span  # the query file itself: each window matches its own span


def test_build_index_measures_the_confidence_so_queries_need_not(indexed, monkeypatch, capsys):
    import json

    root, files = indexed  # built by the CLI: measured at the end of the build
    cal = json.loads((root / "idx" / "gen-000001" / "calibration.json").read_text())
    assert "vote" in cal["confidence"]["fits"] and "thresholds" in cal
    code, out, err = cli(monkeypatch, capsys, "query", files[1], "--index", root / "idx",
                         "--k", "2", "--json")
    assert code == 0 and "measured once" not in err
    assert json.loads(out)["results"][0]["confidence"] is not None
    code, _, err = cli(monkeypatch, capsys, "build-index", root / "audio", "--index",
                       root / "idx")  # unchanged and measured: nothing to measure
    assert code == 0 and "match confidence" not in err


def test_the_first_recording_query_says_it_measures_the_confidence_once(tmp_path, monkeypatch,
                                                                        capsys, fake_model):
    from fake_embedder import make_corpus

    files = make_corpus(tmp_path / "audio", 5)
    code, _, err = cli(monkeypatch, capsys, "build-index", tmp_path / "audio", "--model",
                       fake_model, "--index", tmp_path / "idx", "--no-calibrate")
    assert code == 0 and "match confidence" not in err
    args = ("query", files[1], "--index", tmp_path / "idx", "--k", "2")
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 0 and "match confidence is measured once, now" in err
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 0 and "measured once" not in err  # kept in calibration.json
    code, _, err = cli(monkeypatch, capsys, *args[:-2], "--mode", "style")
    assert code == 0 and "measured once" not in err  # style results get no confidence


def test_non_utf8_names_print_in_tables_and_round_trip_in_json(tmp_path, monkeypatch, capsys,
                                                               fake_model):
    import json
    import os

    from fake_embedder import make_corpus, write_sound

    make_corpus(tmp_path / "audio", 3)
    odd = tmp_path / "audio" / os.fsdecode(b"caf\xe9.wav")
    write_sound(tmp_path / "x.wav", 50).rename(odd)
    code, _, err = cli(monkeypatch, capsys, "build-index", tmp_path / "audio", "--model",
                       fake_model, "--index", tmp_path / "idx")
    assert code == 0 and "4 added" in err, err
    code, out, err = cli(monkeypatch, capsys, "query", odd, "--index", tmp_path / "idx",
                         "--json", "--k", "1")
    assert code == 0, err
    assert json.loads(out)["results"][0]["path"] == str(odd)  # lossless
    code, out, err = cli(monkeypatch, capsys, "query", odd, "--index", tmp_path / "idx")
    assert code == 0 and "caf\ufffd.wav" in out


def test_query_mode_style_answers_in_json_and_refuses_recording_options(indexed, monkeypatch,
                                                                       capsys):
    root, files = indexed
    code, out, err = cli(monkeypatch, capsys, "query", files[3], "--index", root / "idx",
                         "--mode", "style", "--json", "-k", "3")
    assert code == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["mode"] == "style" and res["results"][0]["path"] == str(files[3].resolve())
    code, out, _ = cli(monkeypatch, capsys, "query", files[3], "--index", root / "idx",
                       "--mode", "style", "--segments", "-k", "2")
    assert code == 0 and out.splitlines()[1].split() == ["rank", "score", "match",
                                                         "predicted", "path"]
    for extra in (("--rollup", "max"), ("--min-score", "auto"), ("--mode", "genre")):
        args = ("--mode", "style", *extra) if extra[0] != "--mode" else extra
        code, _, err = cli(monkeypatch, capsys, "query", files[3], "--index", root / "idx",
                           *args)
        assert code == 2 and extra[0] in err, err


def test_info_check_reports_a_damaged_index_in_one_line(indexed, monkeypatch, capsys):
    root, files = indexed
    code, out, _ = cli(monkeypatch, capsys, "info", "--check", "--index", root / "idx")
    assert code == 0 and "check       ok" in out
    gen = root / "idx" / (root / "idx" / "CURRENT").read_text().strip()
    data = bytearray((gen / "meta.sqlite").read_bytes())
    mid = len(data) // 2
    data[mid : mid + 512] = bytes(b ^ 0xFF for b in data[mid : mid + 512])
    (gen / "meta.sqlite").write_bytes(bytes(data))
    code, out, err = cli(monkeypatch, capsys, "info", "--check", "--index", root / "idx")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "meta.sqlite" in err and "--rebuild" in err
    for args in (("query", files[0]), ("build-index", root / "audio")):
        code, _, err = cli(monkeypatch, capsys, *args, "--index", root / "idx")
        assert "Traceback" not in err
        if code:  # after at most a status line: one error line naming the file
            last = err.splitlines()[-1]
            assert err.count("error: ") == 1 and last.startswith("error: ")
            assert "meta.sqlite" in last and "--rebuild" in last
    code, _, err = cli(monkeypatch, capsys, "build-index", root / "audio", "--index",
                       root / "idx", "--rebuild")
    assert code == 0, err
