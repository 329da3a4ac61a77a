"""One registry per kind of choice: the generic Registry, and the CLI, the server, the docs'
schemas and the error messages agreeing with the roll-up, index-type and backend registries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from fake_embedder import FakeEmbedder, make_corpus
from typer.testing import CliRunner

from sonicsearch.cli import app
from sonicsearch.errors import ConfigError, ModelError, UnknownNameError
from sonicsearch.index import AudioIndex, build_index, search
from sonicsearch.index.backends import BACKEND_REGISTRY
from sonicsearch.index.codec import VECTOR_FORMATS
from sonicsearch.index.faiss_index import INDEX_TYPE_REGISTRY
from sonicsearch.index.rollups import ROLLUP_REGISTRY, RollupSpec
from sonicsearch.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_registry_get_names_and_errors():
    reg: Registry[int] = Registry("colour")

    @reg.register("red")
    def red() -> int:
        return 1

    reg.register("blue", 2)
    assert reg.names() == ("red", "blue") and reg.get("red") is red and reg.get("blue") == 2
    assert "red" in reg and "green" not in reg and list(reg) == ["red", "blue"]
    with pytest.raises(UnknownNameError) as info:
        reg.get("green")
    assert str(info.value) == "unknown colour 'green'; choose one of: red, blue"
    assert isinstance(info.value, ConfigError) and isinstance(info.value, KeyError)
    with pytest.raises(UnknownNameError, match="unknown colour"):
        reg.get(["unhashable"])
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("red", 3)
    assert reg.enum("Colour").blue.value == "blue"
    assert Registry("x", sort=True).names() == ()


# -- roll-ups -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    files = make_corpus(root / "audio", 6, seconds=4.0)
    emb = FakeEmbedder(root / "model.pt")
    build_index([root / "audio"], emb, root / "idx")
    index = AudioIndex.open(root / "idx", embedder=emb)
    yield files, emb, index
    index.close()


def test_unknown_rollup_is_an_error_not_mean_top(built):
    """The per-file scorer used to compute mean-top for any name it did not know."""
    files, emb, index = built
    x = emb.embed_file(files[0]).vectors
    spans = np.zeros((len(x), 2))
    stored = index.store.vectors()
    with pytest.raises(ConfigError, match="unknown rollup 'median'; choose one of: vote, max, "
                                          "mean-top"):
        search._score_file(index.store, stored, x, spans, 0, "median", 0.5, None)


def test_a_registered_rollup_is_usable_by_name(built, monkeypatch):
    """Adding a roll-up is one registered function: the query path finds it by name."""
    files, emb, index = built

    def worst_pair(x, v, query_starts, file_spans, hop, floor):
        return float((x @ v.T).min()), float(file_spans[0, 0]), float(file_spans[0, 1])

    monkeypatch.setitem(ROLLUP_REGISTRY._entries, "min", RollupSpec(worst_pair))
    res = index.query_vectors(emb.embed_file(files[0]).vectors, k=3, rollup="min")
    assert len(res["results"]) == 3
    scores = [r["score"] for r in res["results"]]
    assert scores == sorted(scores, reverse=True) and max(scores) < 1.0


# -- the lists that read the registries ----------------------------------------------------


def _help_choices(command: str, option: str) -> list[str]:
    out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"}).output
    match = re.search(rf"{option}\s+\[([a-z|\-]+)\]", out)
    assert match, out
    return match.group(1).split("|")


def test_cli_choices_are_the_registries():
    assert _help_choices("query", "--rollup") == list(ROLLUP_REGISTRY.names())
    assert _help_choices("build-index", "--index-type") == list(INDEX_TYPE_REGISTRY.names())
    assert _help_choices("build-index", "--backend") == list(BACKEND_REGISTRY.names())


def test_an_unknown_cli_choice_lists_the_registry():
    out = CliRunner().invoke(app, ["query", "x.wav", "--rollup", "median"],
                             env={"COLUMNS": "400"})
    assert out.exit_code == 2
    assert "'vote', 'max', 'mean-top'" in out.output


def test_docs_list_the_registries():
    cli = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert f"[--rollup {'|'.join(ROLLUP_REGISTRY.names())}]" in cli
    assert f"[--index-type {'|'.join(INDEX_TYPE_REGISTRY.names())}]" in cli
    assert f"[--backend {'|'.join(BACKEND_REGISTRY.names())}]" in cli
    info = json.loads((DOCS / "schemas" / "info.schema.json").read_text(encoding="utf-8"))
    built_types = [n for n, params in INDEX_TYPE_REGISTRY.items() if params is not None]
    assert info["properties"]["index_type"]["enum"] == built_types  # "auto" is never stored
    stored = [n for n in VECTOR_FORMATS.names() if n != "auto"]
    assert info["properties"]["vector_format"]["enum"] == stored
    assert f"[--vectors {'|'.join(VECTOR_FORMATS.names())}]" in cli


def test_server_schema_and_page_list_the_rollups():
    pytest.importorskip("fastapi")
    from sonicsearch.serve.app import QueryParams

    schema = QueryParams.model_json_schema()["properties"]["rollup"]
    assert schema["enum"] == list(ROLLUP_REGISTRY.names()) and schema["default"] == "vote"
    page = (ROOT / "sonicsearch" / "serve" / "static" / "index.html").read_text("utf-8")
    select = page[page.index('<select name="rollup">'):]
    select = select[: select.index("</select>")]
    assert re.findall(r'<option value="([^"]+)">', select) == list(ROLLUP_REGISTRY.names())


def test_unknown_index_type_and_backend_name_the_valid_ones():
    from sonicsearch.index.backends import check_backend
    from sonicsearch.index.faiss_index import check_index_type

    with pytest.raises(ConfigError, match="unknown index type 'annoy'; choose one of: auto, "
                                          "flat, hnsw, ivf, ivfpq"):
        check_index_type("annoy")
    with pytest.raises(ConfigError, match="unknown backend 'qdrant'; choose one of: faiss, "
                                          "milvus"):
        check_backend("qdrant")
    assert BACKEND_REGISTRY.get("faiss").__name__ == "FaissBackend"
    assert BACKEND_REGISTRY.get("milvus").__name__ == "MilvusBackend"


def test_arch_help_lists_the_arch_registry():
    """The CLI keeps torchvision out of its start-up, so its help names the archs as text:
    it must be the registry's list."""
    from sonicsearch.model.backbones import ARCH_REGISTRY

    out = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"}).output
    assert f"Backbone: {', '.join(ARCH_REGISTRY.names())}." in out
    with pytest.raises(ModelError, match="unknown arch 'resnet19'; choose one of: alexnet, "
                                         "densenet121, resnet18"):
        ARCH_REGISTRY.get("resnet19")
