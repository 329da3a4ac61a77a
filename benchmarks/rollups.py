"""Which window-to-file roll-up should ``query`` use by default? (issue #4)

    python benchmarks/rollups.py --run runs/r18 [--data DATA] [--excerpts 80]
        [--degradations clean,noise_snr10,mp3_low,telephone] [--out benchmarks/results]

With a trained run (its model.pt and split.csv), the training and validation files are
indexed; then, for every roll-up (vote, max, mean-top), from the same window embeddings:

- label retrieval: each held-out (test) file queries the index; precision@10, mAP@10 and
  hit@1 (the top file has the query's label);
- near-duplicate retrieval: 8 s excerpts of indexed files at seeded offsets, degraded as
  named (sonicsearch.eval.degrade), query the index; recall@1 of the source file and how often
  the reported span overlaps the excerpt's true position.

Writes rollups.json and rollups.md in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, type=Path, help="A train run folder.")
    ap.add_argument("--data", required=True, type=Path, help="The run's training DATA.")
    ap.add_argument("--excerpts", type=int, default=80)
    ap.add_argument("--excerpt-seconds", type=float, default=8.0)
    ap.add_argument("--degradations", default="clean,noise_snr10,mp3_low,telephone")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)

    from sonicsearch.audio import load_audio
    from sonicsearch.data.manifest import load_dataset, read_split
    from sonicsearch.eval.degrade import apply
    from sonicsearch.eval.metrics import hit_rate_at_k, map_at_k, precision_at_k
    from sonicsearch.index import ROLLUPS, AudioIndex, load_embedder

    data = load_dataset(args.data, full_decode=False)
    known = read_split(args.run / "split.csv", data.root)
    items = [(str(Path(it.path).resolve()), it.label, known.get(os.path.realpath(it.path)))
             for it in data.items]
    embedder = load_embedder(args.run / "model.pt", args.device)
    sr = embedder.feature_config.sample_rate
    indexed = [(p, lab) for p, lab, split in items if split in ("train", "val")]
    held_out = [(p, lab) for p, lab, split in items if split == "test"]
    label_of = dict(indexed)
    n_rel = {lab: sum(lab == other for _, other in indexed) for lab in label_of.values()}
    work = Path(tempfile.mkdtemp(prefix="sonicsearch-rollups-"))
    rows: dict[str, dict[str, float]] = {r: {} for r in ROLLUPS}
    try:
        index = AudioIndex.build([p for p, _ in indexed], embedder, work / "index",
                                 rebuild=True)
        queries = [(lab, embedder.embed_file(p)) for p, lab in held_out]
        for rollup in ROLLUPS:
            rel = []
            for lab, emb in queries:
                res = index.query_vectors(emb.vectors, emb.spans, emb.probs, k=10,
                                          rollup=rollup)["results"]
                flags = [label_of[r["path"]] == lab for r in res]
                rel.append(flags + [False] * (10 - len(flags)))
            rel_a = np.array(rel, dtype=bool)
            counts = np.array([n_rel[lab] for lab, _ in queries])
            rows[rollup].update({"label_hit@1": hit_rate_at_k(rel_a, 1),
                                 "label_p@10": precision_at_k(rel_a, 10),
                                 "label_map@10": map_at_k(rel_a, 10, counts)})
        rng = np.random.default_rng(0)
        picks = []
        for _ in range(args.excerpts):
            path = indexed[int(rng.integers(len(indexed)))][0]
            wave, _ = load_audio(path, sr)
            n = int(args.excerpt_seconds * sr)
            start = int(rng.integers(0, max(1, len(wave) - n)))
            picks.append((path, start / sr, wave[start : start + n]))
        for name in args.degradations.split(","):
            embs = [embedder.embed_waveform(apply(name, x, sr, np.random.default_rng(i)), sr)
                    for i, (_, _, x) in enumerate(picks)]
            for rollup in ROLLUPS:
                top1, span_ok = [], []
                for (path, t0, _), emb in zip(picks, embs):
                    res = index.query_vectors(emb.vectors, emb.spans, emb.probs, k=1,
                                              rollup=rollup)["results"][0]
                    top1.append(res["path"] == path)
                    span_ok.append(res["path"] == path and res["start"] < t0 +
                                   args.excerpt_seconds and res["end"] > t0)
                rows[rollup][f"{name}_r@1"] = float(np.mean(top1))
                rows[rollup][f"{name}_span"] = float(np.mean(span_ok))
        index.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cols = list(rows[ROLLUPS[0]])
    md = "| roll-up | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    for rollup in ROLLUPS:
        md += f"| {rollup} | " + " | ".join(f"{rows[rollup][c]:.3f}" for c in cols) + " |\n"
    md += (f"\n{len(held_out)} held-out label queries against {len(indexed)} indexed files; "
           f"{args.excerpts} excerpts of {args.excerpt_seconds:g} s for near-duplicates.\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rollups.json").write_text(json.dumps(rows, indent=2))
    (args.out / "rollups.md").write_text(md)
    print(md)
    return rows


if __name__ == "__main__":
    main()
