"""Distributed extraction on a local Ray (2 CPUs): the same index as a local build, to
either backend; bad files reported as skipped; a killed worker's files are retried."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from fake_embedder import FakeEmbedder, make_corpus

from sonicsearch.config import IndexConfig
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index.store import Store

ray = pytest.importorskip("ray", reason="ray not installed (pip install 'sonicsearch[scale]')")
pytest.importorskip("ray.data", reason="ray[data] not installed")
HERE = Path(__file__).resolve().parent  # the workers import FakeFactory from this module
FIXTURES = HERE.parent / "fixtures"


@pytest.fixture(scope="module")
def local_ray():
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(FIXTURES), old]))
    # a busy 2-core CI machine can take longer than Ray's default 30 s to start its GCS
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "180")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = old


class FakeFactory:
    """Builds the FakeEmbedder in a worker; SIGKILLs the worker the first time it reaches
    ``victim`` (a marker file remembers that it did)."""

    def __init__(self, model: Path, victim: str | None = None, marker: Path | None = None):
        self.model, self.victim, self.marker = model, victim, marker

    def __call__(self) -> FakeEmbedder:
        emb = FakeEmbedder(self.model)
        victim, marker, embed_file = self.victim, self.marker, emb.embed_file

        def embed(path):
            if str(path) == victim and not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return embed_file(path)

        emb.embed_file = embed
        return emb


def ray_embedder(model: Path, **kwargs):
    from sonicsearch.scale.ray_embed import RayEmbedder

    return RayEmbedder(FakeEmbedder(model), FakeFactory(model, **kwargs), num_workers=2,
                       batch_files=2)


def test_ray_build_equals_local_build_on_both_backends(tmp_path, local_ray):
    audio, model = tmp_path / "audio", tmp_path / "model.pt"
    make_corpus(audio, 9)
    (audio / "part0" / "broken.wav").write_bytes(b"RIFF not really a wav")
    local = build_index([audio], FakeEmbedder(model), tmp_path / "local")
    configs = [IndexConfig()]
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
        configs.append(IndexConfig(backend="milvus"))
    except ImportError:
        pass
    for i, cfg in enumerate(configs):
        index_dir = tmp_path / f"ray{i}"
        report = build_index([audio], ray_embedder(model), index_dir, cfg)
        assert report.added == local.added and report.skipped == local.skipped
        assert len(report.skipped) == 1 and report.skipped[0][0].endswith("broken.wav")
        a, b = Store(tmp_path / "local" / "gen-000001"), Store(index_dir / "gen-000001")
        assert a.records == b.records
        assert np.array_equal(a.vectors(), b.vectors()) and np.array_equal(a.probs(), b.probs())
        meta = json.loads((index_dir / "gen-000001" / "index.json").read_text())
        assert meta["backend"]["name"] == cfg.backend
        with AudioIndex.open(index_dir) as index:
            _, ids = index.index.search(a.vectors()[[0, 30]], 1)
            assert ids[:, 0].tolist() == [0, 30]


def test_a_killed_worker_is_restarted_and_its_files_embedded(tmp_path, local_ray):
    audio, model = tmp_path / "audio", tmp_path / "model.pt"
    files = make_corpus(audio, 8)
    victim, marker = str(files[3].resolve()), tmp_path / "killed"
    report = build_index([audio], ray_embedder(model, victim=victim, marker=marker),
                         tmp_path / "idx")
    assert marker.exists()  # a worker process really died mid-run ...
    assert int(marker.read_text()) != os.getpid()
    assert len(report.added) == 8 and not report.skipped  # ... and nothing was lost
    local = build_index([audio], FakeEmbedder(model), tmp_path / "local")
    assert np.array_equal(Store(tmp_path / "idx" / "gen-000001").vectors(),
                          Store(tmp_path / "local" / "gen-000001").vectors())
    assert local.added == report.added
