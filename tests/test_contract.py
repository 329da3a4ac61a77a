"""The product contract in docs/: the ``--json`` output of ``query``, ``evaluate`` and ``info``
validates against docs/schemas/, and the commands and flags docs/cli.md lists are exactly the
ones the CLI has.

Real output of the real commands (typer's CliRunner) on a tiny random-weight model: the
schemas describe shape and ranges, not quality. A failure names the JSON path of the field
that broke (``$.results[0].score: ...``) or the command and flag that drifted.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import typer
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from sonicsearch.cli import app
from sonicsearch.config import Config, FeatureConfig, ModelConfig
from sonicsearch.errors import ModelError
from sonicsearch.index.search import ROLLUPS
from sonicsearch.model.backbones import AudioModel
from sonicsearch.model.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCHEMAS = DOCS / "schemas"
SCHEMA_NAMES = ("query", "evaluate", "info", "duplicates", "path", "map")
SR = 8000
TINY = FeatureConfig(sample_rate=SR, n_fft=256, hop_length=128, n_mels=32,
                     window_seconds=1.0, hop_seconds=0.5)
LABELS = ["high", "low"]
K = 3


# -- schemas and how failures are reported ------------------------------------------------


def load_schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


def schema_errors(instance: object, schema: dict) -> list[str]:
    """Every violation as ``<JSON path>: <message>``, in document order."""
    errors = Draft202012Validator(schema).iter_errors(instance)
    return [f"{e.json_path}: {e.message}"
            for e in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])]


def assert_valid(instance: object, name: str) -> None:
    errors = schema_errors(instance, load_schema(name))
    assert not errors, (f"output does not match docs/schemas/{name}.schema.json:\n  "
                        + "\n  ".join(errors))


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schemas_are_valid_draft_2020_12_and_document_every_field(name):
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    undocumented = [path for path, prop in _properties(schema) if "description" not in prop]
    assert not undocumented, f"{name}.schema.json: fields without a description: {undocumented}"


def _properties(schema: dict, where: str = "$"):
    """``(path, subschema)`` of every named property, through $defs too."""
    for key, prop in schema.get("properties", {}).items():
        yield f"{where}.{key}", prop
        yield from _properties(prop, f"{where}.{key}")
    for key, sub in schema.get("$defs", {}).items():
        yield from _properties(sub, f"{where}/$defs/{key}")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_formats_page_describes_every_schema_field(name):
    page = (DOCS / "formats.md").read_text(encoding="utf-8")
    assert f"schemas/{name}.schema.json" in page
    missing = sorted({path.rsplit(".", 1)[-1] for path, _ in _properties(load_schema(name))
                      if f"`{path.rsplit('.', 1)[-1]}`" not in page})
    assert not missing, f"docs/formats.md does not describe {name} fields: {missing}"


# -- a tiny model, corpus and index, made through the CLI ---------------------------------


def _tiny_model(path: Path, labels: list[str]) -> Path:
    torch.manual_seed(0)
    model = AudioModel.from_config(TINY, ModelConfig("resnet18", "none", 0.0), labels)
    model.fit_normalization(model.frontend(0.1 * torch.randn(4, TINY.window_samples)),
                            per_bin=True)
    save_checkpoint(path, model, config=Config().to_dict(), labels=labels)
    return path


def _corpus(root: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(2.5 * SR)) / SR
    for label, f0 in (("low", 200.0), ("high", 2500.0)):
        (root / label).mkdir(parents=True)
        for i in range(3):
            x = 0.3 * np.sin(2 * np.pi * (f0 + 37 * i) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(root / label / f"{label}{i}.wav", x.astype(np.float32), SR)
    return root


def cli(*args: str) -> list[str]:
    """Run a command; return its stdout lines (stderr is for humans and is not parsed)."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, f"{' '.join(map(str, args))}: {res.output}\n{res.exception!r}"
    return [line for line in res.stdout.splitlines() if line.strip()]


def cli_json(*args: str) -> list[dict]:
    lines = cli(*args)
    for line in lines:
        assert line.startswith("{"), f"non-JSON line on stdout with --json: {line!r}"
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    data = _corpus(root / "data")
    model = _tiny_model(root / "model.pt", LABELS)
    cli("build-index", data, "--model", model, "--index", root / "idx", "--device", "cpu")
    free = _tiny_model(root / "free.pt", [])
    cli("build-index", data / "low", "--model", free, "--index", root / "free-idx",
        "--device", "cpu")
    return root


def _check_query(obj: dict, k: int, segments: bool) -> None:
    """The schema, then what a schema cannot say: ranks, order, k, spans, mode."""
    assert_valid(obj, "query")
    results = obj["results"]
    assert 1 <= len(results) <= k
    assert [r["rank"] for r in results] == list(range(1, len(results) + 1))
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True), f"results not best first: {scores}"
    for r in results:
        assert r["start"] <= r["end"], f"rank {r['rank']}: start > end"
        assert ("query_start" in r) == segments, f"rank {r['rank']}: query_* vs --segments"
        if segments:
            assert r["query_start"] <= r["query_end"] <= obj["duration"] + 1e-3
    if not segments:
        paths = [r["path"] for r in results]
        assert len(set(paths)) == len(paths), "a file listed twice without --segments"


# -- real output validates -----------------------------------------------------------------


@pytest.mark.parametrize("rollup", ROLLUPS)
def test_query_one_clip_json_matches_schema(world, rollup):
    clip = world / "data" / "low" / "low1.wav"
    (obj,) = cli_json("query", clip, "--index", world / "idx", "--k", K, "--json",
                      "--rollup", rollup, "--device", "cpu")
    _check_query(obj, K, segments=False)
    assert obj["query"] == str(clip.absolute()) and obj["predicted_label"] in LABELS
    assert obj["results"][0]["path"] == str(clip.resolve())  # itself, indexed, comes first


def _query_several(world: Path, segments: bool) -> list[dict]:
    clips = [world / "data" / "high" / "high2.wav", world / "data" / "low"]
    return cli_json("query", *clips, "--index", world / "idx", "--k", 2, "--json",
                    "--device", "cpu", *(["--segments"] if segments else []))


@pytest.fixture(scope="module")
def segment_lines(world):
    return _query_several(world, segments=True)


@pytest.mark.parametrize("segments", [False, True])
def test_query_several_clips_json_one_line_each(world, segment_lines, segments):
    objs = segment_lines if segments else _query_several(world, segments=False)
    assert len(objs) == 4  # one file + a folder of three, one line per clip
    assert [Path(o["query"]).name for o in objs] == ["high2.wav", "low0.wav", "low1.wav",
                                                     "low2.wav"]  # sorted by path
    for obj in objs:
        _check_query(obj, 2, segments=segments)


def test_label_free_model_gives_nulls_that_match_the_schema(world):
    (obj,) = cli_json("query", world / "data" / "low" / "low0.wav", "--index",
                      world / "free-idx", "--json", "--device", "cpu")
    _check_query(obj, 10, segments=False)
    assert obj["predicted_label"] is None and {r["label"] for r in obj["results"]} == {None}
    (info,) = cli_json("info", "--index", world / "free-idx", "--json")
    assert_valid(info, "info")
    assert info["model"]["labels"] == [] and info["files"] == 3


def test_filtered_and_thresholded_query_json_matches_schema(world):
    clip = world / "data" / "low" / "low1.wav"
    args = ("query", clip, "--index", world / "idx", "--json", "--device", "cpu")
    (obj,) = cli_json(*args, "--k", K, "--path-prefix", world / "data" / "high",
                      "--max-per-folder", 2, "--min-score", "-1")
    _check_query(obj, 2, segments=False)
    assert (obj["min_score"], obj["no_match"], obj["reason"]) == (-1.0, False, None)
    assert {Path(r["path"]).parent.name for r in obj["results"]} == {"high"}
    (none,) = cli_json(*args, "--label", "no-such-label", "--min-score", "auto")
    assert_valid(none, "query")
    assert none["results"] == [] and none["no_match"] is True
    assert none["reason"] == "no indexed file passes the filters"
    assert isinstance(none["min_score"], float)  # 6 files: calibrated


def test_occurrences_json_matches_schema(world):
    clip = world / "data" / "low" / "low1.wav"
    (obj,) = cli_json("query", clip, "--index", world / "idx", "--json", "--device", "cpu",
                      "--occurrences", "--min-score", "0.01")
    assert_valid(obj, "query")
    assert (obj["occurrences"], obj["min_score"], obj["no_match"]) == (True, 0.01, False)
    mine = [r for r in obj["results"] if r["path"] == str(clip.resolve())]
    assert mine and mine[0]["rank"] == 1 and mine[0]["score"] == pytest.approx(1.0, abs=1e-4)
    for r in obj["results"]:
        assert r["start"] <= r["end"] and r["query_start"] <= r["query_end"]
    for clash in (["--segments"], ["--mode", "style"], ["--rollup", "max"]):
        res = CliRunner().invoke(app, ["query", str(clip), "--index", str(world / "idx"),
                                       "--occurrences", *clash])
        assert res.exit_code == 2 and "--occurrences" in res.output


def test_duplicates_json_matches_schema(world, tmp_path):
    import shutil

    shutil.copytree(world / "data" / "high", tmp_path / "audio")
    shutil.copy(world / "data" / "high" / "high0.wav", tmp_path / "audio" / "copy.wav")
    cli("build-index", tmp_path / "audio", "--model", world / "model.pt", "--index",
        tmp_path / "idx", "--device", "cpu")
    (obj,) = cli_json("duplicates", "--index", tmp_path / "idx", "--json", "--min-overlap", "1")
    assert_valid(obj, "duplicates")
    assert obj["files"] == 4 and obj["min_overlap"] == 1.0
    (group,) = [g for g in obj["groups"]
                if str((tmp_path / "audio" / "copy.wav").resolve()) in
                {f["path"] for f in g["files"]}]
    assert str((tmp_path / "audio" / "high0.wav").resolve()) in {f["path"] for f in group["files"]}
    broken = copy.deepcopy(obj)
    broken["groups"][0]["matches"][0]["confidence"] = 1.5
    assert any("confidence" in e for e in schema_errors(broken, load_schema("duplicates")))
    (none,) = cli_json("duplicates", "--index", world / "free-idx", "--json", "--min-score", "1")
    assert_valid(none, "duplicates")
    res = CliRunner().invoke(app, ["duplicates", "--index", str(tmp_path / "idx"),
                                   "--min-overlap", "-1"])
    assert res.exit_code == 2 and "--min-overlap" in res.output


def test_path_and_map_json_match_their_schemas(world):
    data = sorted((world / "data").rglob("*.wav"))
    (path,) = cli_json("path", data[0], data[-1], "--n", "3", "--index", world / "idx",
                       "--json")
    assert_valid(path, "path")
    assert path["n"] == 3 and path["files"][0]["path"] == str(data[0].resolve())
    (free,) = cli_json("path", *sorted((world / "data" / "low").glob("*.wav"))[:2],
                       "--n", "2", "--index", world / "free-idx", "--json")
    assert_valid(free, "path")  # a label-free model: labels are null
    (mapped,) = cli_json("map", "--index", world / "idx", "--json")
    assert_valid(mapped, "map")
    assert mapped["files"] == len(mapped["points"]) == len(data)
    broken = copy.deepcopy(mapped)
    broken["points"][0]["id"] = "not-an-id"
    assert any("id" in e for e in schema_errors(broken, load_schema("map")))


def test_info_check_json_matches_schema(world):
    (obj,) = cli_json("info", "--index", world / "idx", "--json", "--check")
    assert_valid(obj, "info")
    assert obj["check"] == "ok"


@pytest.fixture(scope="module")
def info(world):
    (obj,) = cli_json("info", "--index", world / "idx", "--json")
    return obj


@pytest.fixture(scope="module")
def report(world):
    (obj,) = cli_json("evaluate", world / "data", "--model", world / "model.pt", "--json",
                      "--device", "cpu")
    return obj


def test_info_json_matches_schema(info):
    assert_valid(info, "info")
    assert (info["files"], info["vectors"] > info["files"]) == (6, True)
    assert info["model"]["labels"] == LABELS and info["index_type"] == "flat"


def test_evaluate_json_matches_schema(report):
    assert_valid(report, "evaluate")
    assert list(report["per_class"]) == LABELS
    assert report["n"] == sum(m["support"] for m in report["per_class"].values())


# -- the schemas can fail, and say where ---------------------------------------------------


@pytest.fixture
def real_query(segment_lines):
    return copy.deepcopy(segment_lines[0])


@pytest.mark.parametrize("breaks,where", [
    (lambda o: o["results"][0].update(score="0.9"), "$.results[0].score"),
    (lambda o: o["results"][1].update(rank=0), "$.results[1].rank"),
    (lambda o: o.pop("predicted_label"), "'predicted_label' is a required property"),
    (lambda o: o["results"][0].update(distance=0.1), "'distance' was unexpected"),
    (lambda o: o["results"][0].pop("query_end"), "'query_end' is a dependency"),
    (lambda o: o.update(duration=-1.0), "$.duration"),
])
def test_broken_query_output_fails_naming_the_field(real_query, breaks, where):
    assert not schema_errors(real_query, load_schema("query"))
    broken = copy.deepcopy(real_query)
    breaks(broken)
    errors = schema_errors(broken, load_schema("query"))
    assert errors and any(where in e for e in errors), errors


def test_a_wrong_schema_rejects_real_output(real_query):
    schema = load_schema("query")
    schema["$defs"]["result"]["properties"]["score"]["type"] = "string"
    assert any(e.startswith("$.results[0].score:") for e in schema_errors(real_query, schema))


def test_broken_evaluate_and_info_fail_naming_the_field(report, info):
    report, info = copy.deepcopy(report), copy.deepcopy(info)
    report["per_class"]["low"]["support"] = 1.5
    del report["macro_f1"]
    errors = schema_errors(report, load_schema("evaluate"))
    assert any("$.per_class.low.support" in e for e in errors), errors
    assert any("'macro_f1' is a required property" in e for e in errors), errors
    info["model"]["sha256"] = "not-a-hash"
    info["index_type"] = "annoy"
    errors = schema_errors(info, load_schema("info"))
    assert any(e.startswith("$.model.sha256:") for e in errors), errors
    assert any(e.startswith("$.index_type:") for e in errors), errors


# -- docs/cli.md lists exactly the CLI's commands and flags --------------------------------


def cli_commands() -> dict[str, object]:
    """``{"query": command, "make-dataset synth": command, ...}``: every leaf command."""
    def walk(cmd, prefix: tuple[str, ...]):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, (*prefix, name))
        else:
            yield " ".join(prefix), cmd

    return dict(walk(typer.main.get_command(app), ()))


def doc_sections() -> dict[str, str]:
    """docs/cli.md's ``### `sonicsearch NAME` `` sections: ``{NAME: text}`` ("" = the root)."""
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    parts = re.split(r"^### `sonicsearch ?([a-z -]*)`[ \t]*$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1].split("\n## ")[0] for i in range(1, len(parts), 2)}


def doc_command_table() -> set[str]:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    table = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| \[`sonicsearch ([a-z -]+)`\]", table, flags=re.M))


def test_docs_list_every_command_and_no_other():
    commands = set(cli_commands())
    sections = set(doc_sections()) - {""}
    table = doc_command_table()
    assert commands - sections == set(), "commands without a section in docs/cli.md"
    assert sections - commands == set(), "docs/cli.md sections for commands the CLI lacks"
    assert table == commands, (f"docs/cli.md command table: missing {commands - table}, "
                               f"extra {table - commands}")


def _documented_flags(section: str) -> set[str]:
    rows = [line for line in section.splitlines() if line.startswith("| `-")]
    return {flag for row in rows for flag in re.findall(r"`(--?[a-z][a-z0-9-]*)`",
                                                        row.split(" | ")[0])}


@pytest.mark.parametrize("name", sorted(cli_commands()) + [""])
def test_docs_list_every_flag_and_argument_of_each_command(name):
    cmd = typer.main.get_command(app) if name == "" else cli_commands()[name]
    section = doc_sections().get(name)
    assert section is not None, f"docs/cli.md has no section for `sonicsearch {name}`"
    options = [p for p in cmd.params if p.param_type_name == "option"]
    have = {o for p in options for o in p.opts}
    optional = {o for p in options for o in p.secondary_opts}  # --no-x may go unmentioned
    documented = _documented_flags(section)
    where = f"docs/cli.md, `{f'sonicsearch {name}'.strip()}`"
    assert have - documented == set(), f"{where}: flags missing from the options table"
    assert documented - have - optional == set(), f"{where}: documented flags the CLI lacks"
    usage = re.search(r"```\n(sonicsearch.*?)```", section, flags=re.S)
    assert usage, f"{where}: no usage block"
    for arg in (p for p in cmd.params if p.param_type_name == "argument"):
        assert arg.name.upper() in usage.group(1), f"{where}: usage lacks {arg.name.upper()}"


# -- the docs hang together ----------------------------------------------------------------


def test_docs_links_resolve_and_readme_points_to_docs():
    pages = sorted(DOCS.glob("*.md"))
    assert {p.name for p in pages} >= {"README.md", "cli.md", "api.md", "formats.md"}
    broken = []
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)",
                                         page.read_text("utf-8")):
            if re.match(r"[a-z]+://", target):
                continue
            dest = page.parent / target if target else page
            if not dest.exists() or (anchor and anchor not in _anchors(dest)):
                broken.append(f"{page.name} -> {target}#{anchor}")
    assert not broken, f"broken links: {broken}"
    assert "](docs/README.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page."""
    if page.suffix != ".md":
        return set()
    heads = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_no_file_cites_a_spec_outside_the_repo():
    needle = "SPEC" + ".md"
    hits = [str(p.relative_to(ROOT)) for folder in ("sonicsearch", "tests", "benchmarks", "docs")
            for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".json")
            and needle in p.read_text(encoding="utf-8", errors="replace")]
    if needle in (ROOT / "README.md").read_text(encoding="utf-8"):
        hits.append("README.md")
    assert not hits, f"{needle} is not part of the repository; cite docs/ instead: {hits}"


# -- exit codes as docs/cli.md states them -------------------------------------------------


@pytest.mark.parametrize("raised,code,message", [
    (KeyboardInterrupt, 130, "interrupted\n"),
    (lambda: ModelError("bad model"), 1, "error: bad model\n"),
])
def test_main_exit_codes_for_interrupts_and_errors(monkeypatch, capsys, raised, code, message):
    from sonicsearch.cli import (
        doctor,
        main,  # the entry point, which CliRunner does not run
    )

    def boom():
        raise raised()

    monkeypatch.setattr(doctor, "check_stack", boom)
    monkeypatch.setattr("sys.argv", ["sonicsearch", "doctor"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == code
    assert capsys.readouterr().err == message
