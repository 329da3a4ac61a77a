"""Style vectors in an index: pooling and segments, storage, style queries (files, segments,
filters, thresholds), "more like this", incremental builds and indexes built before them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fake_embedder import SR, FakeEmbedder, make_corpus, sound

from sonicsearch.embed.types import (
    MIN_SEGMENT_SECONDS,
    SEGMENT_SECONDS,
    StylePool,
    pool_style,
)
from sonicsearch.errors import ConfigError, IndexStoreError
from sonicsearch.index import AudioIndex, QueryRequest, build_index, writer
from sonicsearch.index import layout as L
from sonicsearch.index.filters import Filters
from sonicsearch.index.style import STYLE_FILES, read_style

SECONDS = 50.0  # three segments: 0-20, 20-40, 40-50 (10 s: kept on its own)


def _spans(n: int, hop: float = 1.0, win: float = 2.0) -> np.ndarray:
    starts = np.arange(n) * hop
    return np.stack([starts, starts + win], axis=1)


def test_segments_are_20_s_and_a_short_tail_joins_the_one_before():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((45, 8)).astype(np.float32)
    style = pool_style(v, _spans(45))  # windows start at 0..44 s
    assert style.segments.shape == (2, 8)  # 40-44 s (6 s) joined 20-39
    assert style.spans.tolist() == [[0.0, 21.0], [20.0, 46.0]]
    want = v[20:].mean(axis=0)
    assert np.allclose(style.segments[1], want / np.linalg.norm(want), atol=1e-6)
    whole = v.mean(axis=0)
    assert np.allclose(style.file, whole / np.linalg.norm(whole), atol=1e-6)
    assert len(pool_style(v[:5], _spans(5)).segments) == 1  # a short file: one segment
    assert SEGMENT_SECONDS == 20.0 and MIN_SEGMENT_SECONDS == 10.0


def test_streaming_pool_equals_one_batch_and_leaves_quiet_windows_out():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((70, 6))
    loud = rng.random(70) > 0.3
    one = StylePool()
    one.add(v, _spans(70), loud)
    parts = StylePool()
    for a in range(0, 70, 16):  # batches that straddle segment borders
        parts.add(v[a:a + 16], _spans(70)[a:a + 16], loud[a:a + 16])
    x, y = one.vectors(), parts.vectors()
    assert np.allclose(x.file, y.file, atol=1e-6) and np.allclose(x.segments, y.segments,
                                                                  atol=1e-6)
    kept = pool_style(v[loud], _spans(70)[loud])
    assert np.allclose(x.segments, kept.segments, atol=1e-6)
    quiet = StylePool()  # no loud window at all: every window counts
    quiet.add(v, _spans(70), np.zeros(70, bool))
    assert np.allclose(quiet.vectors().file, pool_style(v, _spans(70)).file, atol=1e-6)
    doubled = pool_style(v, _spans(70), )
    projected = StylePool()
    projected.add(v, _spans(70))
    p = projected.vectors(lambda m: m[:, :3] * 2.0)  # a head: any map, then normalised
    assert p.file.shape == (3,) and np.isclose(np.linalg.norm(p.file), 1.0)
    assert doubled.dim == 6
    with pytest.raises(ValueError):
        StylePool().vectors()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("style")
    files = make_corpus(root / "audio", 6, seconds=SECONDS)
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx")
    index = AudioIndex.open(root / "idx", embedder=emb)
    yield root, files, emb, index
    index.close()


def test_every_index_stores_style_vectors_checksummed(built):
    root, files, emb, index = built
    meta = index.meta
    assert meta["style"] == {"kind": "window-mean", "dim": emb.dim, "files": 6,
                             "segments": 18, "segment_seconds": 20.0}
    for name in STYLE_FILES:
        assert meta["sha256"][name] == L.file_sha256(index.gen / name)
    table = read_style(index.gen, meta)
    assert table.stored and table.files.shape == (6, emb.dim)
    stored = np.load(index.gen / "style-vectors.npy")
    assert stored.dtype == np.float16  # small next to the float32 window vectors
    for i, rec in enumerate(index.store.records):  # what the index holds: the pooled windows
        a, b = rec.first_row, rec.first_row + rec.n_windows
        want = pool_style(index._exact[a:b], index.store.all_spans()[a:b])
        assert np.allclose(table.of(i).segments, want.segments, atol=2e-3)
        assert np.allclose(table.files[i], want.file, atol=2e-3)


def test_style_query_finds_the_file_a_clip_sounds_like(built):
    root, files, emb, index = built
    clip = sound(3, SECONDS)[int(22 * SR): int(34 * SR)]
    res = index.query(clip, k=6, sample_rate=SR, mode="style")
    assert res.mode == "style" and res.to_dict()["mode"] == "style"
    assert res[0]["path"] == str(files[3].resolve())
    assert 20.0 <= res[0]["start"] < res[0]["end"] <= 41.0  # the segment it sounds like
    assert [r["rank"] for r in res] == list(range(1, 7))
    scores = [r["score"] for r in res]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert index.query(clip, k=2, sample_rate=SR, mode="style") == res[:2]  # k's prefix
    segs = index.query(clip, k=5, sample_rate=SR, mode="style", segments=True)
    assert segs[0]["path"] == res[0]["path"] and "query_start" not in segs[0]
    rec = index.query(clip, k=3, sample_rate=SR)
    assert rec.mode == "recording" and rec.to_dict()["mode"] == "recording"


def test_style_filters_and_thresholds_keep_a_complete_top_k(built):
    root, files, emb, index = built
    clip = sound(3, SECONDS)[: int(12 * SR)]
    part1 = str((root / "audio" / "part1").resolve())
    res = index.query(clip, k=3, sample_rate=SR, mode="style",
                      filters=Filters(path_prefix=part1))
    assert len(res) == 3 and all(r["path"].startswith(part1) for r in res)
    assert res.extra["no_match"] is False
    everything = index.query(clip, k=6, sample_rate=SR, mode="style")
    cut = everything[2]["score"]
    above = index.query(clip, k=6, sample_rate=SR, mode="style", min_score=cut)
    assert [r["path"] for r in above] == [r["path"] for r in everything if r["score"] >= cut]
    none = index.query(clip, k=6, sample_rate=SR, mode="style", min_score=1.01)
    assert len(none) == 0 and none.no_match and none.get("reason")
    with pytest.raises(ConfigError, match="style mode give a number"):
        index.query(clip, k=3, sample_rate=SR, mode="style", min_score="auto")
    with pytest.raises(ConfigError, match="unknown mode 'genre'"):
        QueryRequest(mode="genre")


def test_more_like_this_of_an_indexed_file(built):
    root, files, emb, index = built
    target = index.store.records[2].path  # ids are positions in the records (path order)
    res = index.similar(2, k=5)
    assert res.mode == "style" and res.query == target
    assert target not in [r["path"] for r in res] and len(res) == 5
    direct = index.query(target, k=6, mode="style", exclude_self=True)
    assert [r["path"] for r in res] == [r["path"] for r in direct][:5]
    rec = index.similar(2, QueryRequest(mode="recording", k=3))
    assert rec.mode == "recording" and target not in [r["path"] for r in rec]
    with pytest.raises(IndexStoreError, match="no file 99"):
        index.similar(99)


def test_style_vectors_from_python_equal_the_query_path(built):
    root, files, emb, index = built
    clip = sound(1, SECONDS)[: int(15 * SR)]
    out = emb.embed_waveform(clip, SR)
    q = pool_style(out.vectors, out.spans).file
    via_vectors = index.query_vectors(out.vectors, out.spans, k=4, mode="style")
    via_style = index.query_vectors(out.vectors[:1], k=4, mode="style", style=q)
    assert via_vectors == via_style == index.query(clip, k=4, sample_rate=SR, mode="style")
    with pytest.raises(IndexStoreError, match="dimension 5"):
        index.query_vectors(out.vectors, k=4, mode="style", style=np.ones(5))
    with pytest.raises(IndexStoreError, match="non-finite"):
        index.query_vectors(out.vectors, k=4, mode="style", style=np.full(emb.dim, np.nan))


def test_incremental_build_keeps_stored_style_rows(tmp_path):
    make_corpus(tmp_path / "audio", 3, seconds=25.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as a:
        before = {r.path: a.style.of(i) for i, r in enumerate(a.store.records)}
    make_corpus(tmp_path / "audio", 1, seed0=7, seconds=25.0)
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as b:
        assert b.meta["style"]["files"] == 4
        for i, r in enumerate(b.store.records):
            if r.path in before:
                assert np.array_equal(b.style.of(i).segments, before[r.path].segments)
                assert np.array_equal(b.style.of(i).spans, before[r.path].spans)


def test_an_index_built_before_style_vectors_keeps_working(tmp_path, monkeypatch, capsys):
    make_corpus(tmp_path / "audio", 4, seconds=30.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    with monkeypatch.context() as m:  # what an older sonicsearch wrote: no style at all
        m.setattr(writer, "_write_style", lambda *a: None)
        build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    gen = L.IndexLayout(tmp_path / "idx").current()
    assert "style" not in L.read_index_json(gen) and not (gen / STYLE_FILES[0]).exists()
    clip = sound(2, 30.0)[: int(12 * SR)]
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as old:
        pooled = old.query(clip, k=4, sample_rate=SR, mode="style")
        assert not old.style.stored
    assert "built before style vectors" in capsys.readouterr().err
    report = build_index([tmp_path / "audio"], emb, tmp_path / "idx")  # nothing re-embedded
    assert report.written and not report.added and report.unchanged == 4
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as new:
        assert new.style.stored and new.meta["style"]["files"] == 4
        stored = new.query(clip, k=4, sample_rate=SR, mode="style")
    assert [r["path"] for r in stored] == [r["path"] for r in pooled]
    assert np.allclose([r["score"] for r in stored], [r["score"] for r in pooled], atol=2e-3)
    assert not build_index([tmp_path / "audio"], emb, tmp_path / "idx").written  # now stable


def test_damaged_style_files_are_a_clear_error(tmp_path):
    make_corpus(tmp_path / "audio", 2, seconds=8.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    gen = L.IndexLayout(tmp_path / "idx").current()
    meta = json.loads((gen / "index.json").read_text())
    (gen / "style-segments.npy").chmod(0o644)
    with open(gen / "style-segments.npy", "r+b") as f:  # same size, other bytes
        f.seek(140)
        f.write(b"\xff" * 8)
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        with pytest.raises(IndexStoreError, match="style-segments.npy"):
            index.check()
    np.save(gen / "style-vectors.npy", np.zeros((3, 3), np.float16))
    with pytest.raises(IndexStoreError):
        read_style(gen, meta)
