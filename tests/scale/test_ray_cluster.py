"""Ray beyond one process: a two-node cluster on this machine (`ray start --head` and a
second node joining it over loopback (127.0.0.2), each in a process group of its own, with 1 CPU
each), a build through its address with one worker SIGKILLed mid-run: the workers ran on
both nodes, the killed one's files were embedded again, and the index equals a local
build's. The nodes are stopped by their process groups (never `ray stop`, which would stop
every Ray of the machine)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_embedder import FakeEmbedder, make_corpus

from sonicsearch.index import build_index
from sonicsearch.index.store import Store

ray = pytest.importorskip("ray", reason="ray not installed (pip install 'sonicsearch[scale]')")
pytest.importorskip("ray.data", reason="ray[data] not installed")
HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
RAY = str(Path(sys.executable).with_name("ray"))
START_S = 180  # a busy 2-core machine takes a while to start a GCS and two raylets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((IP, 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([RAY, "start", "--block", "--num-cpus", "1",
                             "--include-dashboard", "false", *args] if "--head" in args else
                            [RAY, "start", "--block", "--num-cpus", "1", *args],
                            env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the node's process group (its `ray start --block` stops its services),
    then SIGKILL to what is left of it after a grace period."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers left in the group
    except ProcessLookupError:
        pass


# The nodes listen on 127.0.0.2, a loopback address that Ray does not swap for the
# machine's own (it does with 127.0.0.1), and its GCS then binds every interface: so the
# cluster takes a token of its own, made here and given to the nodes and this driver only
IP = "127.0.0.2"
LOOPBACK = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """(the cluster's address, the environment of its processes and drivers: its token,
    and this folder's helpers on the path)."""
    tmp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    env = {**os.environ, **LOOPBACK, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(HERE), str(FIXTURES), os.environ.get("PYTHONPATH")])),
        "RAY_gcs_server_port_wait_time_s": str(START_S)}
    head = _start(["--head", "--port", str(port), "--node-ip-address", IP,
                   "--temp-dir", str(tmp / "t")], env, tmp / "head.log")
    nodes = [head]
    try:
        address = f"{IP}:{port}"
        _wait_for_nodes(address, 1, head, tmp / "head.log", env)
        nodes.append(_start(["--address", address, "--node-ip-address", IP], env,
                            tmp / "node2.log"))
        _wait_for_nodes(address, 2, nodes[1], tmp / "node2.log", env)
        yield address, env
    finally:
        for proc in reversed(nodes):
            _stop(proc)


def _wait_for_nodes(address: str, n: int, proc: subprocess.Popen, log: Path,
                    env: dict[str, str]) -> None:
    code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(sum(x['Alive'] for x in ray.nodes()))")
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"ray start exited: {log.read_text()[-500:]}")
        out = subprocess.run([sys.executable, "-c", code, address], capture_output=True,
                             text=True, timeout=START_S, env=env)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(2)
    pytest.skip(f"no {n}-node Ray cluster within {START_S} s: {log.read_text()[-500:]}")


class NodeFactory:
    """A FakeEmbedder in a worker that records its node, and SIGKILLs itself the first time
    it reaches ``victim``."""

    def __init__(self, model: Path, seen: Path, victim: str, marker: Path):
        self.model, self.seen, self.victim, self.marker = model, seen, victim, marker

    def __call__(self) -> FakeEmbedder:
        import ray as worker_ray

        node = worker_ray.get_runtime_context().get_node_id()
        (self.seen / node).write_text(str(os.getpid()))
        emb = FakeEmbedder(self.model)
        embed_file = emb.embed_file

        def embed(path):
            if str(path) == self.victim and not self.marker.exists():
                self.marker.write_text(f"{node} {os.getpid()}")
                os.kill(os.getpid(), signal.SIGKILL)
            return embed_file(path)

        emb.embed_file = embed
        return emb


RAY_BUILD = """
import sys
from pathlib import Path
from fake_embedder import FakeEmbedder
from test_ray_cluster import NodeFactory
from sonicsearch.index import build_index
from sonicsearch.scale.ray_embed import RayEmbedder
audio, model, idx, address, seen, victim, marker = sys.argv[1:]
emb = RayEmbedder(FakeEmbedder(model), NodeFactory(Path(model), Path(seen), victim,
                  Path(marker)), address=address, num_workers=2, batch_files=2)
report = build_index([audio], emb, idx)
print(len(report.added), len(report.skipped))
"""


def test_build_on_a_two_node_cluster_survives_a_killed_worker(tmp_path, two_nodes):
    """The build is a driver process of its own (the cluster's token is in its
    environment, as it would be in `build-index --ray --ray-address`'s)."""
    address, env = two_nodes
    audio, model, seen = tmp_path / "audio", tmp_path / "model.pt", tmp_path / "seen"
    seen.mkdir()
    files = make_corpus(audio, 8)
    marker = tmp_path / "killed"
    build = subprocess.run(
        [sys.executable, "-c", RAY_BUILD, str(audio), str(model), str(tmp_path / "idx"),
         address, str(seen), str(files[5].resolve()), str(marker)],
        capture_output=True, text=True, timeout=300, env=env)
    assert build.returncode == 0, build.stderr[-2000:]
    assert marker.exists()  # a worker died mid-run ...
    assert build.stdout.split()[-2:] == ["8", "0"]  # ... and no file was lost
    assert len(list(seen.iterdir())) == 2  # the workers ran on both nodes
    local = build_index([audio], FakeEmbedder(model), tmp_path / "local")
    assert len(local.added) == 8
    assert np.array_equal(Store(tmp_path / "idx" / "gen-000001").vectors(),
                          Store(tmp_path / "local" / "gen-000001").vectors())


def test_ray_workers_load_the_file_the_driver_loaded(tmp_path, monkeypatch):
    """`build-index --ray` with the model given by name ("base") once sent the name to
    the workers, which took it for a path in their own folder."""
    from sonicsearch.index import builder

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    emb = FakeEmbedder(tmp_path / "models" / "model.pt")
    wrapped = builder._ray_embedder(emb, "cpu", None, 1)
    assert wrapped.factory.args[0] == str((tmp_path / "models" / "model.pt").resolve())
