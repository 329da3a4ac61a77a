"""Duplicates and occurrences on real music: made copies of real tracks and a jingle aired
in a programme, through the real build and the shipped base model.

N tracks of the Debian evaluation pool (``make-dataset debian ... --pool eval``; the first
N of at least 2 * SECONDS s, by path: tracks of one package are one soundtrack, an
"album") are cut to SECONDS s from their 20th second. Copies: an mp3 and an ogg
re-encode, a 16 kHz resample, a copy trimmed by 10.3 s, a +6 dB (clipped) master, and a
mix of passages of three unindexed tracks holding a track. ``duplicates`` should group exactly
those pairs. A 5 s jingle (the excerpt of one more track) is aired 7 times at -12..+3 dB
under noise in a programme of further tracks; ``query --occurrences`` should find the 7
airings and nothing else.

    python benchmarks/collection.py --quick            # 8 tracks
    python benchmarks/collection.py --tracks 40

Writes benchmarks/results/collection.{json,md}: precision and recall of the copy pairs and
of the airings (an airing found within 1.5 s), the scores on each side, and the seconds.
"""

from __future__ import annotations

import shutil
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

PRESETS = {"tiny": {"tracks": 6, "seconds": 20.0}, "quick": {"tracks": 8, "seconds": 60.0},
           "full": {"tracks": 40, "seconds": 60.0}}
SR = 22050
GAINS_DB = [0, -3, -6, -9, -12, 3, -6]  # the jingle's airings
COPIES = ("mp3", "ogg", "16k", "trim", "gain", "mix")


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None,
                   help="evaluation CSV path,label[,...] (default: CACHE/debian/eval.csv)")
    p.add_argument("--tracks", type=int, default=None, help="tracks to copy")
    p.add_argument("--seconds", type=float, default=None, help="length of each track")
    p.add_argument("--model", default="base", help="model.pt, or base")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def pick(args) -> list[str]:
    """Track paths: the first that are long enough (--tiny: a synthetic corpus)."""
    from sonicsearch.eval.tracks import read_tracks, track_rows

    if args.tiny:
        rows = track_rows(C.synth_corpus(args.cache, 4, 4, 2 * args.seconds + 25, 16000, 0))
    else:
        rows = read_tracks(args.data or args.cache / "debian" / "eval.csv")
    paths = sorted(r["path"] for r in rows if r["duration"] >= 2 * args.seconds + 25)
    need = 2 * args.tracks + 4
    if len(paths) < need:
        sys.exit(f"{len(paths)} tracks of at least {2 * args.seconds + 25:g} s; {need} needed")
    return paths[:need]


def make(audio: Path, paths: list[str], n: int, seconds: float, seed: int):
    """Write the originals, the copies, the programme; return (true pairs, airings)."""
    import soundfile as sf

    from sonicsearch.audio import load_audio

    def cut(path: str, offset: float, length: float) -> np.ndarray:
        w, _ = load_audio(path, sample_rate=SR, offset=offset, duration=length)
        return (0.5 * w / max(float(np.abs(w).max()), 1e-6)).astype(np.float32)

    tracks = [cut(p, 20.0, seconds) for p in paths[:n]]
    for i, w in enumerate(tracks):
        sf.write(audio / f"t{i:03d}.wav", w, SR)
    pairs = set()
    for i, w in enumerate(tracks):
        kind = COPIES[i % len(COPIES)]
        name = f"c{i:03d}-{kind}" + {"mp3": ".mp3", "ogg": ".ogg"}.get(kind, ".wav")
        if kind in ("mp3", "ogg"):
            fmt = {"mp3": ("MP3", "MPEG_LAYER_III"), "ogg": ("OGG", "VORBIS")}[kind]
            sf.write(audio / name, w, SR, format=fmt[0], subtype=fmt[1])
        elif kind == "16k":
            t = np.arange(int(len(w) * 16000 / SR)) / 16000
            sf.write(audio / name, np.interp(t, np.arange(len(w)) / SR, w).astype(np.float32),
                     16000)
        elif kind == "trim":
            sf.write(audio / name, w[int(10.3 * SR):], SR)
        elif kind == "gain":
            sf.write(audio / name, np.clip(2.0 * w, -1.0, 1.0), SR)
        else:
            others = [0.8 * cut(paths[2 * n + 1 + k], 20.0, 20.0)
                      for k in range(3)]  # passages of tracks used nowhere else
            sf.write(audio / name, np.concatenate([others[0], others[1], w, others[2]]), SR)
        pairs.add((f"t{i:03d}.wav", name))
    jingle = cut(paths[n], 5.0, 5.0)
    sf.write(audio.parent / "jingle.wav", jingle, SR)
    programme = np.concatenate([cut(p, 10.0, seconds) * 0.8 for p in paths[n + 1 : 2 * n + 1]])
    span = len(programme) / SR - 6.0
    aired = [round(span * (0.05 + 0.13 * k), 2) for k in range(len(GAINS_DB))]
    for start, g in zip(aired, GAINS_DB, strict=True):
        a = int(start * SR)
        programme[a : a + len(jingle)] = jingle * 10 ** (g / 20)
    programme += 0.01 * np.random.default_rng(seed).standard_normal(len(programme))
    sf.write(audio / "programme.wav", programme.astype(np.float32), SR)
    return pairs, aired


def score(found: set, truth: set) -> tuple[float, float]:
    tp = len(found & truth)
    return round(tp / max(len(found), 1), 4), round(tp / max(len(truth), 1), 4)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    from sonicsearch.index import AudioIndex
    from sonicsearch.index.occurrences import MIN_SCORE as OCCURRENCE_MIN_SCORE

    paths = pick(args)
    work = args.cache / "bench-collection" / C.mode(args)
    shutil.rmtree(work, ignore_errors=True)
    audio = C.mkdir(work / "audio")
    truth, aired = make(audio, paths, args.tracks, args.seconds, args.seed)
    with C.Timer() as t_build:
        index = AudioIndex.build([audio], args.model, work / "idx", device="cpu")
    with index:
        found = index.duplicates()
        loose = index.duplicates(min_score=0.0, min_overlap=5.0)
        t0 = time.perf_counter()
        occ = index.occurrences(work / "jingle.wav", min_score=0.05)
        t_occ = time.perf_counter() - t0
    name = lambda p: Path(p).name  # noqa: E731
    got = {tuple(sorted((name(found.paths[a]), name(found.paths[b]))))
           for g in found.groups for a, b in combinations(g.files, 2)}
    truth = {tuple(sorted(p)) for p in truth}
    hits = [(name(r["path"]), r["start"], r["score"]) for r in occ]
    kept = [h for h in hits if h[2] >= OCCURRENCE_MIN_SCORE]
    right = [h for h in kept if h[0] == "programme.wav"
             and any(abs(h[1] - a) <= 1.5 for a in aired)]
    false_scores = [h[2] for h in hits if h not in right]
    row = {"tracks": args.tracks, "files": len(found.paths),
           "build_seconds": round(t_build.seconds, 1),
           "duplicates_seconds": round(found.seconds, 2),
           "dup_precision": score(got, truth)[0], "dup_recall": score(got, truth)[1],
           "dup_confidence_min": round(min((g.confidence for g in found.groups), default=0), 3),
           "loose_false_groups": sum(1 for g in loose.groups
                                     if not any(set(map(name, (loose.paths[f] for f in g.files)))
                                                >= set(p) for p in truth)),
           "occ_seconds": round(t_occ, 2),
           "occ_precision": round(len(right) / max(len(kept), 1), 4),
           "occ_recall": round(len({min(aired, key=lambda a, h=h: abs(a - h[1]))
                                    for h in right}) / len(aired), 4),
           "airing_score_min": round(min((h[2] for h in right), default=0), 3),
           "other_score_max": round(max(false_scores, default=0), 3)}
    C.log(str(row))
    C.write_results("collection", args.out,
                    {"benchmark": "collection", "mode": C.mode(args), "machine": C.machine(),
                     "rows": [row]},
                    [("Duplicates and occurrences",
                      C.markdown_table(list(row), [list(row.values())]))])
    return row


if __name__ == "__main__":
    with C.exit_on_error():
        main()
