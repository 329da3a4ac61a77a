"""The benchmark harness in sonicsearch.eval: tracks and excerpts, the window-level MFCC
system, the in-memory window index searched with the product's roll-ups, the MFCC
whole-file search, and the Wilson interval."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from sonicsearch.errors import DataError
from sonicsearch.eval import tracks as T
from sonicsearch.eval.baseline import mfcc_stats, mfcc_window_stats, unit_rows
from sonicsearch.eval.metrics import wilson_interval
from sonicsearch.eval.retrieval import MfccFileSearch, pad
from sonicsearch.eval.systems import MfccSystem
from sonicsearch.eval.window_index import (
    MemoryStore,
    build_window_index,
    head_macro_f1,
    identify,
    label_map,
)

SR = 8000


def _tones(tmp_path, freqs, seconds=6.0, label_of=None):
    rows = []
    t = np.arange(int(seconds * SR)) / SR
    for i, f in enumerate(freqs):
        label = label_of(i) if label_of else f"l{i % 2}"
        path = tmp_path / label / f"{i}.wav"
        path.parent.mkdir(exist_ok=True)
        wave = 0.3 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * (i + 1) * t))
        sf.write(path, wave.astype(np.float32), SR)
        rows.append({"path": str(path), "label": label, "package": label,
                     "duration": seconds})
    return rows


def test_pick_tracks_lets_labels_take_turns_and_plans_are_seeded(tmp_path):
    rows = [{"path": f"/{lab}/{i}", "label": lab, "duration": 30.0}
            for lab in "abc" for i in range(4)]
    picked = T.pick_tracks(rows, 6, seed=0)
    assert sorted(r["label"] for r in picked) == list("aabbcc")
    assert picked == T.pick_tracks(rows, 6, seed=0)
    assert [r["path"] for r in picked] == sorted(r["path"] for r in picked)
    plan = T.plan_excerpts(picked, 2, 8.0, seed=0)
    assert len(plan) == 12 and plan == T.plan_excerpts(picked, 2, 8.0, seed=0)
    assert all(0.0 <= off <= 30.0 - 8.0 and length == 8.0 for _, off, length in plan)
    short = T.plan_excerpts([{"duration": 3.0}], 1, 8.0, seed=0)
    assert short == [(0, 0.0, 3.0)]  # a shorter track is its own excerpt


def test_read_tracks_resolves_paths_and_names_how_to_make_a_missing_manifest(tmp_path):
    rows = _tones(tmp_path, [440.0])
    csv = tmp_path / "eval.csv"
    csv.write_text("path,label\nl0/0.wav,l0\n")
    got = T.read_tracks(csv)
    assert got[0]["path"] == rows[0]["path"] and got[0]["package"] == "l0"
    assert got[0]["duration"] == pytest.approx(6.0)
    assert T.track_rows(tmp_path) == [{**rows[0], "duration": got[0]["duration"]}]
    with pytest.raises(DataError, match="make-dataset debian .* --pool eval"):
        T.read_tracks(tmp_path / "missing-eval.csv")


def test_a_silent_excerpt_is_redrawn(tmp_path):
    sr = 22050
    t = np.arange(10 * sr) / sr
    wave = np.where(t >= 5.0, 0.3 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
    path = tmp_path / "half-silent.wav"
    sf.write(path, wave, sr)
    track = {"path": str(path), "duration": 10.0}
    x, offset, redrawn = T.audible_excerpt(track, 1.0, 2.0, (0,), sr)
    assert redrawn and offset > 3.0 and np.abs(x).max() > 0.1
    x, offset, redrawn = T.audible_excerpt(track, 6.0, 2.0, (0,), sr)
    assert not redrawn and offset == 6.0


def test_noise_bank_takes_named_scenes_at_unit_rms(tmp_path):
    rows = _tones(tmp_path, [200.0, 300.0], label_of=lambda i: "ambience")
    bank, files = T.noise_bank(rows, 0, SR)
    assert len(bank) == 2 and files == [r["path"] for r in rows]
    assert all(np.sqrt(np.mean(b.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
               for b in bank)
    with pytest.raises(DataError, match="no recorded noise"):
        T.noise_bank([{**rows[0], "label": "music"}], 0, SR)


def test_mfcc_window_stats_of_one_window_is_the_clips_statistics():
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(3 * SR)).astype(np.float32)
    stats, spans = mfcc_window_stats(wave, SR, 3.0, 1.5)
    assert stats.shape == (1, 80) and spans.tolist() == [[0.0, 3.0]]
    np.testing.assert_allclose(stats[0], mfcc_stats(wave, SR), rtol=1e-3, atol=1e-3)
    stats, spans = mfcc_window_stats(np.concatenate([wave, wave]), SR, 3.0, 1.5)
    assert spans.tolist() == [[0.0, 3.0], [1.5, 4.5], [3.0, 6.0]]
    np.testing.assert_allclose(np.linalg.norm(unit_rows(stats), axis=1), 1.0, rtol=1e-6)


def test_memory_store_maps_rows_to_files_and_spans():
    spans = np.array([[0, 1], [1, 2], [0, 1], [0, 1], [1, 2], [2, 3]], np.float64)
    store = MemoryStore([2, 1, 3], spans)
    assert store.first_rows.tolist() == [0, 2, 3]
    assert store.file_of_rows(np.array([0, 1, 2, 5])).tolist() == [0, 0, 1, 2]
    assert store.file_spans(2).tolist() == [[0, 1], [1, 2], [2, 3]]
    assert store.spans(np.array([4])).tolist() == [[1, 2]]


def test_a_window_index_identifies_clean_excerpts_and_caches_its_vectors(tmp_path):
    from sonicsearch.eval.degrade import DEGRADATIONS

    tracks = _tones(tmp_path, [220.0, 330.0, 550.0, 880.0])
    system = MfccSystem(2.0, 1.0, sample_rate=SR)
    cache = tmp_path / "vc"
    index = build_window_index(system, [t["path"] for t in tracks], cache)
    assert len(list((cache / system.key).glob("*.npz"))) == 4
    assert index.vectors.shape == (int(index.store.n_windows.sum()), 80)
    queries = T.plan_excerpts(tracks, 2, 3.0, seed=0)
    out = identify(system, index, tracks, queries, ["clean"], DEGRADATIONS, 0, "vote", SR)
    assert out["clean"] == {"R@1": 1.0, "R@10": 1.0} and out["queries_per_degradation"] == 8
    assert out["all"] == out["clean"]
    again = build_window_index(MfccSystem(2.0, 1.0, sample_rate=SR),
                               [t["path"] for t in tracks], cache)
    np.testing.assert_array_equal(again.vectors, index.vectors)
    labels = [t["label"] for t in tracks]
    assert 0.0 <= label_map(index, labels) <= 1.0
    assert head_macro_f1(system, index, labels) is None  # no head


def test_mfcc_file_search_finds_a_file_from_itself(tmp_path):
    rows = _tones(tmp_path, [220.0, 330.0, 550.0])
    items = [SimpleNamespace(path=r["path"], split="train" if i else "test")
             for i, r in enumerate(rows)]
    search = MfccFileSearch(items, SR)
    wave, _ = sf.read(rows[1]["path"], dtype="float32")
    found = search.search(wave, SR, 2)
    assert found[0] == search.paths[1] and len(found) == 2
    assert search.paths[1] not in search.search(wave, SR, 2, exclude=search.paths[1])
    with pytest.raises(ValueError, match="8000 Hz"):
        search.search(wave, 16000, 1)
    assert pad(["a"], 3) == ["a", "", ""] and pad(list("abcd"), 2) == ["a", "b"]


def test_wilson_interval():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) is None
    lo, hi = wilson_interval(5, 10)
    assert lo < 0.5 < hi and lo == pytest.approx(1 - hi, abs=1e-4)
