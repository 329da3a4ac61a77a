"""Damaged index files are found by their checksums and reported in one line with the fix;
file names that are not UTF-8 are indexed, stored losslessly and queryable."""

from __future__ import annotations

import os
import sqlite3

import pytest
from fake_embedder import SR, FakeEmbedder, make_corpus, sound, write_sound

from sonicsearch.errors import IndexStoreError
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index.types import display_path


@pytest.fixture
def built(tmp_path):
    files = make_corpus(tmp_path / "audio", 30, seconds=8.0)  # meta.sqlite of several pages
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    gen = tmp_path / "idx" / (tmp_path / "idx" / "CURRENT").read_text().strip()
    return tmp_path, files, emb, gen


def flip_middle(path, n=256):
    """Invert ``n`` bytes in the middle of a file; its size stays the same."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = bytes(b ^ 0xFF for b in data[mid : mid + n])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["meta.sqlite", "vectors.npy", "index.faiss", "model.pt"])
def test_check_names_the_damaged_file_and_the_fix(built, name):
    root, _, _, gen = built
    with AudioIndex.open(root / "idx") as index:
        index.check()  # a sound index passes
    flip_middle(gen / name)
    with pytest.raises(IndexStoreError) as err:
        with AudioIndex.open(root / "idx") as index:
            index.check()
    msg = str(err.value)
    assert f"{gen.name}/{name}" in msg and "--rebuild" in msg and "\n" not in msg


def test_damaged_metadata_is_one_error_from_query_and_build(built):
    root, files, emb, gen = built
    flip_middle(gen / "meta.sqlite")
    try:  # a reader may or may not touch the damaged pages, but never crashes
        with AudioIndex.open(root / "idx", embedder=emb) as index:
            for f in files[::3]:
                index.query(f, k=30)
                index.query(f, k=5, segments=True)
    except IndexStoreError as exc:
        assert "meta.sqlite" in str(exc) and "--rebuild" in str(exc)
    except sqlite3.Error as exc:  # pragma: no cover - the bug this test guards against
        pytest.fail(f"sqlite error escaped: {exc!r}")
    with pytest.raises(IndexStoreError, match=r"meta\.sqlite .*--rebuild"):
        build_index([root / "audio"], emb, root / "idx")
    assert build_index([root / "audio"], emb, root / "idx", rebuild=True).written
    with AudioIndex.open(root / "idx") as index:
        index.check()


def test_a_non_utf8_file_name_is_indexed_and_queryable(tmp_path):
    make_corpus(tmp_path / "audio", 3)
    odd = tmp_path / "audio" / os.fsdecode(b"caf\xe9 \xff.wav")
    write_sound(tmp_path / "plain.wav", 77).rename(odd)
    emb = FakeEmbedder(tmp_path / "model.pt")
    report = build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    assert report.files == 4 and not report.skipped and str(odd) in report.added
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        res = index.query(sound(77)[: 2 * SR], k=2, sample_rate=SR)
        assert res[0]["path"] == str(odd)  # exact: the surrogate escapes of the bytes
        assert os.path.exists(res[0]["path"])
        assert index.query(odd, k=1, exclude_self=True)[0]["path"] != str(odd)
        gen = index.gen
    db = sqlite3.connect(gen / "meta.sqlite")
    stored = [p for (p,) in db.execute("SELECT path FROM files")]
    db.close()
    assert os.fsencode(odd) in stored  # a BLOB of the name's bytes, lossless
    assert display_path(str(odd)).endswith("caf\ufffd \ufffd.wav")
    again = build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    assert not again.written and again.unchanged == 4  # found again by its exact path
