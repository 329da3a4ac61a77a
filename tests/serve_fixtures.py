"""A real uvicorn server on loopback for the serve tests: in a thread of the test process,
or (``python tests/serve_fixtures.py INDEX``) in a process of its own, with the fake model.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from fake_embedder import FakeEmbedder

from sonicsearch.serve import ServeSettings, create_app

HERE = Path(__file__).parent
# tokens the CLI accepts that a header, a cookie or JavaScript could mangle
TOKENS = ["correct horse battery staple", '100%-sure;a=b"quoted"', "ünïcödé-tökén-ß-ñ",
          "🎵🎶 sound search 🔊🎧", "%41%42%43%44-not-an-escape", "semi;colons;and=equals=="]


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ThreadServer:
    """uvicorn serving ``app`` on a random free loopback port, in a daemon thread."""

    def __init__(self, app):
        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_ready(self.url)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def wait_ready(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no server at {url}")


def serve_app(index_dir: Path, model_path: Path, **settings):
    emb = FakeEmbedder(model_path)
    return create_app(ServeSettings(Path(index_dir), **settings), embedder=emb)


def start_process(index_dir: Path, model_path: Path) -> tuple[subprocess.Popen, str]:
    """The server in its own process (for RSS), on a free port; returns (process, url)."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.Popen([sys.executable, str(HERE / "serve_fixtures.py"), str(index_dir),
                             str(model_path), str(port)], cwd=HERE.parent, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc=proc)
    return proc, url


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    index, model, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uvicorn.run(serve_app(Path(index), Path(model)), host="127.0.0.1", port=port,
                log_level="warning")
