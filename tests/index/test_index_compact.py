"""The compact vector format (pca-int8, index/codec.py): what it stores, that it answers like
the float32 index it came from, that later builds keep its projection, that an index
written the old way converts, and that duplicates, occurrences, the no-match calibration
and style queries work on it."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound, write_sound

from sonicsearch.config import IndexConfig
from sonicsearch.errors import ConfigError, IndexStoreError
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index import codec as C
from sonicsearch.index import layout as L
from sonicsearch.index.calibration import calibrate
from sonicsearch.index.faiss_index import choose_index_type

DIM, COMPACT_DIM = 32, 24
COMPACT = IndexConfig(vectors="pca-int8", compact_dim=COMPACT_DIM)


@pytest.fixture
def small_min(monkeypatch):
    monkeypatch.setattr(C, "COMPACT_MIN_VECTORS", 40)  # the fake corpus is small


@pytest.fixture
def corpus(tmp_path):
    return tmp_path, make_corpus(tmp_path / "audio", 10, seconds=6.0)


def gen_of(root):
    return root / (root / "CURRENT").read_text().strip()


def test_projection_keeps_inner_products_and_codes_are_8_bit():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((64, 64)))[0][:, :8]  # data near 8 dims
    x = rng.standard_normal((2000, 8)) @ basis.T + 0.01 * rng.standard_normal((2000, 64))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    p = C.Projection.fit(x, 8)
    assert p.basis.shape == (8, 64) and np.allclose(p.basis @ p.basis.T, np.eye(8), atol=1e-5)
    codes = p.encode(x)
    assert codes.dtype == np.int8 and codes.shape == (2000, 8)
    exact, approx = x[:50] @ x.T, p.project(x[:50]) @ p.decode(codes).T
    assert np.abs(exact - approx).max() < 0.03
    assert (approx.argmax(axis=1) == np.arange(50)).all()
    wrapped = C.CompactVectors(codes, p)
    assert wrapped.shape == (2000, 8) and np.allclose(wrapped[[3, 5]], p.decode(codes[[3, 5]]))


def test_format_choice():
    assert C.choose_vectors(10**6, 512, None, "float32", 128)[:2] == ("float32", 512)
    assert C.choose_vectors(10**6, 512, None, "auto", 128)[:2] == ("pca-int8", 128)
    fmt, dim, why, _ = C.choose_vectors(100, 512, None, "pca-int8", 128)
    assert (fmt, dim) == ("float32", 512) and "to fit a projection" in why
    compact = {"dim": 512, "vectors": {"format": "pca-int8", "dim": 96}}
    assert C.choose_vectors(5, 512, compact, "auto", 128)[:2] == ("pca-int8", 96)
    with pytest.raises(IndexStoreError, match="--rebuild"):
        C.choose_vectors(5, 512, compact, "float32", 128)
    before = {"dim": 512}  # an index.json from before the compact format
    assert C.choose_vectors(10**6, 512, before, "auto", 128)[:2] == ("float32", 512)
    assert C.choose_vectors(10**6, 512, before, "pca-int8", 128)[:2] == ("pca-int8", 128)
    with pytest.raises(ConfigError, match="compact_dim must be 1..512"):
        C.choose_vectors(10**6, 512, None, "pca-int8", 600)
    assert C.choose_vectors(10**6, 32, None, "auto", 128)[:2] == ("float32", 32)
    with pytest.raises(ConfigError, match="choose one of: auto, float32, pca-int8"):
        C.choose_vectors(5, 512, None, "int4", 128)
    kind, params, _ = choose_index_type(10**6, 128, IndexConfig(), compact=True)
    assert kind == "ivfpq" and params["pq_m"] == 32  # not HNSW: a quarter of 128 bytes


def test_compact_index_answers_like_float32(corpus, small_min):
    root, files = corpus
    emb = FakeEmbedder(root / "model.pt", dim=DIM)
    build_index([root / "audio"], emb, root / "f32")
    report = build_index([root / "audio"], emb, root / "q8", config=COMPACT)
    gen = gen_of(root / "q8")
    assert (gen / C.CODES).is_file() and (gen / C.PROJECTION).is_file()
    assert not (gen / "vectors.npy").exists()
    assert np.load(gen / C.CODES).dtype == np.int8
    with (AudioIndex.open(root / "f32", embedder=emb) as f32,
          AudioIndex.open(root / "q8", embedder=emb) as q8):
        info = q8.info()
        assert (info["vector_format"], info["stored_dim"], info["dim"]) == ("pca-int8",
                                                                         COMPACT_DIM, DIM)
        assert f32.info()["vector_format"] == "float32" and q8.ntotal == report.vectors
        for seed, f in enumerate(files):
            clip = sound(seed, 6.0)[int(1.3 * SR) : int(4.8 * SR)]
            a = f32.query(clip, sample_rate=SR, k=3)
            b = q8.query(clip, sample_rate=SR, k=3)
            assert a[0]["path"] == b[0]["path"] == str(f.resolve())
            assert b[0]["score"] == pytest.approx(a[0]["score"], abs=0.05)
        with pytest.raises(IndexStoreError, match="dimension 7"):
            q8.query_vectors(np.ones((2, 7), np.float32))


def test_later_builds_keep_the_projection(corpus, small_min):
    root, files = corpus
    emb = FakeEmbedder(root / "model.pt", dim=DIM)
    build_index([root / "audio"], emb, root / "idx", config=COMPACT)
    first = gen_of(root / "idx")
    basis = C.Projection.load(first / C.PROJECTION).basis
    old_codes = np.load(first / C.CODES)
    new = write_sound(root / "audio" / "new.wav", 77, 6.0)
    report = build_index([root / "audio"], emb, root / "idx",
                         config=IndexConfig(vectors="auto"))
    second = gen_of(root / "idx")
    assert report.added == [str(new.resolve())] and second != first
    assert np.array_equal(C.Projection.load(second / C.PROJECTION).basis, basis)
    with AudioIndex.open(root / "idx", embedder=emb) as index:
        rec = index.store.records[index.store.by_path[str(files[0].resolve())]]
        codes = np.load(second / C.CODES)
        assert np.array_equal(codes[rec.first_row : rec.first_row + rec.n_windows],
                              old_codes[:rec.n_windows])  # files[0] sorts first in both
        res = index.query(sound(77, 6.0)[SR : 5 * SR], sample_rate=SR, k=1)
        assert res[0]["path"] == str(new.resolve())
    with pytest.raises(IndexStoreError, match="--rebuild"):
        build_index([root / "audio"], emb, root / "idx", config=IndexConfig(vectors="float32"))


def test_an_old_float32_index_loads_and_converts(corpus, small_min):
    root, files = corpus
    emb = FakeEmbedder(root / "model.pt", dim=DIM)
    build_index([root / "audio"], emb, root / "idx", config=IndexConfig(vectors="float32"))
    old = gen_of(root / "idx")
    meta = L.read_index_json(old)
    del meta["vectors"]  # index.json as builds before the compact format wrote it
    L.write_index_json(old, meta)
    assert (old / "vectors.npy").is_file() and not (old / C.CODES).exists()
    write_sound(root / "audio" / "new.wav", 77, 6.0)
    auto = IndexConfig(vectors="auto", compact_dim=COMPACT_DIM)
    build_index([root / "audio"], emb, root / "idx", config=auto)
    kept = L.read_index_json(gen_of(root / "idx"))["vectors"]
    assert kept["format"] == "float32" and "stays float32" in kept["reason"]
    assert kept["asked"] == "float32"  # so the next build without --vectors keeps it too
    write_sound(root / "audio" / "new2.wav", 78, 6.0)
    build_index([root / "audio"], emb, root / "idx", config=IndexConfig(vectors=kept["asked"]))
    assert not (gen_of(root / "idx") / C.CODES).exists()  # auto never converts it
    report = build_index([root / "audio"], emb, root / "idx", config=COMPACT)  # no new audio
    assert report.written and not report.added
    with AudioIndex.open(root / "idx", embedder=emb) as index:
        assert index.info()["vector_format"] == "pca-int8"
        res = index.query(sound(3, 6.0)[SR : 5 * SR], sample_rate=SR, k=1)
        assert res[0]["path"] == str(files[3].resolve())


def test_duplicates_occurrences_calibration_and_style_on_compact(tmp_path, small_min):
    folder = tmp_path / "audio"
    files = make_corpus(folder, 8, seconds=6.0)
    copy = folder / "copy_of_s002.wav"
    sf.write(copy, sound(2, 6.0) * 0.5, SR)
    emb = FakeEmbedder(tmp_path / "model.pt", dim=DIM)
    build_index([folder], emb, tmp_path / "f32")
    build_index([folder], emb, tmp_path / "q8", config=COMPACT)

    def groups(index):
        found = index.duplicates(min_overlap=4.0)
        return [(sorted(found.paths[f] for f in g.files), g.confidence) for g in found.groups]

    with (AudioIndex.open(tmp_path / "f32", embedder=emb) as f32,
          AudioIndex.open(tmp_path / "q8", embedder=emb) as index):
        assert index.info()["vector_format"] == "pca-int8"
        exact, compact = groups(f32), groups(index)
        assert [g for g, _ in compact] == [g for g, _ in exact]  # the same groups
        assert sorted([str(files[2].resolve()), str(copy.resolve())]) in [g for g, _ in compact]
        assert [c for _, c in compact] == pytest.approx([c for _, c in exact], abs=0.05)
        occ = index.occurrences(sound(5, 6.0)[SR : 5 * SR], sample_rate=SR)
        assert occ[0]["path"] == str(files[5].resolve())
        cal = calibrate(index, samples=30)  # searches the stored (compact) rows
        assert cal["samples"] == 30 and set(cal["thresholds"]) == {"vote", "max", "mean-top"}
        res = index.query(sound(4, 6.0)[SR : 5 * SR], sample_rate=SR, k=2,
                          min_score=cal["thresholds"]["vote"])
        assert not res.no_match and res[0]["path"] == str(files[4].resolve())
        style = index.query(sound(6, 6.0), sample_rate=SR, mode="style", k=1)
        assert style[0]["path"] == str(files[6].resolve())


def test_a_compact_milvus_index_answers_like_the_compact_faiss_one(corpus, small_min, milvus):
    root, files = corpus
    emb = FakeEmbedder(root / "model.pt", dim=DIM)
    build_index([root / "audio"], emb, root / "fa", config=COMPACT)
    build_index([root / "audio"], emb, root / "mi",
                config=milvus.config(vectors="pca-int8", compact_dim=COMPACT_DIM))
    with (AudioIndex.open(root / "fa", embedder=emb) as fa,
          AudioIndex.open(root / "mi", embedder=emb) as mi):
        assert mi.info()["vector_format"] == "pca-int8" and mi.index.d == COMPACT_DIM
        for seed in (0, 4, 7):
            clip = sound(seed, 6.0)[SR : 5 * SR]
            a, b = fa.query(clip, sample_rate=SR, k=3), mi.query(clip, sample_rate=SR, k=3)
            assert [r["path"] for r in a] == [r["path"] for r in b]
            assert b[0]["path"] == str(files[seed].resolve())


def test_same_space_says_when_a_backend_s_rows_can_serve_the_next_generation(tmp_path):
    """Milvus updates a collection in place only between generations of one vector space."""
    from sonicsearch.index.codec import CODES, PROJECTION, same_space

    a, b, c = (tmp_path / n for n in "abc")
    for g in (a, b, c):
        g.mkdir()
    assert same_space(a, b)  # both float32
    for g, seed in ((a, 0), (b, 0), (c, 1)):
        (g / CODES).write_bytes(b"codes")
        (g / PROJECTION).write_bytes(bytes([seed]) * 8)
    assert same_space(a, b) and not same_space(a, c)  # a new projection: new rows
    (b / CODES).unlink()
    assert not same_space(a, b)  # float32 against compact
