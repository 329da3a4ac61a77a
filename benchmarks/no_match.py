"""False accepts and false rejects of the automatic no-match threshold on real music.

``query --min-score auto`` answers "no match" when the best score falls below a threshold
that each index generation calibrates on itself (``sonicsearch.index.filters``: excerpts
of indexed files searched against the rest of the collection). This script measures what
that threshold does on real audio.

N tracks of the Debian evaluation pool (picked seeded, labels taking turns) are indexed
with the library (``AudioIndex.build``, default the shipped ``base`` model) in a temporary
folder. E excerpts of 8 s at random offsets are cut from every indexed track, and E from
each of M other tracks of the same CSV that are not in the index (a byte-identical copy of
an indexed file does not count as "not in the index": it is skipped). Every excerpt is
queried clean and degraded (white noise at 10 dB SNR, a telephone line, a room of RT60
0.7 s, low-bit-rate MP3) with ``min_score="auto"``. Reported per condition:

- indexed excerpts: *rejected* (answered "no match") and *wrong first result* (answered,
  but the first result is not the source track); the false-reject rate is their sum;
- outside excerpts: the false-accept rate (answered with any result);

with Wilson 95 % intervals, the median best score of each set, and the threshold.

    sonicsearch make-dataset debian ~/.cache/sonicsearch/debian/eval.csv --pool eval
    python benchmarks/no_match.py --quick
    python benchmarks/no_match.py --tracks 30 --outside 20 --excerpts 2 --threads 1

Writes benchmarks/results/no_match.{json,md} (``--out DIR``, or ``--out FILE.json`` for
that JSON with the markdown beside it).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from sonicsearch.eval.metrics import wilson_interval as wilson  # noqa: E402
from sonicsearch.eval.tracks import (  # noqa: E402
    audible_excerpt,
    hours,
    pick_tracks,
    plan_excerpts,
    read_tracks,
    track_facts,
    track_rows,
)

SR = 22050  # excerpts are decoded and degraded at this rate; the model resamples
CONDITIONS = ("clean", "noise_snr10", "telephone", "reverb_room", "mp3_low")
PRESETS = {
    "tiny": {"tracks": 4, "outside": 2, "excerpts": 1, "excerpt_seconds": 4.0},
    "quick": {"tracks": 12, "outside": 8, "excerpts": 2, "excerpt_seconds": 8.0},
    "full": {"tracks": 30, "outside": 20, "excerpts": 2, "excerpt_seconds": 8.0},
}
TOP = 10  # depth of the unthresholded search that gives the source's rank


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None,
                   help="evaluation CSV path,label,package,duration, paths relative to its "
                        "folder (default: CACHE/debian/eval.csv; --tiny: generated tracks)")
    p.add_argument("--model", default="base", help="'base' (shipped) or a model.pt path")
    p.add_argument("--tracks", type=int, default=None, help="tracks in the index")
    p.add_argument("--outside", type=int, default=None,
                   help="tracks of the CSV left out of the index, queried as non-members")
    p.add_argument("--excerpts", type=int, default=None, help="excerpts per track")
    p.add_argument("--excerpt-seconds", type=float, default=None)
    p.add_argument("--conditions", default=",".join(CONDITIONS),
                   help="comma-separated degradations of sonicsearch.eval.degrade")
    p.add_argument("--rollup", default="vote", help="vote | max | mean-top")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def main(argv: list[str] | None = None) -> dict:
    from sonicsearch.index.api import AudioIndex, load_embedder
    from sonicsearch.index.calibration import calibration, resolve_min_score

    args = parse_args(argv)
    _threads(args.threads)
    t0 = time.monotonic()
    conditions = _conditions(args.conditions)
    if args.data is None and args.tiny:
        rows, data = tiny_corpus(args.cache), "generated (tiny)"
    else:
        data = args.data or args.cache / "debian" / "eval.csv"
        with C.exit_on_error():
            rows = read_tracks(data)
    tracks = pick_tracks(rows, args.tracks, args.seed)
    embedder = load_embedder(args.model, args.device)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sonicsearch-no-match-") as tmp:
        with C.Timer() as t:
            index = AudioIndex.build([r["path"] for r in tracks], embedder, Path(tmp) / "index",
                                     device=args.device)
        seconds["build"] = round(t.seconds, 1)
        try:
            tracks = _indexed(tracks, index)
            outside, dropped = pick_outside(rows, index, args.outside, args.seed)
            C.log(f"indexed {len(tracks)} tracks ({hours(tracks):.2f} h, {index.ntotal} "
                  f"windows) in {t.seconds:.0f}s; {len(outside)} outside tracks")
            with C.Timer() as t:
                cal = calibration(index)
            seconds["calibration"] = round(t.seconds, 1)
            threshold = resolve_min_score(index, "auto", args.rollup, False)
            if threshold is None:
                sys.exit(f"the index cannot calibrate a threshold: {cal.get('reason')}")
            C.log(f"auto threshold ({args.rollup}) {threshold:.4f} from {cal['samples']} "
                  f"excerpts in {t.seconds:.1f}s; querying")
            with C.Timer() as t:
                queries = run_queries(index, tracks, "indexed", conditions, args)
                queries += run_queries(index, outside, "outside", conditions, args)
            seconds["queries"] = round(t.seconds, 1)
        finally:
            index.close()
    seconds["total"] = round(time.monotonic() - t0, 1)
    results = {
        "benchmark": "no_match", "mode": C.mode(args), "machine": C.machine(),
        "model": {"spec": args.model, "arch": embedder.arch, "sha256": embedder.model_sha256,
                  "sample_rate": embedder.feature_config.sample_rate,
                  "window_seconds": embedder.feature_config.window_seconds,
                  "hop_seconds": embedder.feature_config.hop_seconds},
        "corpus": {"data": str(data), "tracks": track_facts(tracks),
                   "outside": track_facts(outside),
                   "outside_skipped_as_copies": [r["path"] for r in dropped],
                   "hours": round(hours(tracks), 3), "windows": index.ntotal},
        "excerpts_per_track": args.excerpts, "excerpt_seconds": args.excerpt_seconds,
        "rollup": args.rollup, "conditions": conditions, "threshold": threshold,
        "calibration": cal, "summary": summarise(queries, conditions),
        "excerpts_redrawn": len({(q["set"], q["track"], q["offset"]) for q in queries
                                 if q["redrawn"]}),
        "seconds": {**seconds, "per_query_ms": round(1000 * seconds["queries"]
                                                     / max(1, len(queries)), 1)},
        "queries": queries}
    sections = tables(results)
    out, name = (args.out.parent, args.out.stem) if args.out.suffix == ".json" else (
        args.out, "no_match")
    js, md = C.write_results(name, out, results, sections)
    print("\n\n".join(body for _, body in sections))
    C.log(f"wrote {js} and {md}")
    return results


# -- corpus --------------------------------------------------------------------------------

def tiny_corpus(cache: Path) -> list[dict]:
    """Six synthetic 20-s tracks in two labels (--tiny only)."""
    return track_rows(C.synth_corpus(cache, 2, 3, 20.0, 16000, 0))


def _indexed(tracks: list[dict], index) -> list[dict]:
    """The tracks the build indexed (an undecodable file is skipped by the build), each
    with its ``file`` id in the index."""
    out = []
    for r in tracks:
        f = index.store.by_path.get(str(Path(r["path"]).resolve()))
        if f is None:
            C.log(f"not indexed (the build skipped it): {r['path']}")
        else:
            out.append({**r, "file": f, "sha256": index.store.records[f].sha256})
    if len(out) < 2:
        sys.exit(f"only {len(out)} track(s) indexed: give more --tracks or a readable CSV")
    return out


def pick_outside(rows: list[dict], index, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """``n`` tracks of ``rows`` that are not in ``index``, labels taking turns; a file with
    the bytes of an indexed file is a copy of a member, not an outsider, and is skipped.

    Returns:
        (the tracks, the copies skipped).
    """
    from sonicsearch.index.layout import file_sha256

    members = {r.sha256 for r in index.store.records}
    rest = [r for r in rows if str(Path(r["path"]).resolve()) not in index.store.by_path]
    dropped: list[dict] = []
    hashes: dict[str, str] = {}
    while True:
        chosen = pick_tracks(rest, n, seed)
        copies = [r for r in chosen
                  if hashes.setdefault(r["path"], file_sha256(r["path"])) in members]
        if not copies:
            return chosen, dropped
        dropped += copies
        rest = [r for r in rest if r not in copies]


# -- queries -------------------------------------------------------------------------------

def run_queries(index, tracks: list[dict], kind: str, conditions: list[str], args) -> list:
    """Query every excerpt of ``tracks`` under every condition, thresholded (``auto``) and
    not; one record per (excerpt, condition). A degraded clip the product refuses (silent)
    is recorded with its ``error`` and left out of the rates."""
    from sonicsearch.errors import AudioError
    from sonicsearch.eval import degrade

    tag = 0 if kind == "indexed" else 1
    out = []
    for qi, (ti, offset, length) in enumerate(plan_excerpts(tracks, args.excerpts,
                                                            args.excerpt_seconds,
                                                            args.seed + tag)):
        track = tracks[ti]
        clean, offset, redrawn = audible_excerpt(track, offset, length, (args.seed, tag, qi), SR)
        for j, name in enumerate(conditions):
            wave = degrade.apply(name, clean, SR, np.random.default_rng((args.seed, tag, qi, j)))
            rec = {"set": kind, "track": track["path"], "offset": round(offset, 2),
                   "redrawn": redrawn, "condition": name}
            try:
                rec.update(query_one(index, wave, track if kind == "indexed" else None,
                                     args.rollup))
            except AudioError as exc:
                rec["error"] = str(exc)
            out.append(rec)
    return out


def query_one(index, wave: np.ndarray, source: dict | None, rollup: str) -> dict:
    """What the product answers for ``wave`` with ``min_score="auto"`` (accepted, first
    result), its unthresholded best score and, for a member, the source's rank in the top
    ``TOP`` and whether the first result is the source (same bytes)."""
    store = index.store
    emb = index.embedder.embed_waveform(wave, SR)
    auto = index.query_vectors(emb.vectors, emb.spans, k=1, rollup=rollup, min_score="auto")
    ranked = index.query_vectors(emb.vectors, emb.spans, k=TOP, rollup=rollup)
    first = auto[0]["path"] if auto else None
    rec = {"accepted": not auto.no_match, "first": first,
           "best_score": ranked[0]["score"] if ranked else None}
    if source is not None:
        same = [store.records[store.by_path[r["path"]]].sha256 == source["sha256"]
                for r in ranked]
        rec["source_rank"] = same.index(True) + 1 if any(same) else None
        rec["first_is_source"] = (first is not None and store.records[
            store.by_path[first]].sha256 == source["sha256"])
    return rec


# -- summary -------------------------------------------------------------------------------

def summarise(queries: list[dict], conditions: list[str]) -> dict:
    """Rates per condition, over the degraded conditions, and over all."""
    groups = {name: [name] for name in conditions}
    degraded = [c for c in conditions if c != "clean"]
    if degraded:
        groups["degraded"] = degraded
    groups["all"] = list(conditions)
    usable = [q for q in queries if "error" not in q]
    out = {}
    for group, names in groups.items():
        inside = [q for q in usable if q["set"] == "indexed" and q["condition"] in names]
        outside = [q for q in usable if q["set"] == "outside" and q["condition"] in names]
        rejected = sum(not q["accepted"] for q in inside)
        wrong = sum(q["accepted"] and not q["first_is_source"] for q in inside)
        accepted = sum(q["accepted"] for q in outside)
        out[group] = {
            "indexed": len(inside), "rejected": _rate(rejected, len(inside)),
            "wrong_first": _rate(wrong, len(inside)),
            "false_reject": _rate(rejected + wrong, len(inside)),
            "false_reject_ci95": wilson(rejected + wrong, len(inside)),
            "top1_source_unthresholded": _rate(sum(q["source_rank"] == 1 for q in inside),
                                               len(inside)),
            "outside": len(outside), "false_accept": _rate(accepted, len(outside)),
            "false_accept_ci95": wilson(accepted, len(outside)),
            "median_best_indexed": _median([q["best_score"] for q in inside]),
            "median_best_outside": _median([q["best_score"] for q in outside]),
            "refused": sum("error" in q for q in queries if q["condition"] in names)}
    return out


def tables(results: dict) -> list[tuple[str, str]]:
    s, c, cal = results["summary"], results["corpus"], results["calibration"]
    head = ["condition", "indexed excerpts", "rejected", "wrong first result",
            "false reject (95% CI)", "outside excerpts", "false accept (95% CI)",
            "median best score in / out"]
    rows = [[g, v["indexed"], v["rejected"], v["wrong_first"],
             _with_ci(v["false_reject"], v["false_reject_ci95"]), v["outside"],
             _with_ci(v["false_accept"], v["false_accept_ci95"]),
             f"{_num(v['median_best_indexed'])} / {_num(v['median_best_outside'])}"]
            for g, v in s.items()]
    sec = results["seconds"]
    about = (f"{len(c['tracks'])} tracks indexed ({c['hours']:.2f} h, {c['windows']} windows; "
             f"model `{results['model']['spec']}` {results['model']['arch']}), "
             f"{len(c['outside'])} other tracks of the same CSV as outsiders; "
             f"{results['excerpts_per_track']} excerpt(s) of {results['excerpt_seconds']:g} s "
             f"per track and condition ({results['excerpts_redrawn']} silent one(s) redrawn, "
             f"{s['all']['refused']} degraded clip(s) refused as unusable and left out); "
             f"roll-up `{results['rollup']}`. Auto threshold "
             f"**{results['threshold']:.4f}** (calibrated on {cal['samples']} excerpts of "
             f"{cal['excerpt_seconds']:g} s, target false accept "
             f"{cal['target_false_accept']:.0%}). Seconds: build {sec['build']}, calibration "
             f"{sec['calibration']}, queries {sec['queries']} ({sec['per_query_ms']} ms per "
             f"excerpt and condition), total {sec['total']}.")
    return [("No-match threshold on real audio", about + "\n\n" + C.markdown_table(head, rows))]


# -- helpers -------------------------------------------------------------------------------

def _threads(threads: int | None) -> None:
    C.set_threads(threads)
    if threads:
        import faiss

        faiss.omp_set_num_threads(threads)


def _conditions(text: str) -> list[str]:
    from sonicsearch.eval.degrade import DEGRADATIONS

    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in names if x not in DEGRADATIONS]
    if unknown or not names:
        sys.exit(f"unknown condition(s) {', '.join(unknown) or '(none given)'}; choose from: "
                 f"{', '.join(DEGRADATIONS)}")
    return names


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.median(values)), 4) if values else None


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _with_ci(rate: float | None, ci: list[float] | None) -> str:
    return "–" if rate is None else f"{rate:.3f} ({ci[0]:.2f}–{ci[1]:.2f})"


if __name__ == "__main__":
    main()
