"""Duplicates from the stored window vectors: made copies (trimmed by a fraction of a hop,
+6 dB, resampled, faded, noisy, mp3 and ogg re-encodes, a track inside a longer mix, two
files that share a part) are grouped with their spans; distinct files and the tracks of an
"album" made of one palette of chords (windows identical one by one, never in order) are
not; bad arguments and tiny indexes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from audio_files import write_audio
from fake_embedder import SR, FakeEmbedder, sound

from sonicsearch.errors import ConfigError
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index.duplicates import MIN_SCORE

SECONDS = 20.0
TRIM = 3.3  # seconds cut from the start: not a multiple of the 0.5 s hop
MIX_AT = 30.0  # where orig5 starts inside mix5
SHARED = 12.0  # seconds partA and partB share


def album_track(seed: int, palette: np.ndarray) -> np.ndarray:
    """40 half-second chords drawn from one palette: every window of it has exact twins in
    the other tracks, but not in the same order."""
    t = np.arange(int(0.5 * SR)) / SR
    picks = np.random.default_rng(seed).integers(0, len(palette), 40)
    return np.concatenate([0.3 * np.sin(2 * np.pi * palette[c, 0] * t)
                           + 0.2 * np.sin(2 * np.pi * palette[c, 1] * t)
                           for c in picks]).astype(np.float32)


def make_collection(folder):
    folder.mkdir(parents=True)
    orig = {i: sound(i, SECONDS) for i in range(10)}
    for i, x in orig.items():
        sf.write(folder / f"orig{i}.wav", x, SR)
    sf.write(folder / "trim1.wav", orig[1][int(TRIM * SR):], SR)
    sf.write(folder / "gain2.wav", orig[2] * 2.0, SR)  # +6 dB
    t = np.arange(int(SECONDS * 16000)) / 16000
    sf.write(folder / "resampled3.wav",
             np.interp(t, np.arange(len(orig[3])) / SR, orig[3]).astype(np.float32), 16000)
    fade = np.ones(len(orig[4]), np.float32)
    fade[: 3 * SR], fade[-3 * SR:] = np.linspace(0, 1, 3 * SR), np.linspace(1, 0, 3 * SR)
    sf.write(folder / "faded4.wav", orig[4] * fade, SR)
    sf.write(folder / "mix5.wav", np.concatenate([sound(700, MIX_AT), orig[5],
                                                  sound(701, 30.0)]), SR)
    write_audio(folder / "enc6.mp3", orig[6], SR)
    write_audio(folder / "enc6.ogg", orig[6], SR)
    rng = np.random.default_rng(0)
    sf.write(folder / "noisy7.wav",
             (orig[7] + 0.02 * rng.standard_normal(len(orig[7]))).astype(np.float32), SR)
    part = sound(800, SHARED)
    sf.write(folder / "partA.wav", np.concatenate([part, sound(801, 8.0)]), SR)
    sf.write(folder / "partB.wav", np.concatenate([sound(802, 8.0), part]), SR)
    palette = rng.uniform(100, 3800, size=(6, 2))
    for k in range(4):
        sf.write(folder / f"album{k}.wav", album_track(50 + k, palette), SR)


EXPECTED = [{"gain2.wav", "orig2.wav"}, {"faded4.wav", "orig4.wav"},
            {"mix5.wav", "orig5.wav"}, {"enc6.mp3", "enc6.ogg", "orig6.wav"},
            {"orig3.wav", "resampled3.wav"}, {"noisy7.wav", "orig7.wav"},
            {"orig1.wav", "trim1.wav"}, {"partA.wav", "partB.wav"}]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("duplicates")
    make_collection(root / "audio")
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx")
    with AudioIndex.open(root / "idx", embedder=emb) as idx:
        yield idx


def names(group: dict) -> set[str]:
    return {f["path"].rsplit("/", 1)[1] for f in group["files"]}


def test_copies_are_grouped_and_nothing_else(index):
    found = index.duplicates().to_dict()
    groups = [names(g) for g in found["groups"]]
    assert sorted(map(sorted, groups)) == sorted(map(sorted, EXPECTED))
    assert found["files"] == 24 and found["min_overlap"] == 10.0
    assert found["min_score"] == MIN_SCORE
    confidences = [g["confidence"] for g in found["groups"]]
    assert confidences == sorted(confidences, reverse=True)
    for g in found["groups"]:
        assert MIN_SCORE <= g["confidence"] <= 1.0
        # its weakest joining match: a 2-file group's one match, else one of its matches
        scores = sorted(m["confidence"] for m in g["matches"])
        assert g["confidence"] in scores and len(g["matches"]) >= len(g["files"]) - 1
        assert g["confidence"] == scores[0] or len(g["files"]) > 2
        for m in g["matches"]:
            assert m["a"] < m["b"] and m["overlap"] == pytest.approx(m["a_end"] - m["a_start"])
    json.dumps(found)


def match_of(index, a: str, b: str) -> dict:
    (group,) = [g for g in index.duplicates().to_dict()["groups"] if {a, b} <= names(g)]
    (m,) = [m for m in group["matches"] if {m["a"].rsplit("/", 1)[1],
                                            m["b"].rsplit("/", 1)[1]} == {a, b}]
    return m


def test_spans_say_where_the_copies_meet(index):
    m = match_of(index, "mix5.wav", "orig5.wav")  # orig5 lies at 30..50 s of mix5
    assert (m["a_start"], m["a_end"], m["b_start"], m["b_end"]) == (MIX_AT, MIX_AT + SECONDS,
                                                                   0.0, SECONDS)
    assert m["offset"] == -MIX_AT and m["confidence"] == pytest.approx(1.0, abs=1e-3)
    m = match_of(index, "orig1.wav", "trim1.wav")  # trim1 starts 3.3 s into orig1
    assert abs(m["a_start"] - TRIM) <= 0.5 and m["b_start"] == 0.0
    assert abs(m["offset"] + TRIM) <= 0.5 and m["a_end"] == SECONDS
    m = match_of(index, "partA.wav", "partB.wav")  # A's 0..12 s is B's 8..20 s
    assert abs(m["a_start"]) <= 0.5 and abs(m["a_end"] - SHARED) <= 1.0
    assert abs(m["b_start"] - 8.0) <= 0.5 and abs(m["b_end"] - 20.0) <= 1.0
    m = match_of(index, "gain2.wav", "orig2.wav")
    assert (m["a_start"], m["a_end"], m["offset"]) == (0.0, SECONDS, 0.0)


def test_min_overlap_and_min_score(index):
    # 12 s shared of two 20 s files: in at 10 s, out at 15 s (and not 80 % of either)
    groups = [names(g) for g in index.duplicates(min_overlap=15.0).to_dict()["groups"]]
    assert {"partA.wav", "partB.wav"} not in groups
    assert {"mix5.wav", "orig5.wav"} in groups  # all of orig5 (20 s) is in the mix
    strict = [names(g) for g in index.duplicates(min_score=0.99).to_dict()["groups"]]
    assert {"mix5.wav", "orig5.wav"} in strict and {"orig1.wav", "trim1.wav"} not in strict
    assert index.duplicates(min_overlap=0.0).to_dict()["groups"]


@pytest.mark.parametrize("kwargs,match", [
    ({"min_overlap": -1.0}, "min_overlap must be a finite number at least 0"),
    ({"min_overlap": float("nan")}, "min_overlap"),
    ({"min_overlap": float("inf")}, "min_overlap"),
    ({"min_score": 1.5}, "min_score must be .* at most 1"),
    ({"stride_seconds": 0.0}, "stride_seconds must be a finite number more than 0"),
])
def test_bad_arguments_are_config_errors(index, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        index.duplicates(**kwargs)


def test_an_index_of_one_file_or_of_distinct_files_has_no_groups(tmp_path):
    emb = FakeEmbedder(tmp_path / "model.pt")
    (tmp_path / "one").mkdir()
    sf.write(tmp_path / "one" / "a.wav", sound(1, 12.0), SR)
    build_index([tmp_path / "one"], emb, tmp_path / "idx1")
    with AudioIndex.open(tmp_path / "idx1", embedder=emb) as idx:
        found = idx.duplicates().to_dict()
        assert (found["files"], found["groups"]) == (1, [])
    for i in range(2, 6):
        sf.write(tmp_path / "one" / f"s{i}.wav", sound(i, 12.0), SR)
    build_index([tmp_path / "one"], emb, tmp_path / "idx1")
    with AudioIndex.open(tmp_path / "idx1", embedder=emb) as idx:
        assert idx.duplicates().to_dict()["groups"] == []


def test_stride_one_finds_the_same_groups(index):
    every = index.duplicates(stride_seconds=0.5).to_dict()
    default = index.duplicates().to_dict()
    assert [names(g) for g in every["groups"]] == [names(g) for g in default["groups"]]


def test_the_coarse_search_of_a_large_index_finds_the_same_groups(index, monkeypatch):
    # above EXACT_ROWS windows step 1 searches an inverted file made for the run
    from sonicsearch.index import duplicates

    exact = [names(g) for g in index.duplicates().to_dict()["groups"]]
    monkeypatch.setattr(duplicates, "EXACT_ROWS", 0)
    coarse = [names(g) for g in index.duplicates().to_dict()["groups"]]
    assert sorted(map(sorted, coarse)) == sorted(map(sorted, exact))
