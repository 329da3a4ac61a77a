"""A bounded load test: 8 concurrent clients against a server in its own process, zero
errors, throughput and p50/p95 latency reported, and the server's memory flat (RSS after
10 % and after 100 % of the queries), for 100 and for 1,000 queries (about 5 s here, so
not marked slow). On an index whose backend is a Milvus server, the same load runs while
`build-index` adds files from another process, with zero errors and the new generation
served at the end."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound
from milvus_targets import milvus_target
from serve_fixtures import rss_bytes, start_process

from sonicsearch.index import build_index

CLIENTS = 8
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BUILD = """
import sys
sys.path[:0] = [sys.argv[4]]
from fake_embedder import FakeEmbedder
from sonicsearch.config import IndexConfig
from sonicsearch.index import build_index
r = build_index([sys.argv[1]], FakeEmbedder(sys.argv[2]), sys.argv[3],
                IndexConfig(backend="milvus", uri=sys.argv[5]))
print(r.generation, len(r.added))
"""


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


def test_load_on_a_milvus_server_while_build_index_updates_it(tmp_path):
    with milvus_target("server", tmp_path) as target:
        make_corpus(tmp_path / "audio", 12, seconds=6.0)
        emb = FakeEmbedder(tmp_path / "model.pt")
        build_index([tmp_path / "audio"], emb, tmp_path / "idx", target.config())
        clips = []
        for seed in range(CLIENTS):
            sf.write(str(tmp_path / f"clip{seed}.wav"), sound(seed, 6.0)[SR : 4 * SR], SR)
            clips.append((tmp_path / f"clip{seed}.wav").read_bytes())
        # it answers once the no-match calibration is measured: 1,800 searches over gRPC
        proc, url = start_process(tmp_path / "idx", tmp_path / "model.pt", timeout=180)
        try:
            make_corpus(tmp_path / "audio", 4, seed0=40, seconds=6.0)
            build = subprocess.Popen(
                [sys.executable, "-c", BUILD, str(tmp_path / "audio"),
                 str(tmp_path / "model.pt"), str(tmp_path / "idx"), str(FIXTURES),
                 target.uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            stats = run_load(proc, url, clips, 300)  # while the build runs (and after)
            out, err = build.communicate(timeout=300)
            assert build.returncode == 0, err[-2000:]
            assert out.split()[-2:] == ["gen-000002", "4"]
            live = json.loads((tmp_path / "idx" / "gen-000002" / "index.json").read_text())
            assert live["backend"]["collection"].endswith("_gen_000001")  # updated in place
            assert live["backend"]["generation"] == 2
            assert stats["queries"] == 300 and stats["errors"] == 0
            deadline = time.monotonic() + 180  # the switch follows the new calibration
            while httpx.get(url + "/healthz").json()["generation"] != "gen-000002":
                assert time.monotonic() < deadline, "the server did not switch generations"
                time.sleep(0.2)
            assert httpx.get(url + "/info").json()["files"] == 16
            stats = run_load(proc, url, clips, 50)
            assert stats["errors"] == 0
        finally:
            proc.terminate()
            proc.wait(timeout=30)
