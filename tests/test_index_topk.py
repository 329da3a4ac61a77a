"""Top-k does not depend on k: the results for k are the head of those for any larger k, a
file's score is its exact roll-up over all its windows, and long queries are searched in
blocks with the same answer."""

from __future__ import annotations

import numpy as np
import pytest
from fake_embedder import SR, FakeEmbedder, make_corpus, sound

from sonicsearch.config import IndexConfig
from sonicsearch.index import ROLLUPS, AudioIndex, build_index
from sonicsearch.index import search as search_mod

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
                    votes[i, bucket[i, j]] = max(votes[i, bucket[i, j]], s[i, j], 0.0)
            want = np.maximum(votes[:, :-1], votes[:, 1:]).sum(axis=0).max() / len(s)
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
    monkeypatch.setattr(type(index.index), "search", counting)
    blocked = index.query(wave, k=8, sample_rate=SR, **kw)
    assert max(calls) <= 4 and sum(calls) >= 29  # every window searched, 4 at a time
    assert [r["path"] for r in blocked] == [r["path"] for r in whole]
    for a, b in zip(blocked, whole):
        assert a["score"] == pytest.approx(b["score"], abs=2e-6)
        assert (a["start"], a["end"]) == (b["start"], b["end"])
