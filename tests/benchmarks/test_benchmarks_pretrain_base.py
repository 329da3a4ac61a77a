"""benchmarks/pretrain_base.py end to end on the CPU: a tiny Opus pack and two validation
tracks, one variant for a few seconds; a model file comes out, loads, and is scored."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]


def _tone(seconds: float, f0: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * f0 * t * (1 + 0.3 * np.sin(t))) * (1 + np.sin(2 * t))
            + 0.01 * rng.standard_normal(t.size)).astype("float32")


def test_tiny_run_writes_a_scored_model(tmp_path):
    if "OPUS" not in sf.available_subtypes("OGG"):
        pytest.skip("this libsndfile cannot write Opus")
    pack, val = tmp_path / "pack", tmp_path / "val"
    (pack / "music").mkdir(parents=True)
    val.mkdir()
    with open(pack / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "package", "duration"])
        for i in range(6):
            sf.write(pack / "music" / f"{i}.opus", _tone(6.0, 200 + 60 * i, i), 16000,
                     format="OGG", subtype="OPUS")
            w.writerow([f"music/{i}.opus", "music", "test", "6.0"])
    meta = []
    for i in range(2):
        sf.write(val / f"{i}.opus", _tone(20.0, 330 + 200 * i, 10 + i), 16000, format="OGG",
                 subtype="OPUS")
        meta.append({"path": f"{i}.opus", "package": "test", "seconds": 20.0})
    (val / "val.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pretrain_base.py"), "--pack", str(pack),
         "--val", str(val), "--out", str(out), "--minutes", "0.05", "--variants", "views",
         "--device", "cpu", "--tiny", "--export", str(tmp_path / "export"),
         "--export-top", "1"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((out / "results.json").read_text())
    row = result["variants"][0]
    assert row["variant"] == "views" and row["steps"] >= 20 and "error" not in row
    assert 0.0 <= row["val"]["mean"]["r1"] <= 1.0 and row["val"]["clean"]["r1"] >= 0.5
    parts = sorted((tmp_path / "export").glob("views.pt.part*"))
    assert parts and (out / "views" / "model.pt").read_bytes() == b"".join(
        p.read_bytes() for p in parts)

    from sonicsearch.model.checkpoint import load_checkpoint

    model, info = load_checkpoint(out / "views" / "model.pt")
    assert info["labels"] == [] and model.feature_config.level == "window"
