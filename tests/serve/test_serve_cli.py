"""End to end with a real (tiny, untrained) model: `build-index` and `query` with filters and
`--min-score` on the command line (in-process: a subprocess per call costs a torch import),
and the server loading the index's own model, answering exactly as `query --json`."""

from __future__ import annotations

import json

import httpx
import pytest
import torch
from fake_embedder import make_corpus
from serve_fixtures import ThreadServer
from typer.testing import CliRunner

from sonicsearch.cli import app
from sonicsearch.config import FeatureConfig, ModelConfig
from sonicsearch.model.backbones import AudioModel
from sonicsearch.model.checkpoint import save_checkpoint
from sonicsearch.serve import ServeSettings, create_app

SMALL = FeatureConfig(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32,
                      window_seconds=1.0, hop_seconds=0.5)




def cli(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def real_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("servecli")
    torch.manual_seed(0)
    model = AudioModel.from_config(SMALL, ModelConfig("resnet18", "none", 0.0), ["a", "b"])
    model.fit_normalization(model.frontend(0.1 * torch.randn(4, SMALL.window_samples)),
                            per_bin=True)
    save_checkpoint(root / "model.pt", model, config={}, labels=["a", "b"])
    files = make_corpus(root / "audio", 8, seconds=4.0)
    out = cli("build-index", str(root / "audio"), "--model", str(root / "model.pt"),
              "--index", str(root / "idx"), "--device", "cpu")
    assert out.exit_code == 0, out.output
    return root, files


def test_query_cli_filters_and_no_match(real_index):
    root, files = real_index
    out = cli("query", str(files[2]), "--index", str(root / "idx"), "--json", "-k", "5",
              "--path-prefix", str(root / "audio" / "part0"), "--max-per-folder", "2",
              "--min-score", "0", "--device", "cpu")
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert len(res["results"]) == 2 and res["no_match"] is False and res["min_score"] == 0
    assert all("/part0/" in r["path"] for r in res["results"])
    out = cli("query", str(files[2]), "--index", str(root / "idx"), "--json",
              "--label", "no-such-label", "--device", "cpu")
    res = json.loads(out.stdout)
    assert res["results"] == [] and res["no_match"] and "filters" in res["reason"]
    out = cli("query", str(files[2]), "--index", str(root / "idx"), "--label",
              "no-such-label", "--device", "cpu")
    assert "no indexed file passes the filters" in out.stdout
    out = cli("query", str(files[2]), "--index", str(root / "idx"), "--min-score", "high")
    assert out.exit_code == 2 and "'auto'" in out.output  # a usage error, before loading
    assert "--max-per-folder" in cli("query", "--help").output
    assert "SONICSEARCH_TOKEN" in cli("serve", "--help").output


def test_server_with_the_index_model_answers_like_the_query_cli(real_index):
    root, files = real_index
    web = create_app(ServeSettings(root / "idx", device="cpu"))  # loads the index's model
    answers = []
    with ThreadServer(web) as srv:
        for params in ({"k": 3}, {"k": 3, "min_score": "auto"}):
            res = httpx.post(srv.url + "/query", params=params, timeout=60, files={
                "file": (files[1].name, files[1].read_bytes(), "audio/wav")})
            assert res.status_code == 200, res.text
            answers.append(res.json())
    for got, extra in zip(answers, ([], ["--min-score", "auto"]), strict=True):
        out = cli("query", str(files[1]), "--index", str(root / "idx"), "--json", "-k", "3",
                  *extra, "--device", "cpu")
        want = json.loads(out.stdout)
        want["query"] = files[1].name
        assert got == want
    # the file itself first (an untrained model's confidence may still say "no match")
    assert answers[0]["results"][0]["path"] == str(files[1].resolve())
