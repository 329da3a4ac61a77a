"""Smoke test: benchmarks/robust_music.py --tiny runs end to end offline (generated tracks
and noise), with the MFCC system and a tiny random checkpoint, and caches index vectors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from bench_scripts import load_benchmark, tiny_checkpoint


def test_robust_music_tiny(tmp_path):
    mod = load_benchmark("robust_music")
    names = list(mod.DEGRADATIONS)
    args = ["--tiny", "--threads", "1", "--cache", str(tmp_path / "cache"), "--out",
            str(tmp_path / "out"), "--vector-cache", str(tmp_path / "vc")]
    res = mod.main(args)
    written = json.loads((tmp_path / "out" / "robust_music.json").read_text())
    assert written["benchmark"] == "robust_music" and written["mode"] == "tiny"
    assert (tmp_path / "out" / "robust_music.md").is_file()
    ident = res["systems"]["mfcc"]["identification"]
    assert set(ident) == set(names) | {"all", "queries_per_degradation"}
    assert ident["queries_per_degradation"] == 4 * 2
    assert ident["clean"]["R@1"] == 1.0  # an unaltered excerpt finds its track
    for name in names:
        assert 0.0 <= ident[name]["R@1"] <= ident[name]["R@10"] <= 1.0
    assert ident["all"]["R@1"] == pytest.approx(np.mean([ident[n]["R@1"] for n in names]),
                                                abs=1e-3)
    assert 0.0 <= res["systems"]["mfcc"]["label_map@10"] <= 1.0
    assert len(res["noise_files"]) == 2 and len(res["corpus"]["tracks"]) == 4
    cached = sorted((tmp_path / "vc").rglob("*.npz"))
    assert len(cached) == 4
    again = mod.main(args)  # from the vector cache, the same numbers
    assert again["systems"]["mfcc"]["identification"] == ident
    assert sorted((tmp_path / "vc").rglob("*.npz")) == cached


def test_robust_music_tiny_with_a_checkpoint(tmp_path):
    mod = load_benchmark("robust_music")
    labels = ["ambient", "blues"]  # the tiny corpus' labels: the head's macro-F1 is kept
    model = tiny_checkpoint(tmp_path / "tiny.pt", labels)
    res = mod.main(["--tiny", "--threads", "1", "--cache", str(tmp_path / "cache"),
                    "--out", str(tmp_path / "out"), "--vector-cache", str(tmp_path / "vc"),
                    "--no-mfcc", "--model", f"rand={model}", "--degradations",
                    "clean,realnoise_snr10,reverb_room,speed_1.03", "--compact-dims", "16"])
    sysres = res["systems"]["rand"]
    compact = res["systems"]["rand+pca16-int8"]  # the same queries, the index compacted
    assert compact["about"] == {"of": "rand", "vectors": "pca-int8", "dim": 16}
    assert set(compact["identification"]) == set(sysres["identification"])
    assert sysres["about"]["sample_rate"] == 8000
    assert set(sysres["identification"]) >= {"clean", "realnoise_snr10", "reverb_room",
                                             "speed_1.03", "all"}
    assert 0.0 <= sysres["label_map@10"] <= 1.0
    assert sysres["macro_f1"] is not None and 0.0 <= sysres["macro_f1"] <= 1.0
    key = next((tmp_path / "vc").iterdir()).name  # the model's hash, its hop and quiet rule
    assert key == f"model-{sysres['about']['sha256']}-hop0.5-q-60"


def test_write_unindexed_lists_the_tracks_the_index_leaves_out(tmp_path):
    mod = load_benchmark("robust_music")
    out = tmp_path / "ft.csv"
    res = mod.main(["--tiny", "--tracks", "3", "--cache", str(tmp_path / "cache"),
                    "--out", str(tmp_path / "out"), "--write-unindexed", str(out)])
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert res == {"unindexed": 1} and len(rows) == 1 and set(rows[0]) == {"path", "label"}
    rows_all, _ = mod.tiny_corpus(tmp_path / "cache")
    indexed = {t["path"] for t in mod.pick_tracks(rows_all, 3, 0)}
    listed = (tmp_path / rows[0]["path"]).resolve()  # relative to the CSV's folder
    assert not Path(rows[0]["path"]).is_absolute() and listed.is_file()
    assert str(listed) not in indexed and str(listed) in {r["path"] for r in rows_all}
    assert not (tmp_path / "out").exists()  # it stops before measuring


def test_select_rows_keeps_a_label_long_tracks_and_what_a_pack_never_drew_from(tmp_path):
    mod = load_benchmark("robust_music")
    a, b, c = (str(tmp_path / f"{n}.ogg") for n in "abc")
    rows = [{"path": a, "label": "music", "duration": 60.0},
            {"path": b, "label": "music", "duration": 10.0},
            {"path": c, "label": "speech", "duration": 60.0},
            {"path": str(tmp_path / "d.ogg"), "label": "music", "duration": 90.0}]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,label,source\nmusic/x.opus,music,{tmp_path / 'd.ogg'}\n")
    args = mod.parse_args(["--only-label", "music", "--min-duration", "30",
                           "--unseen-by", str(manifest)])
    assert [r["path"] for r in mod.select_rows(rows, args)] == [a]
    with pytest.raises(SystemExit, match="no --data rows left"):
        mod.select_rows(rows[1:2], args)


def test_vector_cache_key_names_the_window_only_when_it_differs_from_the_models(tmp_path):
    mod = load_benchmark("robust_music")
    ckpt = tiny_checkpoint(tmp_path / "m.pt", [])
    plain = mod.ModelSystem(str(ckpt), "cpu")
    same = mod.ModelSystem(str(ckpt), "cpu", window=1.0)  # the model's own 1-s window
    other = mod.ModelSystem(str(ckpt), "cpu", window=2.0)
    assert same.key == plain.key and "-win" not in plain.key
    assert other.key == plain.key + "-win2"
    assert other.embedder.feature_config.window_seconds == 2.0
    assert plain.embedder.feature_config.window_seconds == 1.0
