"""Sounds like this: style retrieval of a model's vectors beside MFCC statistics and peers.

On a DATA CSV (path,label,...; the evaluation pool's labels are soundtracks when
``--label package``), each file gives windows of the model's length every window (no
overlap), up to ``--max-seconds``; its clips and the scores are :mod:`sonicsearch.eval.style`.
Systems, in one run and on the same clips:

- ``embedding``: the model's normalised window vectors (what an index holds today);
- ``stage statistics``: each backbone stage's channel means and stds
  (:func:`sonicsearch.model.infer.stage_statistics`), standardised with the statistics of
  ``--fit`` (the training pool) or, without it, of the evaluated set itself;
- ``MFCC statistics``: 20 MFCCs and their deltas, mean and std over the clip, standardised;
- ``--peer NAME=FOLDER``: another model's per-patch features (``feats``, ``starts``) in one
  ``.npz`` per file, as ``benchmarks/musicnn_features.py`` writes them (run in its own
  virtual environment: musicnn needs TensorFlow), standardised on the evaluated set.

    python benchmarks/style.py --data data/debian/eval.csv --label package \\
        --fit data/debian/train_music.csv --peer musicnn=cache/musicnn_eval
"""

from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path

import _common as C
import numpy as np
import torch
import torchaudio

from sonicsearch.audio import frame_windows, load_audio
from sonicsearch.embed.embedder import Embedder, window_rms_dbfs
from sonicsearch.errors import SonicsearchError
from sonicsearch.eval import style as S
from sonicsearch.model.style import embed_with_stats

PATCH_SECONDS = 2.992  # musicnn's 187-frame patch at 16 kHz, hop 256


def parse_args(argv=None):
    p = C.base_parser(__doc__.split("\n")[0])
    p.add_argument("--data", required=True, type=Path, help="DATA CSV to measure")
    p.add_argument("--label", default="label", help="CSV column that says what is relevant")
    p.add_argument("--fit", type=Path, help="DATA CSV whose statistics standardise "
                   "(the training pool; never the evaluated set)")
    p.add_argument("--model", default="base", help="model file or 'base'")
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--peer", action="append", default=[], metavar="NAME=FOLDER")
    p.add_argument("--limit", type=int, default=0, help="first N files only (0: all)")
    args = p.parse_args(argv)
    if args.quick:
        args.limit = args.limit or 24
    return args


def file_key(path: str) -> str:
    """The name of a file's feature cache: what musicnn_features.py names it too."""
    return hashlib.sha1(path.encode()).hexdigest()[:16]


class Features:
    """Per-file window features of one model, cached under ``cache/KEY.npz``."""

    def __init__(self, model: str, cache: Path, max_seconds: float):
        self.emb = Embedder.from_checkpoint(model, device="cpu")
        fc = self.emb.feature_config
        self.sr, self.win = fc.sample_rate, fc.window_seconds
        self.mfcc = torchaudio.transforms.MFCC(
            self.sr, 20, melkwargs={"n_fft": 1024, "hop_length": 256, "n_mels": 64})
        self.cache, self.max_seconds = cache, max_seconds
        cache.mkdir(parents=True, exist_ok=True)

    def of(self, path: str) -> dict[str, np.ndarray] | None:
        dest = self.cache / f"{file_key(path)}.npz"
        if dest.is_file():
            return dict(np.load(dest))
        try:
            wave, _ = load_audio(path, self.sr, duration=self.max_seconds)
        except SonicsearchError as exc:
            C.log(f"skipped {exc}")
            return None
        if wave.size < self.win * self.sr:
            return None
        windows, spans = frame_windows(wave, self.sr, self.win, self.win)
        with torch.no_grad():
            m = self.mfcc(torch.from_numpy(windows))
            d = torchaudio.functional.compute_deltas(m)
            sums = torch.cat([m.sum(2), (m ** 2).sum(2), d.sum(2), (d ** 2).sum(2)], 1)
        emb, stats = embed_with_stats(self.emb.model.eval(), windows, batch=64)
        out = {"embedding": emb, "stats": stats.astype(np.float16),
               "mfcc": sums.numpy(), "frames": np.int32(m.shape[2]),
               "levels": window_rms_dbfs(windows), "starts": spans[:, 0].astype(np.float32)}
        np.savez(dest, **out)
        return out


def mfcc_rep(frames: int):
    def rep(rows: np.ndarray) -> np.ndarray:
        n = frames * len(rows)
        m, m2, d, d2 = np.split(rows.sum(0), 4)
        mm, dm = m / n, d / n
        return np.concatenate([mm, np.sqrt(np.maximum(m2 / n - mm ** 2, 0)), dm,
                               np.sqrt(np.maximum(d2 / n - dm ** 2, 0))])
    return rep


def load_peer(folder: Path, paths: list[str]) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Another model's ``(feats float32, patch starts)`` per file; None if one is missing."""
    loaded = []
    for path in paths:
        f = folder / f"{file_key(path)}.npz"
        if not f.is_file():
            return None
        z = np.load(f)
        loaded.append((z["feats"].astype(np.float32), z["starts"]))
    return loaded


def span_mean(feats: np.ndarray, patch_starts: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """The mean of the patches inside ``[t0, t1]`` (half a second of slack each side; the
    first patch when none fits)."""
    inside = (patch_starts >= t0 - 0.5) & (patch_starts + PATCH_SECONDS <= t1 + 0.5)
    return (feats[inside] if inside.any() else feats[:1]).mean(0)


def peer_vectors(folder: Path, paths: list[str], clips: list[S.Clip], starts: list,
                 win: float) -> np.ndarray | None:
    """A peer's clip vectors: the mean of its patches inside each clip's span."""
    peer = load_peer(folder, paths)
    if peer is None:
        return None
    return np.stack([span_mean(*peer[c.track], starts[c.track][c.windows[0]],
                               starts[c.track][c.windows[-1]] + win) for c in clips])


def read_csv(path: Path, label: str, limit: int) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [(r["path"] if Path(r["path"]).is_absolute() else str(path.parent / r["path"]),
                 r[label]) for r in csv.DictReader(f)]
    return rows[:limit] if limit else rows


def load(feats: Features, rows: list[tuple[str, str]]):
    paths, labels, per = [], [], []
    for i, (path, label) in enumerate(rows):
        got = feats.of(path)
        if got is not None:
            paths.append(path)
            labels.append(label)
            per.append(got)
        if (i + 1) % 20 == 0:
            C.log(f"{i + 1}/{len(rows)} files")
    return paths, labels, per


def main(argv=None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    feats = Features(args.model, args.cache / "style" / file_key(str(args.model)),
                     args.max_seconds)
    paths, labels, per = load(feats, read_csv(args.data, args.label, args.limit))
    clips = S.make_clips([p["levels"] for p in per], labels)
    if not clips:
        sys.exit("no clips: too few files per label, or files shorter than a clip")
    y = [labels[c.track] for c in clips]
    g = [c.track for c in clips]
    stats = S.clip_vectors(clips, [p["stats"] for p in per])
    fit = stats
    if args.fit:
        _, flab, fper = load(feats, read_csv(args.fit, "label", 0))
        fclips = S.make_clips([p["levels"] for p in fper], flab, min_tracks=1)
        fit = S.clip_vectors(fclips, [p["stats"] for p in fper])
    mfcc = np.stack([mfcc_rep(int(per[c.track]["frames"]))(per[c.track]["mfcc"][c.windows])
                     for c in clips])
    emb = S.clip_vectors(clips, [p["embedding"] for p in per])
    systems = {"embedding (window mean)": emb,
               "stage statistics": S.standardise(fit, stats),
               "MFCC statistics": S.standardise(mfcc, mfcc)}
    head = getattr(feats.emb.model, "style_head", None)
    if head is not None:  # what an index of this model holds: its style head's vectors
        with torch.no_grad():
            systems["style vector (the model's style head)"] = head.eval()(
                torch.from_numpy(stats)).numpy()
    for spec in args.peer:
        name, _, folder = spec.partition("=")
        vec = peer_vectors(Path(folder), paths, clips, [p["starts"] for p in per],
                           feats.win)
        if vec is None:
            C.log(f"peer {name}: features missing for some files in {folder}; left out")
            continue
        systems[name] = S.standardise(vec, vec)
    results = {"mode": C.mode(args), "machine": C.machine(), "data": str(args.data),
               "label": args.label, "fit": str(args.fit) if args.fit else None,
               "tracks": len(per), "clips": len(clips), "labels": sorted(set(labels)),
               "systems": {n: S.style_report(v, y, g) for n, v in systems.items()}}
    rows = [[n, f"{r['map']:.3f} ({r['map_lo']:.3f}-{r['map_hi']:.3f})", f"{r['p_at_10']:.3f}",
             f"{r['probe_f1']:.3f}"] for n, r in results["systems"].items()]
    table = C.markdown_table(["system", "style mAP (95 % interval)", "P@10", "probe macro-F1"],
                             rows)
    print(table)
    C.write_results("style", args.out, results, [("Style retrieval", table)])
    return results


if __name__ == "__main__":
    main()
