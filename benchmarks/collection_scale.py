"""Duplicates and occurrences at 10^3 files of real music, and a 3-minute track inside a
40-minute mix, through the real build and the shipped base model.

From the Debian evaluation pool (``make-dataset debian ... --pool eval``), by path order:

- the mix: whole tracks joined into MIX_MINUTES minutes, with one more track's 3 minutes
  (from its 10th second) in the middle, and a 5 s jingle (another track's excerpt) aired
  7 times at -12..+3 dB; white noise at -40 dBFS over all of it. The 3-minute excerpt is
  indexed on its own too: ``duplicates`` should group it with the mix;
- originals: SECONDS s of every other track (from its 20th second, peak-normalised);
- copies, until the index holds FILES files: each original in turn gets the next kind of
  copy (an mp3 and an ogg re-encode, a 16 kHz resample, a copy trimmed by 2 s, a +6 dB
  clipped master, one under white noise at 20 dB SNR).

An original and its copies are one recording: every pair of them is a true pair, as is
the excerpt with the mix; any other pair is a false one (tracks of one soundtrack
included). ``query --occurrences`` of the jingle should find its 7 airings in the mix
(within 1.5 s) and nothing else. Seconds of ``duplicates`` and of the occurrence query on
the whole index are the point; the build (embedding) is reported apart.

    python benchmarks/collection_scale.py --quick     # 300 files, a 12-minute mix
    python benchmarks/collection_scale.py             # 1000 files, a 40-minute mix

Writes benchmarks/results/collection_scale.{json,md}.
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

PRESETS = {"tiny": {"files": 24, "seconds": 12.0, "mix_minutes": 2.0},
           "quick": {"files": 300, "seconds": 12.0, "mix_minutes": 12.0},
           "full": {"files": 1000, "seconds": 12.0, "mix_minutes": 40.0}}
SR = 22050
KINDS = ("mp3", "ogg", "16k", "trim", "gain", "noise")
GAINS_DB = [0, -3, -6, -9, -12, 3, -6]
EXCERPT = 180.0


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None,
                   help="evaluation CSV path,label[,...] (default: CACHE/debian/eval.csv)")
    p.add_argument("--files", type=int, default=None, help="files in the index")
    p.add_argument("--seconds", type=float, default=None, help="length of each original")
    p.add_argument("--mix-minutes", type=float, default=None, help="length of the mix")
    p.add_argument("--model", default="base", help="model.pt, or base")
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def tracks(args) -> list[dict]:
    from sonicsearch.eval.tracks import read_tracks, track_rows

    if args.tiny:
        folder = C.synth_corpus(args.cache, 3, 4, 3 * args.seconds + 40, 16000, 0)
        return sorted(track_rows(folder), key=lambda r: r["path"])
    rows = read_tracks(args.data or args.cache / "debian" / "eval.csv")
    return sorted(rows, key=lambda r: r["path"])


def cut(path: str, offset: float, length: float | None) -> np.ndarray:
    from sonicsearch.audio import load_audio

    w, _ = load_audio(path, sample_rate=SR, offset=offset, duration=length)
    return (0.5 * w / max(float(np.abs(w).max()), 1e-6)).astype(np.float32)


def make_mix(args, rows: list[dict], audio: Path, rng) -> tuple[list[dict], float, list[float]]:
    """Write the mix, the excerpt it holds and the jingle; return the rows left, where the
    excerpt starts in the mix and the airings."""
    import soundfile as sf

    excerpt_row, jingle_row, rest = rows[0], rows[1], rows[2:]
    length = EXCERPT if not args.tiny else 30.0
    excerpt = cut(excerpt_row["path"], 10.0, length)
    sf.write(audio / "excerpt.wav", excerpt, SR)
    sf.write(audio.parent / "jingle.wav", cut(jingle_row["path"], 30.0, 5.0), SR)
    parts, total, k = [], 0.0, 0
    while total < 60 * args.mix_minutes - length:
        w = cut(rest[k]["path"], 0.0, None if not args.tiny else 20.0)
        parts.append(0.8 * w)
        total += len(w) / SR
        k += 1
    middle = len(parts) // 2
    at = sum(len(p) for p in parts[:middle]) / SR
    mix = np.concatenate([*parts[:middle], excerpt, *parts[middle:]])
    jingle = sf.read(audio.parent / "jingle.wav", dtype="float32")[0]
    span = len(mix) / SR - 6.0
    gap = (at - 6.0, at + length + 1.0)  # the excerpt stays intact
    free = span - (gap[1] - gap[0])
    aired = []
    for u, g in zip(np.linspace(0.03 * free, 0.97 * free, len(GAINS_DB)), GAINS_DB):
        start = float(u if u < gap[0] else u + gap[1] - gap[0])
        a = int(start * SR)
        mix[a : a + len(jingle)] = jingle * 10 ** (g / 20)
        aired.append(round(start, 2))
    mix += 0.01 * rng.standard_normal(len(mix)).astype(np.float32)
    sf.write(audio / "mix.wav", np.clip(mix, -1, 1), SR)
    return rest[k:], at, aired


def make_copies(args, rows: list[dict], audio: Path, rng) -> set[tuple[str, str]]:
    """Originals and copies until FILES files (with the mix and the excerpt); the true
    pairs by file name."""
    import soundfile as sf

    rows = [r for r in rows if r["duration"] >= 20.0 + args.seconds]
    room = args.files - 2
    n = min(len(rows), max(1, room // 4))  # 3 copies each, more when tracks run short
    originals = []
    for i, r in enumerate(rows[:n]):
        w = cut(r["path"], 20.0, args.seconds)
        sf.write(audio / f"t{i:03d}.wav", w, SR)
        originals.append(w)
    family: dict[int, list[str]] = {i: [f"t{i:03d}.wav"] for i in range(n)}
    for c in range(room - n):
        i, kind = c % n, KINDS[(c // n + c) % len(KINDS)]
        w = originals[i]
        name = f"c{c:04d}-t{i:03d}-{kind}" + {"mp3": ".mp3", "ogg": ".ogg"}.get(kind, ".wav")
        if kind in ("mp3", "ogg"):
            fmt = {"mp3": ("MP3", "MPEG_LAYER_III"), "ogg": ("OGG", "VORBIS")}[kind]
            sf.write(audio / name, w, SR, format=fmt[0], subtype=fmt[1])
        elif kind == "16k":
            t = np.arange(int(len(w) * 16000 / SR)) / 16000
            sf.write(audio / name, np.interp(t, np.arange(len(w)) / SR, w).astype(np.float32),
                     16000)
        else:
            x = _altered(w, kind, rng)
            sf.write(audio / name, x.astype(np.float32), SR)
        family[i].append(name)
    pairs = {tuple(sorted(p)) for names in family.values() for p in combinations(names, 2)}
    return pairs | {("excerpt.wav", "mix.wav")}


def _altered(w: np.ndarray, kind: str, rng) -> np.ndarray:
    if kind == "trim":
        return w[int(2.0 * SR):]
    if kind == "gain":
        return np.clip(2.0 * w, -1.0, 1.0)
    noise = rng.standard_normal(len(w)).astype(np.float32)
    return w + noise * float(np.sqrt(np.mean(w**2))) * 0.1  # 20 dB SNR


def score(found: set, truth: set) -> tuple[float, float]:
    tp = len(found & truth)
    return round(tp / max(len(found), 1), 4), round(tp / max(len(truth), 1), 4)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    from sonicsearch.index import AudioIndex

    rng = np.random.default_rng(args.seed)
    work = args.cache / "bench-collection-scale" / C.mode(args)
    shutil.rmtree(work, ignore_errors=True)
    audio = C.mkdir(work / "audio")
    rest, at, aired = make_mix(args, tracks(args), audio, rng)
    truth = make_copies(args, rest, audio, rng)
    with C.Timer() as t_build:
        index = AudioIndex.build([audio], args.model, work / "idx", device="cpu")
    with index:
        found = index.duplicates()
        t0 = time.perf_counter()
        occ = index.occurrences(work / "jingle.wav")
        t_occ = time.perf_counter() - t0
        mix_seconds = next(r.duration for r in index.store.records if r.path.endswith("mix.wav"))
    name = lambda p: Path(p).name  # noqa: E731
    got = {tuple(sorted((name(found.paths[a]), name(found.paths[b]))))
           for g in found.groups for a, b in combinations(g.files, 2)}
    mix_match = [m for g in found.groups for m in g.matches
                 if {name(found.paths[m.a]), name(found.paths[m.b])} == {"excerpt.wav", "mix.wav"}]
    hits = [(name(r["path"]), r["start"], r["score"]) for r in occ]
    right = [h for h in hits if h[0] == "mix.wav" and any(abs(h[1] - a) <= 1.5 for a in aired)]
    row = {"files": len(found.paths), "true_pairs": len(truth),
           "mix_minutes": round(mix_seconds / 60, 1),
           "build_seconds": round(t_build.seconds, 1),
           "duplicates_seconds": round(found.seconds, 2),
           "dup_precision": score(got, truth)[0], "dup_recall": score(got, truth)[1],
           "false_pairs": sorted(got - truth)[:10], "missed_pairs": sorted(truth - got)[:10],
           "mix_found": bool(mix_match),
           "mix_span": ([round(x, 1) for x in (mix_match[0].a_start, mix_match[0].a_end,
                                                mix_match[0].b_start, mix_match[0].b_end)]
                        if mix_match else None),
           "excerpt_at": round(at, 1),
           "mix_confidence": round(mix_match[0].confidence, 3) if mix_match else None,
           "occ_seconds": round(t_occ, 2),
           "occ_precision": round(len(right) / max(len(hits), 1), 4),
           "occ_recall": round(len({min(aired, key=lambda a, h=h: abs(a - h[1]))
                                    for h in right}) / len(aired), 4),
           "airing_score_min": round(min((h[2] for h in right), default=0), 3)}
    C.log(str(row))
    table = {k: v for k, v in row.items() if k not in ("false_pairs", "missed_pairs")}
    C.write_results("collection_scale", args.out,
                    {"benchmark": "collection_scale", "mode": C.mode(args),
                     "machine": C.machine(), "rows": [row]},
                    [("Duplicates and occurrences at scale",
                      C.markdown_table(list(table), [list(table.values())]))])
    return row


if __name__ == "__main__":
    with C.exit_on_error():
        main()
