"""How long a clip has to be: R@1 / R@10 of 1, 2, 3, 5 and 8 s queries per degradation,
on a catalogue of real tracks (issue #24 item 3).

The catalogue: ``--tracks`` tracks of the evaluation pool (``--data``, picked seeded with
labels taking turns), which are queried, and real distractor tracks that are not: a seeded
draw of the ``--distractors`` CSV's tracks of at least ``--distractor-min-seconds`` (the
training pool: music, speech, effects, ambience), until the catalogue holds
``--catalogue`` tracks (default: every such track). Every track is indexed whole.

Each queried track gives ``--excerpts`` excerpts at seeded offsets; each excerpt is
degraded once (:mod:`sonicsearch.eval.lengths`: the degradation runs on the whole excerpt)
and queried at every ``--lengths``, its first L seconds, so all lengths start at the same
place and the longer query contains the shorter. Queries are embedded by the model's
:class:`~sonicsearch.embed.Embedder` as ``query`` embeds a clip (a clip shorter than one
window is one window of its own length) and ranked by the product's search and roll-up
(``vote``) over an exact flat index of the catalogue's window vectors
(:mod:`sonicsearch.eval.window_index`). ``realnoise_snrN`` mixes a recording of the
``--noise`` CSV's effects and ambience at N dB SNR; ``phone_room`` uses such a recording
as the room's background.

    python benchmarks/short_queries.py --data data/debian/eval.csv \
        --distractors data/debian/train.csv --noise data/debian/train.csv --threads 1

Writes short_queries.{json,md} in --out; window vectors are cached per model and file
under --vector-cache (shared with robust_music.py), so a rerun embeds only the queries.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from sonicsearch.eval import compound, degrade  # noqa: E402
from sonicsearch.eval.lengths import pick_distractors, recall_by_length  # noqa: E402
from sonicsearch.eval.systems import ModelSystem  # noqa: E402
from sonicsearch.eval.tracks import (  # noqa: E402
    hours,
    noise_bank,
    pick_tracks,
    read_tracks,
    track_facts,
)
from sonicsearch.eval.window_index import build_window_index, file_windows  # noqa: E402

DEGRADATIONS = ("clean", "noise_snr0", "realnoise_snr5", "mp3_low", "pitch_+1st",
                "tempo_1.06", "speed_1.08", "eq_comp", "phone_room")
PRESETS = {
    "tiny": {"tracks": 3, "excerpts": 2, "lengths": "0.5,1,2", "catalogue": None},
    "quick": {"tracks": 20, "excerpts": 2, "lengths": "1,2,3,5,8", "catalogue": 100},
    "full": {"tracks": 60, "excerpts": 2, "lengths": "1,2,3,5,8", "catalogue": None},
}
KS = (1, 10)
REALNOISE = re.compile(r"realnoise_snr(-?\d+(?:\.\d+)?)$")


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None,
                   help="evaluation CSV: the queried tracks (default: CACHE/debian/eval.csv)")
    p.add_argument("--distractors", type=Path, default=None,
                   help="CSV of distractor tracks (default: CACHE/debian/train.csv)")
    p.add_argument("--noise", type=Path, default=None,
                   help="CSV whose effects/ambience give the recorded noise (default: the "
                        "--distractors CSV)")
    p.add_argument("--distractor-min-seconds", type=float, default=5.0)
    p.add_argument("--catalogue", type=int, default=None,
                   help="tracks in the catalogue, queried ones included (default: all)")
    p.add_argument("--model", default="base", help="[NAME=]PATH of a model file, or base")
    p.add_argument("--tracks", type=int, default=None, help="queried tracks")
    p.add_argument("--excerpts", type=int, default=None, help="excerpts per queried track")
    p.add_argument("--lengths", default=None, help="comma-separated query lengths, seconds")
    p.add_argument("--degradations", default=",".join(DEGRADATIONS),
                   help="comma-separated names of sonicsearch.eval.degrade.DEGRADATIONS, "
                        "or realnoise_snrN")
    p.add_argument("--rollup", default="vote", help="vote | max | mean-top")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda")
    p.add_argument("--vector-cache", type=Path, default=C.HERE / "cache" / "robust_music")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    t0 = time.monotonic()
    with C.exit_on_error():
        queried, distractors, noise_rows = corpus(args)
        lengths = sorted({float(x) for x in args.lengths.split(",")})
        names = args.degradations.split(",")
        system = ModelSystem(args.model, args.device)
        sr = system.embedder.feature_config.sample_rate
        bank, noise_files = noise_bank(noise_rows, args.seed, sr)
        degrade_by_name = degradations(names, bank)
        need = None if args.catalogue is None else args.catalogue - len(queried)
        distractors = embeddable(system, distractors, need, args.vector_cache)
        tracks = queried + distractors
        index = build_window_index(system, [t["path"] for t in tracks], args.vector_cache)
    C.log(f"catalogue: {len(tracks)} tracks ({hours(tracks):.2f} h, {len(index.vectors)} "
          f"windows), {len(queried)} queried x {args.excerpts} excerpts x {len(names)} "
          f"degradations x lengths {args.lengths}")
    ident = recall_by_length(system, index, queried, args.excerpts, lengths, names,
                             degrade_by_name, args.seed, args.rollup, sr, KS, C.log)
    results = {"benchmark": "short_queries", "mode": C.mode(args), "machine": C.machine(),
               "model": system.about, "rollup": args.rollup, "lengths": lengths,
               "degradations": names, "noise_files": noise_files,
               "catalogue": {"tracks": len(tracks), "hours": round(hours(tracks), 3),
                             "windows": int(len(index.vectors)),
                             "queried": track_facts(queried),
                             "distractors": composition(distractors),
                             "distractor_min_seconds": args.distractor_min_seconds},
               "excerpts_per_track": args.excerpts, **ident,
               "seconds": round(time.monotonic() - t0, 1)}
    sections = tables(results)
    js, md = C.write_results("short_queries", args.out, results, sections)
    print("\n\n".join(body for _, body in sections))
    C.log(f"wrote {js} and {md}")
    return results


def corpus(args) -> tuple[list[dict], list[dict], list[dict]]:
    """The queried tracks, the distractor candidates (all, in seeded order) and the noise
    CSV's rows."""
    if args.tiny:
        sys.path.insert(0, str(C.HERE))
        from robust_music import tiny_corpus

        rows, noise_rows = tiny_corpus(args.cache)
        queried = pick_tracks(rows, args.tracks, args.seed)
        rest = [r for r in rows if r not in queried]
        return queried, rest, noise_rows
    data = args.data or args.cache / "debian" / "eval.csv"
    dist_csv = args.distractors or args.cache / "debian" / "train.csv"
    queried = pick_tracks(read_tracks(data), args.tracks, args.seed)
    dist_rows = read_tracks(dist_csv)
    noise_rows = read_tracks(args.noise) if args.noise else dist_rows
    distractors = pick_distractors(dist_rows, None, args.seed, args.distractor_min_seconds,
                                   [t["path"] for t in queried])
    return queried, distractors, noise_rows


def embeddable(system, tracks: list[dict], need: int | None, cache: Path) -> list[dict]:
    """The first ``need`` of ``tracks`` (all for None) whose window vectors could be made
    (cached for the index build); an unreadable or silent one is named and the next one
    taken in its place."""
    from sonicsearch.errors import AudioError

    folder = C.mkdir(cache / system.key)
    kept: list[dict] = []
    for i, t in enumerate(tracks):
        if need is not None and len(kept) >= need:
            break
        try:
            file_windows(system, t["path"], folder)
            kept.append(t)
        except AudioError as exc:
            C.log(f"distractor left out: {exc}")
        if (i + 1) % 50 == 0:
            C.log(f"{len(kept)} distractors embedded")
    return kept


def degradations(names: list[str], bank: list) -> dict:
    """The named degradations; ``realnoise_snrN`` and ``phone_room`` take a recording of
    ``bank`` (the room's background), the others come from the registry."""
    def pick(rng):
        return bank[int(rng.integers(len(bank)))]

    out = {}
    for name in names:
        m = REALNOISE.match(name)
        if m:
            snr = float(m.group(1))
            out[name] = lambda x, sr, rng, snr=snr: degrade.mix_noise(x, pick(rng), snr, rng)
        elif name == "phone_room":
            out[name] = lambda x, sr, rng: compound.phone_in_room(x, sr, rng, noise=pick(rng))
        else:
            out[name] = degrade.DEGRADATIONS[name]  # an unknown name lists the known ones
    return out


def composition(tracks: list[dict]) -> dict:
    """Distractors by label: tracks and hours."""
    out: dict = {}
    for t in tracks:
        c = out.setdefault(t["label"], {"tracks": 0, "hours": 0.0})
        c["tracks"] += 1
        c["hours"] = round(c["hours"] + t["duration"] / 3600, 3)
    return dict(sorted(out.items()))


def tables(results: dict) -> list[tuple[str, str]]:
    lengths = [f"{s:g}" for s in results["lengths"]]
    cells, names = results["cells"], results["degradations"]
    head = ["degradation"] + [f"{s} s" for s in lengths]
    rows = [[n] + [f"{cells[n][s]['R@1']:.3f} / {cells[n][s]['R@10']:.3f}" for s in lengths]
            for n in names]
    rows.append([f"mean of {len(names)}"] + [
        f"{results['mean'][s]['R@1']:.3f} / {results['mean'][s]['R@10']:.3f}"
        for s in lengths])
    ci = [[n] + ["{:.2f}-{:.2f}".format(*cells[n][s]["R@1_95"]) for s in lengths]
          for n in names]
    c = results["catalogue"]
    dist = ", ".join(f"{lab} {v['tracks']} ({v['hours']:.2f} h)"
                     for lab, v in c["distractors"].items())
    note = (f"{c['tracks']} tracks ({c['hours']:.2f} h, {c['windows']} windows) indexed: "
            f"{len(c['queried'])} queried tracks of the evaluation pool, and distractors "
            f"by label: {dist}. {results['excerpts']} excerpts per cell "
            f"({results['excerpts_per_track']} per queried track; {results['left_out']} left "
            f"out, quiet at the start); a query of L s is the first L s of the degraded "
            f"excerpt. R@1 / R@10 of the source track, roll-up `{results['rollup']}`.")
    return [("R@1 / R@10 by query length", note + "\n\n" + C.markdown_table(head, rows)),
            ("R@1: 95 % interval (Wilson)", C.markdown_table(head, ci))]


if __name__ == "__main__":
    main()
