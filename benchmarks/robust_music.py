"""Identification of real, unseen music: can a degraded 8-second excerpt find its track?

The index holds N full tracks of the Debian evaluation pool (``*music*`` packages, never
trained on; ``sonicsearch make-dataset debian eval.csv --pool eval``), picked seeded and
spread over its labels. Each track gives E excerpts of 8 s at random offsets, and each
excerpt is queried clean and under every degradation: white noise and recorded noise at
10 dB SNR (the noise: effects and ambience of the *training* pool), a telephone line, a
synthetic room (RT60 0.6 s) and a room shaped like a measured one (``degrade.room_ir``),
-12/+6 dB gain, low-bit-rate MP3 and Vorbis, and 3 % slower/faster playback.
``--degradations compound`` measures the compound captures instead
(:mod:`sonicsearch.eval.compound`: a phone in a room with a recorded background, EQ +
multiband compression + limiting, a broadcast chain) and the hard single ones (pitch +1
semitone, tempo +6 %, speed +8 %).

Every system turns a clip into window vectors; search is exact cosine over all window
vectors of the indexed tracks, rolled up to tracks with the product's roll-up
(``sonicsearch.index.search``, default ``vote``). Reported: R@1 and R@10 of the source
track per degradation and their mean, and label mAP@10 (a track's mean vector ranks the
other tracks; relevant = same label). Systems: ``mfcc`` (MFCC + delta mean/std per window,
standardised on the index, L2-normalised) and any ``--model NAME=PATH.pt``.

    sonicsearch make-dataset debian ~/.cache/sonicsearch/debian/eval.csv --pool eval
    sonicsearch make-dataset debian ~/.cache/sonicsearch/debian/train.csv   # noise source
    python benchmarks/robust_music.py --quick
    python benchmarks/robust_music.py --model base=runs/pretrain/model.pt
    python benchmarks/robust_music.py --model base=base --degradations compound

Writes benchmarks/results/robust_music.{json,md}; index vectors are cached per system
(keyed by the model's SHA-256) and track under benchmarks/cache/robust_music/.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from sonicsearch.embed.embedder import QUIET_DBFS  # noqa: E402
from sonicsearch.eval import compound, degrade  # noqa: E402
from sonicsearch.eval.systems import CompactSystem, MfccSystem, ModelSystem  # noqa: E402, F401
from sonicsearch.eval.tracks import (  # noqa: E402, F401 - pick_tracks: the tests' too
    hours,
    noise_bank,
    pick_tracks,
    plan_excerpts,
    read_tracks,
    track_facts,
    track_rows,
)
from sonicsearch.eval.window_index import (  # noqa: E402
    build_window_index,
    head_macro_f1,
    identify,
    label_map,
)

SR = 22050  # excerpts are decoded and degraded at this rate; systems resample as they need
SNR_DB = 10.0
DEGRADATIONS = ("clean", "noise_snr10", "realnoise_snr10", "telephone", "reverb",
                "reverb_room", "gain_-12db", "gain_+6db", "mp3_low", "ogg_low", "speed_0.97",
                "speed_1.03")
PRESETS = {
    "tiny": {"tracks": 4, "excerpts": 2, "excerpt_seconds": 4.0},
    "quick": {"tracks": 20, "excerpts": 3, "excerpt_seconds": 8.0},
    "full": {"tracks": 40, "excerpts": 5, "excerpt_seconds": 8.0},
}
KS = (1, 10)


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None,
                   help="evaluation CSV path,label[,...] (default: CACHE/debian/eval.csv)")
    p.add_argument("--noise", type=Path, default=None,
                   help="training-pool CSV whose effects/ambience give the recorded noise "
                        "(default: CACHE/debian/train.csv)")
    p.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH[:int8]",
                   help="a checkpoint to compare (repeatable); ':int8' indexes on the "
                        "build-index --fast path, queries float32")
    p.add_argument("--no-mfcc", action="store_true", help="leave the MFCC system out")
    p.add_argument("--only-label", default=None,
                   help="keep the --data rows of this label (e.g. music of the training pool)")
    p.add_argument("--min-duration", type=float, default=0.0,
                   help="keep the --data tracks at least this long, seconds")
    p.add_argument("--unseen-by", type=Path, default=None, metavar="MANIFEST",
                   help="drop the --data tracks that a pretraining pack's manifest.csv draws "
                        "from (its 'source' column): a validation set the model never heard")
    p.add_argument("--tracks", type=int, default=None, help="tracks in the index")
    p.add_argument("--excerpts", type=int, default=None, help="excerpts per track")
    p.add_argument("--excerpt-seconds", type=float, default=None)
    p.add_argument("--degradations", default=None,
                   help="comma-separated (default: the 12 single ones), or 'compound': clean, "
                        "phone in a room, EQ + compression, broadcast, pitch +1 semitone, "
                        "tempo +6 %%, speed +8 %%")
    p.add_argument("--rollup", default="vote", help="vote | max | mean-top")
    p.add_argument("--mfcc-window", type=float, default=3.0, help="MFCC window, seconds")
    p.add_argument("--mfcc-hop", type=float, default=1.5, help="MFCC hop, seconds")
    p.add_argument("--window", type=float, default=None,
                   help="models: window length, seconds, in index and queries (default: "
                        "the model's)")
    p.add_argument("--index-hop", type=float, default=None,
                   help="models: index window hop, seconds (default: the model's)")
    p.add_argument("--query-hop", type=float, default=None,
                   help="models: query window hop, seconds (default: the index hop)")
    p.add_argument("--keep-quiet", action="store_true",
                   help="models: keep windows below -60 dBFS (the product leaves them out)")
    p.add_argument("--write-unindexed", type=Path, default=None, metavar="CSV",
                   help="write the --data tracks this run does not index as path,label (a "
                        "fine-tuning set disjoint from the index) and stop")
    p.add_argument("--compact-dims", default="",
                   help="comma-separated dims: each model also in the index's compact "
                        "format (pca-int8 at that dim), side by side, the same queries")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--vector-cache", type=Path, default=C.HERE / "cache" / "robust_music")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    t0 = time.monotonic()
    if args.tiny:
        rows, noise_rows = tiny_corpus(args.cache)
    else:
        with C.exit_on_error():
            rows = select_rows(read_tracks(args.data or args.cache / "debian" / "eval.csv"),
                               args)
            noise_rows = read_tracks(args.noise or args.cache / "debian" / "train.csv")
    tracks = pick_tracks(rows, args.tracks, args.seed)
    if args.write_unindexed:
        n = write_unindexed(args.write_unindexed, rows, tracks)
        C.log(f"wrote {n} tracks that the index leaves out to {args.write_unindexed}")
        return {"unindexed": n}
    names = args.degradations.split(",") if args.degradations else list(DEGRADATIONS)
    if names == ["compound"]:
        names = ["clean", *compound.COMPOUND]
    with C.exit_on_error():
        bank, noise_files = noise_bank(noise_rows, args.seed, SR)
    degrade_by_name = degradations(names, bank)
    systems = ([MfccSystem(args.mfcc_window, args.mfcc_hop)] if not args.no_mfcc else [])
    systems += [ModelSystem(spec, args.device, args.index_hop, args.query_hop,
                            None if args.keep_quiet else QUIET_DBFS, args.window)
                for spec in args.model]
    models = [s for s in systems if isinstance(s, ModelSystem)]
    systems += [CompactSystem(m, int(d)) for m in models
                for d in filter(None, args.compact_dims.split(","))]
    if not systems:
        sys.exit("no system to measure: drop --no-mfcc or give --model")
    C.log(f"{len(tracks)} tracks ({hours(tracks):.2f} h) in "
          f"{len({t['label'] for t in tracks})} labels; {args.excerpts} excerpts x "
          f"{len(names)} degradations; systems: {', '.join(s.name for s in systems)}")
    queries = plan_excerpts(tracks, args.excerpts, args.excerpt_seconds, args.seed)
    results: dict = {"benchmark": "robust_music", "mode": C.mode(args), "machine": C.machine(),
                     "corpus": {"data": "generated (tiny)" if args.tiny else str(args.data),
                                "tracks": track_facts(tracks),
                                "hours": round(hours(tracks), 3)},
                     "excerpts_per_track": args.excerpts,
                     "excerpt_seconds": args.excerpt_seconds, "rollup": args.rollup,
                     "noise_files": noise_files, "degradations": names, "systems": {}}
    paths, labels = [tr["path"] for tr in tracks], [tr["label"] for tr in tracks]
    for system in systems:
        with C.Timer() as t:
            index = build_window_index(system, paths, args.vector_cache)
            C.log(f"{system.name}: {len(index.vectors)} index windows of {len(tracks)} tracks "
                  f"in {index.seconds:.1f}s")
            ident = identify(system, index, tracks, queries, names, degrade_by_name, args.seed,
                             args.rollup, SR, KS)
        results["systems"][system.name] = {
            "about": system.about, "windows": int(index.vectors.shape[0]),
            "identification": ident, "label_map@10": label_map(index, labels),
            "macro_f1": head_macro_f1(system, index, labels), "seconds": round(t.seconds, 1)}
        C.log(f"{system.name}: mean R@1 {ident['all']['R@1']:.3f}, R@10 "
              f"{ident['all']['R@10']:.3f} in {t.seconds:.0f}s")
    results["seconds"] = round(time.monotonic() - t0, 1)
    sections = tables(results)
    js, md = C.write_results("robust_music", args.out, results, sections)
    print("\n\n".join(body for _, body in sections))
    C.log(f"wrote {js} and {md}")
    return results


# -- corpus, noise --------------------------------------------------------------------------

def degradations(names: list[str], bank: list[np.ndarray]) -> dict:
    """The named degradations; ``realnoise_snr10`` mixes a recording of ``bank``."""
    out = {}
    for name in names:
        if name == "realnoise_snr10":
            out[name] = lambda x, sr, rng: degrade.mix_noise(
                x, bank[int(rng.integers(len(bank)))], SNR_DB, rng)
        elif name == "phone_room":  # the room's background: a recording, not pink noise
            out[name] = lambda x, sr, rng: compound.phone_in_room(
                x, sr, rng, noise=bank[int(rng.integers(len(bank)))])
        elif name in degrade.DEGRADATIONS:
            out[name] = degrade.DEGRADATIONS[name]
        else:
            sys.exit(f"unknown degradation '{name}'; choose from: "
                     f"{', '.join(DEGRADATIONS + compound.COMPOUND)} or 'compound'")
    return out


def select_rows(rows: list[dict], args) -> list[dict]:
    """The rows that ``--only-label``, ``--min-duration`` and ``--unseen-by`` keep."""
    seen: set[str] = set()
    if args.unseen_by:
        with open(args.unseen_by, newline="", encoding="utf-8") as fh:
            seen = {os.path.realpath(r["source"]) for r in csv.DictReader(fh) if r.get("source")}
    out = [r for r in rows if (args.only_label is None or r["label"] == args.only_label)
           and r["duration"] >= args.min_duration and os.path.realpath(r["path"]) not in seen]
    if not out:
        sys.exit("no --data rows left after --only-label / --min-duration / --unseen-by")
    return out


def write_unindexed(path: Path, rows: list[dict], tracks: list[dict]) -> int:
    """``rows`` not in ``tracks`` as a ``path,label`` CSV; their count. Paths are relative to
    the CSV's folder where they lie under it (as ``sonicsearch train`` wants), else
    absolute (train then needs ``--allow-external-paths``)."""
    picked = {t["path"] for t in tracks}
    rest = [r for r in rows if r["path"] not in picked]
    folder = Path(path).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)

    def name(p: str) -> str:
        full = Path(p).resolve()
        return full.relative_to(folder).as_posix() if full.is_relative_to(folder) else str(full)

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows([name(r["path"]), r["label"]] for r in rest)
    return len(rest)


def tiny_corpus(cache: Path) -> tuple[list[dict], list[dict]]:
    """Four synthetic 20-s tracks in two labels, and two synthetic noises (--tiny only)."""
    import soundfile as sf

    rows = track_rows(C.synth_corpus(cache, 2, 2, 20.0, 16000, 0))
    noise_dir = cache / "corpora" / "tiny-noise"
    noise_dir.mkdir(parents=True, exist_ok=True)
    noise = []
    for i, name in enumerate(("wind.wav", "engine.wav")):
        rng = np.random.default_rng(i)
        x = np.cumsum(rng.standard_normal(16000 * 5)) * 0.01  # brown-ish rumble
        x += 0.2 * np.sin(2 * np.pi * (60 + 40 * i) * np.arange(x.size) / 16000)
        sf.write(noise_dir / name, (0.3 * x / np.abs(x).max()).astype(np.float32), 16000)
        noise.append({"path": str(noise_dir / name), "label": "ambience", "package": "tiny",
                      "duration": 5.0})
    return rows, noise


def tables(results: dict) -> list[tuple[str, str]]:
    systems, names = list(results["systems"]), results["degradations"]
    head = ["degradation"] + [f"{s} R@{k}" for s in systems for k in KS]
    rows = [[d] + [results["systems"][s]["identification"][d][f"R@{k}"] for s in systems
                   for k in KS] for d in names + ["all"]]
    c = results["corpus"]
    q = results["excerpts_per_track"] * len(c["tracks"])
    ident = (f"{len(c['tracks'])} tracks ({c['hours']:.2f} h, "
             f"{len({t['label'] for t in c['tracks']})} labels) indexed; {q} excerpts of "
             f"{results['excerpt_seconds']:g} s per degradation; roll-up "
             f"`{results['rollup']}`; recall@k of the source track ('all': mean over "
             "degradations).\n\n" + C.markdown_table(head, rows))
    label = C.markdown_table(["system", "label mAP@10", "head macro-F1", "index windows",
                              "seconds"],
                             [[s, r["label_map@10"], r["macro_f1"], r["windows"], r["seconds"]]
                              for s, r in results["systems"].items()])
    return [("Identification under degradations", ident), ("Style (label) retrieval", label)]


if __name__ == "__main__":
    main()
