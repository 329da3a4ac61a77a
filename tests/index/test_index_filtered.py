"""A filtered top-k is complete: the filter goes down to the backend (FAISS: an ID selector;
Milvus: its filter expression), so a filter that keeps ~2 % of a skewed collection still
returns k results, equal to exact search restricted to the filter, even when the backend
answers at most a few neighbours per search (as a GPU index, 2048, or Milvus, 16384, do
on a collection much larger than that). The Milvus case runs on milvus-lite and on a Milvus
server ($SONICSEARCH_MILVUS_URI, see tests/fixtures/milvus_targets.py)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_embedder import SR, FakeEmbedder, sound, write_sound

from sonicsearch.config import IndexConfig
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index.backends import milvus_params as M
from sonicsearch.index.backends.milvus_backend import MilvusBackend
from sonicsearch.index.filters import Filters

CAP = 64  # neighbours per backend search in these tests (far below the collection)
K = 3


class Labelled(FakeEmbedder):
    """Every window of a file named rare-* is labelled "rare", all others "common"."""

    def embed_file(self, path):
        out = super().embed_file(path)
        probs = np.zeros((len(out.vectors), 2), np.float32)
        probs[:, 1 if Path(path).name.startswith("rare") else 0] = 1.0
        return dataclasses.replace(out, probs=probs)


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    """5 common files of 60 s and 4 rare ones of 2 s: ~98 % of the windows are common."""
    root = tmp_path_factory.mktemp("skewed")
    for i in range(5):
        write_sound(root / "audio" / f"common-{i}.wav", 100 + i, seconds=60.0)
    for i in range(4):
        write_sound(root / "audio" / f"rare-{i}.wav", 200 + i, seconds=2.0)
    emb = Labelled(root / "model.pt", labels=("common", "rare"), window=0.25, hop=0.02)
    return root, emb


@pytest.fixture(autouse=True)
def light_confidence_fit(monkeypatch):
    """The recording queries here fit a confidence model first; on these 0.02 s-hop windows
    its 4,000 query windows are tens of searches of long clips per roll-up (minutes over a
    Milvus server), and these tests are about filters: a fit of one excerpt (too few for a
    model: confidence None) still runs through the same path."""
    from sonicsearch.index import confidence_fit

    monkeypatch.setattr(confidence_fit, "FIT_WINDOWS", 1)


def exact_max(index: AudioIndex, query: np.ndarray, keep) -> list[tuple[str, float]]:
    """Brute force: each allowed file's best window cosine against any query window."""
    vectors = np.asarray(index.store.vectors())
    scores = []
    for rec in index.store.records:
        if keep(rec):
            v = vectors[rec.first_row : rec.first_row + rec.n_windows]
            scores.append((rec.path, round(float((query @ v.T).max()), 6)))
    return sorted(scores, key=lambda t: (-t[1], t[0]))


def check_complete(index: AudioIndex, emb: Labelled) -> None:
    rare = sum(r.n_windows for r in index.store.records if r.label == "rare")
    assert 0.01 < rare / index.ntotal < 0.03 and rare > CAP  # the filter's share
    index.index.max_k = CAP  # the backend answers at most CAP neighbours per search
    clip = sound(101, 60.0)[5 * SR : int(5.3 * SR)]  # 0.3 s of a common file
    q = emb.embed_waveform(clip, SR).vectors
    want = exact_max(index, q, lambda rec: rec.label == "rare")[:K]
    for rollup in ("max", "vote", "mean-top"):
        res = index.query(clip, k=K, sample_rate=SR, rollup=rollup,
                          filters=Filters(labels=("rare",)))
        assert len(res) == K and all(r["label"] == "rare" for r in res)
        if rollup == "max":
            assert [(r["path"], r["score"]) for r in res] == want
    seg = index.query(clip, k=K, sample_rate=SR, segments=True,
                      filters=Filters(labels=("rare",)))
    assert len(seg) == K and seg[0]["score"] == want[0][1]
    unfiltered = index.query(clip, k=K, sample_rate=SR, rollup="max")
    assert all(r["label"] == "common" for r in unfiltered)


def test_faiss_filtered_top_k_is_complete_on_a_skewed_collection(skewed):
    root, emb = skewed
    build_index([root / "audio"], emb, root / "faiss", IndexConfig())
    with AudioIndex.open(root / "faiss", embedder=emb, device="cpu") as index:
        check_complete(index, emb)


def test_faiss_filter_and_exclusion_together(skewed):
    root, emb = skewed
    build_index([root / "audio"], emb, root / "faiss2", IndexConfig())
    with AudioIndex.open(root / "faiss2", embedder=emb, device="cpu") as index:
        index.index.max_k = CAP
        path = root / "audio" / "rare-1.wav"
        res = index.query(path, k=K, exclude_self=True, rollup="max",
                          filters=Filters(labels=("rare",)))
        assert len(res) == K and str(path.resolve()) not in \
            {r["path"] for r in res}


@pytest.mark.parametrize("ranges", [True, False], ids=["id-ranges", "field-expression"])
def test_milvus_filtered_top_k_is_complete_on_a_skewed_collection(skewed, ranges, milvus,
                                                                   tmp_path, monkeypatch):
    """On milvus-lite and on a Milvus server (the `milvus` fixture)."""
    if not ranges:  # the selection is sent as conditions on label / folders / duration
        monkeypatch.setattr(M, "MAX_EXPR_RANGES", 0)
    root, emb = skewed
    where = tmp_path / "idx"
    build_index([root / "audio"], emb, where, milvus.config())
    with AudioIndex.open(where, embedder=emb, device="cpu") as index:
        assert isinstance(index.index, MilvusBackend)
        assert index.index.uri == (milvus.uri or str(where / "milvus.db"))
        check_complete(index, emb)


def test_milvus_filters_after_an_in_place_update(skewed, milvus, tmp_path, monkeypatch):
    """An updated collection's ids are not its rows (a file removed before all others, one
    added): the filter, its id ranges and the query's own file map through the ids."""
    monkeypatch.setattr(M, "MAX_EXPR_RANGES", 0)  # the field expression with an exclusion
    root, emb = skewed
    audio, where = tmp_path / "audio", tmp_path / "idx"
    audio.mkdir()
    for src in sorted((root / "audio").iterdir()):
        if src.name != "rare-0.wav":
            shutil.copy(src, audio / src.name)
    write_sound(audio / "a-first.wav", 300, seconds=3.0)  # rows 0.. of the first build
    build_index([audio], emb, where, milvus.config())
    (audio / "a-first.wav").unlink()
    shutil.copy(root / "audio" / "rare-0.wav", audio / "rare-0.wav")
    report = build_index([audio], emb, where, milvus.config())
    assert (len(report.added), len(report.removed)) == (1, 1)
    with AudioIndex.open(where, embedder=emb, device="cpu") as index:
        ids = index.index.idmap.ids
        assert index.index.view.generation == 2 and (ids != np.arange(len(ids))).all()
        check_complete(index, emb)
        index.index.max_k = CAP
        path = (audio / "rare-2.wav").resolve()
        res = index.query(path, k=K, exclude_self=True, rollup="max",
                          filters=Filters(labels=("rare",)))
        assert len(res) == K and str(path) not in {r["path"] for r in res}
