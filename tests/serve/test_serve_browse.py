"""The server's browse routes over HTTP: ``GET /map`` (every file, each with the id that
plays it) and ``GET /files/{id}/path`` (the library's path JSON, with ids), "same
recording elsewhere" by ``/files/{id}/similar?mode=recording``, and their errors."""

from __future__ import annotations

import httpx
import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound
from serve_fixtures import ThreadServer, serve_app

from sonicsearch.index import AudioIndex, build_index
from sonicsearch.serve.media import file_id


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-browse")
    files = make_corpus(root / "audio", 6, seconds=6.0)
    copy = root / "audio" / "copies" / "s001-quiet.wav"
    copy.parent.mkdir(parents=True)
    sf.write(str(copy), 0.5 * sound(1, 6.0), SR)
    build_index([root / "audio"], FakeEmbedder(root / "model.pt"), root / "idx")
    with ThreadServer(serve_app(root / "idx", root / "model.pt")) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            yield root, files, copy, client


def _id(path) -> str:
    return file_id(str(path.resolve()))


def test_the_map_gives_every_file_with_an_id_that_plays(site):
    root, files, copy, client = site
    res = client.get("/map")
    assert res.status_code == 200, res.text
    out = res.json()
    assert out["files"] == 7 and out["method"] == "pca"
    with AudioIndex.open(root / "idx") as idx:
        want = idx.collection_map().to_dict()
    assert [{k: v for k, v in p.items() if k != "id"} for p in out["points"]] == want["points"]
    assert all(p["id"] == file_id(p["path"]) for p in out["points"])
    audio = client.get(f"/files/{out['points'][0]['id']}/audio", headers={"Range": "bytes=0-99"})
    assert audio.status_code == 206 and len(audio.content) == 100


def test_a_path_between_two_files_by_id(site):
    root, files, copy, client = site
    res = client.get(f"/files/{_id(files[0])}/path", params={"to": _id(files[5]), "n": 4})
    assert res.status_code == 200, res.text
    out = res.json()
    with AudioIndex.open(root / "idx") as idx:
        want = idx.path_between(files[0], files[5], 4).to_dict()
    assert [{k: v for k, v in f.items() if k != "id"} for f in out["files"]] == want["files"]
    assert [f["id"] for f in out["files"]][::3] == [_id(files[0]), _id(files[5])]
    assert out["worst_step"] == want["worst_step"]


@pytest.mark.parametrize("which, n, status, message", [
    ("same", 3, 422, "two different files"),
    ("other", 1, 422, "at least its 2"),
    ("other", 8, 422, "needs 8 indexed files; the index holds 7"),
    ("unknown", 3, 404, "no indexed file has id"),
])
def test_bad_paths_are_one_line_errors(site, which, n, status, message):
    root, files, copy, client = site
    to = {"same": _id(files[2]), "other": _id(files[3]), "unknown": "0" * 16}[which]
    res = client.get(f"/files/{_id(files[2])}/path", params={"to": to, "n": n})
    assert res.status_code == status, res.text
    body = res.json()
    assert message in body["detail"] and "\n" not in body["detail"]
    assert client.get(f"/files/{_id(files[2])}/path").status_code == 422  # no "to"


def test_same_recording_elsewhere_from_an_indexed_file(site):
    root, files, copy, client = site
    res = client.get(f"/files/{_id(files[1])}/similar", params={"mode": "recording", "k": 2})
    assert res.status_code == 200, res.text
    assert res.json()["results"][0]["path"] == str(copy.resolve())
