"""`sonicsearch similar`, `path` and `map` through ``main()``: answers from indexed files
(nothing uploaded), their JSON equal to the library's, and one-line errors (exit 1) or
usage errors (exit 2) for bad input."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
from cli_run import cli
from fake_embedder import SR, FakeEmbedder, make_corpus, sound

from sonicsearch.index import AudioIndex, build_index


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-browse")
    files = make_corpus(root / "audio", 6, seconds=6.0)
    copy = root / "audio" / "copies" / "s002-quiet.wav"
    copy.parent.mkdir(parents=True)
    sf.write(str(copy), 0.5 * sound(2, 6.0), SR)  # the same recording, 6 dB down
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx")
    return root, files, copy


def test_similar_finds_the_same_recording_elsewhere_and_more_like_it(indexed, monkeypatch,
                                                                     capsys):
    from sonicsearch.index import api

    root, files, copy = indexed
    # a recording result's confidence is fitted on excerpts the index's model embeds
    monkeypatch.setattr(api, "load_embedder",
                        lambda path, device="auto", features=None, **kw: FakeEmbedder(path))
    code, out, err = cli(monkeypatch, capsys, "similar", files[2], "--index", root / "idx",
                         "--mode", "recording", "--k", "3", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["mode"] == "recording" and res["query"] == str(files[2].resolve())
    assert res["results"][0]["path"] == str(copy.resolve())  # its copy, first
    assert str(files[2].resolve()) not in [r["path"] for r in res["results"]]
    with AudioIndex.open(root / "idx") as idx:
        want = idx.similar(idx.store.by_path[str(files[2].resolve())], k=3, mode="recording")
    assert res == want.to_dict()
    code, out, err = cli(monkeypatch, capsys, "similar", files[2], "--index", root / "idx")
    assert code == 0, err
    assert out.splitlines()[0].startswith(str(files[2].resolve()))
    assert len([ln for ln in out.splitlines() if ln.strip()[:1].isdigit()]) == 6  # style


def test_similar_refuses_a_file_that_is_not_indexed(indexed, monkeypatch, capsys, tmp_path):
    root, files, _ = indexed
    code, out, err = cli(monkeypatch, capsys, "similar", tmp_path / "new.wav", "--index",
                         root / "idx")
    assert code == 1 and err.count("\n") == 1 and "is not in index" in err
    assert "sonicsearch query" in err
    code, _, err = cli(monkeypatch, capsys, "similar", files[0], "--index", root / "idx",
                       "--min-score", "auto")
    assert code == 2 and "--min-score" in err


def test_path_prints_a_playlist_and_its_json(indexed, monkeypatch, capsys):
    root, files, _ = indexed
    code, out, err = cli(monkeypatch, capsys, "path", files[0], files[4], "--n", "4",
                         "--index", root / "idx", "--json")
    assert code == 0, err
    res = json.loads(out)
    with AudioIndex.open(root / "idx") as idx:
        assert res == idx.path_between(files[0], files[4], 4).to_dict()
    assert [f["path"] for f in res["files"]][::3] == [str(files[0].resolve()),
                                                       str(files[4].resolve())]
    code, out, err = cli(monkeypatch, capsys, "path", files[0], files[4], "--n", "4",
                         "--index", root / "idx")
    assert code == 0 and len(out.splitlines()) == 6 and "worst step" in out


@pytest.mark.parametrize("args, message", [
    (("same", "same", "--n", "3"), "two different files"),
    (("a", "b", "--n", "1"), "at least its 2"),
    (("a", "b", "--n", "99"), "needs 99 indexed files; the index holds 7"),
    (("missing", "b", "--n", "3"), "is not in index"),
])
def test_bad_paths_are_one_line_errors(indexed, monkeypatch, capsys, args, message):
    root, files, _ = indexed
    names = {"a": files[0], "b": files[1], "same": files[3], "missing": root / "no.wav"}
    argv = [names.get(a, a) for a in args]
    code, out, err = cli(monkeypatch, capsys, "path", *argv, "--index", root / "idx")
    assert code == 1 and not out and err.count("\n") == 1 and message in err, err


def test_map_places_every_file(indexed, monkeypatch, capsys):
    root, files, copy = indexed
    code, out, err = cli(monkeypatch, capsys, "map", "--index", root / "idx", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["files"] == 7 and len(res["points"]) == 7
    assert {p["path"] for p in res["points"]} == {str(f.resolve()) for f in [*files, copy]}
    code, out, err = cli(monkeypatch, capsys, "map", "--index", root / "idx")
    assert code == 0 and len(out.splitlines()) == 9 and "style variance" in out
    code, _, err = cli(monkeypatch, capsys, "map", "--index", root / "nowhere")
    assert code == 1 and "no index at" in err
