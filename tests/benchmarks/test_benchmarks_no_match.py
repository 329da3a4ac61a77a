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
                      "--cache", str(tmp_path / "cache"),
                      "--conditions", "clean,telephone,phone_room"])
    written = json.loads(out.read_text())
    assert written["benchmark"] == "no_match" and written["mode"] == "tiny"
    md = out.with_suffix(".md").read_text()
    assert "| clean |" in md and "false accept" in md and "Raw threshold" in md
    assert "| phone_room |" in md and "Other confidence levels" in md
    # the threshold is the calibration's, for the roll-up used
    assert res["threshold"] == res["calibration"]["thresholds"]["vote"]
    assert res["calibration"]["samples"] > 0
    assert not set(t["path"] for t in res["corpus"]["tracks"]) & set(
        t["path"] for t in res["corpus"]["outside"])
    n_in, n_out = len(res["corpus"]["tracks"]), len(res["corpus"]["outside"])
    assert (n_in, n_out) == (4, 2)
    assert len(res["queries"]) == (n_in + n_out) * 3
    s = res["summary"]
    assert list(s) == ["clean", "telephone", "phone_room", "single", "all"]
    per = {"all": 3, "single": 2}
    for group, v in s.items():
        assert v["indexed"] == n_in * per.get(group, 1)
        assert v["outside"] == n_out * per.get(group, 1)
        for tag in ("", "_raw"):
            assert v[f"false_reject{tag}"] == pytest.approx(
                v[f"rejected{tag}"] + v[f"wrong_first{tag}"], abs=1e-3)
            lo, hi = v[f"false_accept{tag}_ci95"]
            assert 0.0 <= lo <= v[f"false_accept{tag}"] <= hi <= 1.0
    for q in res["queries"]:
        assert "error" not in q  # the generated tracks are never silent
        # accepted (auto) means a first result of confidence >= the level; raw: the best
        # score reaches the calibrated threshold
        assert q["accepted"] == (q["first"] is not None)
        assert q["accepted"] == (q["first_confidence"] >= res["accept_confidence"])
        assert q["accepted_raw"] == (q["best_score"] >= res["threshold"])
        if q["set"] == "indexed" and q["first_is_source"]:
            assert q["source_rank"] == 1
    accepted = sum(q["accepted"] for q in res["queries"] if q["set"] == "outside")
    assert s["all"]["false_accept"] == pytest.approx(accepted / (3 * n_out), abs=1e-3)
    level = res["levels"][f"{res['accept_confidence']:g}"]["single"]  # the sweep agrees
    assert level["false_accept"] == s["single"]["false_accept"]
    assert level["false_reject"] == s["single"]["false_reject"]


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

