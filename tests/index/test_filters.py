"""Filters (label, path prefix, duration, per folder) applied before the top-k cut, the
calibrated no-match threshold, and the CLI options."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from fake_embedder import SR, FakeEmbedder, make_corpus, sound, write_sound

from sonicsearch.errors import ConfigError
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index import calibration as F
from sonicsearch.index.filters import Filters, parse_min_score, resolve_prefix, under


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("filters")
    files = make_corpus(root / "audio", 12, seconds=6.0)
    files.append(write_sound(root / "audio" / "long" / "s100.wav", 100, seconds=12.0))
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx")
    index = AudioIndex.open(root / "idx", embedder=emb)
    yield root, files, emb, index
    index.close()


def test_filters_pass_k_results_from_deep_in_the_ranking(built):
    root, files, _, index = built
    everything = index.query(files[3], k=13)
    part0 = str((root / "audio" / "part0").resolve())
    res = index.query(files[3], k=5, filters=Filters(path_prefix=part0))
    # files[3] and the best part1 files are skipped: the search went deeper
    want = [r["path"] for r in everything if r["path"].startswith(part0 + "/")][:5]
    assert [r["path"] for r in res] == want and [r["rank"] for r in res] == [1, 2, 3, 4, 5]
    assert res.extra == {"min_score": None, "no_match": False, "reason": None}
    label = everything[-1]["label"]
    res = index.query(files[3], k=3, filters=Filters(labels=(label,)))
    assert res and all(r["label"] == label for r in res)
    assert [r["path"] for r in res] == [r["path"] for r in everything
                                         if r["label"] == label][:3]


def test_duration_and_per_folder(built):
    _, files, _, index = built
    res = index.query(files[3], k=5, filters=Filters(min_duration=10))
    assert [r["path"] for r in res] == [str(files[-1].resolve())]  # the only long file
    res = index.query(files[3], k=20, filters=Filters(max_duration=6.5))
    assert len(res) == 12
    res = index.query(files[3], k=10, filters=Filters(max_per_folder=1))
    folders = [os.path.dirname(r["path"]) for r in res]
    assert len(res) == 3 and len(set(folders)) == 3  # part0, part1, long


def test_segments_are_filtered_too(built):
    root, files, _, index = built
    part1 = str((root / "audio" / "part1").resolve())
    res = index.query(files[4], k=6, segments=True, filters=Filters(path_prefix=part1))
    assert len(res) == 6 and all(r["path"].startswith(part1) for r in res)


def test_nothing_passes(built):
    _, files, _, index = built
    res = index.query(files[3], filters=Filters(labels=("nope",)))
    assert res == [] and res.no_match
    assert res.to_dict()["reason"] == "no indexed file passes the filters"


def test_filter_validation():
    with pytest.raises(ConfigError, match="swap"):
        Filters(min_duration=3, max_duration=1)
    with pytest.raises(ConfigError, match="at least 1"):
        Filters(max_per_folder=0)
    with pytest.raises(ConfigError, match="absolute"):
        Filters(path_prefix="relative/dir")
    assert not Filters().active and Filters(labels=("a",)).active
    assert parse_min_score("AUTO") == "auto" and parse_min_score("0.5") == 0.5
    assert parse_min_score(None) is None and parse_min_score("off") is None
    with pytest.raises(ConfigError, match="'auto'"):
        parse_min_score("high")
    assert under("/a/b/c.wav", "/a/b") and not under("/a/bc/d.wav", "/a/b")
    assert resolve_prefix("x", "/base") == "/base/x"


def test_auto_threshold_rejects_strangers_and_keeps_excerpts(built):
    root, files, _, index = built
    cal = F.calibration(index)
    assert cal["samples"] == F.CALIBRATION_SAMPLES
    assert set(cal["thresholds"]) == {"vote", "max", "mean-top"}
    # stored beside index.json, computed once per generation
    saved = json.loads((index.gen / F.CALIBRATION).read_text())
    assert saved["variant_samples"] == 0 and saved["variant_files"] == 0  # all distinct
    assert saved["thresholds"] == cal["thresholds"] and saved["generation"] == index.gen.name
    rejected = 0
    for seed in range(500, 520):  # clips of sounds that are not in the collection
        res = index.query(sound(seed, 5.0), sample_rate=SR, min_score="auto")
        rejected += res.no_match
        if res.no_match:
            assert "no result has a confidence of 0.7" in res.extra["reason"]
    assert rejected >= 18  # target: 1 % false accepts
    for seed in (1, 6, 9):  # excerpts of indexed files still match, first
        clip = sound(seed, 6.0)[int(1.5 * SR) : int(5.0 * SR)]
        res = index.query(clip, sample_rate=SR, min_score="auto", k=3)
        assert not res.no_match and res[0]["path"] == str(files[seed].resolve())
        assert res.extra["min_score"] is None  # the confidence decides, not a score
        assert all(r["confidence"] >= res.extra["min_confidence"] for r in res)


def test_a_calibration_of_an_older_version_is_measured_again(built):
    _, _, _, index = built
    cal = F.calibration(index)
    path = index.gen / F.CALIBRATION
    old = dict(cal, version=1, thresholds={"vote": 0.99, "max": 0.99, "mean-top": 0.99})
    path.write_text(json.dumps(old))
    F._cache.pop(index, None)  # as a new process would read it
    again = F.calibration(index)
    assert again["version"] == F.CALIBRATION_VERSION == 5
    assert again["thresholds"] == cal["thresholds"]  # measured, not the stale 0.99
    assert json.loads(path.read_text())["version"] == F.CALIBRATION_VERSION


def test_calibration_needs_a_few_files(tmp_path):
    write_sound(tmp_path / "a" / "one.wav", 1)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "a"], emb, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as idx:
        res = idx.query(sound(7, 3.0), sample_rate=SR, min_score="auto")
        assert len(res) == 1 and res.extra["min_score"] is None  # no threshold: listed
        assert "at least 3" in F.calibration(idx)["reason"]


def test_variants_of_a_sound_do_not_collapse_the_threshold(tmp_path):
    """Re-encodes and -long / -short cuts hold the sampled audio: they are variants, not
    no-match scores, so the threshold stays below what excerpts of indexed files score."""
    import soundfile as sf

    files = make_corpus(tmp_path / "audio", 8, seconds=6.0)
    var = tmp_path / "audio" / "variants"
    var.mkdir()
    for seed in range(4):
        wave = sound(seed, 6.0)
        sf.write(var / f"s{seed}-reenc.flac", wave, SR)  # another encoding (16-bit)
        sf.write(var / f"s{seed}-short.wav", wave[: int(3.5 * SR)], SR)
        sf.write(var / f"s{seed}-long.wav", np.concatenate([wave, sound(100 + seed)]), SR)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    rng = np.random.default_rng(0)
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        cal = F.calibration(index)
        assert cal["variant_files"] >= 12 and cal["variant_samples"] > 0
        assert cal["thresholds"]["vote"] < 0.95
        for seed in (1, 6):  # a clean and a 10 dB-noisy excerpt of an indexed file match
            clip = sound(seed, 6.0)[int(1.3 * SR) : int(4.6 * SR)]
            noise = rng.standard_normal(len(clip)).astype(np.float32)
            noise *= np.sqrt(np.mean(clip**2) / 10 / np.mean(noise**2))
            for query in (clip, clip + noise):
                res = index.query(query, sample_rate=SR, min_score="auto", k=1)
                assert not res.no_match, res.extra
                assert res[0]["path"].split("/")[-1].startswith(files[seed].stem)
        rejected = sum(index.query(sound(seed, 5.0), sample_rate=SR,
                                   min_score="auto").no_match for seed in range(500, 520))
        assert rejected >= 17  # clips not in the collection stay rejected


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e309", "NaN", float("nan"),
                                   float("inf"), -float("inf")])
def test_min_score_refuses_non_finite_values(value):
    """nan used to drop the threshold silently, inf to answer 'below inf' with null JSON."""
    with pytest.raises(ConfigError, match="finite"):
        parse_min_score(value)
    assert parse_min_score(-0.25) == -0.25 and parse_min_score("1e3") == 1000.0
