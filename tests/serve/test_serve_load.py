"""A bounded load test: 8 concurrent clients against a server in its own process, zero
errors, throughput and p50/p95 latency reported, and the server's memory flat (RSS after
10 % and after 100 % of the queries), for 100 and for 1,000 queries (about 5 s here, so
not marked slow)."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound
from serve_fixtures import rss_bytes, start_process

from sonicsearch.index import build_index

CLIENTS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    make_corpus(root / "audio", 20, seconds=6.0)
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx")
    clips = []
    for seed in range(CLIENTS):
        path = root / f"clip{seed}.wav"
        sf.write(str(path), sound(seed, 6.0)[SR : 4 * SR], SR)
        clips.append(path.read_bytes())
    proc, url = start_process(root / "idx", root / "model.pt")
    yield proc, url, clips
    proc.terminate()
    proc.wait(timeout=30)


def run_load(proc, url: str, clips: list[bytes], total: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    issued = [0]
    rss: dict[str, int] = {}
    tenth = total // 10

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while True:
                with lock:
                    if issued[0] >= total:
                        return
                    issued[0] += 1
                t0 = time.perf_counter()
                res = c.post("/query", params={"k": 5, "min_score": "auto"},
                             files={"file": (f"clip{i}.wav", clips[i], "audio/wav")})
                dt = time.perf_counter() - t0
                ok = res.status_code == 200 and res.json()["results"]
                with lock:
                    latencies.append(dt)
                    if not ok:
                        errors.append(f"{res.status_code} {res.text[:200]}")
                    if len(latencies) == tenth:
                        rss["tenth"] = rss_bytes(proc.pid)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    rss["end"] = rss_bytes(proc.pid)
    lat = np.array(latencies) * 1000
    stats = {"queries": len(latencies), "errors": len(errors), "wall_s": round(wall, 2),
             "qps": round(len(latencies) / wall, 1), "p50_ms": round(float(np.median(lat)), 1),
             "p95_ms": round(float(np.percentile(lat, 95)), 1),
             "rss_tenth_mb": round(rss["tenth"] / 2**20, 1),
             "rss_end_mb": round(rss["end"] / 2**20, 1)}
    print(f"\nserve load: {stats}")
    assert errors == [], errors[:3]
    return stats


def check(stats: dict, total: int) -> None:
    assert stats["queries"] == total and stats["errors"] == 0
    # memory flat: RSS may grow a little (allocator pools, caches), not with the queries
    assert stats["rss_end_mb"] - stats["rss_tenth_mb"] < 25


def test_load_100_queries(server):
    proc, url, clips = server
    check(run_load(proc, url, clips, 100), 100)


def test_load_1000_queries(server):
    proc, url, clips = server
    check(run_load(proc, url, clips, 1000), 1000)
