"""Top-k does not depend on k: the results for k are the head of those for any larger k, a
file's score is its exact roll-up over all its windows, and long queries are searched in
blocks with the same answer."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fake_embedder import SR, FakeEmbedder, make_corpus, sound

from sonicsearch.config import IndexConfig
from sonicsearch.index import ROLLUPS, AudioIndex, build_index
from sonicsearch.index import rollups as rollups_mod
from sonicsearch.index import search as search_mod
from sonicsearch.index.filters import Filters

N_FILES = 14


@pytest.fixture(scope="module", params=["flat", "hnsw"])
def built(tmp_path_factory, request):
    root = tmp_path_factory.mktemp(f"topk-{request.param}")
    files = make_corpus(root / "audio", N_FILES, seconds=5.0)
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx", IndexConfig(index_type=request.param))
    index = AudioIndex.open(root / "idx", embedder=emb)
    yield files, emb, index
    index.close()


def mixed_query() -> np.ndarray:
    """Parts of three files and a sound that is in none: many files score something."""
    parts = [sound(3, 5.0)[: 2 * SR], sound(999, 2.0), sound(8, 5.0)[SR : 3 * SR],
             sound(11, 5.0)[int(2.5 * SR) :]]
    return np.concatenate(parts)


@pytest.mark.parametrize("depth", [search_mod.CANDIDATE_DEPTH, 3])
@pytest.mark.parametrize("mode", [*ROLLUPS, "segments"])
def test_results_for_k_are_the_head_of_results_for_more(built, monkeypatch, depth, mode):
    _, _, index = built
    monkeypatch.setattr(search_mod, "CANDIDATE_DEPTH", depth)  # 3: candidates run short
    kw = {"segments": True} if mode == "segments" else {"rollup": mode}
    wave = mixed_query()
    biggest = 40 if mode == "segments" else N_FILES
    full = index.query(wave, k=biggest, sample_rate=SR, **kw)
    assert len(full) == biggest
    for k in range(1, biggest + 1):
        res = index.query(wave, k=k, sample_rate=SR, **kw)
        assert list(res) == [dict(r, rank=i + 1) for i, r in enumerate(full[:k])], k


@pytest.mark.parametrize("rollup", ROLLUPS)
def test_a_file_scores_its_exact_rollup_over_all_its_windows(built, rollup):
    files, emb, index = built
    q = emb.embed_waveform(mixed_query(), SR)
    stored = index.store.vectors()
    res = index.query_vectors(q.vectors, q.spans, k=N_FILES, rollup=rollup)
    assert len(res) == N_FILES
    by_path = {r.path: i for i, r in enumerate(index.store.records)}
    every = q.vectors.astype(np.float64) @ stored.T.astype(np.float64)
    assert len(stored) >= search_mod.BACKGROUND_RANK  # the background is measured here
    floor = np.sort(every, axis=1)[:, -search_mod.BACKGROUND_RANK]  # 64th most similar
    for r in res:
        f = by_path[r["path"]]
        a, n = index.store.first_rows[f], index.store.n_windows[f]
        s = q.vectors.astype(np.float64) @ stored[a : a + n].T.astype(np.float64)
        if rollup == "max":
            want = s.max()
        elif rollup == "mean-top":
            want = np.sort(s.max(axis=0))[::-1][: min(3, n)].mean()
        else:
            spans = index.store.file_spans(f)
            bucket = np.rint((spans[None, :, 0] - q.spans[:, :1]) / 0.5).astype(int)
            bucket -= bucket.min()
            votes = np.zeros((len(s), bucket.max() + 2))
            for i in range(len(s)):
                for j in range(n):
                    above = s[i, j] - floor[i]
                    votes[i, bucket[i, j]] = max(votes[i, bucket[i, j]], above, 0.0)
            best = np.maximum(votes[:, :-1], votes[:, 1:]).sum(axis=0).max()
            want = best / np.sum(1.0 - floor)  # 1.0: every window matched perfectly
        assert r["score"] == pytest.approx(want, abs=2e-6), (rollup, r["path"])


@pytest.mark.parametrize("mode", [*ROLLUPS, "segments"])
def test_a_long_query_is_searched_in_blocks_with_the_same_answer(built, monkeypatch, mode):
    files, emb, index = built
    kw = {"segments": True} if mode == "segments" else {"rollup": mode}
    wave = np.concatenate([sound(s, 5.0) for s in (2, 5, 9)])  # 15 s: 29 windows
    whole = index.query(wave, k=8, sample_rate=SR, **kw)
    calls = []
    real = type(index.index).search

    def counting(self, x, k, *args, **kwargs):
        calls.append(len(x))
        return real(self, x, k, *args, **kwargs)

    monkeypatch.setattr(search_mod, "QUERY_BLOCK", 4)
    monkeypatch.setattr(rollups_mod, "QUERY_BLOCK", 4)  # similarity blocks too
    monkeypatch.setattr(type(index.index), "search", counting)
    blocked = index.query(wave, k=8, sample_rate=SR, **kw)
    assert max(calls) <= 4 and sum(calls) >= 29  # every window searched, 4 at a time
    assert [r["path"] for r in blocked] == [r["path"] for r in whole]
    for a, b in zip(blocked, whole):
        assert a["score"] == pytest.approx(b["score"], abs=2e-6)
        assert (a["start"], a["end"]) == (b["start"], b["end"])


def _filters(index, name: str) -> Filters:
    part1 = os.path.dirname(index.store.records[1].path)
    return {"folder": Filters(path_prefix=part1),
            "label": Filters(labels=(index.store.records[5].label,)),
            "per-folder": Filters(max_per_folder=3)}[name]


@pytest.mark.parametrize("depth", [search_mod.CANDIDATE_DEPTH, 3])
@pytest.mark.parametrize("mode", [*ROLLUPS, "segments"])
@pytest.mark.parametrize("name", ["folder", "label", "per-folder"])
def test_filtered_results_for_k_are_the_head_of_results_for_more(built, monkeypatch, depth,
                                                                 mode, name):
    _, _, index = built
    monkeypatch.setattr(search_mod, "CANDIDATE_DEPTH", depth)
    kw = {"segments": True} if mode == "segments" else {"rollup": mode}
    filters = _filters(index, name)
    wave = mixed_query()
    full = index.query(wave, k=40, sample_rate=SR, filters=filters, min_score=-1.0, **kw)
    allowed = filters.file_mask(index.store.records)
    if name == "per-folder":  # 3 from each of the 2 folders
        assert len(full) == 6
    elif mode == "segments":
        assert len(full) == min(40, int(index.store.n_windows[allowed].sum()))
    else:  # every file that passes is found, however shallow the candidates
        assert len(full) == int(allowed.sum())
    assert all(allowed[index.store.by_path[r["path"]]] for r in full)
    for k in range(1, len(full) + 1):
        res = index.query(wave, k=k, sample_rate=SR, filters=filters, min_score=-1.0, **kw)
        assert list(res) == [dict(r, rank=i + 1) for i, r in enumerate(full[:k])], k
        assert res.extra == {"min_score": -1.0, "no_match": False, "reason": None}


@pytest.mark.parametrize("rollup", ROLLUPS)
def test_filtered_files_are_scored_exactly_and_ranked_exactly(built, monkeypatch, rollup):
    _, emb, index = built
    q = emb.embed_waveform(mixed_query(), SR)
    every = {r["path"]: r["score"]
             for r in index.query_vectors(q.vectors, q.spans, k=N_FILES, rollup=rollup)}
    filters = _filters(index, "folder")
    allowed = filters.file_mask(index.store.records)
    # the allowed windows fit one candidate depth: every allowed file is scored at once
    monkeypatch.setattr(search_mod, "CANDIDATE_DEPTH", int(index.store.n_windows[allowed].sum()))
    res = index.query_vectors(q.vectors, q.spans, k=N_FILES, rollup=rollup, filters=filters)
    want = sorted((p for p in every if allowed[index.store.by_path[p]]),
                  key=lambda p: (-every[p], index.store.by_path[p]))
    assert [r["path"] for r in res] == want
    assert all(r["score"] == every[r["path"]] for r in res)  # a score does not depend on k


def test_a_filter_that_passes_nothing_searches_nothing(built, monkeypatch):
    _, _, index = built
    calls = []
    monkeypatch.setattr(search_mod, "search", lambda *a, **kw: calls.append(a) or [])
    res = index.query(mixed_query(), k=3, sample_rate=SR, filters=Filters(min_duration=60))
    assert list(res) == [] and res.no_match and calls == []
    assert res["reason"] == "no indexed file passes the filters"


def test_the_vote_background_is_the_64th_most_similar_window_left_out_file_excluded(built,
                                                                                     monkeypatch):
    files, emb, index = built
    q = emb.embed_waveform(mixed_query(), SR)
    stored = index.store.vectors()
    sims = q.vectors.astype(np.float64) @ stored.T.astype(np.float64)
    rank = search_mod.BACKGROUND_RANK
    got = search_mod.background(index.index, index.store, stored, q.vectors)
    assert got == pytest.approx(np.sort(sims, axis=1)[:, -rank], abs=1e-5)
    f = 3  # its windows are not part of its own (exclude_self) background
    a, n = int(index.store.first_rows[f]), int(index.store.n_windows[f])
    rest = np.delete(sims, np.arange(a, a + n), axis=1)
    got = search_mod.background(index.index, index.store, stored, q.vectors, exclude=f)
    assert got == pytest.approx(np.sort(rest, axis=1)[:, -rank], abs=1e-5)
    monkeypatch.setattr(search_mod, "BACKGROUND_RANK", len(stored) + 1)  # no crowd to measure
    assert not search_mod.background(index.index, index.store, stored, q.vectors).any()


def test_an_exact_copy_still_scores_one_above_its_background(built):
    files, _, index = built
    res = index.query(files[4], k=2, exclude_self=False)
    assert res[0]["path"] == str(files[4].resolve())
    assert res[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert res[1]["score"] < res[0]["score"]


@pytest.mark.parametrize("mode", [*ROLLUPS, "segments"])
def test_vote_background_and_candidates_share_one_search(built, monkeypatch, mode):
    _, _, index = built
    kw = {"segments": True} if mode == "segments" else {"rollup": mode}
    calls = []
    real = type(index.index).search

    def counting(self, x, k, *args, **kwargs):
        calls.append((len(x), k))
        return real(self, x, k, *args, **kwargs)

    monkeypatch.setattr(search_mod, "QUERY_BLOCK", 4)
    monkeypatch.setattr(rollups_mod, "QUERY_BLOCK", 4)  # similarity blocks too
    monkeypatch.setattr(type(index.index), "search", counting)
    index.query(mixed_query(), k=2, sample_rate=SR, **kw)
    n_windows = len(index.embedder.embed_waveform(mixed_query(), SR).vectors)
    blocks = -(-n_windows // 4)
    assert len(calls) == blocks  # one search of each block of query windows, at depth 64
    assert {k for _, k in calls} == {search_mod.CANDIDATE_DEPTH}
