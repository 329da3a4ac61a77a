"""Build throughput, bytes per window and query latency of the real pipeline, as the
catalogue grows to about 10^4 tracks (issues #4 and #25).

    python benchmarks/search_speed.py --model base --audio DATA_FOLDER_OR_CSV [--tracks 30]
    python benchmarks/search_speed.py --model base --audio data/debian/eval.csv --tracks 30 \
        --fill 1000000,2500000 --vectors pca-int8 --threads 1

1. ``AudioIndex.build`` of the audio (every file of a folder, or ``--tracks`` picked from a
   CSV) into a fresh float32 index: audio hours per wall-clock hour.
2. Each ``--fill`` size: one more generation of that index holding its real files plus
   synthetic tracks, ``N`` windows in all (:mod:`sonicsearch.eval.catalogue`: windows of
   two real *filler* tracks blended; the queried tracks are never fillers), written by the
   product's writer with the index type and vector format (``--vectors``) a build of that
   size gets. Bytes per window: every file of the generation over its windows (the model
   copy counted apart).
3. At each size, with the model and index loaded once (the server's path): ``--queries``
   excerpts of the queried tracks, clean and degraded, each timed in two parts (decode +
   embed, then search + roll-up): p50 / p95, and R@1 of the source track; ``--exact`` also
   ranks each query from an exact flat search over the same stored rows and reports how
   often the top file agrees.

``--keep DIR`` builds in DIR and keeps it (the index, the query clips and
``catalogue.json``); ``--reuse DIR`` measures the kept index's live generation (the last
``--fill``) again without building, e.g. after a change to the search, and reports the
build and the real catalogue as the kept run measured them.

Writes search_speed.json and search_speed.md in --out.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from sonicsearch.eval import degrade  # noqa: E402
from sonicsearch.eval.tracks import pick_tracks, read_tracks  # noqa: E402
from sonicsearch.eval.window_index import QUIET_PEAK  # noqa: E402


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", default="base", help="a model.pt, or base")
    p.add_argument("--audio", required=True, type=Path, help="a folder, or a path,label CSV")
    p.add_argument("--tracks", type=int, default=None, help="CSV: tracks picked (seeded)")
    p.add_argument("--query-tracks", type=int, default=None,
                   help="tracks queried (the first picked); the others are fillers "
                        "(default: all without --fill, else half)")
    p.add_argument("--queries", type=int, default=30, help="excerpts per degradation")
    p.add_argument("--clip-seconds", type=float, default=10.0)
    p.add_argument("--degradations", default="clean,noise_snr10")
    p.add_argument("--fill", default="", help="comma-separated catalogue sizes, windows")
    p.add_argument("--vectors", default="pca-int8", help="vector format of the filled index")
    p.add_argument("--exact", action="store_true", help="also rank from an exact flat search")
    p.add_argument("--device", default="cpu")
    p.add_argument("--per-file", action="store_true",
                   help="also score each query one candidate file at a time (the scoring "
                        "before blocks) and compare the top 10 of every roll-up")
    p.add_argument("--keep", type=Path, default=None,
                   help="build in this new folder and keep it, for --reuse")
    p.add_argument("--reuse", type=Path, default=None,
                   help="measure the index a --keep run left in this folder again")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():  # the GPU path (issue #25 item 4)
            sys.exit("the GPU path has not run: no CUDA device here")
    from sonicsearch.audio import find_audio_files
    from sonicsearch.config import IndexConfig
    from sonicsearch.index import AudioIndex, load_embedder

    if args.audio.suffix.lower() == ".csv":
        files = [t["path"] for t in pick_tracks(read_tracks(args.audio), args.tracks, args.seed)]
    else:
        files = [str(p) for p in find_audio_files([args.audio])]
    fills = [int(x) for x in args.fill.split(",") if x]
    n_query = args.query_tracks or (len(files) if not fills else max(1, len(files) // 2))
    results: dict = {"benchmark": "search_speed", "mode": C.mode(args),
                     "machine": C.machine(), "model": args.model,
                     "tracks": len(files), "query_tracks": n_query,
                     "clip_seconds": args.clip_seconds, "catalogues": []}
    if args.reuse is not None:
        return remeasure(args, results)
    if args.keep is not None:
        args.keep.mkdir(parents=True)  # a new folder: an old one is not overwritten
    work = args.keep or Path(tempfile.mkdtemp(prefix="sonicsearch-speed-"))
    try:
        embedder = load_embedder(args.model, args.device)
        t0 = time.perf_counter()
        index = AudioIndex.build(files, embedder, work / "index", rebuild=True,
                                 config=IndexConfig(device=args.device, vectors="float32"))
        build_s = time.perf_counter() - t0
        report, base_gen = index.build_report, index.gen.name
        results["build"] = {"files": report.files, "vectors": report.vectors,
                            "audio_hours": report.audio_seconds / 3600, "seconds": build_s,
                            "audio_hours_per_hour": report.audio_seconds / build_s}
        C.log(f"built {report.files} files, {report.vectors} windows in {build_s:.0f}s")
        clips = write_clips(embedder, files[:n_query], args, work)
        results["catalogues"].append(measure(index, embedder, clips, args, "real"))
        fillers = [index.store.by_path[str(Path(p).resolve())] for p in files[n_query:]]
        index.close()
        for size in fills:
            from sonicsearch.eval.catalogue import fill_index

            t = time.perf_counter()
            facts = fill_index(work / "index", base_gen, embedder, size, fillers,
                               IndexConfig(device=args.device, vectors=args.vectors),
                               args.seed)
            facts["write_seconds"] = round(time.perf_counter() - t, 1)
            C.log(f"filled to {facts['vectors']} windows in {facts['write_seconds']}s")
            with AudioIndex.open(work / "index", embedder=embedder) as index:
                results["catalogues"].append({**facts, **measure(index, embedder, clips,
                                                                 args, "filled")})
            C.write_results("search_speed", args.out, results, tables(results))  # so far
            if args.keep is not None:
                kept = {"results": results, "clips": [[str(c), s, n] for c, s, n in clips]}
                (work / "catalogue.json").write_text(json.dumps(kept, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return write_report(args, results)


def remeasure(args, results: dict) -> dict:
    """``--reuse``: the kept index's live generation measured again with its clips."""
    from sonicsearch.index import AudioIndex, load_embedder

    kept = json.loads((args.reuse / "catalogue.json").read_text())
    before = kept["results"]
    results.update({k: before[k] for k in ("tracks", "query_tracks", "clip_seconds", "build")})
    results["reused"] = str(args.reuse)
    clips = [(Path(c), s, n) for c, s, n in kept["clips"]]
    embedder = load_embedder(args.model, args.device)
    filled = before["catalogues"][-1]
    with AudioIndex.open(args.reuse / "index", embedder=embedder) as index:
        again = measure(index, embedder, clips, args, "filled")
    facts = {k: filled[k] for k in ("generation", "synthetic_files", "write_seconds")}
    results["catalogues"] = [before["catalogues"][0], {**facts, **again}]
    return write_report(args, results)


def write_report(args, results: dict) -> dict:
    """Write search_speed.json / .md and print the tables."""
    sections = tables(results)
    js, md = C.write_results("search_speed", args.out, results, sections)
    print("\n\n".join(body for _, body in sections))
    C.log(f"wrote {js} and {md}")
    return results


def write_clips(embedder, files: list[str], args, work: Path) -> list[tuple[Path, str, str]]:
    """``(clip wav, source path, degradation)``: ``--queries`` seeded excerpts of the
    queried files under each degradation."""
    from sonicsearch.audio import load_audio

    sr = embedder.feature_config.sample_rate
    rng = np.random.default_rng(args.seed)
    out = []
    for i in range(args.queries):
        path = files[i % len(files)]
        wave, _ = load_audio(path, sr)
        n = int(args.clip_seconds * sr)
        for _ in range(20):  # a silent passage identifies nothing: another offset
            start = int(rng.integers(0, max(1, len(wave) - n)))
            clean = wave[start : start + n]
            if float(np.abs(clean).max(initial=0.0)) >= QUIET_PEAK:
                break
        for j, name in enumerate(args.degradations.split(",")):
            x = degrade.DEGRADATIONS[name](clean, sr, np.random.default_rng((args.seed, i, j)))
            out.append((work / f"query-{i:03d}-{name}.wav", str(Path(path).resolve()), name))
            sf.write(out[-1][0], np.asarray(x, np.float32), sr)
    return out


def measure(index, embedder, clips, args, kind: str) -> dict:
    """Latency and R@1 of ``clips`` on an open index; bytes per window of its generation."""
    index.query(clips[0][0], k=10)  # warm-up: the first search maps the files
    exact = exact_search(index) if args.exact else None
    total, search, cpu, hits, agree, embs = [], [], [], {}, [], []
    for clip, source, name in clips:  # what index.query(clip) does, timed in two parts
        t = time.perf_counter()
        emb = embedder.embed_file(clip)
        t_embed, c_embed = time.perf_counter(), time.process_time()
        res = index.query_vectors(emb.vectors, emb.spans, emb.probs, k=10)
        end = time.perf_counter()
        cpu.append((time.process_time() - c_embed) * 1000)
        total.append((end - t) * 1000)
        search.append((end - t_embed) * 1000)
        embs.append((emb.vectors, emb.spans))
        top = res[0]["path"] if len(res) else None
        hits.setdefault(name, []).append(top == source)
        if exact is not None:
            agree.append(exact(emb.vectors, emb.spans) == top)
    sizes = {p.name: p.stat().st_size for p in index.gen.iterdir() if p.is_file()}
    model = sizes.pop("model.pt", 0)
    info = index.info()
    out = {"kind": kind, "files": info["files"], "vectors": info["vectors"],
           "index_type": info["index_type"], "vector_format": info["vector_format"],
           "bytes_per_window": round(sum(sizes.values()) / info["vectors"], 1),
           "bytes_by_file": {k: round(v / info["vectors"], 1) for k, v in sorted(sizes.items())},
           "model_bytes": model, "queries": len(clips),
           "query_ms_p50": round(float(np.percentile(total, 50)), 1),
           "query_ms_p95": round(float(np.percentile(total, 95)), 1),
           "search_ms_p50": round(float(np.percentile(search, 50)), 1),
           "search_ms_p95": round(float(np.percentile(search, 95)), 1),
           "search_cpu_ms_p50": round(float(np.percentile(cpu, 50)), 1),
           "search_cpu_ms_p95": round(float(np.percentile(cpu, 95)), 1),
           "r_at_1": {k: round(float(np.mean(v)), 4) for k, v in hits.items()},
           "exact_top1_agreement": round(float(np.mean(agree)), 4) if agree else None}
    if args.per_file:
        out["per_file"] = per_file_check(index, embs)
    C.log(f"{out['vectors']} windows: {out['bytes_per_window']} B/window, query p50/p95 "
          f"{out['query_ms_p50']}/{out['query_ms_p95']} ms (search {out['search_ms_p50']}/"
          f"{out['search_ms_p95']}), R@1 {out['r_at_1']}, exact agreement "
          f"{out['exact_top1_agreement']}")
    return out


def per_file_check(index, embs) -> dict:
    """Each query's top 10 under every roll-up, its candidates scored in blocks (today) and
    one file at a time (before): the share of queries whose 10 files, order and spans are
    the same, and the largest score difference."""
    from sonicsearch.index import search as search_mod
    from sonicsearch.index.request import QueryRequest
    from sonicsearch.index.rollups import ROLLUPS

    out = {}
    for rollup in ROLLUPS:
        same, diff = [], 0.0
        for vectors, spans in embs:
            request = QueryRequest(vectors=vectors, spans=spans, k=10, rollup=rollup)
            blocks = list(index.search(request))
            kept = dict(search_mod.BATCHED)
            search_mod.BATCHED.clear()  # no batched form: one file at a time
            try:
                alone = list(index.search(request))
            finally:
                search_mod.BATCHED.update(kept)
            key = [(r["path"], r["start"], r["end"]) for r in blocks]
            same.append(key == [(r["path"], r["start"], r["end"]) for r in alone])
            diff = max([diff] + [abs(a["score"] - b["score"]) for a, b in zip(blocks, alone)])
        out[rollup] = {"same_top10": round(float(np.mean(same)), 4), "max_score_diff": diff}
    return out


def exact_search(index):
    """``rank(vectors, spans) -> top path``: the product's search and roll-up over an
    exact flat index of the generation's stored rows (the reference for its own index)."""
    from sonicsearch.index.backends.faiss_backend import FaissBackend
    from sonicsearch.index.search import search

    stored = index.store.vectors()
    rows = np.concatenate([stored[a : a + (1 << 18)] for a in range(0, len(stored), 1 << 18)])
    flat = FaissBackend.create(rows.shape[1], "flat", vectors=rows, device="cpu")
    hop = index.meta["features"]["hop_seconds"]

    def rank(vectors, spans):
        hits = search(flat, index.store, index.stored_space(vectors), spans, 1, "vote", hop,
                      exact=stored)
        return index.store.records[hits[0].file].path if hits else None

    return rank


def tables(results: dict) -> list[tuple[str, str]]:
    b = results["build"]
    build = (f"{b['files']} files, {b['audio_hours']:.2f} h, {b['vectors']} windows: built "
             f"in {b['seconds']:.0f} s ({b['audio_hours_per_hour']:.0f} audio-h per wall-h).")
    head = ["catalogue", "files", "windows", "index", "vectors", "B/window (+ model)",
            "query p50 / p95 ms", "search p50 / p95 ms", "R@1", "exact top-1 agreement"]
    rows = [[c["kind"], c["files"], c["vectors"], c["index_type"], c["vector_format"],
             f"{c['bytes_per_window']:.0f} (+{c['model_bytes'] / c['vectors']:.1f})",
             f"{c['query_ms_p50']:.0f} / {c['query_ms_p95']:.0f}",
             f"{c['search_ms_p50']:.1f} / {c['search_ms_p95']:.1f}",
             (f"{c['search_cpu_ms_p50']:.1f} / {c['search_cpu_ms_p95']:.1f}"
              if "search_cpu_ms_p50" in c else "-"),
             ", ".join(f"{k} {v:.3f}" for k, v in c["r_at_1"].items()),
             "-" if c["exact_top1_agreement"] is None else c["exact_top1_agreement"]]
            for c in results["catalogues"]]
    if results.get("reused"):
        note_reused = (" Build and the real catalogue: the --keep run that built "
                       f"{results['reused']}; the filled one measured again (--reuse).")
    else:
        note_reused = ""
    note = (f"{results['query_tracks']} of {results['tracks']} real tracks queried "
            f"({results['clip_seconds']:g} s excerpts); the others are fillers. Query = "
            "decode + embed + search + roll-up, model and index loaded once; search = the "
            "part after embedding." + note_reused)
    sections = [("Build", build), ("Catalogue", C.markdown_table(head, rows) + "\n\n" + note)]
    checks = [(c["kind"], c["vectors"], r, v) for c in results["catalogues"]
              for r, v in c.get("per_file", {}).items()]
    if checks:
        table = C.markdown_table(["catalogue", "windows", "roll-up", "same top 10 (files, order, "
                                  "spans)", "largest score difference"],
                                 [[k, n, r, f"{v['same_top10']:.3f}", f"{v['max_score_diff']:.1e}"]
                                  for k, n, r, v in checks])
        sections.append(("Blocks against one file at a time", table))
    return sections


if __name__ == "__main__":
    main()
