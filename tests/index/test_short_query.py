"""A query shorter than one window, end to end with a real (tiny, random) model: the clip is
embedded as it is, not padded with silence, and ranked like its unpadded vector. (How
often such a clip finds its source is measured, with the base model, by
benchmarks/short_queries.py: a random model says nothing about it.)"""

from __future__ import annotations

import numpy as np
import pytest
from bench_scripts import tiny_checkpoint
from fake_embedder import SR, make_corpus, sound

from sonicsearch.index import AudioIndex, build_index, load_embedder


@pytest.fixture(scope="module")
def short_built(tmp_path_factory):
    root = tmp_path_factory.mktemp("short")
    make_corpus(root / "audio", 6, seconds=6.0)
    emb = load_embedder(tiny_checkpoint(root / "tiny.pt"), device="cpu")  # 1-s windows
    build_index([root / "audio"], emb, root / "idx")
    with AudioIndex.open(root / "idx", embedder=emb) as index:
        yield index, emb


@pytest.mark.parametrize("seed, start", [(1, 0.5), (4, 4.2)])
def test_a_half_window_clip_is_queried_as_it_is(short_built, seed, start):
    index, emb = short_built
    clip = sound(seed, 6.0)[int(start * SR) : int((start + 0.5) * SR)]
    out = emb.embed_waveform(clip, SR)
    assert out.vectors.shape[0] == 1 and out.spans.tolist() == [[0.0, 0.5]]
    padded = emb.embed_waveform(np.pad(clip, (0, SR // 2)), SR)  # what it used to search
    assert float(out.vectors[0] @ padded.vectors[0]) < 0.999
    res = index.query(clip, k=3, sample_rate=SR).to_dict()
    assert res["duration"] == pytest.approx(0.5) and len(res["results"]) == 3
    same = index.query_vectors(out.vectors, out.spans, k=3).to_dict()
    assert [r["path"] for r in res["results"]] == [r["path"] for r in same["results"]]
    assert [r["score"] for r in res["results"]] == [r["score"] for r in same["results"]]
