"""kill -9 at any moment of a build leaves a readable index: the previous one, intact and
answering identically, or (once CURRENT was replaced) the complete new one. The next build
succeeds and removes the leftovers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fake_embedder import SR, FakeEmbedder, make_corpus, sound

from sonicsearch.index import AudioIndex, build_index

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
N_OLD, N_NEW = 10, 30

# One child process imports once, then forks a builder per scenario; each builder is
# SIGKILLed where its scenario says (by itself, or by the child at a random moment).
CHILD = """
import json, os, random, signal, sys, time
sys.path[:0] = sys.argv[5:7]
from fake_embedder import FakeEmbedder
from sonicsearch.index import build_index
scenarios, audio, model, root = json.loads(sys.argv[1]), *sys.argv[2:5]

def builder(mode, arg, index_dir):
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    kwargs = {}
    if mode == "embed":  # while embedding: the new generation folder is partial
        kwargs["kill_after"] = int(arg)
    elif mode == "random":  # killed by the parent at a random moment
        kwargs["delay"] = float(arg.split(",")[0])
    elif mode == "fsync":  # at the arg-th fsync: while writing, or before the switch
        real_fsync, count = os.fsync, [0]
        def fsync(fd):
            count[0] += 1
            if count[0] == int(arg):
                die()
            real_fsync(fd)
        os.fsync = fsync
    elif mode == "replaced":  # right after CURRENT was switched, before the cleanup
        real_replace = os.replace
        def replace(src, dst):
            real_replace(src, dst)
            die()
        os.replace = replace
    build_index([audio], FakeEmbedder(model, **kwargs), index_dir)

status = {}
for name, (mode, arg) in scenarios.items():
    index_dir = os.path.join(root, name)
    pid = os.fork()
    if pid == 0:
        try:
            builder(mode, arg, index_dir)
        finally:
            os._exit(0)
    if mode == "random":
        wait = float(arg.split(",")[1])
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(index_dir, "gen-000002")):
            assert time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0)
            time.sleep(0.002)
        time.sleep(random.uniform(0.0, wait))
        os.kill(pid, signal.SIGKILL)
    status[name] = os.waitpid(pid, 0)[1]
print(json.dumps(status))
"""

SCENARIOS = {
    "embed": ("embed", "5"),
    "fsync-first": ("fsync", "1"),
    "fsync-middle": ("fsync", "4"),
    "fsync-before-switch": ("fsync", "10"),
    "replaced": ("replaced", "0"),
    "random": ("random", "0.01,0.5"),  # delay per embedded file, longest wait to the kill
    "random-fast": ("random", "0,0.2"),
}


def clips():
    return [sound(2)[int(0.7 * SR) : int(3.1 * SR)], sound(7)[: 2 * SR]]


def answers(index_dir: Path, emb: FakeEmbedder) -> list[dict]:
    with AudioIndex.open(index_dir, embedder=emb) as index:
        return [index.query(c, k=5, sample_rate=SR, rollup=r).to_dict()
                for c in clips() for r in ("vote", "max")]


def test_kill_during_build_keeps_the_index_usable(tmp_path):
    audio, model = tmp_path / "audio", tmp_path / "model.pt"
    make_corpus(audio, N_OLD)
    emb = FakeEmbedder(model)
    build_index([audio], emb, tmp_path / "base")
    before = answers(tmp_path / "base", emb)
    make_corpus(audio, N_NEW, seed0=N_OLD)  # work for the next build

    for name in SCENARIOS:
        shutil.copytree(tmp_path / "base", tmp_path / name)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(SCENARIOS), str(audio), str(model),
         str(tmp_path), str(REPO), str(FIXTURES)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, code in status.items():  # every builder died by SIGKILL (a random kill may
        killed = os.WIFSIGNALED(code) and os.WTERMSIG(code) == signal.SIGKILL  # come late)
        assert killed or (name.startswith("random") and code == 0), (name, code)

    for name in SCENARIOS:
        index_dir = tmp_path / name
        current = (index_dir / "CURRENT").read_text().strip()
        left = sorted(p.name for p in index_dir.iterdir() if p.name.startswith("gen-"))
        print(f"{name}: exit {status[name]}, live {current}, folders {left}")
        if name == "replaced":
            assert current == "gen-000002" and (index_dir / "gen-000001").exists()
        elif not name.startswith("random"):
            assert current == "gen-000001", name
            assert (index_dir / "gen-000002").exists(), name  # the partial leftover
        if current == "gen-000001":  # the old index, intact: identical answers
            assert answers(index_dir, emb) == before, name
        else:  # the new one, complete
            assert AudioIndex.open(index_dir).info()["files"] == N_OLD + N_NEW, name
        report = build_index([audio], emb, index_dir)  # the next build mends everything
        assert report.files == N_OLD + N_NEW, name
        names = sorted(p.name for p in index_dir.iterdir())
        assert names == [".lock", "CURRENT", (index_dir / "CURRENT").read_text().strip()]
        assert answers(index_dir, emb)[0]["results"][0]["path"].endswith("s002.wav")


@pytest.mark.parametrize("count", [11])
def test_fsync_count_of_a_build(tmp_path, monkeypatch, count):
    """Keeps the kill points above meaningful: fsync 10 is the last before the switch."""
    make_corpus(tmp_path / "audio", 2)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    make_corpus(tmp_path / "audio", 1, seed0=5)
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"),
                                                     real_replace(a, b)))
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    assert calls == ["fsync"] * (count - 1) + ["replace", "fsync"]
