"""The calibrated confidence of recording results: fitted on the index itself, stored in
calibration.json, used by min_score="auto"; no collapse on a 3-file collection or on
one with near-identical variants (a re-encode, -long / -short cuts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound

from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index import calibration as F
from sonicsearch.index import confidence as C
from sonicsearch.index.confidence_fit import _logistic


def _noisy(clip: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(clip)).astype(np.float32)
    noise *= np.sqrt(np.mean(clip**2) / 10 ** (snr_db / 10) / np.mean(noise**2))
    return clip + noise


def _excerpt(seed: int, a: float = 1.3, b: float = 4.6) -> np.ndarray:
    return sound(seed, 6.0)[int(a * SR) : int(b * SR)]


def test_three_files_do_not_collapse(tmp_path):
    files = make_corpus(tmp_path / "audio", 3, seconds=6.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        assert C.ACCEPT_CONFIDENCE == 0.7
        res = index.query(_excerpt(0), sample_rate=SR, k=1)  # fits vote's model only
        cal = json.loads((index.gen / F.CALIBRATION).read_text())
        assert "thresholds" not in cal and list(cal["confidence"]["fits"]) == ["vote"]
        fit = cal["confidence"]["fits"]["vote"]
        assert fit["model"] and fit["positives"] >= C.DEPTH and fit["negatives"] >= C.DEPTH
        assert fit["stored"] == 0  # the files were read and degraded
        assert set(F.calibration(index)["thresholds"]) == {"vote", "max", "mean-top"}
        for seed in range(3):  # clean and noisy excerpts of each file are accepted, first
            for clip in (_excerpt(seed), _noisy(_excerpt(seed), 10.0, seed)):
                res = index.query(clip, sample_rate=SR, min_score="auto", k=3)
                assert not res.no_match, res.extra
                assert res[0]["path"] == str(files[seed].resolve())
                assert res[0]["confidence"] >= C.ACCEPT_CONFIDENCE
        strangers = [index.query(sound(s, 5.0), sample_rate=SR, min_score="auto")
                     for s in range(500, 520)]
        assert sum(r.no_match for r in strangers) >= 18
        assert all("confidence of 0.7" in r.extra["reason"] for r in strangers if r.no_match)


def test_variants_keep_their_confidence(tmp_path):
    """A re-encode and -long / -short cuts score as well as the original: the margin is
    measured to the next file that is not the same audio, so none of them collapses."""
    files = make_corpus(tmp_path / "audio", 6, seconds=6.0)
    var = tmp_path / "audio" / "variants"
    var.mkdir()
    for seed in range(2):
        wave = sound(seed, 6.0)
        sf.write(var / f"s{seed}-reenc.flac", wave, SR)
        sf.write(var / f"s{seed}-short.wav", wave[: int(4.8 * SR)], SR)
        sf.write(var / f"s{seed}-long.wav", np.concatenate([wave, sound(100 + seed)]), SR)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        for seed in range(2):
            res = index.query(_excerpt(seed), sample_rate=SR, min_score="auto", k=10)
            assert not res.no_match, res.extra
            names = {r["path"].split("/")[-1] for r in res}
            assert {f"s{seed}-reenc.flac", f"s{seed}-long.wav",
                    files[seed].name} <= names, names
            assert all(n.startswith(f"s{seed}-") or n == files[seed].name for n in names)
            assert [r["rank"] for r in res] == list(range(1, len(res) + 1))
        strangers = sum(index.query(sound(s, 5.0), sample_rate=SR, min_score="auto").no_match
                        for s in range(500, 520))
        assert strangers >= 17


def test_every_recording_result_has_one_and_filters_do_not_change_it(tmp_path):
    make_corpus(tmp_path / "audio", 6, seconds=6.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        res = index.query(_excerpt(2), sample_rate=SR, k=6)
        conf = {r["path"]: r["confidence"] for r in res}
        assert all(0.0 <= c <= 1.0 for c in conf.values())
        assert res[0]["confidence"] > 0.9 > max(r["confidence"] for r in res[1:])
        one = index.query(_excerpt(2), sample_rate=SR, k=1)  # k does not change it
        assert one[0]["confidence"] == conf[one[0]["path"]]
        thresholded = index.query(_excerpt(2), sample_rate=SR, k=6, min_score=0.0)
        assert {r["path"]: r["confidence"] for r in thresholded} == conf
        segments = index.query(_excerpt(2), sample_rate=SR, k=3, segments=True)
        assert all("confidence" not in r for r in segments)  # files only


def test_an_older_calibration_gains_the_model_and_a_small_index_has_none(tmp_path):
    make_corpus(tmp_path / "audio", 4, seconds=6.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        cal = F.calibration(index)
        path = index.gen / F.CALIBRATION
        old = {k: v for k, v in cal.items() if k != "confidence"}
        assert "confidence" not in old and "thresholds" in old
        path.write_text(json.dumps(dict(old, version=3)))
        F._cache.pop(index, None)  # as a new process would read it
        res = index.query(_excerpt(1), sample_rate=SR, k=2)
        assert res[0]["confidence"] is not None
        assert json.loads(path.read_text())["confidence"]["fits"]["vote"]["model"]
    one = tmp_path / "one"
    make_corpus(one / "audio", 2, seconds=6.0)
    build_index([one / "audio"], emb, one / "idx")
    with AudioIndex.open(one / "idx", embedder=emb) as index:
        res = index.query(_excerpt(0), sample_rate=SR, min_score="auto")
        assert res and all(r["confidence"] is None for r in res)
        assert res.extra["min_score"] is None and not res.no_match  # listed, as before


def test_logistic_fit_separates_and_is_calibrated():
    rng = np.random.default_rng(0)
    pos = rng.normal([0.8, 0.5, 2.0], 0.1, (200, 3))
    neg = rng.normal([0.3, 0.05, 2.0], 0.1, (200, 3))
    model = _logistic(pos, neg)
    p_pos, p_neg = C.confidence(model, pos), C.confidence(model, neg)
    assert p_pos.mean() > 0.95 and p_neg.mean() < 0.05
    mid = C.confidence(model, np.array([[0.55, 0.275, 2.0]]))[0]
    assert mid == pytest.approx(0.5, abs=0.2)  # half-way between the classes
