"""False accepts and false rejects of ``--min-score auto`` on real music: the calibrated
confidence against the raw-score threshold, in one run.

``query --min-score auto`` keeps the results whose confidence
(:mod:`sonicsearch.index.confidence`, a logistic model each index generation fits on
degraded excerpts of its own files) is at least ``ACCEPT_CONFIDENCE``; before, it kept
those whose score reached a threshold calibrated on the index (excerpts of indexed files
searched against the rest of the collection), and that threshold is still measured here
side by side (*raw*): a query is accepted when its best score reaches it.

N tracks of the Debian evaluation pool (picked seeded, labels taking turns) are indexed
with the library (``AudioIndex.build``, default the shipped ``base`` model) in a temporary
folder. E excerpts of 8 s at random offsets are cut from every indexed track, and E from
each of M other tracks of the same CSV that are not in the index (a byte-identical copy of
an indexed file does not count as "not in the index": it is skipped). Every excerpt is
queried clean and under every single degradation of the README's table (white and
recorded noise at 10 dB SNR, a telephone line, two rooms, -12 / +6 dB, MP3 and Vorbis at
low bit rates, 3 % slower / faster) and through a phone in a room
(``compound.phone_in_room``: a loudspeaker, a room of RT60 0.4-0.9 s, recorded background
at 7-13 dB, 300-3400 Hz at 8 kHz, automatic gain, a GSM or 6-12 kbit/s Opus speech codec,
-6..-14 dB) with ``min_score="auto"``; the recorded noise is
effects and ambience of the *training* pool (``--noise``). Reported per condition, for the
confidence and for the raw threshold:

- indexed excerpts: *rejected* (answered "no match") and *wrong first result* (answered,
  but the first result is not the source track); the false-reject rate is their sum;
- outside excerpts: the false-accept rate (answered with any result);

with Wilson 95 % intervals, the median best score of each set, and the threshold.

    sonicsearch make-dataset debian ~/.cache/sonicsearch/debian/eval.csv --pool eval
    python benchmarks/no_match.py --quick
    python benchmarks/no_match.py --tracks 20 --outside 20 --excerpts 2 --threads 1

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
    noise_bank,
    pick_tracks,
    plan_excerpts,
    read_tracks,
    track_facts,
    track_rows,
)

SR = 22050  # excerpts are decoded and degraded at this rate; the model resamples
CONDITIONS = ("clean", "noise_snr10", "realnoise_snr10", "telephone", "reverb",
              "reverb_room", "gain_-12db", "gain_+6db", "mp3_low", "ogg_low", "speed_0.97",
              "speed_1.03", "phone_room")
COMPOUND = ("phone_room",)  # not single degradations: outside the "single" group
SNR_DB = 10.0
PRESETS = {
    "tiny": {"tracks": 4, "outside": 2, "excerpts": 1, "excerpt_seconds": 4.0},
    "quick": {"tracks": 12, "outside": 8, "excerpts": 2, "excerpt_seconds": 8.0},
    "full": {"tracks": 30, "outside": 20, "excerpts": 2, "excerpt_seconds": 8.0},
}
TOP = 10  # depth of the unthresholded search that gives the source's rank
LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)  # confidence levels the sweep reports


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
                   help="comma-separated degradations of sonicsearch.eval.degrade, "
                        "realnoise_snr10 and phone_room")
    p.add_argument("--noise", type=Path, default=None,
                   help="training-pool CSV whose effects/ambience give the recorded noise "
                        "(default: CACHE/debian/train.csv; --tiny: pink noise)")
    p.add_argument("--rollup", default="vote", help="vote | max | mean-top")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def main(argv: list[str] | None = None) -> dict:
    from sonicsearch.index.api import AudioIndex, load_embedder
    from sonicsearch.index.calibration import calibration, confidence_model, resolve_min_score
    from sonicsearch.index.confidence import ACCEPT_CONFIDENCE

    args = parse_args(argv)
    _threads(args.threads)
    t0 = time.monotonic()
    names = _conditions(args.conditions)
    if args.data is None and args.tiny:
        rows, data, bank = tiny_corpus(args.cache), "generated (tiny)", None
    else:
        data = args.data or args.cache / "debian" / "eval.csv"
        with C.exit_on_error():
            rows = read_tracks(data)
            bank = noise_bank(read_tracks(args.noise or args.cache / "debian" / "train.csv"),
                              args.seed, SR)[0]
    conditions = degradations(names, bank)
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
                confidence_model(index, args.rollup)  # fitted now, not in the queries
            seconds["calibration"] = round(t.seconds, 1)
            threshold = resolve_min_score(index, "auto", args.rollup, False)
            if threshold is None:
                sys.exit(f"the index cannot calibrate a threshold: {cal.get('reason')}")
            C.log(f"auto threshold ({args.rollup}) {threshold:.4f} from {cal['samples']} "
                  f"excerpts in {t.seconds:.1f}s; querying")
            with C.Timer() as t:
                queries = run_queries(index, tracks, "indexed", conditions, args, threshold)
                queries += run_queries(index, outside, "outside", conditions, args, threshold)
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
        "rollup": args.rollup, "conditions": names, "threshold": threshold,
        "accept_confidence": ACCEPT_CONFIDENCE,
        "calibration": cal, "summary": summarise(queries, names),
        "levels": sweep(queries, names),
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

def run_queries(index, tracks: list[dict], kind: str, conditions: dict, args,
                threshold: float) -> list:
    """Query every excerpt of ``tracks`` under every condition, with ``min_score="auto"``
    and not; one record per (excerpt, condition). A degraded clip the product refuses
    (silent) is recorded with its ``error`` and left out of the rates."""
    from sonicsearch.errors import AudioError

    tag = 0 if kind == "indexed" else 1
    out = []
    for qi, (ti, offset, length) in enumerate(plan_excerpts(tracks, args.excerpts,
                                                            args.excerpt_seconds,
                                                            args.seed + tag)):
        track = tracks[ti]
        clean, offset, redrawn = audible_excerpt(track, offset, length, (args.seed, tag, qi), SR)
        for j, (name, fn) in enumerate(conditions.items()):
            wave = fn(clean, SR, np.random.default_rng((args.seed, tag, qi, j)))
            rec = {"set": kind, "track": track["path"], "offset": round(offset, 2),
                   "redrawn": redrawn, "condition": name}
            try:
                rec.update(query_one(index, wave, track if kind == "indexed" else None,
                                     args.rollup, threshold))
            except AudioError as exc:
                rec["error"] = str(exc)
            out.append(rec)
    return out


def query_one(index, wave: np.ndarray, source: dict | None, rollup: str,
              threshold: float) -> dict:
    """What the product answers for ``wave`` with ``min_score="auto"`` (accepted, first
    result, its confidence), what the raw threshold would (the best score reaches it), the
    unthresholded best score and, for a member, the source's rank in the top ``TOP`` and
    whether each answer's first result is the source (same bytes)."""
    store = index.store
    emb = index.embedder.embed_waveform(wave, SR)
    auto = index.query_vectors(emb.vectors, emb.spans, k=1, rollup=rollup, min_score="auto")
    ranked = index.query_vectors(emb.vectors, emb.spans, k=TOP, rollup=rollup)
    first = auto[0]["path"] if auto else None
    rec = {"accepted": not auto.no_match, "first": first,
           "best_score": ranked[0]["score"] if ranked else None,
           "first_confidence": ranked[0].get("confidence") if ranked else None,
           "accepted_raw": bool(ranked) and ranked[0]["score"] >= threshold}
    if source is not None:
        same = [store.records[store.by_path[r["path"]]].sha256 == source["sha256"]
                for r in ranked]
        rec["source_rank"] = same.index(True) + 1 if any(same) else None
        rec["first_is_source"] = (first is not None and store.records[
            store.by_path[first]].sha256 == source["sha256"])
        rec["first_is_source_raw"] = rec["accepted_raw"] and same[0]
    return rec


# -- summary -------------------------------------------------------------------------------

def summarise(queries: list[dict], conditions: list[str]) -> dict:
    """Rates per condition, over the single degradations (clean among them), and over all;
    for the confidence (the product's ``auto``) and the raw threshold (``_raw``)."""
    groups = {name: [name] for name in conditions}
    single = [c for c in conditions if c not in COMPOUND]
    if single and len(single) < len(conditions):
        groups["single"] = single
    groups["all"] = list(conditions)
    usable = [q for q in queries if "error" not in q]
    out = {}
    for group, names in groups.items():
        inside = [q for q in usable if q["set"] == "indexed" and q["condition"] in names]
        outside = [q for q in usable if q["set"] == "outside" and q["condition"] in names]
        out[group] = {
            "indexed": len(inside), **_rates(inside, outside, ""),
            **_rates(inside, outside, "_raw"),
            "top1_source_unthresholded": _rate(sum(q["source_rank"] == 1 for q in inside),
                                               len(inside)),
            "outside": len(outside),
            "median_best_indexed": _median([q["best_score"] for q in inside]),
            "median_best_outside": _median([q["best_score"] for q in outside]),
            "refused": sum("error" in q for q in queries if q["condition"] in names)}
    return out


def sweep(queries: list[dict], conditions: list[str]) -> dict:
    """False rejects and false accepts had ``auto`` kept results at each of LEVELS
    (exact: ``auto``'s answer at k=1 is the first result when its confidence reaches the
    level, and a confidence does not depend on k), over the single degradations and per
    compound one."""
    usable = [q for q in queries if "error" not in q and q.get("first_confidence") is not None]
    single = [c for c in conditions if c not in COMPOUND]
    groups = {"single": single, **{c: [c] for c in conditions if c in COMPOUND}}
    out = {}
    for level in LEVELS:
        row = {}
        for group, names in groups.items():
            inside = [q for q in usable if q["set"] == "indexed" and q["condition"] in names]
            outside = [q for q in usable if q["set"] == "outside" and q["condition"] in names]
            ok = sum(q["first_confidence"] >= level and q["source_rank"] == 1 for q in inside)
            row[group] = {"false_reject": _rate(len(inside) - ok, len(inside)),
                          "false_accept": _rate(sum(q["first_confidence"] >= level
                                                    for q in outside), len(outside))}
        out[f"{level:g}"] = row
    return out


def _rates(inside: list[dict], outside: list[dict], tag: str) -> dict:
    """False rejects (rejected + wrong first result) and false accepts of one decision."""
    rejected = sum(not q["accepted" + tag] for q in inside)
    wrong = sum(q["accepted" + tag] and not q["first_is_source" + tag] for q in inside)
    accepted = sum(q["accepted" + tag] for q in outside)
    return {f"rejected{tag}": _rate(rejected, len(inside)),
            f"wrong_first{tag}": _rate(wrong, len(inside)),
            f"false_reject{tag}": _rate(rejected + wrong, len(inside)),
            f"false_reject{tag}_ci95": wilson(rejected + wrong, len(inside)),
            f"false_accept{tag}": _rate(accepted, len(outside)),
            f"false_accept{tag}_ci95": wilson(accepted, len(outside))}


def tables(results: dict) -> list[tuple[str, str]]:
    s, c, cal = results["summary"], results["corpus"], results["calibration"]
    head = ["condition", "indexed / outside excerpts",
            "confidence: false reject (95% CI)", "confidence: false accept (95% CI)",
            "raw threshold: false reject (95% CI)", "raw threshold: false accept (95% CI)",
            "median best score in / out"]
    rows = [[g, f"{v['indexed']} / {v['outside']}",
             _with_ci(v["false_reject"], v["false_reject_ci95"]),
             _with_ci(v["false_accept"], v["false_accept_ci95"]),
             _with_ci(v["false_reject_raw"], v["false_reject_raw_ci95"]),
             _with_ci(v["false_accept_raw"], v["false_accept_raw_ci95"]),
             f"{_num(v['median_best_indexed'])} / {_num(v['median_best_outside'])}"]
            for g, v in s.items()]
    sec = results["seconds"]
    fit = cal.get("confidence", {}).get("fits", {}).get(results["rollup"], {})
    about = (f"{len(c['tracks'])} tracks indexed ({c['hours']:.2f} h, {c['windows']} windows; "
             f"model `{results['model']['spec']}` {results['model']['arch']}), "
             f"{len(c['outside'])} other tracks of the same CSV as outsiders; "
             f"{results['excerpts_per_track']} excerpt(s) of {results['excerpt_seconds']:g} s "
             f"per track and condition ({results['excerpts_redrawn']} silent one(s) redrawn, "
             f"{s['all']['refused']} degraded clip(s) refused as unusable and left out); "
             f"roll-up `{results['rollup']}`. Confidence: accepted at "
             f"**{results['accept_confidence']:g}** or more (fitted on {fit.get('positives')} "
             f"positives and {fit.get('negatives')} negatives of the index's own files). Raw "
             f"threshold **{results['threshold']:.4f}** (calibrated on {cal['samples']} "
             f"excerpts of {cal['excerpt_seconds']:g} s, target false accept "
             f"{cal['target_false_accept']:.0%}). Seconds: build {sec['build']}, calibration "
             f"{sec['calibration']}, queries {sec['queries']} ({sec['per_query_ms']} ms per "
             f"excerpt and condition), total {sec['total']}.")
    groups = list(next(iter(results["levels"].values()), {}))
    sweep_rows = [[level] + [f"{v[g]['false_reject']} / {v[g]['false_accept']}" for g in groups]
                  for level, v in results["levels"].items()]
    return [("No match on real audio: confidence against the raw threshold",
             about + "\n\n" + C.markdown_table(head, rows)),
            ("Other confidence levels (false reject / false accept)",
             C.markdown_table(["level", *groups], sweep_rows))]


# -- helpers -------------------------------------------------------------------------------

def _threads(threads: int | None) -> None:
    C.set_threads(threads)
    if threads:
        import faiss

        faiss.omp_set_num_threads(threads)


def _conditions(text: str) -> list[str]:
    from sonicsearch.eval.degrade import DEGRADATIONS

    names = [x.strip() for x in text.split(",") if x.strip()]
    known = (*DEGRADATIONS, "realnoise_snr10", *COMPOUND)
    unknown = [x for x in names if x not in known]
    if unknown or not names:
        sys.exit(f"unknown condition(s) {', '.join(unknown) or '(none given)'}; choose from: "
                 f"{', '.join(known)}")
    return names


def degradations(names: list[str], bank: list[np.ndarray] | None) -> dict:
    """``name -> f(x, sr, rng)``; ``realnoise_snr10`` and ``phone_room`` mix a recording of
    ``bank`` (None: pink noise instead)."""
    from sonicsearch.eval import compound, degrade

    def noise(rng):
        return bank[int(rng.integers(len(bank)))] if bank else None

    def realnoise(x, sr, rng):
        if not bank:
            return degrade.add_noise(x, sr, SNR_DB, rng, color="pink")
        return degrade.mix_noise(x, noise(rng), SNR_DB, rng)

    special = {"realnoise_snr10": realnoise,
               "phone_room": lambda x, sr, rng: compound.phone_in_room(x, sr, rng, noise(rng))}
    return {n: special.get(n) or degrade.DEGRADATIONS[n] for n in names}


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
