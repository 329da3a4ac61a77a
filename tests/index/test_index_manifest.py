"""Every file of a generation is covered by a checksum, index.json and calibration.json
included (each carries its own ``self_sha256``): one changed byte anywhere is an error
naming the file. An index from before index.json had its checksum still loads, said to be
unverifiable. A failed first build leaves nothing that reads as "no CURRENT file"."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
from fake_embedder import SR, FakeEmbedder, make_corpus, sound

from sonicsearch.cli import main
from sonicsearch.errors import DataError, IndexStoreError
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index import layout as L
from sonicsearch.index.calibration import CALIBRATION, calibration


def cli(*args: str) -> tuple[int, str]:
    """Run the real entry point in this process: (exit code, stdout + stderr)."""
    import contextlib
    import io

    out, err, code = io.StringIO(), io.StringIO(), 0
    argv, sys.argv = sys.argv, ["sonicsearch", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = argv
    return code, out.getvalue() + err.getvalue()


@pytest.fixture
def built(tmp_path):
    make_corpus(tmp_path / "audio", 6, seconds=4.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        index.query(sound(3, 3.0), sample_rate=SR, min_score="auto")  # calibration.json:
        calibration(index)  # the confidence model, then the thresholds
        gen = index.gen
    return tmp_path / "idx", emb, gen


def flipped(path, pos):
    """Context: the file with byte ``pos`` changed (one bit), restored afterwards."""
    class Flip:
        def __enter__(self):
            self.data = path.read_bytes()
            changed = bytearray(self.data)
            changed[pos] ^= 0x01
            path.write_bytes(bytes(changed))

        def __exit__(self, *exc):
            path.write_bytes(self.data)
    return Flip()


def check_error(root, emb) -> str:
    with pytest.raises(IndexStoreError) as err:
        with AudioIndex.open(root, embedder=emb) as index:
            index.check()
    return str(err.value)


def test_a_flipped_byte_in_any_file_of_a_generation_is_named(built):
    root, emb, gen = built
    names = sorted(p.name for p in gen.iterdir())
    assert {L.INFO, CALIBRATION, L.INDEX_FILE, L.META_DB, L.VECTORS, L.PROBS,
            L.MODEL} <= set(names)
    with AudioIndex.open(root, embedder=emb) as index:
        index.check()  # a sound index passes
    for name in names:
        size = (gen / name).stat().st_size
        for pos in sorted({0, 1, size // 3, size // 2, size - 2, size - 1}):
            with flipped(gen / name, pos):
                msg = check_error(root, emb)
            assert f"{gen.name}/{name}" in msg and "\n" not in msg, (name, pos, msg)


def test_every_byte_of_index_json_is_verified_on_open(built):
    root, emb, gen = built
    size = (gen / L.INFO).stat().st_size
    for pos in range(size):  # reading index.json is what every open does
        with flipped(gen / L.INFO, pos):
            with pytest.raises(IndexStoreError) as err:
                L.read_index_json(gen)
        msg = str(err.value)
        assert f"{gen.name}/{L.INFO}" in msg and "\n" not in msg, (pos, msg)


def test_the_reported_window_flip_is_refused_on_open(built):
    root, emb, gen = built
    text = (gen / L.INFO).read_text()
    assert '"window_seconds": 1.0' in text
    (gen / L.INFO).write_text(text.replace('"window_seconds": 1.0', '"window_seconds": 3.0'))
    with pytest.raises(IndexStoreError, match=rf"{gen.name}/index\.json does not match"):
        AudioIndex.open(root, embedder=emb)
    code, out = cli("query", str(root.parent / "audio" / "part0" / "s000.wav"),
                    "--index", str(root))
    assert code == 1 and "index.json does not match" in out and out.count("\n") == 1


def test_a_damaged_calibration_is_measured_again_on_use(built):
    root, emb, gen = built
    path = gen / CALIBRATION
    data = json.loads(path.read_text())
    forged = path.read_text().replace(json.dumps(data["thresholds"]["vote"]), "0.01", 1)
    path.write_text(forged)
    with AudioIndex.open(root, embedder=emb) as index:
        res = index.query(sound(3, 3.0), sample_rate=SR, min_score="auto")
        assert res.extra["min_confidence"] == 0.7  # decided by the confidence model
        cal = calibration(index)  # the thresholds are measured again too
        assert cal["thresholds"] == data["thresholds"]  # not the forged 0.01
    assert json.loads(path.read_text())["thresholds"] == data["thresholds"]


def _old_write_index_json(gen, meta):
    """index.json as sonicsearch wrote it before format 2 (no checksum of itself)."""
    with open(gen / L.INFO, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


def test_an_index_built_before_index_json_checksums_loads_unverified(tmp_path, monkeypatch):
    make_corpus(tmp_path / "audio", 4)
    emb = FakeEmbedder(tmp_path / "model.pt")
    with monkeypatch.context() as m:  # the old writer
        m.setattr(L, "FORMAT_VERSION", 1)
        m.setattr(L, "write_index_json", _old_write_index_json)
        build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    gen = tmp_path / "idx" / (tmp_path / "idx" / "CURRENT").read_text().strip()
    raw = json.loads((gen / L.INFO).read_text())
    assert raw["format_version"] == 1 and "self_sha256" not in raw
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        assert index.info()["manifest_verified"] is False
        index.check()  # the other files' checksums still pass: ok
        assert index.query(sound(2, 3.0), sample_rate=SR, k=1)[0]["path"].endswith("s002.wav")
    code, out = cli("info", "--index", str(tmp_path / "idx"), "--check")
    assert code == 0 and "check       ok" in out and "cannot be verified" in out
    code, out = cli("info", "--index", str(tmp_path / "idx"), "--json")
    assert json.loads(out)["manifest_verified"] is False
    make_corpus(tmp_path / "audio", 5)  # the next build writes the new format
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        assert index.info()["manifest_verified"] is True and index.meta["format_version"] == 2


def test_a_failed_first_build_of_a_new_folder_leaves_no_folder(tmp_path):
    emb = FakeEmbedder(tmp_path / "model.pt")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no audio files found"):
        build_index([tmp_path / "none"], emb, tmp_path / "idx")
    assert not (tmp_path / "idx").exists()
    code, out = cli("info", "--index", str(tmp_path / "idx"))
    assert code == 1 and "the folder does not exist" in out


def test_a_failed_first_build_in_an_existing_folder_says_so(tmp_path):
    emb = FakeEmbedder(tmp_path / "model.pt")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.wav").write_bytes(b"junk" * 10)
    (tmp_path / "idx").mkdir()
    with pytest.raises(DataError, match="no usable audio"):
        build_index([tmp_path / "bad"], emb, tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [L.LOCK, L.FAILED]
    for cmd in (["info"], ["query", str(tmp_path / "bad" / "a.wav")]):
        code, out = cli(*cmd, "--index", str(tmp_path / "idx"))
        assert code == 1 and out.count("\n") == 1, out
        assert re.search(r"the first build of index .* failed: no usable audio .*; run "
                         r"`sonicsearch build-index` again", out), out
        assert "CURRENT" not in out
    make_corpus(tmp_path / "audio", 3)
    assert build_index([tmp_path / "audio"], emb, tmp_path / "idx").written
    assert not (tmp_path / "idx" / L.FAILED).exists()
    with AudioIndex.open(tmp_path / "idx", embedder=emb) as index:
        assert len(index.store.records) == 3


def test_a_killed_or_running_first_build_is_named(tmp_path):
    make_corpus(tmp_path / "audio", 4)
    pid = os.fork()
    if pid == 0:  # a first build killed (SIGKILL) while embedding
        try:
            build_index([tmp_path / "audio"], FakeEmbedder(tmp_path / "model.pt",
                                                           kill_after=2), tmp_path / "idx")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert not (tmp_path / "idx" / "CURRENT").exists()
    with pytest.raises(IndexStoreError, match=r"the first build of index .* did not finish "
                                              r"\(it was killed or crashed\); run"):
        AudioIndex.open(tmp_path / "idx")
    with L.IndexLayout(tmp_path / "idx").lock():
        with pytest.raises(IndexStoreError, match=rf"still running \(pid {os.getpid()}\)"):
            AudioIndex.open(tmp_path / "idx")
    emb = FakeEmbedder(tmp_path / "model.pt")
    assert build_index([tmp_path / "audio"], emb, tmp_path / "idx").written
