"""`sonicsearch serve` over HTTP: a real uvicorn server on loopback, the fake model.

Query JSON = the library's (and CLI's), filters and no-match, file metadata, Range
requests, refusals (traversal, unknown ids, a symlink or a changed file swapped in after
indexing), upload limits, non-audio uploads, the token and the Host check.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys

import httpx
import numpy as np
import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound
from serve_fixtures import ThreadServer, serve_app

from sonicsearch.errors import ConfigError
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index.confidence import ACCEPT_CONFIDENCE
from sonicsearch.serve import ServeSettings, create_app
from sonicsearch.serve.media import file_id

SECONDS = 6.0
TOKEN = "t0ken-for-the-tests-only"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    files = make_corpus(root / "audio", 12, seconds=SECONDS)
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx")
    clip = root / "clip.wav"
    sf.write(str(clip), sound(3, SECONDS)[int(1.2 * SR): int(4.4 * SR)], SR)
    stranger = root / "stranger.wav"
    sf.write(str(stranger), sound(999, 4.0), SR)
    return root, files, emb, clip, stranger


@pytest.fixture(scope="module")
def server(corpus):
    root = corpus[0]
    with ThreadServer(serve_app(root / "idx", root / "model.pt", poll_seconds=0.2)) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            yield client


@pytest.fixture(scope="module")
def locked(corpus):
    """A server with a token and small limits."""
    root = corpus[0]
    app = serve_app(root / "idx", root / "model.pt", token=TOKEN, max_upload_mb=0.2,
                    max_seconds=4.0)
    with ThreadServer(app) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            yield client


def post_clip(client, path, **params):
    with open(path, "rb") as f:
        return client.post("/query", params=params,
                           files={"file": (os.path.basename(path), f, "audio/wav")})


def test_health_info_and_docs(server, corpus):
    assert server.get("/healthz").json() == {"status": "ok", "generation": "gen-000001"}
    info = server.get("/info").json()
    assert info["files"] == 12 and info["generation"] == "gen-000001"
    assert info["root"] == str((corpus[0] / "audio").resolve())
    assert set(info["no_match"]["thresholds"]) == {"vote", "max", "mean-top"}
    assert "/query" in server.get("/openapi.json").json()["paths"]
    assert server.get("/docs").status_code == 200
    page = server.get("/")
    assert page.status_code == 200 and "sonicsearch" in page.text
    assert server.get("/static/app.js").status_code == 200


def test_query_json_is_the_cli_json(server, corpus):
    root, files, emb, clip, _ = corpus
    res = post_clip(server, clip, k=5)
    assert res.status_code == 200, res.text
    got = res.json()
    with AudioIndex.open(root / "idx", embedder=emb) as idx:
        want = idx.query(clip, k=5).to_dict()
    want["query"] = "clip.wav"
    assert got == want
    assert got["results"][0]["path"] == str(files[3].resolve())


def test_query_view_filters_and_form_fields(server, corpus):
    _, files, _, clip, _ = corpus
    res = post_clip(server, clip, k=4, view="true").json()
    assert res["view"]["ids"] == [file_id(r["path"]) for r in res["results"]]
    spec = res["view"]["spectrogram"]
    assert spec["height"] == 80 and spec["width"] > 10 and spec["duration"] == pytest.approx(3.2)
    # files[3] is in part1: a part0 prefix (relative to the collection root) drops it
    res = post_clip(server, clip, k=3, path_prefix="part0").json()
    assert len(res["results"]) == 3 and res["no_match"] is False
    assert all("/part0/" in r["path"] for r in res["results"])
    # the same filter as a form field, and max_per_folder
    with open(clip, "rb") as f:
        res = server.post("/query", data={"max_per_folder": "2", "k": "5"},
                          files={"file": ("clip.wav", f, "audio/wav")}).json()
    folders = [os.path.dirname(r["path"]) for r in res["results"]]
    assert len(res["results"]) == 4 and max(folders.count(d) for d in set(folders)) == 2
    res = post_clip(server, clip, label="no-such-label").json()
    assert res["results"] == [] and res["no_match"] is True
    assert "filters" in res["reason"]
    bad = post_clip(server, clip, min_duration=5, max_duration=1)
    assert bad.status_code == 422 and "swap" in bad.json()["detail"]
    assert post_clip(server, clip, k=0).status_code == 422


def test_style_mode_and_more_like_this(server, corpus):
    root, files, emb, clip, _ = corpus
    got = post_clip(server, clip, k=4, mode="style").json()
    with AudioIndex.open(root / "idx", embedder=emb) as idx:
        want = idx.query(clip, k=4, mode="style").to_dict()
        target = idx.store.records[5].path
        similar = idx.similar(5, k=3).to_dict()
    want["query"] = "clip.wav"
    assert got == want and got["mode"] == "style"
    fid = file_id(target)
    res = server.get(f"/files/{fid}/similar", params={"k": 3})
    assert res.status_code == 200, res.text
    assert res.json() == similar and res.json()["mode"] == "style"
    assert target not in [r["path"] for r in res.json()["results"]]
    rec = server.get(f"/files/{fid}/similar", params={"k": 3, "mode": "recording",
                                                      "view": "true"}).json()
    assert rec["mode"] == "recording" and len(rec["view"]["ids"]) == 3
    assert server.get("/files/nope/similar").status_code == 404
    bad = server.get(f"/files/{fid}/similar", params={"min_score": "auto"})
    assert bad.status_code in (400, 422) and "style mode" in bad.json()["detail"]
    assert server.get(f"/files/{fid}/similar", params={"mode": "genre"}).status_code == 422
    assert "/files/{fid}/similar" in server.get("/openapi.json").json()["paths"]


def test_no_match_for_a_clip_not_in_the_collection(server, corpus):
    _, files, _, clip, stranger = corpus
    res = post_clip(server, stranger, min_score="auto").json()
    assert res["results"] == [] and res["no_match"] is True
    assert f"no result has a confidence of {ACCEPT_CONFIDENCE:g}" in res["reason"]
    assert res["min_score"] is None
    assert res["min_confidence"] == ACCEPT_CONFIDENCE
    res = post_clip(server, clip, min_score="auto").json()
    assert res["no_match"] is False and res["results"][0]["path"] == str(files[3].resolve())
    assert res["results"][0]["confidence"] >= ACCEPT_CONFIDENCE
    assert post_clip(server, clip, min_score="high").status_code == 422


def test_file_metadata_and_range_requests(server, corpus):
    _, files, _, _, _ = corpus
    path = str(files[5].resolve())
    fid = file_id(path)
    meta = server.get(f"/files/{fid}").json()
    assert meta["path"] == path and meta["media_type"] == "audio/wav"
    data = files[5].read_bytes()
    whole = server.get(f"/files/{fid}/audio")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    part = server.get(f"/files/{fid}/audio", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert part.headers["content-length"] == "1000"
    tail = server.get(f"/files/{fid}/audio", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    open_end = server.get(f"/files/{fid}/audio", headers={"Range": f"bytes={len(data) - 5}-"})
    assert open_end.content == data[-5:]
    past = server.get(f"/files/{fid}/audio", headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(data)}"
    spec = server.get(f"/files/{fid}/spectrogram", params={"start": 2.0, "end": 3.0}).json()
    assert spec["offset"] == 1.0 and spec["duration"] == pytest.approx(3.0, abs=0.01)


def raw_get(client, path: str) -> int:
    """GET a path exactly as written (no client-side normalisation of ../)."""
    conn = http.client.HTTPConnection(client.base_url.host, client.base_url.port, timeout=10)
    conn.request("GET", path)
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.parametrize("path", [
    "/files/../../etc/passwd", "/files/..%2F..%2Fetc%2Fpasswd", "/files/%2Fetc%2Fpasswd/audio",
    "/files/0/audio", "/files/ffffffffffffffff/audio", "/files/../../../etc/passwd/audio",
])
def test_traversal_and_unknown_ids_are_refused(server, path):
    assert raw_get(server, path) == 404


def test_symlink_or_changed_file_swapped_in_is_refused(server, corpus, tmp_path):
    _, files, _, _, _ = corpus
    target = files[7]
    fid = file_id(str(target.resolve()))
    aside = tmp_path / "original.wav"
    shutil.move(target, aside)  # a rename: the inode, size and mtime stay
    try:
        secret = tmp_path / "secret.wav"
        secret.write_bytes(b"not for you" * 100)
        os.symlink(secret, target)
        res = server.get(f"/files/{fid}/audio")
        assert res.status_code == 403 and b"not for you" not in res.content
        assert server.get(f"/files/{fid}/spectrogram").status_code == 403
        target.unlink()
        assert server.get(f"/files/{fid}/audio").status_code == 404
        shutil.copyfile(aside, target)  # same bytes, another mtime
        os.utime(target, ns=(1, 1))
        assert server.get(f"/files/{fid}/audio").status_code == 409
    finally:
        target.unlink(missing_ok=True)
        os.replace(aside, target)
    assert server.get(f"/files/{fid}/audio").status_code == 200


def test_non_audio_and_unsupported_uploads(server, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("hello, this is not audio\n" * 50)
    res = post_clip(server, text)
    assert res.status_code == 415 and "notes.wav" in res.json()["detail"]
    webm = tmp_path / "rec.webm"
    webm.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 500)
    res = post_clip(server, webm)
    assert res.status_code == 415 and "WebM" in res.json()["detail"]
    assert server.post("/query", content=b"x", headers={"content-type": "text/plain"}
                       ).status_code == 415
    assert server.post("/query", files={"other": ("a.txt", b"")}).status_code == 400
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(SR * 2, dtype=np.float32), SR)
    res = post_clip(server, silent)
    assert res.status_code == 422 and "silent" in res.json()["detail"]


def test_raw_body_upload(server, corpus):
    _, files, _, clip, _ = corpus
    res = server.post("/query", params={"filename": "mine.wav", "k": 1},
                      content=clip.read_bytes(), headers={"content-type": "audio/wav"})
    assert res.status_code == 200
    assert res.json()["query"] == "mine.wav"
    assert res.json()["results"][0]["path"] == str(files[3].resolve())


def test_token_required_and_limits(locked, corpus, tmp_path):
    _, _, _, clip, _ = corpus
    assert locked.get("/healthz").status_code == 200
    assert locked.get("/info").status_code == 401
    assert locked.get("/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert locked.get("/info", headers=auth).status_code == 200
    assert httpx.get(f"{locked.base_url}/info",
                     cookies={"sonicsearch_token": TOKEN}).status_code == 200
    assert post_clip(locked, clip).status_code == 401
    locked.headers.update(auth)
    assert post_clip(locked, clip).status_code == 200
    long_clip = tmp_path / "long.wav"
    sf.write(str(long_clip), sound(5, 5.0), SR)  # 5 s > the 4 s limit
    res = post_clip(locked, long_clip)
    assert res.status_code == 413 and "4 s limit" in res.json()["detail"]

    def chunks():  # no Content-Length: refused while streaming
        for _ in range(40):
            yield b"\0" * 10000
    res = locked.post("/query", content=chunks(), headers={"content-type": "audio/wav"})
    assert res.status_code == 413 and "0.2 MB" in res.json()["detail"]
    big = tmp_path / "big.wav"
    sf.write(str(big), np.zeros(SR * 20, dtype=np.float32) + 0.1, SR)  # 320 kB
    assert post_clip(locked, big).status_code == 413


def test_host_header_must_be_loopback(server):
    assert server.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
    assert server.get("/healthz", headers={"Host": "localhost:1"}).status_code == 200


def test_non_loopback_bind_needs_a_token(corpus, monkeypatch):
    monkeypatch.delenv("SONICSEARCH_TOKEN", raising=False)
    root = corpus[0]
    with pytest.raises(ConfigError, match="without a token"):
        create_app(ServeSettings(root / "idx", host="0.0.0.0"))
    with pytest.raises(ConfigError, match="at least 16"):
        create_app(ServeSettings(root / "idx", token="short"))
    out = subprocess.run([sys.executable, "-m", "sonicsearch", "serve", "--index",
                          str(root / "idx"), "--host", "0.0.0.0"], capture_output=True,
                         text=True, env={k: v for k, v in os.environ.items()
                                         if k != "SONICSEARCH_TOKEN"})
    assert out.returncode == 1 and "without a token" in out.stderr
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
