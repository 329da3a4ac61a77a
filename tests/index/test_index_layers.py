"""The index's layers: calibration sits above the index API (a client of IndexReader) and
the index never calls back into it; filters know nothing of either; ``min_score="auto"``
is resolved before the search; no code outside index/backends/ asks which backend it
holds."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import soundfile as sf
from fake_embedder import SR, FakeEmbedder, make_corpus, sound
from typer.testing import CliRunner

from sonicsearch.cli import app
from sonicsearch.errors import ConfigError
from sonicsearch.index import AudioIndex, build_index
from sonicsearch.index.builder import build_index as library_build
from sonicsearch.index.calibration import calibration
from sonicsearch.index.reader import IndexReader
from sonicsearch.index.request import QueryRequest

PKG = Path(__file__).resolve().parents[2] / "sonicsearch"


def imports(module: Path) -> set[str]:
    """Every sonicsearch module a file imports at run time (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("sonicsearch")}


def test_filters_and_calibration_do_not_import_the_api_back():
    index = PKG / "index"
    assert not imports(index / "filters.py") & {
        "sonicsearch.index.api", "sonicsearch.index.calibration", "sonicsearch.index.reader"}
    assert "sonicsearch.index.api" not in imports(index / "calibration.py")
    for low in ("reader.py", "search.py", "request.py", "filters.py", "store.py"):
        assert "sonicsearch.index.calibration" not in imports(index / low), low


def test_no_backend_name_branches_outside_the_backends_package():
    names = re.compile(r"""(==|!=|\bin\b)\s*\(?["'](faiss|milvus)["']""")
    for path in PKG.rglob("*.py"):
        if "backends" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert not names.search(text), path


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("layers")
    make_corpus(root / "audio", 6)
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx")
    return root / "idx", emb


def test_calibration_is_a_client_of_the_reader(index_dir, monkeypatch):
    path, emb = index_dir

    def no(*args, **kwargs):
        raise AssertionError("calibration called back into AudioIndex")

    for name in ("query", "query_vectors", "query_files", "run", "run_clips"):
        monkeypatch.setattr(AudioIndex, name, no, raising=False)
    with IndexReader.open(path, device="cpu") as reader:
        assert not isinstance(reader, AudioIndex)
        assert calibration(reader)["samples"] > 0
    with AudioIndex.open(path, embedder=emb, device="cpu") as index:  # "auto" as before
        monkeypatch.undo()
        res = index.query(sound(3, 2.0), sample_rate=SR, min_score="auto")
        assert res.extra["min_confidence"] == 0.7 and res.extra["min_score"] is None
        assert calibration(index)["confidence"]["fits"]["vote"]["stored"] == 0


def test_min_score_auto_is_resolved_before_the_search(index_dir):
    path, emb = index_dir
    with AudioIndex.open(path, embedder=emb, device="cpu") as index:
        q = emb.embed_waveform(sound(3, 2.0), SR)
        with pytest.raises(ConfigError, match="resolved to a number before the search"):
            index.search(QueryRequest(vectors=q.vectors, min_score="auto"))
        direct = index.search(QueryRequest(vectors=q.vectors, min_score=0.1))
        assert direct.extra["min_score"] == 0.1


# -- one request, one build call ---------------------------------------------------------


def test_cli_search_does_no_library_work():
    """cli/search.py neither parses YAML, nor resolves backends, uris or models, nor builds
    Filters: the library does (config.load_index_config, index.builder, QueryRequest)."""
    cli = PKG / "cli" / "search.py"
    text = cli.read_text(encoding="utf-8")
    assert "yaml" not in imports(cli) and "import yaml" not in text
    for name in ("backend_of", "check_backend", "load_embedder", "Filters(", "resolve_prefix",
                 "read_index_json"):
        assert name not in text, name
    serve = (PKG / "serve" / "app.py").read_text(encoding="utf-8")
    assert "Filters(" not in serve and "resolve_prefix" not in serve


def test_build_index_takes_the_cli_options_one_to_one():
    command = next(c for c in app.registered_commands if c.name == "build-index")
    cli_params = [p for p in inspect.signature(command.callback).parameters if p != "ctx"]
    lib_params = [p for p in inspect.signature(library_build).parameters if p != "progress"]
    assert cli_params == lib_params


def test_cli_server_and_api_pass_one_query_request(index_dir, monkeypatch, tmp_path):
    path, emb = index_dir
    seen: list[QueryRequest] = []
    real = AudioIndex.run_clips

    def spy(self, request):
        seen.append(request)
        return real(self, request)

    monkeypatch.setattr(AudioIndex, "run_clips", spy)
    monkeypatch.setattr("sonicsearch.index.api.load_embedder",
                        lambda p, device="auto", features=None, **kw: FakeEmbedder(p))
    clip = tmp_path / "clip.wav"
    sf.write(str(clip), sound(2, 2.0), SR)
    out = CliRunner().invoke(app, ["query", str(clip), "--index", str(path), "--k", "2",
                                   "--label", "mid", "--min-duration", "1", "--json"])
    assert out.exit_code == 0, out.output
    (req,) = seen
    assert isinstance(req, QueryRequest) and req.k == 2 and req.clips == (clip,)
    assert req.filters.labels == ("mid",) and req.filters.min_duration == 1.0


def test_calibration_follows_a_refresh(tmp_path):
    make_corpus(tmp_path / "audio", 4)
    emb = FakeEmbedder(tmp_path / "model.pt")
    build_index([tmp_path / "audio"], emb, tmp_path / "idx")
    with AudioIndex.open(tmp_path / "idx", embedder=emb, device="cpu") as index:
        before = calibration(index)
        make_corpus(tmp_path / "audio", 2, seed0=50)
        build_index([tmp_path / "audio"], emb, tmp_path / "idx")
        assert index.refresh()
        after = calibration(index)  # measured on the new generation, not the cached one
        assert after["generation"] != before["generation"]
        assert after["vectors"] == index.ntotal > before["vectors"]
