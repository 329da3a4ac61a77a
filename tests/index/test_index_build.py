"""Incremental build: id <-> file/time mapping, add / change / touch / remove, model checks,
bad files, the builder lock, and the on-disk layout."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from fake_embedder import SR, FakeEmbedder, make_corpus, sound, write_sound

from sonicsearch.config import IndexConfig
from sonicsearch.errors import AudioError, ConfigError, DataError, IndexStoreError
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index import api as index_api
from sonicsearch.index.faiss_index import gpu_count
from sonicsearch.index.layout import IndexLayout, file_sha256
from sonicsearch.index.store import Store


@pytest.fixture
def corpus(tmp_path):
    files = make_corpus(tmp_path / "audio", 8)
    return tmp_path, files


@pytest.fixture
def emb(tmp_path):
    return FakeEmbedder(tmp_path / "model.pt")


def live(index_dir) -> str:
    return (index_dir / "CURRENT").read_text().strip()


def test_ids_map_to_files_and_times(corpus, emb):
    root, files = corpus
    report = build_index([root / "audio"], emb, root / "idx")
    assert report.written and len(report.added) == 8 and report.files == 8
    assert report.index_type == "flat" and report.vectors == 8 * 7  # 4 s, 1 s windows, hop .5
    assert report.audio_seconds == pytest.approx(32.0)
    gen = root / "idx" / live(root / "idx")
    store = Store(gen)
    vectors = np.load(gen / "vectors.npy")
    probs = np.load(gen / "probs.npy")
    assert [r.path for r in store.records] == sorted(str(f.resolve()) for f in files)
    for i, rec in enumerate(store.records):
        expected = emb.embed_file(rec.path)
        rows = np.arange(rec.first_row, rec.first_row + rec.n_windows)
        assert (store.file_of_rows(rows) == i).all()
        assert np.allclose(store.spans(rows), expected.spans)
        assert np.allclose(vectors[rows], expected.vectors)
        assert np.allclose(probs[rows], expected.probs)
        assert rec.sha256 == file_sha256(rec.path) and rec.duration == pytest.approx(4.0)
        assert rec.label == emb.labels[int(np.argmax(expected.probs.mean(axis=0)))]
    # FAISS id i is vectors row i: searching a stored vector finds its own row first
    with AudioIndex.open(root / "idx") as index:
        _, ids = index.index.search(vectors[[0, 17, 55]], 1)
        assert ids[:, 0].tolist() == [0, 17, 55]
    store.close()


def test_layout_and_index_json(corpus, emb):
    root, _ = corpus
    build_index([root / "audio"], emb, root / "idx")
    names = sorted(p.name for p in (root / "idx").iterdir())
    assert names == [".lock", "CURRENT", "gen-000001"]
    gen = root / "idx" / "gen-000001"
    assert sorted(p.name for p in gen.iterdir()) == sorted(
        ["index.faiss", "meta.sqlite", "vectors.npy", "probs.npy", "index.json", "model.pt",
             "style-vectors.npy", "style-segments.npy"])
    meta = json.loads((gen / "index.json").read_text())
    assert meta["format_version"] == 2 and meta["dim"] == 32
    assert meta["model"] == {"arch": "fake", "sha256": emb.model_sha256,
                             "labels": ["low", "mid", "high"], "file": "model.pt"}
    assert meta["features"]["window_seconds"] == 1.0 and meta["features"]["hop_seconds"] == 0.5
    assert meta["counts"] == {"files": 8, "vectors": 56}
    assert meta["index_type"] == "flat" and "exact" in meta["index_reason"]
    assert meta["created"].endswith("+00:00") and meta["sonicsearch_version"]
    assert file_sha256(gen / "model.pt") == emb.model_sha256
    assert os.stat(gen / "model.pt").st_ino != os.stat(emb.model_path).st_ino  # a copy


def test_incremental_add_change_touch_remove(corpus, emb):
    root, files = corpus
    idx = root / "idx"
    build_index([root / "audio"], emb, idx)
    first = live(idx)

    emb.embedded.clear()  # unchanged: nothing embedded, no new generation
    report = build_index([root / "audio"], emb, idx)
    assert not report.written and report.unchanged == 8 and emb.embedded == []
    assert live(idx) == first and "up to date" in report.summary()

    new = write_sound(root / "audio" / "new.wav", 100)  # add one
    report = build_index([root / "audio"], emb, idx)
    assert report.added == [str(new.resolve())] and emb.embedded == [str(new.resolve())]
    assert report.unchanged == 8 and report.files == 9 and live(idx) != first

    emb.embedded.clear()  # change one: new content
    write_sound(files[2], 200)
    report = build_index([root / "audio"], emb, idx)
    assert report.updated == [str(files[2].resolve())] and len(emb.embedded) == 1

    emb.embedded.clear()  # touch one: new mtime, same bytes -> kept, metadata refreshed
    st = os.stat(files[3])
    os.utime(files[3], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    before = live(idx)
    report = build_index([root / "audio"], emb, idx)
    assert emb.embedded == [] and report.unchanged == 9 and not report.updated
    assert report.written and live(idx) != before  # mtime stored, so no re-hash next time
    assert not build_index([root / "audio"], emb, idx).written

    files[5].unlink()  # remove one
    report = build_index([root / "audio"], emb, idx)
    assert report.removed == [str(files[5].resolve())] and report.files == 8
    with AudioIndex.open(idx, embedder=emb) as index:
        paths = {r.path for r in index.store.records}
        assert str(files[5].resolve()) not in paths and str(new.resolve()) in paths
        # the changed file is found with its new content, the removed one never
        res = index.query(sound(200)[SR : 3 * SR], k=3, sample_rate=SR)
        assert res[0]["path"] == str(files[2].resolve())
    assert sorted(p.name for p in idx.iterdir() if p.name.startswith("gen-")) == [live(idx)]


def test_update_keeps_files_outside_the_inputs(corpus, emb):
    root, files = corpus
    build_index([root / "audio" / "part0"], emb, root / "idx")
    report = build_index([root / "audio" / "part1"], emb, root / "idx")
    assert len(report.added) == 4 and report.unchanged == 4 and report.files == 8
    report = build_index([root / "audio" / "part1"], emb, root / "idx", rebuild=True)
    assert report.files == 4 and len(report.added) == 4


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_removal_works_for_approximate_types(tmp_path, kind):
    files = make_corpus(tmp_path / "audio", 45, seconds=12.0)  # 45 * 23 windows >= 1000
    emb = FakeEmbedder(tmp_path / "model.pt")
    cfg = IndexConfig(index_type=kind, hnsw_m=8, hnsw_ef_construction=40)
    assert build_index([tmp_path / "audio"], emb, tmp_path / "idx", cfg).index_type == kind
    files[0].unlink()
    report = build_index([tmp_path / "audio"], emb, tmp_path / "idx", cfg)
    assert report.removed == [str(files[0].resolve())] and report.index_type == kind
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        res = index.query(sound(0, 12.0)[: 3 * SR], k=44, sample_rate=SR)
        assert str(files[0].resolve()) not in {r["path"] for r in res}
        assert len(res) == 44 and index.info()["vectors"] == 44 * 23


def test_changing_index_type_rebuilds_from_stored_vectors(corpus, emb):
    root, _ = corpus
    build_index([root / "audio"], emb, root / "idx")
    emb.embedded.clear()
    report = build_index([root / "audio"], emb, root / "idx", IndexConfig(index_type="hnsw"))
    assert report.written and report.index_type == "hnsw" and emb.embedded == []
    assert AudioIndex.open(root / "idx").info()["index_type"] == "hnsw"


def test_other_model_is_refused_and_rebuild_accepted(corpus, emb):
    root, _ = corpus
    build_index([root / "audio"], emb, root / "idx")
    first = live(root / "idx")
    other = FakeEmbedder(root / "other.pt", seed=1)
    with pytest.raises(IndexStoreError, match="was built with model .* pass --rebuild"):
        build_index([root / "audio"], other, root / "idx")
    assert live(root / "idx") == first
    longer = FakeEmbedder(root / "model.pt", window=2.0)  # same model file, other windows
    with pytest.raises(IndexStoreError, match="2 s every 0.5 s: pass --rebuild"):
        build_index([root / "audio"], longer, root / "idx")
    report = build_index([root / "audio"], other, root / "idx", rebuild=True)
    assert report.written and len(report.added) == 8
    with AudioIndex.open(root / "idx") as index:
        assert index.info()["model"]["sha256"] == other.model_sha256
        with pytest.raises(IndexStoreError, match="this model is"):
            index.use_embedder(emb)


def test_bad_files_are_skipped_and_the_rest_indexed(corpus, emb):
    root, _ = corpus
    audio = root / "audio"
    (audio / "empty.wav").write_bytes(b"")
    (audio / "junk.wav").write_bytes(b"this is not audio" * 100)
    write_sound(audio / "short.wav", 7, seconds=0.1)
    import soundfile as sf
    sf.write(str(audio / "silent.wav"), np.zeros(SR * 2, np.float32), SR)
    report = build_index([audio], emb, root / "idx")
    assert report.files == 8 and len(report.skipped) == 4
    reasons = dict((os.path.basename(p), r) for p, r in report.skipped)
    assert "empty" in reasons["empty.wav"] and "not a readable" in reasons["junk.wav"]
    assert "too short" in reasons["short.wav"] and "silent" in reasons["silent.wav"]
    assert "4 skipped" in report.summary()


def test_no_usable_audio_is_an_error_and_old_index_untouched(corpus, emb):
    root, _ = corpus
    build_index([root / "audio"], emb, root / "idx")
    first = live(root / "idx")
    bad = root / "bad"
    bad.mkdir()
    (bad / "a.wav").write_bytes(b"")
    (bad / "b.flac").write_bytes(b"junk" * 10)
    with pytest.raises(DataError, match="no usable audio .* all 2 files were skipped"):
        build_index([bad], emb, root / "idx")
    (root / "none").mkdir()
    (root / "none" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="no audio files found"):
        build_index([root / "none"], emb, root / "idx")
    with pytest.raises(AudioError, match="no such file or folder"):
        build_index([root / "missing"], emb, root / "idx")
    assert live(root / "idx") == first
    assert sorted(p.name for p in (root / "idx").iterdir()) == [".lock", "CURRENT", first]
    with pytest.raises(DataError):
        build_index([bad], emb, root / "fresh")
    assert not (root / "fresh" / "CURRENT").exists()


def test_concurrent_builder_is_refused(corpus, emb):
    root, _ = corpus
    with IndexLayout(root / "idx").lock():
        with pytest.raises(IndexStoreError, match="another build is running .*pid"):
            build_index([root / "audio"], emb, root / "idx")
    assert build_index([root / "audio"], emb, root / "idx").written  # lock released


def test_open_missing_or_damaged_index(corpus, emb, tmp_path):
    root, _ = corpus
    with pytest.raises(IndexStoreError, match=f"no index at {tmp_path / 'nope'}"):
        AudioIndex.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexStoreError, match="no CURRENT"):
        AudioIndex.open(tmp_path / "empty")
    build_index([root / "audio"], emb, root / "idx")
    gen = root / "idx" / live(root / "idx")
    shutil.copy(gen / "index.faiss", root / "saved.faiss")
    (gen / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexStoreError, match=f"index {root / 'idx'} is damaged"):
        AudioIndex.open(root / "idx")
    with pytest.raises(IndexStoreError, match="--index .* --rebuild"):
        build_index([root / "audio"], emb, root / "idx")
    assert build_index([root / "audio"], emb, root / "idx", rebuild=True).written
    (root / "idx" / "CURRENT").write_text("../../etc")
    with pytest.raises(IndexStoreError, match="damaged: CURRENT holds"):
        AudioIndex.open(root / "idx")
    assert build_index([root / "audio"], emb, root / "idx", rebuild=True).written
    assert AudioIndex.open(root / "idx").info()["files"] == 8


def test_bad_settings_fail_before_embedding(corpus, emb):
    root, _ = corpus
    with pytest.raises(ConfigError, match="unknown index type 'annoy'"):
        build_index([root / "audio"], emb, root / "idx", IndexConfig(index_type="annoy"))
    if gpu_count() == 0:
        with pytest.raises(ConfigError, match="--device cuda"):
            build_index([root / "audio"], emb, root / "idx", IndexConfig(device="cuda"))
    assert emb.embedded == [] and not (root / "idx").exists()


def test_progress_is_reported(corpus, emb):
    root, files = corpus
    calls = []
    build_index([root / "audio"], emb, root / "idx", progress=lambda *a: calls.append(a))
    assert calls[0] == (0, 8, "", 0, 0.0) and calls[-1][:2] == (8, 8) and len(calls) == 9
    windows, seconds = calls[-1][3], calls[-1][4]
    assert windows == AudioIndex.open(root / "idx", embedder=emb).info()["vectors"]
    assert seconds > 0 and [c[3] for c in calls] == sorted(c[3] for c in calls)


def test_open_index_survives_later_builds_until_it_refreshes(corpus, emb, monkeypatch):
    root, files = corpus
    monkeypatch.setattr(index_api, "load_embedder",
                        lambda path, device="auto", features=None: FakeEmbedder(path))
    build_index([root / "audio"], emb, root / "idx")
    index = AudioIndex.open(root / "idx")  # the model loads lazily from the generation
    first = index.gen
    write_sound(root / "audio" / "more.wav", 300)
    build_index([root / "audio"], emb, root / "idx")  # commits gen 2 and cleans up
    build_index([root / "audio"], emb, root / "idx", IndexConfig(index_type="hnsw"))
    assert first.exists() and index.gen == first  # held by the open reader
    res = index.query(files[1], k=20)  # loads model.pt of the generation it opened
    assert len(res) == 8 and res[0]["path"] == str(files[1].resolve())
    assert index.refresh() is True  # switches to the newest generation
    assert index.gen.name == live(root / "idx") and index.meta["index_type"] == "hnsw"
    assert len(index.query(files[1], k=20)) == 9 and index.info()["files"] == 9
    assert index.refresh() is False  # already the newest
    write_sound(root / "audio" / "again.wav", 301)
    build_index([root / "audio"], emb, root / "idx")
    assert not first.exists()  # released by refresh: deleted by the next clean-up
    index.close()
    build_index([root / "audio"], emb, root / "idx", rebuild=True)
    assert [p.name for p in (root / "idx").glob("gen-*")] == [live(root / "idx")]


def test_search_settings_change_without_rebuilding_faiss(corpus, emb):
    root, _ = corpus
    cfg = IndexConfig(index_type="hnsw", hnsw_ef_search=16)
    build_index([root / "audio"], emb, root / "idx", cfg)
    old_gen = root / "idx" / live(root / "idx")
    inode = os.stat(old_gen / "index.faiss").st_ino
    cfg.hnsw_ef_search = 64
    report = build_index([root / "audio"], emb, root / "idx", cfg)
    gen = root / "idx" / live(root / "idx")
    assert report.written and gen != old_gen
    assert os.stat(gen / "index.faiss").st_ino == inode  # hard-linked, not rebuilt
    with AudioIndex.open(root / "idx") as index:
        assert index.index.index.hnsw.efSearch == 64
        assert index.info()["index_params"]["ef_search"] == 64
    assert not build_index([root / "audio"], emb, root / "idx", cfg).written
