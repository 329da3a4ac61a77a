"""The style protocol (sonicsearch.eval.style) against hand-computed values, and the
benchmark runner end to end on a tiny model and corpus."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from audio_files import write_audio
from bench_scripts import load_benchmark, tiny_checkpoint

from sonicsearch.eval import style as S
from sonicsearch.model.checkpoint import load_checkpoint
from sonicsearch.model.infer import embed_windows, stage_statistics


def test_map_of_a_hand_ranked_case():
    # query 0 (label a, track 0) ranks: track 1 clip (a, cos 1), track 2 (b, cos .6),
    # track 3 (a, cos 0): relevant at ranks 1 and 3 -> AP = (1 + 2/3) / 2
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    ap, pk, qs = S.per_query_ap(x, np.array(list("aaba")), np.arange(4), k=2)
    assert qs.tolist() == [0, 1, 3]  # query 2 (b) has no other b: left out
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2) and pk[0] == pytest.approx(0.5)


def test_clips_of_the_same_track_are_never_candidates():
    # two clips of one track are identical; other tracks are orthogonal noise of the same
    # label: a same-track hit would give AP 1.0
    x = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    m, _ = S.style_map(x, list("aaaa"), [0, 0, 1, 2])
    assert m == pytest.approx(1.0)  # every other-track candidate is relevant
    m, _ = S.style_map(x, list("aabb"), [0, 0, 1, 2])
    assert m < 1.0


def test_perfectly_separated_labels_score_one_and_interval_contains_the_mean():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    x = np.concatenate([centres[i] + rng.normal(size=(8, 3)) for i in range(3)])
    labels = [str(i) for i in range(3) for _ in range(8)]
    groups = list(range(24))
    rep = S.style_report(x, labels, groups)
    assert rep["map"] == pytest.approx(1.0) and rep["p_at_10"] == pytest.approx(0.7)  # 7 others
    assert rep["map_lo"] <= rep["map"] <= rep["map_hi"] and rep["probe_f1"] == 1.0
    shuffled = S.style_map(x, rng.permutation(labels).tolist(), groups)[0]
    assert shuffled < 0.6


def test_make_clips_spreads_clips_and_leaves_out_quiet_windows():
    levels = [np.full(60, -20.0), np.full(60, -90.0), np.full(10, -20.0), np.full(30, -20.0)]
    levels[0][:5] = -90.0
    clips = S.make_clips(levels, ["a", "a", "a", "b"], clip_windows=15, per_track=4)
    assert [c.track for c in clips] == [0, 0, 0, 0]  # 1: all quiet, 2: too short, 3: lone b
    assert clips[0].windows[0] == 5 and clips[-1].windows[-1] == 59


def test_standardise_uses_the_fit_set_only():
    fit = np.array([[0.0, 5.0], [2.0, 5.0]])
    out = S.standardise(fit, np.array([[1.0, 7.0]]))
    assert out.tolist() == [[0.0, 2.0]]  # the constant dimension is centred, not scaled


def test_stage_statistics_hold_the_embedding(tmp_path):
    model = load_checkpoint(tiny_checkpoint(tmp_path / "m.pt"))[0]
    windows = np.random.default_rng(0).normal(size=(3, 8000)).astype(np.float32)
    stats = stage_statistics(model, windows)
    assert stats.shape == (3, 2 * (64 + 64 + 128 + 256 + 512)) and np.isfinite(stats).all()
    emb = embed_windows(model, windows)
    last_means = stats[:, -1024:-512]
    last_means /= np.linalg.norm(last_means, axis=1, keepdims=True)
    assert np.allclose(last_means, emb, atol=1e-5)
    assert torch.get_num_threads() >= 1


def _tone_corpus(folder, freqs: dict[str, float], seed: int):
    """Three noisy 16 s tones a label (8 kHz), a little apart in pitch; the DATA CSV."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, freq in freqs.items():
        for i in range(3):
            t = np.arange(8000 * 16) / 8000
            wave = 0.3 * np.sin(2 * np.pi * freq * (1 + 0.05 * i) * t)
            wave += 0.05 * rng.normal(size=t.size)
            rows.append({"path": write_audio(folder / f"{label}{i}.wav",
                                             wave.astype(np.float32)[:, None], 8000),
                         "label": label})
    data = folder / "data.csv"
    with open(data, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label"])
        w.writeheader()
        w.writerows(rows)
    return data


def test_style_benchmark_runs_end_to_end(tmp_path):
    data = _tone_corpus(tmp_path, {"low": 220.0, "high": 1760.0}, seed=0)
    model = tiny_checkpoint(tmp_path / "m.pt")
    bench = load_benchmark("style")
    res = bench.main(["--data", str(data), "--model", str(model), "--cache",
                      str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    assert res["tracks"] == 6 and res["clips"] == 6  # 15 windows of 1 s in a 16 s file: one
    assert set(res["systems"]) == {"embedding (window mean)", "stage statistics",
                                   "MFCC statistics"}
    assert res["systems"]["MFCC statistics"]["map"] == pytest.approx(1.0)  # pitch apart
    assert (tmp_path / "out" / "style.md").is_file()


def test_style_levers_run_end_to_end(tmp_path):
    data = _tone_corpus(tmp_path, {"low": 220.0, "mid": 700.0, "high": 1760.0}, seed=1)
    model = tiny_checkpoint(tmp_path / "m.pt")
    bench = load_benchmark("style_levers")
    res = bench.main(["--train", str(data), "--eval", str(data), "--label", "label",
                      "--val-packages", "low,mid", "--steps", "3", "--model", str(model),
                      "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    assert (res["train_tracks"], res["val_tracks"], res["eval_tracks"]) == (3, 6, 9)
    assert set(res["eval"]) == {"embedding (window mean)", "stage statistics",
                                "head: supcon", "head: track"}
    assert all(0 <= r["map"] <= 1 for r in res["eval"].values())
