"""GTZAN fault-filtered split -> DATA CSV (a fake GTZAN tree of tiny WAVs)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from sonicsearch.cli import app
from sonicsearch.data.gtzan import gtzan_split, make_gtzan_csv
from sonicsearch.data.manifest import load_dataset
from sonicsearch.errors import DataError

SR = 8000


def test_the_shipped_lists_are_the_930_clip_split():
    rows = gtzan_split()
    counts = {s: sum(r[2] == s for r in rows) for s in ("train", "val", "test")}
    assert counts == {"train": 443, "val": 197, "test": 290}
    assert len({r[0] for r in rows}) == 930  # no clip in two splits
    assert {r[1] for r in rows} == {"blues", "classical", "country", "disco", "hiphop", "jazz",
                                    "metal", "pop", "reggae", "rock"}
    assert all(r[0].startswith(r[1] + "/") and r[0].endswith(".wav") for r in rows)


def _fake_gtzan(genres: Path, skip: int = 0) -> Path:
    """Every listed file as a 0.6 s tone (different per genre), minus the last ``skip``."""
    rows = gtzan_split()
    t = np.arange(int(0.6 * SR)) / SR
    freqs = {g: 200 + 150 * i for i, g in enumerate(sorted({r[1] for r in rows}))}
    for rel, genre, _ in rows[: len(rows) - skip]:
        p = genres / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, (0.3 * np.sin(2 * np.pi * freqs[genre] * t)).astype(np.float32), SR)
    return genres


@pytest.fixture(scope="module")
def gtzan(tmp_path_factory):
    return _fake_gtzan(tmp_path_factory.mktemp("gtzan") / "genres")


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_beside_gtzan_has_relative_paths_and_loads_with_the_given_split(gtzan):
    out = gtzan.parent / "gtzan.csv"
    summary = make_gtzan_csv(gtzan.parent, out)  # the folder above genres/ works too
    assert summary["files"] == 930 and not summary["external_paths"]
    rows = _read(out)
    assert rows[0] == {"path": "genres/blues/blues.00029.wav", "label": "blues",
                       "split": "train"}
    ds = load_dataset(out, full_decode=False)
    assert ds.given_split and len(ds.items) == 930 and len(ds.labels) == 10
    assert len(ds.split("val")) == 197 and len(ds.split("test")) == 290


def test_csv_elsewhere_gets_absolute_paths_that_need_allow_external(gtzan, tmp_path):
    out = tmp_path / "elsewhere" / "gtzan.csv"
    summary = make_gtzan_csv(gtzan, out)
    assert summary["external_paths"]
    assert Path(_read(out)[0]["path"]).is_absolute()
    with pytest.raises(DataError, match="allow-external-paths"):
        load_dataset(out, full_decode=False)
    assert len(load_dataset(out, allow_external_paths=True, full_decode=False).items) == 930


def test_missing_files_are_an_error_naming_how_many_and_the_first(tmp_path):
    genres = _fake_gtzan(tmp_path / "genres", skip=7)
    missing = gtzan_split()[-7:]
    with pytest.raises(DataError, match=r"7 of the 930 files") as err:
        make_gtzan_csv(genres, tmp_path / "g.csv")
    assert missing[0][0] in str(err.value) and "and 2 more" in str(err.value)
    assert not (tmp_path / "g.csv").exists()


def test_not_gtzan_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not look like GTZAN"):
        make_gtzan_csv(tmp_path, tmp_path / "g.csv")


def test_cli_make_dataset_gtzan(gtzan, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.csv"
    res = runner.invoke(app, ["make-dataset", "gtzan", str(gtzan), str(out)])
    assert res.exit_code == 0, res.output
    assert len(_read(out)) == 930
    assert "allow-external-paths" in res.output  # the note: the clips are outside tmp_path
    res = runner.invoke(app, ["make-dataset", "gtzan", str(tmp_path / "nope"), str(out)])
    assert res.exit_code != 0
