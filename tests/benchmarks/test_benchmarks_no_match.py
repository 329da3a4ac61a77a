"""Smoke test: benchmarks/no_match.py --tiny runs end to end offline (generated tracks,
the shipped base model) and its counts add up; pick_outside never takes a copy of a member."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from bench_scripts import load_benchmark


def test_no_match_tiny(tmp_path):
    bench = load_benchmark("no_match")
    out = tmp_path / "out" / "nm.json"
    res = bench.main(["--tiny", "--threads", "1", "--out", str(out),
                      "--cache", str(tmp_path / "cache"), "--conditions", "clean,telephone"])
    written = json.loads(out.read_text())
    assert written["benchmark"] == "no_match" and written["mode"] == "tiny"
    md = out.with_suffix(".md").read_text()
    assert "| clean |" in md and "false accept" in md and "Auto threshold" in md
    # the threshold is the calibration's, for the roll-up used
    assert res["threshold"] == res["calibration"]["thresholds"]["vote"]
    assert res["calibration"]["samples"] > 0
    assert not set(t["path"] for t in res["corpus"]["tracks"]) & set(
        t["path"] for t in res["corpus"]["outside"])
    n_in, n_out = len(res["corpus"]["tracks"]), len(res["corpus"]["outside"])
    assert (n_in, n_out) == (4, 2)
    assert len(res["queries"]) == (n_in + n_out) * 2
    s = res["summary"]
    assert list(s) == ["clean", "telephone", "degraded", "all"]
    for group, v in s.items():
        assert v["indexed"] == n_in * (2 if group == "all" else 1)
        assert v["outside"] == n_out * (2 if group == "all" else 1)
        assert v["false_reject"] == pytest.approx(v["rejected"] + v["wrong_first"], abs=1e-3)
        lo, hi = v["false_accept_ci95"]
        assert 0.0 <= lo <= v["false_accept"] <= hi <= 1.0
    for q in res["queries"]:
        assert "error" not in q  # the generated tracks are never silent
        # accepted means a first result, and it scores at least the threshold
        assert q["accepted"] == (q["first"] is not None)
        assert q["accepted"] == (q["best_score"] >= res["threshold"])
        if q["set"] == "indexed" and q["first_is_source"]:
            assert q["source_rank"] == 1
    accepted = sum(q["accepted"] for q in res["queries"] if q["set"] == "outside")
    assert s["all"]["false_accept"] == pytest.approx(accepted / (2 * n_out), abs=1e-3)


def test_pick_outside_skips_copies_of_members(tmp_path):
    from sonicsearch.index.layout import file_sha256

    bench = load_benchmark("no_match")
    rows = []
    for i, label in enumerate("aabbcc"):
        p = tmp_path / label / f"{i}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(bytes([i]) * 100)
        rows.append({"path": str(p), "label": label, "package": label, "duration": 30.0})
    member = Path(rows[0]["path"])
    copy = tmp_path / "c" / "copy.bin"
    shutil.copy(member, copy)
    rows.append({"path": str(copy), "label": "c", "package": "c", "duration": 30.0})
    index = SimpleNamespace(store=SimpleNamespace(
        records=[SimpleNamespace(sha256=file_sha256(member))],
        by_path={str(member.resolve()): 0}))
    chosen, dropped = bench.pick_outside(rows, index, 6, seed=0)
    assert [r["path"] for r in dropped] == [str(copy)]
    assert {r["path"] for r in chosen} == {r["path"] for r in rows[1:6]}
    assert bench.wilson(0, 10)[0] == 0.0 and bench.wilson(10, 10)[1] == 1.0
    assert bench.wilson(0, 0) is None

