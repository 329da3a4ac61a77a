"""Build throughput and query latency of the real pipeline (issue #4).

    python benchmarks/search_speed.py --model runs/r18/model.pt --audio DATA_FOLDER \
        [--queries 30] [--clip-seconds 10] [--device cpu] [--out benchmarks/results]

1. ``AudioIndex.build`` over every audio file under --audio into a fresh index
   (decode + features + model + FAISS + metadata): audio hours per wall-clock hour.
2. With the model and index loaded once, ``index.query`` of --queries clips cut from the
   indexed files at seeded offsets (written as WAV files): p50 / p95 / mean latency per
   query in milliseconds, and the share of it spent decoding and embedding (the rest is
   FAISS search and roll-up).

Writes search_speed.json and search_speed.md in --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--audio", required=True, type=Path)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--clip-seconds", type=float, default=10.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)

    import torch

    from sonicsearch.audio import find_audio_files, load_audio
    from sonicsearch.config import IndexConfig
    from sonicsearch.index import AudioIndex, load_embedder

    files = find_audio_files([args.audio])
    work = Path(tempfile.mkdtemp(prefix="sonicsearch-speed-"))
    try:
        embedder = load_embedder(args.model, args.device)
        t0 = time.perf_counter()
        index = AudioIndex.build(files, embedder, work / "index",
                                 config=IndexConfig(device=args.device), rebuild=True)
        build_s = time.perf_counter() - t0
        report = index.build_report
        audio_s = report.audio_seconds
        rng = np.random.default_rng(0)
        sr = embedder.feature_config.sample_rate
        clips = []
        for i in range(args.queries):
            path = files[int(rng.integers(len(files)))]
            wave, _ = load_audio(path, sr)
            start = int(rng.integers(0, max(1, len(wave) - int(args.clip_seconds * sr))))
            clips.append(work / f"query-{i:03d}.wav")
            sf.write(clips[-1], wave[start : start + int(args.clip_seconds * sr)], sr)
        index.query(clips[0], k=10)  # warm-up
        total, embed = [], []
        for clip in clips:  # what index.query(clip) does, timed in two parts
            t = time.perf_counter()
            emb = embedder.embed_file(clip)
            t_embed = time.perf_counter() - t
            index.query_vectors(emb.vectors, emb.spans, emb.probs, k=10)
            total.append((time.perf_counter() - t) * 1000)
            embed.append(t_embed * 1000)
        index.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total_a, embed_a = np.array(total), np.array(embed)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, "
                   f"{torch.get_num_threads()} torch threads, device {args.device}",
        "torch": torch.__version__,
        "arch": embedder.arch,
        "files": report.files, "vectors": report.vectors, "index_type": report.index_type,
        "audio_hours": audio_s / 3600, "build_seconds": build_s,
        "audio_hours_per_hour": audio_s / build_s,
        "query_clip_seconds": args.clip_seconds, "queries": args.queries,
        "query_ms_p50": float(np.percentile(total_a, 50)),
        "query_ms_p95": float(np.percentile(total_a, 95)),
        "query_ms_mean": float(total_a.mean()),
        "embed_share": float(embed_a.sum() / total_a.sum()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_speed.json").write_text(json.dumps(result, indent=2))
    md = ("| files | vectors | index | audio h | build s | audio-h per wall-h | "
          f"query p50 ms | p95 ms | embedding share |\n|---|---|---|---|---|---|---|---|---|\n"
          f"| {result['files']} | {result['vectors']} | {result['index_type']} | "
          f"{result['audio_hours']:.2f} | {build_s:.1f} | {result['audio_hours_per_hour']:.0f} | "
          f"{result['query_ms_p50']:.0f} | {result['query_ms_p95']:.0f} | "
          f"{result['embed_share']:.0%} |\n\n{result['machine']}; {args.clip_seconds:g} s "
          f"query clips, k=10, model and index loaded once.\n")
    (args.out / "search_speed.md").write_text(md)
    print(md)
    return result


if __name__ == "__main__":
    main()
