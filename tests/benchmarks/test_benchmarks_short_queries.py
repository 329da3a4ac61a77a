"""Smoke test: benchmarks/short_queries.py --tiny runs end to end offline (generated tracks
and noise, a tiny random checkpoint): a cell per (degradation, length), the same excerpts
at every length, nested queries, and a rerun from the vector cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench_scripts import load_benchmark, tiny_checkpoint

from sonicsearch.eval.lengths import pick_distractors, summarise, wilson


def test_short_queries_tiny(tmp_path):
    mod = load_benchmark("short_queries")
    model = tiny_checkpoint(tmp_path / "tiny.pt")  # 1-s windows: a 0.5-s query is shorter
    args = ["--tiny", "--threads", "1", "--cache", str(tmp_path / "cache"), "--out",
            str(tmp_path / "out"), "--vector-cache", str(tmp_path / "vc"), "--model",
            f"rand={model}", "--degradations", "clean,realnoise_snr5,speed_1.08,phone_room"]
    res = mod.main(args)
    written = json.loads((tmp_path / "out" / "short_queries.json").read_text())
    assert written["benchmark"] == "short_queries" and written["lengths"] == [0.5, 1.0, 2.0]
    assert "0.5 s" in (tmp_path / "out" / "short_queries.md").read_text()
    cat = res["catalogue"]
    assert cat["tracks"] == 4 and len(cat["queried"]) == 3  # the fourth is a distractor
    assert sum(v["tracks"] for v in cat["distractors"].values()) == 1
    n = res["excerpts"]
    assert n + res["left_out"] == 3 * 2 and n > 0
    for name in ("clean", "realnoise_snr5", "speed_1.08", "phone_room"):
        for s in ("0.5", "1", "2"):
            cell = res["cells"][name][s]
            assert cell["n"] == n  # every length and degradation: the same excerpts
            assert 0.0 <= cell["R@1"] <= cell["R@10"] <= 1.0
            assert cell["R@1_95"][0] <= cell["R@1"] <= cell["R@1_95"][1]
    assert len(list((tmp_path / "vc").rglob("*.npz"))) == 4
    again = mod.main(args)  # from the vector cache: the same numbers
    assert again["cells"] == res["cells"]


def test_an_unknown_degradation_names_the_known_ones(tmp_path):
    mod = load_benchmark("short_queries")
    with pytest.raises(Exception, match="noise_snr0"):
        mod.degradations(["noise_snr99"], [np.ones(10, np.float32)])


def test_distractors_are_a_seeded_draw_whose_prefix_is_a_smaller_draw():
    rows = [{"path": f"/a/{i:02d}.ogg", "duration": float(i)} for i in range(20)]
    every = pick_distractors(rows, None, 0, 5.0, exclude=["/a/07.ogg"])
    assert len(every) == 14 and "/a/07.ogg" not in {r["path"] for r in every}
    assert min(r["duration"] for r in every) >= 5.0
    assert pick_distractors(rows, 6, 0, 5.0, exclude=["/a/07.ogg"]) == every[:6]
    assert pick_distractors(rows, 6, 1, 5.0) != pick_distractors(rows, 6, 0, 5.0)


def test_recall_by_length_counts_ranks_and_intervals():
    ranks = {("clean", 1.0): [1, 1, 2, 11], ("clean", 2.0): [1, 1, 1, 1]}
    out = summarise(ranks, ["clean"], [1.0, 2.0], (1, 10), 4, 1)
    assert out["cells"]["clean"]["1"] == {"n": 4, "R@1": 0.5, "R@10": 0.75,
                                          "R@1_95": list(wilson(2, 4))}
    assert out["cells"]["clean"]["2"]["R@1"] == 1.0 and out["mean"]["2"]["R@10"] == 1.0
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.404, abs=1e-3) and hi == pytest.approx(0.596, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)


def test_an_unusable_distractor_gives_its_place_to_the_next(tmp_path, monkeypatch):
    from sonicsearch.errors import AudioError

    mod = load_benchmark("short_queries")

    def fake(system, path, folder):
        if path.endswith("silent.wav"):
            raise AudioError(path, "silent (peak below -80 dBFS)")

    monkeypatch.setattr(mod, "file_windows", fake)
    system = type("S", (), {"key": "k"})()
    tracks = [{"path": f"/a/{n}.wav"} for n in ("one", "silent", "two", "three")]
    kept = mod.embeddable(system, tracks, 2, tmp_path)
    assert [t["path"] for t in kept] == ["/a/one.wav", "/a/two.wav"]
    assert len(mod.embeddable(system, tracks, None, tmp_path)) == 3
