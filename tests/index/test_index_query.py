"""Query: roll-ups find the source of an excerpt, spans, segments, exclusion, JSON shape,
determinism, and the model check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound

from sonicsearch.config import IndexConfig
from sonicsearch.errors import AudioError, ConfigError, IndexStoreError
from sonicsearch.index import ROLLUP_DEFAULT, ROLLUPS, AudioIndex, build_index, faiss_index
from sonicsearch.index import api as index_api

SECONDS = 6.0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("query")
    files = make_corpus(root / "audio", 12, seconds=SECONDS)
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx")
    index = AudioIndex.open(root / "idx", embedder=emb)
    yield root, files, emb, index
    index.close()


def excerpt(seed: int, start: float, end: float) -> np.ndarray:
    return sound(seed, SECONDS)[int(start * SR) : int(end * SR)]


@pytest.mark.parametrize("rollup", ROLLUPS)
@pytest.mark.parametrize("seed,start,end", [(3, 1.3, 4.1), (7, 0.0, 2.0), (10, 3.7, 6.0)])
def test_excerpt_finds_its_file_first(built, rollup, seed, start, end):
    root, files, _, index = built
    clip = root / f"clip-{seed}.wav"
    sf.write(str(clip), excerpt(seed, start, end), SR)
    res = index.query(clip, k=5, rollup=rollup)
    top = res[0]
    assert top["path"] == str(files[seed].resolve())
    assert top["score"] > res[1]["score"] + 0.1
    # the best-matching span lies in (or right around) the excerpt
    assert start - 1.0 <= top["start"] < top["end"] <= end + 1.0
    if rollup == "vote":  # the span of all windows that voted: most of the excerpt
        assert top["end"] - top["start"] >= 0.6 * (end - start)


def test_result_json_shape(built):
    _, files, emb, index = built
    hits = index.query(excerpt(2, 0.5, 3.0), k=4, sample_rate=SR)
    assert isinstance(hits, list) and hits.predicted_label in emb.labels  # docs/api.md: a list
    res = hits.to_dict()
    assert list(res) == ["query", "mode", "duration", "predicted_label", "results"]
    assert res["query"] == "<waveform>" and res["duration"] == 2.5
    assert res["mode"] == "recording"
    assert res["predicted_label"] == hits.predicted_label and res["results"] == hits
    assert [r["rank"] for r in res["results"]] == [1, 2, 3, 4]
    for r in res["results"]:
        assert list(r) == ["rank", "path", "score", "start", "end", "label", "confidence"]
        assert 0.0 <= r["confidence"] <= 1.0
        assert isinstance(r["score"], float) and r["label"] in emb.labels
    scores = [r["score"] for r in res["results"]]
    assert scores == sorted(scores, reverse=True)
    json.dumps(res)
    assert ROLLUP_DEFAULT in ROLLUPS


def test_same_query_same_answer(built):
    _, files, _, index = built
    for rollup in ROLLUPS:
        a = index.query(files[4], k=12, rollup=rollup)
        b = index.query(files[4], k=12, rollup=rollup)
        assert a.to_dict() == b.to_dict() and len(a) == 12


def test_exclude_self(built):
    _, files, _, index = built
    res = index.query(files[6], k=3)
    assert res[0]["path"] == str(files[6].resolve())
    assert res[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert (res[0]["start"], res[0]["end"]) == (0.0, SECONDS)
    res = index.query(files[6], k=3, exclude_self=True)
    assert str(files[6].resolve()) not in [r["path"] for r in res]
    assert len(res) == 3


def test_segments_list_windows(built):
    _, files, _, index = built
    hits = index.query(excerpt(5, 2.0, 3.0), k=6, sample_rate=SR, segments=True)
    assert len(hits) == 6 and hits[0]["path"] == str(files[5].resolve())
    assert (hits[0]["start"], hits[0]["end"]) == (2.0, 3.0)
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert hits[0]["query_start"] == 0.0 and hits[0]["query_end"] == 1.0
    assert len({(h["path"], h["start"]) for h in hits}) == 6  # each window once


def test_query_vectors_and_limits(built):
    _, files, emb, index = built
    vectors = emb.embed_file(files[1]).vectors
    res = index.query_vectors(vectors, k=50)  # spans assumed from the index's windowing
    assert res["predicted_label"] is None and res["query"] == "<vectors>"
    assert len(res["results"]) == 12 and res["results"][0]["path"] == str(files[1].resolve())
    with pytest.raises(ConfigError, match="choose one of: vote, max, mean-top"):
        index.query_vectors(vectors, rollup="median")
    with pytest.raises(ConfigError, match="k must be"):
        index.query_vectors(vectors, k=0)
    with pytest.raises(IndexStoreError, match="dimension 8"):
        index.query_vectors(np.ones((2, 8), np.float32))


def test_query_files_reports_bad_clips_in_order(built):
    root, files, _, index = built
    bad = root / "bad.wav"
    bad.write_bytes(b"")
    out = list(index.query_files([files[0], bad, files[9]], k=2, rollup="max"))
    assert [p.name for p, _ in out] == [files[0].name, "bad.wav", files[9].name]
    assert isinstance(out[1][1], AudioError)
    assert out[2][1]["results"][0]["path"] == str(files[9].resolve())
    with pytest.raises(AudioError):
        index.query(bad)


def test_other_model_is_refused(built):
    root, _, _, index = built
    with pytest.raises(IndexStoreError, match="was built with model .* this model is"):
        index.use_embedder(FakeEmbedder(root / "other.pt", seed=5))
    info = index.info()
    assert {"files", "vectors", "dim", "index_type", "model", "created"} <= set(info)
    assert info["files"] == 12 and info["vectors"] == 12 * 11 and info["dim"] == 32


def test_model_loads_lazily_from_the_index_copy(built, monkeypatch):
    root, files, emb, _ = built
    calls = []

    def fake_load(path, device="auto", features=None):
        calls.append((path, features["window_seconds"], features["hop_seconds"]))
        return FakeEmbedder(path)

    monkeypatch.setattr(index_api, "load_embedder", fake_load)
    with AudioIndex.open(root / "idx", device="cpu") as index:
        assert calls == []
        assert index.query(files[0], k=1)[0]["path"] == str(files[0].resolve())
        assert calls == [(index.model_path, 1.0, 0.5)]
        assert index.model_path.parent.parent == root / "idx"


def test_label_free_model(tmp_path):
    make_corpus(tmp_path / "audio", 3)
    emb = FakeEmbedder(tmp_path / "model.pt", labels=None)
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    assert not list((tmp_path / "idx").glob("gen-*/probs.npy"))
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        res = index.query(sound(1)[: 2 * SR], k=2, sample_rate=SR)
        assert res.predicted_label is None and res[0]["label"] is None
        assert index.info()["model"]["labels"] == []


def test_ivfpq_hits_are_rescored_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_index, "IVFPQ_MIN_VECTORS", 1_000)
    files = make_corpus(tmp_path / "audio", 45, seconds=12.0)  # 1035 windows
    emb = FakeEmbedder(tmp_path / "model.pt")
    cfg = IndexConfig(index_type="ivfpq", pq_bytes=4)
    assert build_index([tmp_path / "audio"], emb, tmp_path / "idx", cfg).index_type == "ivfpq"
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        top = index.query(files[20], k=3, rollup="max")[0]
        assert top["path"] == str(files[20].resolve())
        assert top["score"] == pytest.approx(1.0, abs=1e-5)  # exact, not a PQ estimate
