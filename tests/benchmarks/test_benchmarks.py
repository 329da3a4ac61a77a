"""Smoke tests: every benchmark script runs end to end in its --tiny mode, so the scripts
cannot rot. They check the shape of what is written, never a timing or a quality figure."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bench_scripts import load_benchmark, tiny_checkpoint


def _run(name: str, tmp_path: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "results"
    # one thread: two on two shared cores can be many times slower when the CPU is busy
    results = load_benchmark(name).main(["--tiny", "--threads", "1", "--out", str(out),
                                  "--cache", str(tmp_path / "cache"), *args])
    written = json.loads((out / f"{name}.json").read_text())
    assert written["benchmark"] == name and written["mode"] == "tiny"
    assert written["machine"]["cpu_cores"] >= 1
    md = (out / f"{name}.md").read_text()
    assert md.startswith(f"# {name}") and "| " in md
    return results, md


def test_recall_at_k_tiny(tmp_path):
    from sonicsearch.eval.degrade import DEGRADATIONS

    res, md = _run("recall_at_k", tmp_path)
    lr, nd = res["label_retrieval"], res["near_duplicate"]
    assert lr["queries"] == res["corpus"]["held_out"] > 0
    for model in ("mfcc", "untrained/vote", "fine-tuned/vote", "fine-tuned/max"):
        assert set(lr[model]) == {f"{m}@{k}" for m in ("precision", "recall", "map")
                                  for k in (1, 5, 10)}
        assert all(0.0 <= v <= 1.0 for v in lr[model].values())
        assert set(nd[model]) == set(DEGRADATIONS)
        for per in nd[model].values():
            assert 0.0 <= per["recall@1"] <= per["recall@10"] <= 1.0
    assert nd["queries"] == 3
    assert "Near-duplicate retrieval" in md and "mp3_low" in md
    # a second run reuses the trained model from the cache
    runs = list((tmp_path / "cache" / "runs").iterdir())
    res2, _ = _run("recall_at_k", tmp_path, "--degradations", "clean,telephone")
    assert list((tmp_path / "cache" / "runs").iterdir()) == runs
    assert set(res2["near_duplicate"]["mfcc"]) == {"clean", "telephone"}
    assert res2["label_retrieval"] == res["label_retrieval"]  # deterministic


def test_recall_at_k_with_a_given_model_uses_its_split(tmp_path):
    from sonicsearch.config import load_config
    from sonicsearch.data.manifest import load_dataset
    from sonicsearch.data.synth import make_synth_corpus
    from sonicsearch.training.finetune import fit

    bench = load_benchmark("recall_at_k")
    corpus = make_synth_corpus(tmp_path / "corpus", genres=2, per_genre=5, seconds=4.0,
                               sample_rate=8000)["path"]
    overrides = dict(bench.TINY_FEATURES, **{"model.weights": "none", "train.num_workers": 0,
                                            "train.phase1_epochs": 1, "train.phase2_epochs": 0})
    ds = load_dataset(corpus, 0.2, 0.2, seed=3)
    fit(load_config(None, overrides), ds, tmp_path / "run", show_progress=False)
    res, _ = _run("recall_at_k", tmp_path, "--data", corpus, "--model",
                  str(tmp_path / "run" / "model.pt"), "--degradations", "clean")
    assert "split.csv" in res["corpus"]["split"]
    assert res["corpus"]["held_out"] == len(ds.split("test"))


def test_pretrain_compare_tiny_with_two_methods(tmp_path):
    degradations = ("--degradations", "clean,noise_snr10")
    trained = load_benchmark("pretrain_compare").main(
        ["--tiny", "--threads", "1", "--cache", str(tmp_path / "cache"), "--train-only",
         "--methods", "ntxent,byol", "--systems", "pretrained,pretrained+ft"])
    assert set(trained["trained"]) == {"pretrained:ntxent", "pretrained:ntxent+ft",
                                       "pretrained:byol", "pretrained:byol+ft"}
    assert not (tmp_path / "results").exists()
    res, md = _run("pretrain_compare", tmp_path, "--methods", "ntxent,byol", *degradations)
    systems = ["mfcc", "scratch", "scratch+joint", "pretrained:ntxent", "pretrained:byol",
               "pretrained:ntxent+ft", "pretrained:byol+ft"]
    assert res["systems"] == systems
    assert set(res["macro_f1"]) == set(res["label_map@10"]) == set(systems)
    assert all(0.0 <= v <= 1.0 for v in res["macro_f1"].values())
    assert all(set(per) == {"clean", "noise_snr10"}
               for per in res["near_duplicate_recall@1"].values())
    assert "pretrained (byol) + fine-tuned" in md and "pretrained (ntxent) only" in md
    # the pretrained models of the --train-only run were reused, not trained again
    assert not any(k.startswith("pretrain-") for k in res["seconds"])
    assert {"scratch", "joint"} <= set(trained["seconds"]) | set(res["seconds"])
    # one column, no MFCC: the degradations still get the models' sample rate
    one, _ = _run("pretrain_compare", tmp_path, "--systems", "pretrained", *degradations)
    assert one["systems"] == ["pretrained"] and set(one["macro_f1"]) == {"pretrained"}


def test_throughput_tiny(tmp_path):
    res, md = _run("throughput", tmp_path)
    assert [r["batch_size"] for r in res["rows"]] == [1, 4]
    for r in res["rows"]:
        for part in ("backbone", "model", "end_to_end"):
            assert r[part]["windows_per_s"] > 0
        assert r["end_to_end"]["windows"] > 0
    assert res["decode"]["audio_s_per_s"] > 0
    assert "time outside the model" in md


def test_search_speed_tiny_grows_a_compact_catalogue(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    t = np.arange(8000 * 12) / 8000
    for i in range(4):  # distinct chirps, 12 s each
        sf.write(audio / f"t{i}.wav", 0.4 * np.sin(2 * np.pi * (200 + 150 * i) * t * (1 + t / 12)),
                 8000)
    model = tiny_checkpoint(tmp_path / "tiny.pt")
    res, md = _run("search_speed", tmp_path, "--model", str(model), "--audio", str(audio),
                   "--fill", "10500", "--queries", "2", "--clip-seconds", "4", "--exact",
                   "--degradations", "clean", "--per-file", "--keep", str(tmp_path / "kept"))
    real, filled = res["catalogues"]
    assert set(filled["per_file"]) == {"vote", "max", "mean-top"}
    # float32 rounding differs between the two paths: a window pair within rounding of its
    # background may count in one and not the other, moving a vote score by ~1e-4
    assert all(v["max_score_diff"] < 1e-3 for v in filled["per_file"].values())
    assert filled["per_file"]["max"]["max_score_diff"] < 1e-5
    again, md = _run("search_speed", tmp_path, "--model", str(model), "--audio", str(audio),
                     "--queries", "2", "--degradations", "clean", "--reuse", str(tmp_path / "kept"))
    assert again["catalogues"][0] == real and again["reused"] == str(tmp_path / "kept")
    assert again["catalogues"][1]["vectors"] == filled["vectors"] and "--reuse" in md
    assert (real["vector_format"], filled["vector_format"]) == ("float32", "pca-int8")
    assert filled["vectors"] >= 10500 and filled["files"] > real["files"] == 4
    assert filled["bytes_by_file"]["vectors-q8.npy"] == pytest.approx(128, abs=1)
    assert real["bytes_by_file"]["vectors.npy"] == pytest.approx(2048, abs=5)  # + npy header
    assert 0 <= filled["exact_top1_agreement"] <= 1 and filled["query_ms_p95"] > 0
    assert "B/window" in md


def test_backends_tiny(tmp_path):
    res, md = _run("backends", tmp_path, "--parts", "index", "--cases", "faiss-flat",
                   "--sizes", "500")
    (row,) = res["index"]
    assert row["case"] == "faiss-flat" and row["n"] == 500 and row["p95_ms"] >= row["p50_ms"]
    assert row["recall_at_10"] == 1.0 and row["bytes_per_vector"] >= 4 * 512  # exact, float32
    assert "recall@10" in md


def test_backends_update_tiny(tmp_path):
    """In-place updates on milvus-lite: 10 files added, then 10 removed, in one collection."""
    pytest.importorskip("milvus_lite", reason="milvus-lite not installed")
    res, md = _run("backends", tmp_path, "--parts", "update", "--sizes", "5000")
    (row,) = res["update"]
    fill, add, remove = row["steps"]
    assert (fill["inserted"], add["inserted"], remove["inserted"]) == (5000, 1000, 0)
    assert add["same_collection"] and remove["same_collection"] and remove["hidden"] == 1000
    assert fill["recall_at_10"] == remove["recall_at_10"] == 1.0
    assert "add 10 files" in md


def test_index_scale_tiny(tmp_path):
    res, md = _run("index_scale", tmp_path)
    kinds = {(r["n"], r["type"]): r for r in res["rows"] if r["device"] == "cpu"}
    assert set(kinds) == {(n, t) for n in (2000, 12000) for t in ("flat", "hnsw", "ivf", "ivfpq")}
    assert kinds[(12000, "flat")]["recall@10"] == 1.0
    assert kinds[(2000, "ivfpq")]["built_as"] == "flat"  # too few vectors to train PQ
    assert kinds[(12000, "ivfpq")]["built_as"] == "ivfpq"
    assert "recall@10_rescored" in kinds[(12000, "ivfpq")]
    for r in res["rows"]:
        assert 0.0 <= r["recall@10"] <= 1.0 and r["bytes_per_vector"] > 0
        assert r["qps_batch1"] > 0 and r["qps_batch"] > 0
    assert [a["index_type"] for a in res["auto"]] == ["flat", "flat"]
    assert {p["n"] for p in res["auto_by_size"]} >= {10**6, 10**7}


def _fake_debian(root: Path) -> Path:
    """What dpkg-deb -x leaves for two prompt packages (tiny WAVs, some to be skipped)."""
    t = np.arange(16000) / 8000
    for lang, f0 in (("en", 180.0), ("fr", 230.0)):
        pkg = root / f"asterisk-core-sounds-{lang}-wav" / "usr/share/asterisk/sounds" / lang
        for i in range(8):
            (pkg / "sub").mkdir(parents=True, exist_ok=True)
            where = pkg if i % 2 else pkg / "sub"
            x = 0.3 * np.sin(2 * np.pi * f0 * (1 + i / 10) * t)
            sf.write(where / f"prompt{i}.wav", x.astype(np.float32), 8000, subtype="PCM_16")
        (pkg / "digits").mkdir()
        sf.write(pkg / "digits" / "1.wav", np.zeros(16000, np.float32) + 0.1, 8000)
        sf.write(pkg / "short.wav", np.zeros(400, np.float32) + 0.1, 8000)
        (pkg / "broken.wav").write_bytes(b"RIFF....WAVEnot really")
    return root


def test_real_corpus_assembles_a_csv_from_an_extracted_tree(tmp_path):
    from sonicsearch.data.manifest import load_dataset

    root = _fake_debian(tmp_path / "extracted")
    out = tmp_path / "extracted" / "corpus.csv"
    res, md = _run("real_corpus", tmp_path, "--extracted", str(root), "--languages", "en,fr",
                   "--csv", str(out))
    assert res["files"] == 10 and set(res["labels"]) == {"en", "fr"}  # 5 per label (tiny)
    assert res["labels"]["en"]["available"] == 8  # not digits/, short.wav or broken.wav
    assert res["labels"]["en"]["sample_rates"] == [8000]
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(not Path(r["path"]).is_absolute() for r in rows)
    ds = load_dataset(out, 0.2, 0.2, seed=0)
    assert ds.labels == ["en", "fr"] and len(ds.items) == 10


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian/Ubuntu)")
def test_real_corpus_downloads_from_debian(tmp_path):
    """Network: fetches one prompt package (about 18 MB)."""
    res, _ = _run("real_corpus", tmp_path, "--languages", "en")
    assert res["files"] == 5 and res["labels"]["en"]["available"] > 100


def test_duplicates_tiny(tmp_path):
    row, md = _run("duplicates", tmp_path)
    assert row["files"] > 60 and row["groups"] >= 1
    assert 0.0 <= row["precision"] <= 1.0 and 0.0 <= row["recall"] <= 1.0
    assert "precision" in md


@pytest.mark.slow  # the base model embeds about 6 min of synthetic audio: 1-2 min on 2 cores
def test_collection_tiny(tmp_path):
    row, md = _run("collection", tmp_path)
    assert row["files"] == 13 and row["dup_recall"] == 1.0 and row["occ_recall"] == 1.0
    assert "occ_precision" in md


def test_browse_tiny(tmp_path):
    res, md = _run("browse", tmp_path)
    methods = {r["method"]: r for r in res["rows"]}
    assert set(methods) == {"refine", "interpolate", "knn-graph"}
    assert methods["refine"]["exact_n"] == 1.0 and methods["refine"]["pairs"] == 10
    assert all(-1 <= r["worst_step_mean"] <= r["mean"] <= 1 for r in res["rows"])
    assert res["timings"]["files"] == 12 and res["timings"]["pca_seconds_10k"] > 0
    assert "Similarity paths" in md


@pytest.mark.slow  # the base model embeds about 8 min of synthetic audio
def test_collection_scale_tiny(tmp_path):
    row, md = _run("collection_scale", tmp_path)
    assert row["files"] == 24 and row["mix_found"] and row["occ_recall"] == 1.0
    assert row["dup_recall"] == 1.0 and "duplicates_seconds" in md


@pytest.mark.slow  # collection_scale's tiny run first: its index is the source
def test_collection_10k_tiny(tmp_path):
    _run("collection_scale", tmp_path)
    row, md = _run("collection_10k", tmp_path)
    assert row["files"] == 48 and row["dup_precision"] == 1.0 and row["dup_recall"] == 1.0
    assert row["occ_files"] == ["w00-mix.wav"] and "duplicates_seconds" in md


def test_embed_speed_tiny_builds_float32_and_int8(tmp_path):
    t = np.arange(4 * 16000) / 16000
    sf.write(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 330 * t * (1 + 0.3 * (t > 2))))
             .astype(np.float32), 16000)
    (tmp_path / "a.csv").write_text("path,label\na.wav,x\n")
    res, md = _run("embed_speed", tmp_path, "--data", str(tmp_path / "a.csv"))
    e = res["end_to_end"]
    assert [len(e["runs"][p]) for p in ("float32", "int8")] == [1, 1]
    assert e["runs"]["int8"][0]["windows"] == e["runs"]["float32"][0]["windows"] > 0
    assert e["cosine"]["windows"] > 0 and 0.9 < e["cosine"]["min"] <= 1.0001
    assert "End to end in build-index" in md
