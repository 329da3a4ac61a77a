"""Live updates: a build commits a new generation while clients query a running server;
the server switches to it without a restart, and no request fails. On a FAISS index, and on
a Milvus server with the build in a process of its own (as `sonicsearch build-index` beside
`sonicsearch serve`)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound, write_sound
from milvus_targets import milvus_target
from serve_fixtures import ThreadServer, serve_app

from sonicsearch.config import IndexConfig
from sonicsearch.index import build_index

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BUILD = """
import sys
sys.path[:0] = [sys.argv[4]]
from fake_embedder import FakeEmbedder
from sonicsearch.config import IndexConfig
from sonicsearch.index import build_index
r = build_index([sys.argv[1]], FakeEmbedder(sys.argv[2]), sys.argv[3],
                IndexConfig(backend="milvus", uri=sys.argv[5]))
print(r.generation, r.written)
"""


def wait_for(condition, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture(params=["faiss", "server"])
def backend(request, tmp_path):
    """(IndexConfig, build in another process?) for FAISS and a Milvus server (milvus-lite
    is left out: one process may open it, and its 0.2-0.5 s searches make this test take
    minutes)."""
    if request.param == "faiss":
        yield IndexConfig(), False
        return
    with milvus_target(request.param, tmp_path) as target:
        yield target.config(), target.kind == "server"


def build(audio: Path, model: Path, idx: Path, config: IndexConfig, apart: bool,
          emb: FakeEmbedder) -> tuple[str, bool]:
    """(generation, written) of a build here or, ``apart``, in a process of its own."""
    if not apart:
        r = build_index([audio], emb, idx, config)
        return r.generation, r.written
    proc = subprocess.run([sys.executable, "-c", BUILD, str(audio), str(model), str(idx),
                           str(FIXTURES), config.uri], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    gen, written = proc.stdout.split()[-2:]
    return gen, written == "True"


def test_new_generation_is_served_without_a_failed_request(tmp_path, backend):
    config, apart = backend
    make_corpus(tmp_path / "audio", 8, seconds=5.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx", config)
    clip = tmp_path / "clip.wav"
    sf.write(str(clip), sound(2, 5.0)[SR : 4 * SR], SR)
    new_clip = tmp_path / "new-clip.wav"
    sf.write(str(new_clip), sound(50, 5.0)[SR : 4 * SR], SR)
    data = clip.read_bytes()
    app = serve_app(tmp_path / "idx", tmp_path / "model.pt", poll_seconds=0.2)
    failures: list[str] = []
    generations: set[str] = set()
    done = threading.Event()
    counts = [0]

    def client() -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            while not done.is_set():
                res = c.post("/query", params={"k": 3, "view": "true"},
                             files={"file": ("clip.wav", data, "audio/wav")})
                counts[0] += 1
                if res.status_code != 200 or not res.json()["results"]:
                    failures.append(f"{res.status_code} {res.text[:200]}")
                    continue
                generations.add(res.json()["view"]["generation"])
                fid = res.json()["view"]["ids"][0]
                audio = c.get(f"/files/{fid}/audio", headers={"Range": "bytes=0-99"})
                if audio.status_code != 206:
                    failures.append(f"audio {audio.status_code} {audio.text[:200]}")

    with ThreadServer(app) as srv:
        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: counts[0] > 0, "no query was answered before the build")
        before = counts[0]
        new_file = write_sound(tmp_path / "audio" / "part9" / "s050.wav", 50, 5.0)
        gen, written = build(tmp_path / "audio", tmp_path / "model.pt", tmp_path / "idx",
                             config, apart, emb)
        assert written and gen == "gen-000002"
        # the switch waits for the new generation's no-match calibration (1,800 filtered
        # searches; over gRPC to a Milvus server 44 s on a loaded 2-core machine)
        wait_for(lambda: httpx.get(srv.url + "/healthz").json()["generation"] == "gen-000002",
                 "the server did not switch generations", 180)
        wait_for(lambda: "gen-000002" in generations, "no query was answered after the switch")
        done.set()
        for t in threads:
            t.join()
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            res = c.post("/query", params={"k": 1},
                         files={"file": ("new.wav", new_clip.read_bytes(), "audio/wav")})
            info = c.get("/info").json()
    assert failures == []
    assert counts[0] > before > 0  # queries ran before, during and after the build
    assert generations == {"gen-000001", "gen-000002"}
    assert res.json()["results"][0]["path"] == str(new_file.resolve())
    assert info["files"] == 9 and info["swaps"] == 1
    # the server held gen-000001 (a reader lock) while the build committed, so that build
    # kept it; the server let go of it on switching, so the next build's clean-up deletes it
    assert (tmp_path / "idx" / "gen-000001").is_dir()
    assert not build_index([tmp_path / "audio"], emb, tmp_path / "idx", config).written
    assert not (tmp_path / "idx" / "gen-000001").exists()
