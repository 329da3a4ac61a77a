"""Index backends: the FAISS backend, and Milvus giving the same answers as exact FAISS, with
the same incremental add / change / delete, atomic generations (a killed build leaves the
previous collection live) and scalar filters. Every Milvus test runs twice (the `milvus`
fixture, tests/fixtures/milvus_targets.py): on milvus-lite (a local file) and on a Milvus
server ($SONICSEARCH_MILVUS_URI; skipped, saying why, when none is reachable)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_embedder import SR, FakeEmbedder, make_corpus, sound, write_sound

from sonicsearch.config import IndexConfig
from sonicsearch.errors import ConfigError, IndexStoreError
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index.backends import IndexBackend, WindowFields, ancestors, check_backend
from sonicsearch.index.backends.faiss_backend import FaissBackend
from sonicsearch.index.backends.milvus_backend import collection_prefix, filter_expr
from sonicsearch.index.store import Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def answers(index_dir: Path, emb: FakeEmbedder) -> list[dict]:
    clips = [sound(2)[int(0.7 * SR) : int(3.1 * SR)], sound(7)[: 2 * SR], sound(11)[:SR]]
    with AudioIndex.open(index_dir, embedder=emb) as index:
        return [index.query(c, k=5, sample_rate=SR, rollup=r, segments=s).to_dict()
                for c in clips for r, s in (("vote", False), ("max", False), ("max", True))]


def assert_same_answers(a: list[dict], b: list[dict]) -> None:
    """Same results and scores (within 1e-4); results tied in score may swap places."""
    def key(r):
        return (-round(r["score"], 4), r["path"], r["start"])

    for x, y in zip(a, b, strict=True):
        rx, ry = sorted(x["results"], key=key), sorted(y["results"], key=key)
        assert [(r["path"], r["start"], r["end"]) for r in rx] == \
            [(r["path"], r["start"], r["end"]) for r in ry]
        assert np.allclose([r["score"] for r in rx], [r["score"] for r in ry], atol=1e-4)
        assert x["predicted_label"] == y["predicted_label"]


# -- FAISS backend and helpers (no Milvus needed) ---------------------------------------


def test_faiss_backend_add_delete_search_commit(tmp_path):
    x = unit(300, 16)
    b = FaissBackend.create(16, path=tmp_path / "i.faiss")
    assert isinstance(b, IndexBackend) and b.ntotal == 0
    b.add(x[:200], np.arange(200))
    b.add(x[200:], np.arange(200, 300))
    with pytest.raises(IndexStoreError, match="ids must be 300..300"):
        b.add(x[:1], np.array([7]))
    scores, ids = b.search(x[:5], 3)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4] and np.allclose(scores[:, 0], 1, atol=1e-5)
    b.commit()
    again = FaissBackend.open(tmp_path / "i.faiss", "flat", {"factory": "Flat"})
    assert again.ntotal == 300
    assert b.delete(np.array([0, 1, 1, 999])) == 2 and b.ntotal == 298
    _, ids = b.search(x[:2], 3)
    assert not np.isin(ids, [0, 1]).any()
    exact = np.argsort(-(x[:2] @ x[2:].T), axis=1)[:, :3] + 2
    assert ids.tolist() == exact.tolist()
    with pytest.raises(IndexStoreError, match="only masked"):
        b.commit()
    with pytest.raises(ConfigError, match="cannot filter"):
        b.search(x[:1], 1, expr='label == "a"')


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_faiss_backend_delete_masks_approximate_indexes(kind):
    from sonicsearch.index.faiss_index import choose_index_type

    x = unit(2000, 16, seed=1)
    _, params, _ = choose_index_type(2000, 16, IndexConfig(index_type=kind))
    b = FaissBackend.create(16, kind, params, vectors=x)
    b.delete(np.arange(0, 2000, 2))
    _, ids = b.search(x[:20], 5)
    assert (ids[ids >= 0] % 2 == 1).all() and b.ntotal == 1000


def test_filter_expr_quotes_and_combines():
    assert filter_expr() == ""
    assert filter_expr(labels=['a"b', "c\\d"]) == r'label in ["a\"b", "c\\d"]'
    assert filter_expr(path_prefix="/m/jazz/") == 'array_contains(folders, "/m/jazz")'
    assert filter_expr(labels=["x"], min_duration=1, max_duration=2.5) == (
        '(label in ["x"]) and (duration >= 1.0) and (duration <= 2.5)')
    with pytest.raises(ConfigError, match="above max"):
        filter_expr(min_duration=3, max_duration=2)
    with pytest.raises(ConfigError, match="at least one label"):
        filter_expr(labels=[])
    with pytest.raises(ConfigError, match="non-empty labels"):
        filter_expr(labels=["a", ""])
    assert ancestors("/a/b/c.wav") == ["/", "/a", "/a/b"]
    with pytest.raises(ConfigError, match="choose one of: faiss, milvus"):
        check_backend("qdrant")
    with pytest.raises(ConfigError, match="--uri is for --backend milvus"):
        check_backend("faiss", "x.db")


# -- Milvus (milvus-lite and a server) -----------------------------------------------------


def test_milvus_search_matches_exact_faiss(tmp_path, milvus):
    from sonicsearch.index.backends.milvus_backend import MilvusBackend

    x, q = unit(2000, 32), unit(20, 32, seed=9)
    exact = FaissBackend.create(32, vectors=x)
    m = MilvusBackend.create(milvus.backend_uri(), milvus.name(), 32)
    m.add(x, np.arange(2000))
    m.commit()
    assert isinstance(m, IndexBackend) and m.ntotal == 2000
    s1, i1 = exact.search(q, 10)
    s2, i2 = m.search(q, 10)
    assert i1.tolist() == i2.tolist() and np.allclose(s1, s2, atol=1e-4)
    assert m.delete(np.asarray(i1[:, 0])) == len(set(i1[:, 0].tolist()))
    _, i3 = m.search(q, 10)
    assert not np.isin(i3, i1[:, 0]).any()
    _, pad = m.search(q[:1], 3000)  # more than there are: padded with -1 like FAISS
    assert (pad[0] >= 0).sum() == m.ntotal and (pad[0, m.ntotal:] == -1).all()
    m.close()
    if milvus.kind == "lite":
        with pytest.raises(ConfigError, match="milvus-lite has no IVF_PQ"):
            MilvusBackend.create(milvus.backend_uri(), milvus.name(), 32, "ivfpq",
                                 {"nlist": 8, "nprobe": 2, "pq_m": 8})


def test_milvus_stores_unlabelled_rows_and_filters_on_labels(milvus):
    """An unlabelled window (label None) goes in as "" (a Milvus 2.3 server refuses a null
    label), and a label filter returns exactly the windows with that label."""
    from sonicsearch.index.backends.milvus_backend import MilvusBackend

    x, q = unit(600, 16, seed=3), unit(4, 16, seed=4)
    labels = [None if i % 3 == 0 else ("a" if i % 3 == 1 else "b") for i in range(600)]
    fields = WindowFields(labels, [["/", "/m"]] * 600, np.full(600, 2.0))
    m = MilvusBackend.create(milvus.backend_uri(), milvus.name(), 16)
    try:
        m.add(x, np.arange(600), fields)
        m.commit()
        assert m.ntotal == 600
        for want in (["a"], ["a", "b"]):
            rows = np.array([i for i, lab in enumerate(labels) if lab in want])
            _, ids = m.search(q, 20, expr=filter_expr(labels=want))
            exact = rows[np.argsort(-(q @ x[rows].T), axis=1, kind="stable")[:, :20]]
            assert ids.tolist() == exact.tolist()
        _, ids = m.search(q, 600, expr=filter_expr(path_prefix="/m"))
        assert sorted(ids[0].tolist()) == list(range(600))  # unlabelled rows are there too
    finally:
        m.close()


def test_a_lite_collection_with_null_labels_still_filters(tmp_path):
    """Collections written before labels were stored as "" hold nulls (milvus-lite took
    them): opened by today's backend, a label filter still skips those rows."""
    pytest.importorskip("milvus_lite", reason="milvus-lite not installed")
    from pymilvus import DataType, MilvusClient

    from sonicsearch.index.backends.milvus_backend import MilvusBackend, connect, disconnect

    uri, x = str(tmp_path / "old.db"), unit(50, 8, seed=5)
    client = connect(uri)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=8)
    schema.add_field("label", DataType.VARCHAR, max_length=512, nullable=True)
    schema.add_field("folders", DataType.ARRAY, element_type=DataType.VARCHAR,
                     max_capacity=64, max_length=4096)
    schema.add_field("duration", DataType.DOUBLE)
    ip = client.prepare_index_params()
    ip.add_index(field_name="vector", index_type="FLAT", metric_type="IP", params={})
    client.create_collection("old_gen_000001", schema=schema, index_params=ip)
    client.insert("old_gen_000001", [{"id": i, "vector": x[i].tolist(),
                                      "label": "a" if i % 2 else None, "folders": ["/"],
                                      "duration": 1.0} for i in range(50)])
    client.flush("old_gen_000001")
    disconnect(client, uri)
    m = MilvusBackend.open(uri, "old_gen_000001", 8, "flat", {})
    try:
        _, ids = m.search(x[:3], 50, expr=filter_expr(labels=["a"]))
        assert sorted(ids[0][ids[0] >= 0].tolist()) == list(range(1, 50, 2))
    finally:
        m.close()


def test_unlabelled_collection_builds_and_answers_like_faiss(tmp_path, milvus):
    audio = tmp_path / "audio"
    make_corpus(audio, 5)
    emb = FakeEmbedder(tmp_path / "model.pt", labels=None)  # no head: every label is None
    fa, mi = tmp_path / "faiss", tmp_path / "milvus"
    build_index([audio], emb, fa)
    build_index([audio], emb, mi, milvus.config())
    assert_same_answers(answers(fa, emb), answers(mi, emb))
    with AudioIndex.open(mi, embedder=emb) as index:
        assert {r.label for r in index.store.records} == {None}
        _, ids = index.index.search(index.store.vectors()[:2], 5,
                                    expr=filter_expr(labels=["low"]))
        assert (ids == -1).all()


def test_milvus_index_answers_like_faiss_through_add_change_delete(tmp_path, milvus):
    audio = tmp_path / "audio"
    files = make_corpus(audio, 8)
    emb = FakeEmbedder(tmp_path / "model.pt")
    fa, mi = tmp_path / "faiss", tmp_path / "milvus"

    def both():
        rf, rm = build_index([audio], emb, fa), build_index([audio], emb, mi, milvus.config())
        for r in (rf, rm):
            r.seconds, r.index_dir = 0.0, ""
        rf.generation = rm.generation
        assert dataclasses.asdict(rf) == dataclasses.asdict(rm)
        assert_same_answers(answers(fa, emb), answers(mi, emb))
        return rm

    first = both()
    assert first.index_type == "flat" and len(first.added) == 8
    meta = json.loads((mi / "gen-000001" / "index.json").read_text())
    name = f"{collection_prefix(mi)}_gen_000001"
    assert meta["backend"] == {"name": "milvus", "uri": milvus.uri or "milvus.db",
                               "collection": name, "generation": 1, "next_id": first.vectors,
                               "hidden": [], "removed": []}
    assert not (mi / "gen-000001" / "index.faiss").exists()

    make_corpus(audio, 3, seed0=20)  # add
    write_sound(files[0], seed=99)  # change
    files[1].unlink()  # delete
    second = both()
    assert (len(second.added), len(second.updated), len(second.removed)) == (3, 1, 1)
    # in place: the same collection, only the 4 new and changed files' windows inserted
    live = json.loads((mi / "gen-000002" / "index.json").read_text())["backend"]
    inserted = sum(r.n_windows for r in Store(mi / "gen-000002").records
                   if r.path in second.added + second.updated)
    assert live["collection"] == name and live["next_id"] == first.vectors + inserted
    assert milvus.rows(mi, name) == first.vectors + inserted  # removed rows still there
    os.utime(files[2], ns=(1, 1))  # touched, same bytes: metadata only, collection reused
    third = both()
    assert third.written and third.unchanged == 10
    assert json.loads((mi / "gen-000003" / "index.json").read_text())["backend"] == live
    files[3].unlink()
    fourth = both()
    # rows hidden from both the live and the previous generation are deleted; those the
    # live one removed stay for the previous one's readers until the next build
    live = json.loads((mi / "gen-000004" / "index.json").read_text())["backend"]
    assert live["removed"] != live["hidden"]
    assert milvus.rows(mi, name) == fourth.vectors + sum(b - a for a, b in live["removed"])
    assert [c[-10:] for c in milvus.collections(mi)] == ["gen_000001"]
    assert not (mi / "gen-000002").exists()  # the folder of an older generation is gone


def test_switching_backends_reuses_vectors(tmp_path, milvus):
    audio = tmp_path / "audio"
    make_corpus(audio, 5)
    emb = FakeEmbedder(tmp_path / "model.pt")
    idx = tmp_path / "idx"
    build_index([audio], emb, idx)
    before = answers(idx, emb)
    emb.embedded.clear()
    lite = tmp_path / "elsewhere" / "c.db"
    uri = milvus.uri or str(lite)
    report = build_index([audio], emb, idx, IndexConfig(backend="milvus", uri=uri))
    assert report.written and emb.embedded == []  # no re-embedding, only a new index
    meta = json.loads((idx / "gen-000002" / "index.json").read_text())
    assert meta["backend"]["uri"] == (milvus.uri or str(lite.resolve()))
    assert milvus.uri or lite.exists()
    assert_same_answers(before, answers(idx, emb))
    assert build_index([audio], emb, idx).written  # and back to FAISS
    assert (idx / "gen-000003" / "index.faiss").is_file()


def test_milvus_filters_match_brute_force(tmp_path, milvus):
    audio = tmp_path / "audio"
    make_corpus(audio, 10)
    write_sound(audio / "long" / "l.wav", seed=50, seconds=7.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    idx = tmp_path / "idx"
    build_index([audio], emb, idx, milvus.config())
    with AudioIndex.open(idx, embedder=emb) as index:
        store, backend = index.store, index.index
        vectors = store.vectors()
        labels = sorted({r.label for r in store.records})
        folder = str((audio / "part1").resolve())
        cases = [
            (filter_expr(labels=labels[:1]), lambda r: r.label == labels[0]),
            (filter_expr(path_prefix=folder), lambda r: r.path.startswith(folder + "/")),
            (filter_expr(min_duration=5.0), lambda r: r.duration >= 5.0),
            (filter_expr(labels=labels, path_prefix=audio, max_duration=4.5),
             lambda r: r.duration <= 4.5),
        ]
        q = vectors[[3, 40]]
        for expr, keep in cases:
            rows = np.concatenate([np.arange(r.first_row, r.first_row + r.n_windows)
                                   for r in store.records if keep(r)])
            assert 0 < len(rows) < store.n_rows, expr
            scores, ids = backend.search(q, 8, expr=expr)
            want = rows[np.argsort(-(q @ vectors[rows].T), axis=1, kind="stable")[:, :8]]
            assert ids.tolist() == want.tolist(), expr
            assert np.allclose(scores, np.take_along_axis(q @ vectors.T, want, 1), atol=1e-4)
        fields = WindowFields.of_records(store.records)
        assert len(fields) == store.n_rows and fields.folders[0][-1] == str(
            Path(store.records[0].path).parent)


KILLED_BUILD = """
import os, signal, sys
sys.path[:0] = [sys.argv[4]]
from fake_embedder import FakeEmbedder
from sonicsearch.config import IndexConfig
from sonicsearch.index import build_index
from sonicsearch.index.backends.milvus_backend import MilvusBackend
real_add = MilvusBackend.add
def add(self, *a, **k):  # die inside Milvus: the rows are inserted, not committed
    real_add(self, *a, **k)
    os.kill(os.getpid(), signal.SIGKILL)
MilvusBackend.add = add
build_index([sys.argv[1]], FakeEmbedder(sys.argv[2]), sys.argv[3],
            IndexConfig(backend="milvus", uri=sys.argv[5] or None, index_type=sys.argv[6]))
"""


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_killed_milvus_build_leaves_the_served_generation_intact(tmp_path, milvus,
                                                                 index_type):
    """SIGKILL in the middle of the inserts: of an in-place update of the live collection
    (flat, as before) or of a new collection (the index type changes)."""
    audio, model, idx = tmp_path / "audio", tmp_path / "model.pt", tmp_path / "idx"
    make_corpus(audio, 6)
    emb = FakeEmbedder(model)
    first = build_index([audio], emb, idx, milvus.config(index_type="flat"))
    before = answers(idx, emb)
    name = f"{collection_prefix(idx)}_gen_000001"
    make_corpus(audio, 4, seed0=30)
    (audio / "part0" / "s000.wav").unlink()  # and a removal, hidden by the killed update
    proc = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(audio), str(model),
                           str(idx), str(FIXTURES), milvus.uri or "", index_type],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (idx / "CURRENT").read_text().strip() == "gen-000001"
    orphans = milvus.rows(idx, name) - first.vectors  # the killed update's rows...
    assert orphans == (0 if index_type == "hnsw" else first.vectors // 6 * 4)
    assert [c[-10:] for c in milvus.collections(idx)] == \
        ["gen_000001", "gen_000002"][: 1 + (index_type == "hnsw")]  # or a new collection
    assert_same_answers(before, answers(idx, emb))  # ...which the served generation ignores
    report = build_index([audio], emb, idx, milvus.config(index_type="flat"))  # mends all
    assert report.files == 9 and report.generation == "gen-000002"  # 6 + 4 - 1
    with AudioIndex.open(idx, embedder=emb) as index:
        assert index.ntotal == Store(idx / "gen-000002").n_rows == report.vectors
    live = json.loads((idx / "gen-000002" / "index.json").read_text())["backend"]
    assert live["collection"] == name  # updated in place: orphans deleted, no duplicates
    assert milvus.rows(idx, name) == report.vectors + sum(b - a for a, b in live["hidden"])
    assert [c[-10:] for c in milvus.collections(idx)] == ["gen_000001"]


def test_refresh_of_a_milvus_index_closes_the_old_connection(tmp_path, milvus):
    from sonicsearch.index.backends import milvus_backend as M

    audio = tmp_path / "audio"
    make_corpus(audio, 4)
    emb = FakeEmbedder(tmp_path / "model.pt")
    idx = tmp_path / "idx"
    build_index([audio], emb, idx, milvus.config())
    db = os.path.abspath(idx / "milvus.db")  # lite's default uri: a file in the index folder
    assert os.path.exists(db) == (milvus.kind == "lite")
    with AudioIndex.open(idx, embedder=emb) as index:
        first = index.index
        assert M.LITE_USERS.get(db) == (1 if milvus.kind == "lite" else None)
        write_sound(audio / "new.wav", 99)
        build_index([audio], emb, idx, milvus.config())  # a new generation, in place
        assert index.refresh() and index.gen.name == "gen-000002"
        assert first.client is None and index.index is not first  # the old one let go
        assert M.LITE_USERS.get(db) == (1 if milvus.kind == "lite" else None)  # not 1/refresh
        assert len(index.query(sound(99)[: 2 * SR], k=3, sample_rate=SR)) == 3
        assert index.index.collection.endswith("_gen_000001")  # the same, updated
        assert index.index.view.generation == 2 and index.ntotal == 35
    assert db not in M.LITE_USERS  # closing the index released the file
