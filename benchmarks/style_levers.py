"""Style levers on the frozen base model: heads trained on cached features in minutes on a CPU.

Each lever is a small head (MLP -> 128-d, L2-normalised) on a clip's stage statistics
(:func:`sonicsearch.model.infer.stage_statistics`, mean over the clip's windows), trained on
training-pool music only. Chosen on validation: soundtracks of the training pool held out
from the heads (``--val-packages``), each clip ranking the clips of the other held-out tracks;
reported on the evaluation pool, with heads trained on the whole training pool:

- ``supcon``: supervised contrastive, positives = clips of the same soundtrack (package);
- ``track``: contrastive, positives = distant clips of the same track;
- ``distil``: cosine regression of the teacher's clip vector (musicnn's penultimate layer,
  ``--teacher`` folder written by benchmarks/musicnn_features.py), a training-time peer only.

    python benchmarks/style_levers.py --train data/debian/train_music.csv \\
        --eval data/debian/eval.csv --teacher cache/musicnn_train
"""

from __future__ import annotations

from pathlib import Path

import _common as C
import numpy as np
import style as B
import torch
import torch.nn.functional as F
from torch import nn

from sonicsearch.eval import style as S
from sonicsearch.model.style import StyleHead
from sonicsearch.training.style_head import supcon

VAL_PACKAGES = "hedgewars-data,widelands-data,colobot-common-sounds,freedroidrpg-data"


def parse_args(argv=None):
    p = C.base_parser(__doc__.split("\n")[0])
    p.add_argument("--train", required=True, type=Path, help="training-pool music CSV")
    p.add_argument("--eval", required=True, type=Path, help="evaluation-pool CSV")
    p.add_argument("--label", default="package")
    p.add_argument("--val-packages", default=VAL_PACKAGES)
    p.add_argument("--teacher", type=Path, help="musicnn features of the training CSV")
    p.add_argument("--model", default="base")
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--export-head", type=Path, help="save the distilled head trained on the "
                   "whole training pool here (for benchmarks/export_base.py --style-head)")
    return p.parse_args(argv)


class Head(StyleHead):
    """The model's style head (sonicsearch/model/style.py), standardised on ``fit`` (clip
    statistics of the training tracks), its output L2-normalised for the losses."""

    def __init__(self, fit: np.ndarray, hidden: int = 512, dim: int = 128):
        super().__init__(fit.shape[1], hidden, dim)
        with torch.no_grad():
            self.mu.copy_(torch.from_numpy(fit.mean(0)))
            self.sd.copy_(torch.from_numpy(fit.std(0) + 1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(super().forward(x), dim=-1)


def random_clip(levels: np.ndarray, rng: np.random.Generator, lo: int = 5, hi: int = 15):
    n = len(levels)
    length = min(n, int(rng.integers(lo, hi + 1)))
    start = int(rng.integers(0, n - length + 1))
    idx = np.arange(start, start + length)
    loud = idx[levels[idx] > S.QUIET_DBFS]
    return loud if len(loud) else idx


def train_head(lever: str, per: list[dict], labels: list[str], teacher: list | None,
               steps: int, seed: int) -> Head:
    """One lever's head on these tracks (12 labels x 8 clips a step, AdamW 1e-3)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    stats = [p["stats"].astype(np.float32) for p in per]
    head = Head(np.stack([s.mean(0) for s in stats]))
    out_dim = teacher[0][0].shape[1] if lever == "distil" else 0
    proj = nn.Linear(128, out_dim) if out_dim else None
    params = list(head.parameters()) + (list(proj.parameters()) if proj else [])
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    names = sorted(by_label)
    for _ in range(steps):
        xs, ys, targets = [], [], []
        for c in rng.choice(len(names), min(12, len(names)), replace=False):
            for _ in range(8):
                ti = int(rng.choice(by_label[names[c]]))
                idx = random_clip(per[ti]["levels"], rng)
                xs.append(stats[ti][idx].mean(0))
                ys.append(c if lever == "supcon" else ti)
                if proj is not None:
                    targets.append(_teacher_clip(teacher[ti], per[ti]["starts"], idx))
        head.train()
        z = head(torch.from_numpy(np.stack(xs)))
        if proj is None:
            loss = supcon(z, torch.tensor(ys))
        else:
            t = F.normalize(torch.from_numpy(np.stack(targets)), dim=-1)
            loss = (1 - F.cosine_similarity(proj(z), t)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def save_head(head: Head, path: Path, provenance: dict) -> None:
    """The head's weights, shape and how it was trained, as plain tensors and values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": "sonicsearch.style_head", "shape": head.shape(),
                "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()},
                "provenance": provenance}, path)
    C.log(f"wrote the distilled style head to {path}")


def _teacher_clip(teacher, starts: np.ndarray, idx: np.ndarray) -> np.ndarray:
    feats, tstarts, mu, sd, win = teacher
    mean = B.span_mean(feats, tstarts, starts[idx[0]], starts[idx[-1]] + win)
    return ((mean - mu) / sd).astype(np.float32)


def load_teacher(folder: Path, paths: list[str], win: float) -> list | None:
    """The teacher's features per file with their standardisation (over every patch) and
    the student's window length; None if a file has none."""
    loaded = B.load_peer(folder, paths)
    if loaded is None:
        return None
    allf = np.concatenate([f for f, _ in loaded])
    mu, sd = allf.mean(0), allf.std(0) + 1e-6
    return [(f, s, mu, sd, win) for f, s in loaded]


def measure(head: Head | None, per: list[dict], labels: list[str], fit: np.ndarray | None,
            probe: bool) -> dict:
    clips = S.make_clips([p["levels"] for p in per], labels)
    y, g = [labels[c.track] for c in clips], [c.track for c in clips]
    stats = S.clip_vectors(clips, [p["stats"] for p in per])
    if head is None:
        if fit is None:
            return S.style_report(S.clip_vectors(clips, [p["embedding"] for p in per]), y, g,
                                  probe)
        return S.style_report(S.standardise(fit, stats), y, g, probe)
    with torch.no_grad():
        return S.style_report(head(torch.from_numpy(stats)).numpy(), y, g, probe)


def main(argv=None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads or 1)
    feats = B.Features(args.model, args.cache / "style" / B.file_key(str(args.model)),
                       args.max_seconds)
    paths, labels, per = B.load(feats, B.read_csv(args.train, args.label, args.limit))
    epaths, elabels, eper = B.load(feats, B.read_csv(args.eval, args.label, args.limit))
    val = set(filter(None, args.val_packages.split(",")))
    tr = [i for i, lab in enumerate(labels) if lab not in val]
    va = [i for i, lab in enumerate(labels) if lab in val]
    teacher = load_teacher(args.teacher, paths, feats.win) if args.teacher else None
    levers = ["supcon", "track"] + (["distil"] if teacher else [])
    results: dict = {"mode": C.mode(args), "machine": C.machine(), "val_packages": sorted(val),
                     "train_tracks": len(tr), "val_tracks": len(va),
                     "eval_tracks": len(eper), "val": {}, "eval": {}}

    def pick(idx):
        return [per[i] for i in idx], [labels[i] for i in idx]

    def clip_stats(subset):
        sp, sl = subset
        return S.clip_vectors(S.make_clips([p["levels"] for p in sp], sl, min_tracks=1),
                              [p["stats"] for p in sp])

    for where, (fit_idx, target, probe) in {"val": (tr, pick(va), False),
                                            "eval": (list(range(len(per))),
                                                     (eper, elabels), True)}.items():
        fper, flab = pick(fit_idx)
        res = results[where]
        res["embedding (window mean)"] = measure(None, *target, None, probe)
        res["stage statistics"] = measure(None, *target, clip_stats((fper, flab)), probe)
        for lever in levers:
            t = [teacher[i] for i in fit_idx] if teacher else None
            head = train_head(lever, fper, flab, t, args.steps, args.seed)
            res[f"head: {lever}"] = measure(head, *target, None, probe)
            C.log(f"{where} {lever}: mAP {res[f'head: {lever}']['map']:.3f}")
            if where == "eval" and lever == "distil" and args.export_head:
                save_head(head, args.export_head, {
                    "lever": lever, "steps": args.steps, "seed": args.seed,
                    "train": str(args.train), "teacher": str(args.teacher),
                    "tracks": len(fit_idx), "val_map": results["val"][f"head: {lever}"]["map"]})
    rows = [[name, f"{results['val'][name]['map']:.3f}", f"{r['map']:.3f}",
             f"{r['p_at_10']:.3f}", f"{r['probe_f1']:.3f}"]
            for name, r in results["eval"].items()]
    table = C.markdown_table(["system", "validation mAP", "evaluation mAP", "eval P@10",
                              "eval probe macro-F1"], rows)
    print(table)
    C.write_results("style_levers", args.out, results, [("Style levers", table)])
    return results


if __name__ == "__main__":
    main()
