"""Identification of real, unseen music: can a degraded 8-second excerpt find its track?

The index holds N full tracks of the Debian evaluation pool (``*music*`` packages, never
trained on; ``sonicsearch make-dataset debian eval.csv --pool eval``), picked seeded and
spread over its labels. Each track gives E excerpts of 8 s at random offsets, and each
excerpt is queried clean and under every degradation: white noise and recorded noise at
10 dB SNR (the noise: effects and ambience of the *training* pool), a telephone line, a
synthetic room (RT60 0.6 s) and a room shaped like a measured one (``degrade.room_ir``),
-12/+6 dB gain, low-bit-rate MP3 and Vorbis, and 3 % slower/faster playback.

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

Writes benchmarks/results/robust_music.{json,md}; index vectors are cached per system
(keyed by the model's SHA-256) and track under benchmarks/cache/robust_music/.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from sonicsearch.embed.embedder import QUIET_DBFS  # noqa: E402
from sonicsearch.index.backends.faiss_backend import FaissBackend  # noqa: E402

QUIET_PEAK = 1e-3  # excerpts quieter than -60 dBFS at their peak are not queried
SR = 22050  # excerpts are decoded and degraded at this rate; systems resample as they need
SNR_DB = 10.0
DEGRADATIONS = ("clean", "noise_snr10", "realnoise_snr10", "telephone", "reverb",
                "reverb_room", "gain_-12db", "gain_+6db", "mp3_low", "ogg_low", "speed_0.97",
                "speed_1.03")
NOISE_WORDS = ("wind", "rain", "storm", "crowd", "people", "cheer", "applause", "engine",
               "motor", "car", "truck", "train", "traffic", "machine", "factory", "steam",
               "water", "river", "sea", "wave", "fire", "ambien", "forest", "bird", "city")
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
    p.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH",
                   help="a checkpoint to compare (repeatable)")
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
    p.add_argument("--degradations", default=None, help="comma-separated (default: all)")
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
        rows = select_rows(read_csv(args.data or args.cache / "debian" / "eval.csv"), args)
        noise_rows = read_csv(args.noise or args.cache / "debian" / "train.csv")
    tracks = pick_tracks(rows, args.tracks, args.seed)
    if args.write_unindexed:
        n = write_unindexed(args.write_unindexed, rows, tracks)
        C.log(f"wrote {n} tracks that the index leaves out to {args.write_unindexed}")
        return {"unindexed": n}
    names = args.degradations.split(",") if args.degradations else list(DEGRADATIONS)
    bank, noise_files = noise_bank(noise_rows, args.seed)
    degrade = degradations(names, bank)
    systems = ([MfccSystem(args.mfcc_window, args.mfcc_hop)] if not args.no_mfcc else [])
    systems += [ModelSystem(spec, args.device, args.index_hop, args.query_hop,
                            None if args.keep_quiet else QUIET_DBFS, args.window)
                for spec in args.model]
    if not systems:
        sys.exit("no system to measure: drop --no-mfcc or give --model")
    C.log(f"{len(tracks)} tracks ({sum(t['duration'] for t in tracks) / 3600:.2f} h) in "
          f"{len({t['label'] for t in tracks})} labels; {args.excerpts} excerpts x "
          f"{len(names)} degradations; systems: {', '.join(s.name for s in systems)}")
    queries = plan_excerpts(tracks, args.excerpts, args.excerpt_seconds, args.seed)
    results: dict = {"benchmark": "robust_music", "mode": C.mode(args), "machine": C.machine(),
                     "corpus": {"data": "generated (tiny)" if args.tiny else str(args.data),
                                "tracks": [{k: t[k] for k in ("path", "label", "package",
                                                                "duration")} for t in tracks],
                                "hours": round(sum(t["duration"] for t in tracks) / 3600, 3)},
                     "excerpts_per_track": args.excerpts,
                     "excerpt_seconds": args.excerpt_seconds, "rollup": args.rollup,
                     "noise_files": noise_files, "degradations": names, "systems": {}}
    for system in systems:
        with C.Timer() as t:
            index = build_index(system, tracks, args.vector_cache)
            ident = identify(system, index, tracks, queries, names, degrade, args)
        results["systems"][system.name] = {
            "about": system.about, "windows": int(index["vectors"].shape[0]),
            "identification": ident, "label_map@10": label_map(index, tracks),
            "macro_f1": head_macro_f1(system, index, tracks), "seconds": round(t.seconds, 1)}
        C.log(f"{system.name}: mean R@1 {ident['all']['R@1']:.3f}, R@10 "
              f"{ident['all']['R@10']:.3f} in {t.seconds:.0f}s")
    results["seconds"] = round(time.monotonic() - t0, 1)
    sections = tables(results)
    js, md = C.write_results("robust_music", args.out, results, sections)
    print("\n\n".join(body for _, body in sections))
    C.log(f"wrote {js} and {md}")
    return results


# -- corpus, noise, excerpts ---------------------------------------------------------------

def read_csv(path: Path) -> list[dict]:
    """Rows of a manifest with resolved paths; a missing duration is read from the file."""
    import soundfile as sf

    if not Path(path).is_file():
        sys.exit(f"{path} is missing: make it with `sonicsearch make-dataset debian {path} "
                 f"--pool {'eval' if 'eval' in Path(path).name else 'train'}`")
    base = Path(path).resolve().parent
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        p = Path(r["path"])
        r["path"] = str(p if p.is_absolute() else base / p)
        r["duration"] = float(r.get("duration") or sf.info(r["path"]).duration)
        r.setdefault("package", r["label"])
    return rows


def pick_tracks(rows: list[dict], n: int, seed: int) -> list[dict]:
    """``n`` tracks, labels taking turns (each label's tracks in seeded order)."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["path"]):
        by_label[r["label"]].append(r)
    queues = {lab: [v[i] for i in rng.permutation(len(v))] for lab, v in sorted(by_label.items())}
    out: list[dict] = []
    while len(out) < n and any(queues.values()):
        for q in queues.values():
            if q and len(out) < n:
                out.append(q.pop(0))
    return sorted(out, key=lambda r: r["path"])


def noise_bank(rows: list[dict], seed: int, most: int = 24) -> tuple[list[np.ndarray], list]:
    """Recorded noises: effects/ambience files of the training pool of at least 3 s whose
    path names a noisy scene (wind, crowd, engine...), else any ambience; at SR, equal RMS."""
    from sonicsearch.audio import load_audio

    pool = [r for r in rows if r["label"] in ("ambience", "effects", "noise")
            and r["duration"] >= 3.0]
    named = [r for r in pool if any(w in Path(r["path"]).name.lower() or w in
                                    Path(r["path"]).parent.name.lower() for w in NOISE_WORDS)]
    named += [r for r in pool if r["label"] == "ambience" and r not in named]
    rng = np.random.default_rng(seed)
    chosen = [named[i] for i in sorted(rng.permutation(len(named))[:most])]
    bank, files = [], []
    for r in chosen:
        x, _ = load_audio(r["path"], SR, 0.0, min(r["duration"], 60.0))
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        if rms > 1e-3:
            bank.append((x / rms).astype(np.float32))
            files.append(r["path"])
    if not bank:
        sys.exit("no recorded noise found in the noise CSV (effects/ambience of >= 3 s)")
    return bank, files


def degradations(names: list[str], bank: list[np.ndarray]) -> dict:
    from sonicsearch.eval import degrade

    out = {}
    for name in names:
        if name == "realnoise_snr10":
            out[name] = lambda x, sr, rng: degrade.mix_noise(
                x, bank[int(rng.integers(len(bank)))], SNR_DB, rng)
        elif name in degrade.DEGRADATIONS:
            out[name] = degrade.DEGRADATIONS[name]
        else:
            sys.exit(f"unknown degradation '{name}'; choose from: {', '.join(DEGRADATIONS)}")
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


def plan_excerpts(tracks: list[dict], per: int, seconds: float, seed: int) -> list[tuple]:
    """``(track index, offset, length)`` for every excerpt, seeded."""
    rng = np.random.default_rng((seed, 1))
    plan = []
    for i, t in enumerate(tracks):
        length = min(seconds, t["duration"])
        plan += [(i, float(rng.uniform(0.0, t["duration"] - length)), length)
                 for _ in range(per)]
    return plan


def tiny_corpus(cache: Path) -> tuple[list[dict], list[dict]]:
    """Four synthetic 20-s tracks in two labels, and two synthetic noises (--tiny only)."""
    import soundfile as sf

    corpus = C.synth_corpus(cache, 2, 2, 20.0, 16000, 0)
    rows = [{"path": str(p), "label": p.parent.name, "package": p.parent.name,
             "duration": sf.info(str(p)).duration} for p in sorted(corpus.rglob("*.wav"))]
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


# -- systems -------------------------------------------------------------------------------

class MfccSystem:
    """MFCC (20) + delta mean/std per window: the baseline's statistics at window level."""

    def __init__(self, window: float, hop: float, n_mfcc: int = 20):
        from sonicsearch.eval import baseline as B

        self.name, self.window, self.hop, self.n_mfcc = "mfcc", window, hop, n_mfcc
        self.frame_hop, self.n_fft, self.n_mels, self.sample_rate = B.HOP, B.N_FFT, B.N_MELS, SR
        self.key = f"mfcc{n_mfcc}-w{window:g}-h{hop:g}-{SR}-v1"
        self.about = (f"MFCC ({n_mfcc}) + delta mean/std per {window:g}-s window (hop "
                      f"{hop:g} s), standardised on the index, L2-normalised")
        self.mean = self.std = None
        self.labels: list[str] = []

    def raw(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(raw stats (n, 4 * n_mfcc), spans (n, 2))`` of ``wave`` at SR, one per window."""
        import torch
        import torchaudio

        from sonicsearch.audio import window_starts

        x = np.asarray(wave, np.float32)
        if x.size < self.n_fft:
            x = np.pad(x, (0, self.n_fft - x.size))
        with torch.no_grad():
            m = _mfcc(SR, self.n_mfcc, self.n_fft, self.frame_hop, self.n_mels)(
                torch.from_numpy(x))
            d = torchaudio.functional.compute_deltas(m)
        feats = torch.cat([m, d]).numpy().astype(np.float64).T  # (frames, 2 * n_mfcc)
        win, hop = int(round(self.window * SR)), int(round(self.hop * SR))
        starts = window_starts(wave.size, win, hop)
        c1 = np.vstack([np.zeros(feats.shape[1]), np.cumsum(feats, axis=0)])
        c2 = np.vstack([np.zeros(feats.shape[1]), np.cumsum(feats**2, axis=0)])
        rows, spans = [], []
        for s in starts:
            a = min(s // self.frame_hop, feats.shape[0] - 1)
            b = max(a + 1, min(-(-(s + win) // self.frame_hop), feats.shape[0]))
            mean = (c1[b] - c1[a]) / (b - a)
            std = np.sqrt(np.maximum((c2[b] - c2[a]) / (b - a) - mean**2, 0.0))
            n = self.n_mfcc
            rows.append(np.concatenate([mean[:n], std[:n], mean[n:], std[n:]]))
            spans.append((s / SR, min(s + win, wave.size) / SR))
        return np.asarray(rows, np.float32), np.asarray(spans, np.float64)

    def index_track(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        from sonicsearch.audio import load_audio

        return self.raw(load_audio(path, SR)[0])

    def fit(self, raw: np.ndarray) -> np.ndarray:
        """Standardise on the index's raw windows; return them as searchable vectors."""
        self.mean, self.std = raw.mean(axis=0), np.maximum(raw.std(axis=0), 1e-6)
        return self.finish(raw)

    def finish(self, raw: np.ndarray) -> np.ndarray:
        z = (raw - self.mean) / self.std
        return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)).astype(
            np.float32)

    def query(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        raw, spans = self.raw(wave)
        return self.finish(raw), spans


class ModelSystem:
    """A checkpoint through :class:`sonicsearch.embed.Embedder`, windows at its own hop (or
    ``index_hop``; queries at ``query_hop``, default the index's; ``window`` seconds long,
    default the model's), quiet windows left out as the product does unless ``quiet_dbfs``
    is None."""

    def __init__(self, spec: str, device: str, index_hop: float | None = None,
                 query_hop: float | None = None, quiet_dbfs: float | None = QUIET_DBFS,
                 window: float | None = None):
        from sonicsearch.embed.embedder import Embedder

        name, _, path = spec.rpartition("=")
        self.embedder = Embedder.from_checkpoint(path, device=device, hop_seconds=index_hop,
                                                 quiet_dbfs=quiet_dbfs)
        native = self.embedder.feature_config.window_seconds
        if window is not None and window != native:
            self.embedder = self.embedder.with_windows(window_seconds=window)
        self.query_embedder = self.embedder.with_windows(hop_seconds=query_hop)
        self.name = name or Path(path).stem
        fc = self.embedder.feature_config
        self.hop, self.labels = fc.hop_seconds, self.embedder.labels
        quiet = "all" if quiet_dbfs is None else f"q{quiet_dbfs:g}"
        self.key = f"model-{self.embedder.model_sha256}-hop{fc.hop_seconds:g}-{quiet}"
        if fc.window_seconds != native:  # the model's own window reuses the plain key
            self.key += f"-win{fc.window_seconds:g}"
        self.about = {"path": path, "arch": self.embedder.arch,
                      "sha256": self.embedder.model_sha256, "sample_rate": fc.sample_rate,
                      "window_seconds": fc.window_seconds, "hop_seconds": fc.hop_seconds,
                      "query_hop_seconds": self.query_embedder.feature_config.hop_seconds,
                      "quiet_dbfs": quiet_dbfs}

    def index_track(self, path: str):
        out = self.embedder.embed_file(path)
        probs = out.probs.mean(axis=0) if out.probs is not None else np.zeros(0, np.float32)
        return out.vectors, out.spans, probs

    def fit(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def query(self, wave: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        out = self.query_embedder.embed_waveform(wave, sr)
        return out.vectors, out.spans


def _mfcc(sr: int, n_mfcc: int, n_fft: int, hop: int, n_mels: int):
    import torchaudio

    key = (sr, n_mfcc, n_fft, hop, n_mels)
    if key not in _MFCC:
        _MFCC[key] = torchaudio.transforms.MFCC(
            sample_rate=sr, n_mfcc=n_mfcc,
            melkwargs={"n_fft": n_fft, "hop_length": hop, "n_mels": n_mels})
    return _MFCC[key]


_MFCC: dict = {}


# -- the index and the measurements --------------------------------------------------------

def build_index(system, tracks: list[dict], cache: Path) -> dict:
    """Window vectors of every track (cached per system key and file), a FAISS flat
    inner-product index over them, and a store that the product's roll-ups read."""
    import faiss

    vecs, spans, probs = [], [], []
    folder = cache / system.key
    folder.mkdir(parents=True, exist_ok=True)
    with C.Timer() as t:
        for tr in tracks:
            st = os.stat(tr["path"])
            key = hashlib.sha256(f"{os.path.realpath(tr['path'])}|{st.st_size}|"
                                 f"{st.st_mtime_ns}".encode()).hexdigest()[:24]
            f = folder / f"{key}.npz"
            if f.is_file():
                z = np.load(f)
                out = (z["vectors"], z["spans"], z["probs"])
            else:
                out = system.index_track(tr["path"])
                out = (*out[:2], out[2] if len(out) > 2 else np.zeros(0, np.float32))
                np.savez(f, vectors=out[0], spans=out[1], probs=out[2])
            vecs.append(out[0])
            spans.append(out[1])
            probs.append(out[2])
    vectors = np.ascontiguousarray(system.fit(np.concatenate(vecs)), dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    C.log(f"{system.name}: {len(vectors)} index windows of {len(tracks)} tracks in "
          f"{t.seconds:.1f}s")
    return {"faiss": FaissBackend(index), "vectors": vectors,
            "store": _Store([len(v) for v in vecs], np.concatenate(spans)),
            "probs": probs}


class _Store:
    """What ``sonicsearch.index.search.search`` reads from a store, held in memory."""

    def __init__(self, n_windows: list[int], spans: np.ndarray):
        self.n_windows = np.asarray(n_windows, dtype=np.int64)
        self.first_rows = np.concatenate([[0], np.cumsum(self.n_windows)[:-1]]).astype(np.int64)
        self._spans = spans

    def file_of_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.first_rows, np.asarray(rows), side="right") - 1

    def spans(self, rows: np.ndarray) -> np.ndarray:
        return self._spans[np.asarray(rows, dtype=np.int64)].reshape(-1, 2)

    def file_spans(self, f: int) -> np.ndarray:
        a = int(self.first_rows[f])
        return self._spans[a : a + int(self.n_windows[f])].reshape(-1, 2)


def identify(system, index: dict, tracks, queries, names, degrade, args) -> dict:
    """R@1 and R@10 of the source track for every (excerpt, degradation)."""
    from sonicsearch.audio import load_audio
    from sonicsearch.index.search import search

    k = min(max(KS), len(tracks))
    hits: dict[str, list[list[bool]]] = defaultdict(list)
    for qi, (ti, offset, length) in enumerate(queries):
        clean, _ = load_audio(tracks[ti]["path"], SR, offset, length)
        if float(np.abs(clean).max(initial=0.0)) < QUIET_PEAK:
            continue  # a silent passage identifies nothing: left out for every system
        for j, name in enumerate(names):
            wave = degrade[name](clean, SR, np.random.default_rng((args.seed, qi, j)))
            vectors, spans = system.query(wave, SR)
            found = search(index["faiss"], index["store"], vectors, spans, k, args.rollup,
                           system.hop, exact=index["vectors"])
            ranked = [h.file for h in found] + [-1] * max(KS)
            hits[name].append([f == ti for f in ranked[: max(KS)]])
    out = {name: {f"R@{kk}": round(float(np.mean([any(r[:kk]) for r in rows])), 4)
                  for kk in KS} for name, rows in hits.items()}
    out["all"] = {f"R@{kk}": round(float(np.mean([out[n][f"R@{kk}"] for n in names])), 4)
                  for kk in KS}
    out["queries_per_degradation"] = len(hits[names[0]]) if names else 0
    return out


def label_map(index: dict, tracks: list[dict], k: int = 10) -> float:
    """mAP@k of label retrieval: each track's mean window vector ranks the other tracks."""
    from sonicsearch.eval.metrics import map_at_k

    store, v = index["store"], index["vectors"]
    means = np.stack([v[a:a + n].mean(axis=0) for a, n in zip(store.first_rows,
                                                               store.n_windows)])
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    sims = means @ means.T
    np.fill_diagonal(sims, -np.inf)
    labels = np.array([t["label"] for t in tracks])
    order = np.argsort(-sims, axis=1, kind="stable")[:, : min(k, len(tracks) - 1)]
    rel = labels[order] == labels[:, None]
    n_rel = np.array([(labels == lab).sum() - 1 for lab in labels])
    return round(map_at_k(rel, k, n_rel), 4)


def head_macro_f1(system, index: dict, tracks: list[dict]) -> float | None:
    """Macro-F1 of the head's track-level prediction, when the head knows every eval label
    (else None: a head trained on other labels says nothing about these)."""
    from sonicsearch.eval.metrics import classification_report

    labels = sorted({t["label"] for t in tracks})
    if not system.labels or not set(labels) <= set(system.labels):
        return None
    head = list(system.labels)
    pred = [int(np.argmax(p)) for p in index["probs"]]
    truth = [head.index(t["label"]) for t in tracks]
    return round(classification_report(truth, pred, head)["macro_f1"], 4)


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
