"""Live updates: a build commits a new generation while clients query a running server;
the server switches to it without a restart, and no request fails."""

from __future__ import annotations

import threading
import time

import httpx
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound, write_sound
from serve_fixtures import ThreadServer, serve_app

from sonicsearch.index import build_index


def test_new_generation_is_served_without_a_failed_request(tmp_path):
    make_corpus(tmp_path / "audio", 8, seconds=5.0)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
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
        time.sleep(0.5)
        before = counts[0]
        new_file = write_sound(tmp_path / "audio" / "part9" / "s050.wav", 50, 5.0)
        report = build_index([tmp_path / "audio"], emb, tmp_path / "idx")
        assert report.written and report.generation == "gen-000002"
        deadline = time.monotonic() + 10
        while httpx.get(srv.url + "/healthz").json()["generation"] != "gen-000002":
            assert time.monotonic() < deadline, "the server did not switch generations"
            time.sleep(0.05)
        time.sleep(0.5)
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
    assert not build_index([tmp_path / "audio"], emb, tmp_path / "idx").written
    assert not (tmp_path / "idx" / "gen-000001").exists()
