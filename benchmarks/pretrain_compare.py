"""Does self-supervised pretraining help? Side by side in one run, on one labelled corpus:

- ``mfcc``: the MFCC-statistics baseline (logistic regression; exact search);
- ``scratch``: fine-tuned on the labelled training split from random init;
- ``scratch+joint``: the same with the joint contrastive objective (train.contrastive_weight);
- ``pretrained``: ``pretrain`` on the corpus's audio without labels (the held-out test
  files left out), no fine-tuning; it has no head, so its macro-F1 is a logistic regression
  on its file-mean embeddings (a linear probe), marked as such;
- ``pretrained+ft``: that model fine-tuned with ``train --weights`` (same recipe as scratch).

With ``--methods ntxent,byol`` each pretraining objective gets its two columns
(``pretrained:byol``, ``pretrained:byol+ft``). ``--systems`` picks columns; ``--train-only``
trains the picked models and stops, so that two processes can share the work on two cores
before a last run (which reuses every model) measures them all.

Metrics: test macro-F1, label retrieval mAP@10 (held-out clips query all clips, their own
file left out) and near-duplicate recall@1 per degradation (degraded excerpts of indexed
files, ``sonicsearch.eval.degrade``), measured with ``benchmarks/recall_at_k.py``'s functions.

    python benchmarks/pretrain_compare.py --quick                # synthetic corpus
    python benchmarks/pretrain_compare.py --data DATA [--unlabelled AUDIO ...]

Writes benchmarks/results/pretrain_compare.{json,md}. Trained models are kept in the cache
and reused when the settings are the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import recall_at_k as R  # noqa: E402

from sonicsearch.eval.retrieval import MfccFileSearch, exact_index, label_retrieval  # noqa: E402

PRESETS = {
    "tiny": {"genres": 3, "per_genre": 6, "seconds": 6.0, "sample_rate": 8000,
             "dup_queries": 3, "excerpt": "2,4", "epochs": "1,1", "pretrain_epochs": 1,
             "pretrain_windows": 2, "features": "tiny"},
    "quick": {"genres": 8, "per_genre": 20, "seconds": 15.0, "sample_rate": 16000,
              "dup_queries": 12, "excerpt": "5,10", "epochs": "1,4", "pretrain_epochs": 5,
              "pretrain_windows": 2, "features": "small"},
    # the default corpus and recipe at the small front end: about 1.7 h of one core
    "medium": {"genres": 8, "per_genre": 40, "seconds": 30.0, "sample_rate": 16000,
               "dup_queries": 64, "excerpt": "5,10", "epochs": "2,18", "pretrain_epochs": 15,
               "pretrain_windows": 4, "features": "small"},
    "full": {"genres": 8, "per_genre": 40, "seconds": 30.0, "sample_rate": 22050,
             "dup_queries": 64, "excerpt": "5,10", "epochs": "2,18", "pretrain_epochs": 30,
             "pretrain_windows": 4, "features": "default"},
}
FEATURES = {
    "tiny": R.TINY_FEATURES,
    # 16 kHz, 48 mels, hop 512, 2 s windows: a tenth of the default's compute, for CPU
    "small": {"features.sample_rate": 16000, "features.n_mels": 48, "features.n_fft": 1024,
              "features.hop_length": 512, "features.window_seconds": 2.0,
              "features.hop_seconds": 1.0, "train.crops_per_file": 3, "runtime.num_workers": 1,
              "pretrain.batch_size": 32},
    "default": {},
}
BASE_SYSTEMS = ("mfcc", "scratch", "scratch+joint", "pretrained", "pretrained+ft")


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--medium", action="store_true",
                   help="the default corpus and recipe at a small front end (about 1.7 h of "
                        "one CPU core; --train-only lets two processes share it)")
    p.add_argument("--data", type=Path, default=None,
                   help="labelled DATA folder or CSV (default: the synthetic corpus)")
    p.add_argument("--unlabelled", type=Path, nargs="*", default=[],
                   help="more audio for pretraining besides DATA's non-test files")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--epochs", default=None, help="PHASE1,PHASE2 fine-tuning epochs")
    p.add_argument("--pretrain-epochs", type=int, default=None)
    p.add_argument("--pretrain-windows", type=int, default=None,
                   help="pretrain.windows_per_file (excerpts per file per epoch)")
    p.add_argument("--methods", default="ntxent",
                   help="comma-separated pretrain.method values, each with its own columns")
    p.add_argument("--pair-shift", type=float, default=None,
                   help="pretrain.pair_shift_seconds (how far apart the two views may start)")
    p.add_argument("--systems", default=",".join(BASE_SYSTEMS),
                   help="comma-separated columns to train and measure")
    p.add_argument("--train-only", action="store_true",
                   help="train the picked systems' models, then stop (no measurement)")
    p.add_argument("--finetune-config", type=Path,
                   default=C.HERE.parent / "configs" / "finetune-pretrained.yaml",
                   help="config of the pretrained+ft fine-tuning (scratch uses the defaults)")
    p.add_argument("--joint-weight", type=float, default=0.5,
                   help="train.contrastive_weight of the scratch+joint model")
    p.add_argument("--features", choices=sorted(FEATURES), default=None,
                   help="front-end settings for every neural model")
    p.add_argument("--device", default="auto")
    C.add_near_duplicate_args(p)
    p.add_argument("--allow-external-paths", action="store_true")
    C.add_corpus_args(p, PRESETS)
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    from sonicsearch.data.manifest import load_dataset
    from sonicsearch.embed.embedder import Embedder
    from sonicsearch.eval.degrade import DEGRADATIONS
    from sonicsearch.index.search import ROLLUP_DEFAULT

    data = args.data or C.synth_corpus(args.cache, args.genres, args.per_genre, args.seconds,
                                       args.sample_rate, args.seed)
    degradations = args.degradations.split(",") if args.degradations else list(DEGRADATIONS)
    ds = load_dataset(data, 0.15, 0.15, seed=args.seed,
                      allow_external_paths=args.allow_external_paths)
    held = ds.split("test")
    C.log(f"{len(ds.items)} clips, {len(ds.labels)} labels, {len(held)} held out")

    base = {**FEATURES[args.features], "model.arch": args.arch, "model.weights": "none",
            "runtime.seed": args.seed, "runtime.device": args.device}
    if args.tiny:
        base.update({"runtime.num_workers": 0, "train.batch_size": 16,
                     "pretrain.batch_size": 16, "pretrain.normalization_excerpts": 16})
    picked = args.systems.split(",")
    unknown = sorted(set(picked) - set(BASE_SYSTEMS))
    if unknown:
        raise SystemExit(f"unknown system(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(BASE_SYSTEMS)}")
    methods = args.methods.split(",")
    models = systems(picked, methods)
    root = args.cache / "runs"
    ft_key = [str(Path(ds.root).resolve()), len(ds.items), base, args.epochs]
    pre = {"pretrain.epochs": args.pretrain_epochs,
           "pretrain.windows_per_file": args.pretrain_windows}
    if args.pair_shift is not None:
        pre["pretrain.pair_shift_seconds"] = args.pair_shift
    unlabelled = pretrain_files(ds, args.unlabelled)
    timings: dict[str, float] = {}
    paths: dict[str, Path] = {}
    if "scratch" in picked:
        paths["scratch"] = finetune(args, ds, base, root / _run_name("scratch", ft_key), timings)
    if "scratch+joint" in picked:
        joint = {**base, "train.contrastive_weight": args.joint_weight}
        paths["scratch+joint"] = finetune(args, ds, joint,
                                          root / _run_name("joint", ft_key, args.joint_weight),
                                          timings)
    for method in methods:
        name = "pretrained" if len(methods) == 1 else f"pretrained:{method}"
        if name not in models and name + "+ft" not in models:
            continue
        overrides = {**base, **pre, "pretrain.method": method}
        pre_key = ft_key[:3] + [pre, method, [str(u) for u in args.unlabelled]]
        pre_run = root / _run_name(f"pretrain-{method}", pre_key)
        path = run_pretrain(args, unlabelled, overrides, pre_run, timings)
        if name in models:
            paths[name] = path
        if name + "+ft" in models:
            ft = {**_flat_yaml(args.finetune_config), **base, "model.weights": str(path)}
            paths[name + "+ft"] = finetune(args, ds, ft, root / _run_name(
                f"pretrain-{method}-ft", pre_key, ft), timings)
    if args.train_only:
        C.log("models trained (--train-only): " + ", ".join(f"{k} {v}" for k, v in paths.items()))
        return {"trained": {k: str(v) for k, v in paths.items()}, "seconds": timings}

    embedders = {name: Embedder.from_checkpoint(p, device=args.device)
                 for name, p in paths.items()}
    from sonicsearch.config import load_config

    sr = (next(iter(embedders.values())).feature_config.sample_rate if embedders
          else load_config(None, base).features.sample_rate)
    f1 = {name: (linear_probe(embedders[name], ds) if _is_pretrained_only(name)
                 else _test_f1(p)) for name, p in paths.items()}
    if "mfcc" in models:
        f1["mfcc"] = mfcc_f1(ds, sr)
    with tempfile.TemporaryDirectory(dir=C.mkdir(args.cache / "tmp")) as tmp, \
            C.Timer() as t:
        indexes = {name: exact_index(e, [it.path for it in ds.items],
                                     Path(tmp) / name.replace("+", "-"), args.device, C.log)
                   for name, e in embedders.items()}
        if "mfcc" in models:
            indexes["mfcc"] = MfccFileSearch(ds.items, sr, C.log)
        label = label_retrieval(indexes, ds, held, [ROLLUP_DEFAULT])
        dup = R.near_duplicate_recall(indexes, ds, held, degradations, args, [ROLLUP_DEFAULT],
                                      sr)
        for ix in indexes.values():
            ix.close()
    timings["retrieval_eval"] = round(t.seconds, 1)

    def key_of(m: str) -> str:
        return m if m == "mfcc" else f"{m}/{ROLLUP_DEFAULT}"

    results = {
        "benchmark": "pretrain_compare", "mode": C.mode(args), "machine": C.machine(),
        "corpus": {"data": str(data), "files": len(ds.items), "labels": ds.labels,
                   "held_out": len(held), "pretrain_files": len(unlabelled),
                   "hours": round(sum(it.duration for it in ds.items) / 3600, 3)},
        "settings": {"base": base, "epochs": args.epochs,
                     "finetune_config": _flat_yaml(args.finetune_config), "pretrain_epochs":
                     args.pretrain_epochs, "pretrain_windows": args.pretrain_windows,
                     "pair_shift_seconds": args.pair_shift, "methods": methods,
                     "joint_weight": args.joint_weight, "rollup": ROLLUP_DEFAULT,
                     "runs": {k: str(v.parent) for k, v in paths.items()}},
        "systems": models,
        "seconds": timings,
        "macro_f1": f1,
        "label_map@10": {m: label[key_of(m)]["map@10"] for m in models},
        "near_duplicate_recall@1": {m: {d: dup[key_of(m)][d]["recall@1"] for d in degradations}
                                    for m in models},
        "label_retrieval": label, "near_duplicate": dup,
    }
    sections = [("Pretraining, side by side", table(results, degradations, label, dup))]
    js, md = C.write_results("pretrain_compare", args.out, results, sections)
    print(sections[0][1])
    C.log(f"wrote {js} and {md}")
    return results


def systems(picked: list[str], methods: list[str]) -> list[str]:
    """Column names in order: pretrained systems once per method when there are several."""
    out = []
    for name in BASE_SYSTEMS:
        if name not in picked:
            continue
        if name.startswith("pretrained") and len(methods) > 1:
            out += [name.replace("pretrained", f"pretrained:{m}") for m in methods]
        else:
            out.append(name)
    return out


def _is_pretrained_only(name: str) -> bool:
    return name.startswith("pretrained") and not name.endswith("+ft")


def _run_name(kind: str, *key) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return f"pretrain-compare-{kind}-{digest[:12]}"


def _flat_yaml(path: Path | None) -> dict:
    """A config file as dotted overrides (``{"train.head_lr": 0.01}``)."""
    import yaml

    if path is None:
        return {}
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return {f"{section}.{k}": v for section, keys in data.items() for k, v in keys.items()}


def _label(run: Path) -> str:
    """``pretrain-compare-pretrain-byol-<hash>-ft`` -> ``pretrain-byol-ft``."""
    return re.sub(r"-[0-9a-f]{12}", "", run.name.removeprefix("pretrain-compare-"))


def pretrain_files(ds, extra: list[Path]) -> list[str]:
    """DATA's non-test files and the audio under ``extra``, held-out test files left out."""
    from sonicsearch.data.excerpts import scan_audio

    held = {os.path.realpath(it.path) for it in ds.items if it.split == "test"}
    seen: set[str] = set()
    out = []
    found = scan_audio(extra, 0.5)[0] if extra else []
    for path in [it.path for it in ds.items] + [f.path for f in found]:
        real = os.path.realpath(path)
        if real not in held and real not in seen:
            seen.add(real)
            out.append(str(path))
    return out


def finetune(args, ds, overrides: dict, run: Path, timings: dict) -> Path:
    """Fine-tune with the freeze-then-unfreeze recipe into ``run`` (reused when done)."""
    from sonicsearch.config import load_config
    from sonicsearch.training.finetune import fit

    p1, p2 = (int(x) for x in args.epochs.split(","))
    cfg = load_config(None, {**overrides, "train.phase1_epochs": p1, "train.phase2_epochs": p2,
                             "train.patience": max(4, p2 // 3)})
    if (run / "model.pt").is_file() and (run / "metrics.json").is_file():
        C.log(f"reusing {run}")
        return run / "model.pt"
    C.log(f"fine-tuning into {run} ({p1}+{p2} epochs, weights {cfg.model.weights}, "
          f"contrastive_weight {cfg.train.contrastive_weight})")
    with C.Timer() as t:
        fit(cfg, ds, run, overwrite=True, show_progress=not args.tiny)
    timings[_label(run)] = round(t.seconds, 1)
    return run / "model.pt"


def run_pretrain(args, audio: list, overrides: dict, run: Path, timings: dict) -> Path:
    from sonicsearch.config import load_config
    from sonicsearch.training.pretrain import pretrain

    cfg = load_config(None, {**overrides, "pretrain.epochs": args.pretrain_epochs,
                             "pretrain.windows_per_file": args.pretrain_windows})
    done = run / "metrics.jsonl"
    if done.is_file() and len(done.read_text().splitlines()) >= cfg.pretrain.epochs:
        C.log(f"reusing {run}")
        return run / "model.pt"
    C.log(f"pretraining into {run} ({cfg.pretrain.epochs} epochs on {len(audio)} files)")
    with C.Timer() as t:
        resume = (run / "last.pt").is_file()
        pretrain(cfg, audio, run, resume=resume, overwrite=not resume,
                 show_progress=not args.tiny)
    timings[_label(run)] = round(t.seconds, 1)
    return run / "model.pt"


def _test_f1(model_path: Path) -> float | None:
    metrics = json.loads((model_path.parent / "metrics.json").read_text())
    return (metrics.get("test") or {}).get("macro_f1")


def linear_probe(embedder, ds) -> float:
    """Test macro-F1 of a logistic regression on standardised file-mean embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from sonicsearch.eval.metrics import classification_report

    x, y, test = [], [], []
    for item, (_, emb) in zip(ds.items, embedder.embed_files([it.path for it in ds.items])):
        v = emb.vectors.mean(axis=0)
        x.append(v / max(float(np.linalg.norm(v)), 1e-12))
        y.append(ds.labels.index(item.label))
        test.append(item.split == "test")
    x, y, test = np.stack(x), np.array(y), np.array(test)
    scaler = StandardScaler().fit(x[~test])
    clf = LogisticRegression(max_iter=5000).fit(scaler.transform(x[~test]), y[~test])
    pred = clf.predict(scaler.transform(x[test]))
    return classification_report(y[test], pred, ds.labels)["macro_f1"]


def mfcc_f1(ds, sample_rate: int) -> float:
    from sonicsearch.eval.baseline import evaluate_baseline

    train = [(it.path, it.label) for it in ds.items if it.split != "test"]
    test = [(it.path, it.label) for it in ds.items if it.split == "test"]
    return evaluate_baseline(train, test, sample_rate=sample_rate)["macro_f1"]


def _column(name: str, joint_weight: float) -> str:
    if name.startswith("pretrained"):
        method = name.removesuffix("+ft").partition(":")[2]
        tag = f" ({method})" if method else ""
        return f"pretrained{tag} " + ("+ fine-tuned" if name.endswith("+ft") else "only")
    return {"mfcc": "MFCC baseline", "scratch": "scratch",
            "scratch+joint": f"scratch + joint ({joint_weight:g})"}[name]


def _settings(overrides: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in overrides.items()) or "the defaults"


def table(results: dict, degradations: list[str], label: dict, dup: dict) -> str:
    models = results["systems"]
    f1, lm, nd = (results["macro_f1"], results["label_map@10"],
                  results["near_duplicate_recall@1"])
    rows = [["test macro-F1"] + [f1[m] for m in models],
            ["label mAP@10"] + [lm[m] for m in models]]
    rows += [[f"dup R@1 {d}"] + [nd[m][d] for m in models] for d in degradations]
    rows.append(["dup R@1 mean"] + [float(np.mean(list(nd[m].values()))) for m in models])
    c, s = results["corpus"], results["settings"]
    secs = ", ".join(f"{k} {v:.0f}s" for k, v in results["seconds"].items())
    shift = (f", views up to {s['pair_shift_seconds']:g} s apart"
             if s["pair_shift_seconds"] is not None else "")
    note = (f"{c['files']} clips ({c['hours']} h, {len(c['labels'])} labels), "
            f"{c['held_out']} held out; pretraining on {c['pretrain_files']} files without "
            f"labels ({s['pretrain_epochs']} epochs of {s['pretrain_windows']} excerpts per "
            f"file{shift}); fine-tuning {s['epochs']} epochs (pretrained + fine-tuned with "
            f"{_settings(s['finetune_config'])}); "
            f"{dup['queries']} near-duplicate excerpts of {dup['excerpt_seconds'][0]:g}-"
            f"{dup['excerpt_seconds'][1]:g} s; {label['queries']} label queries. "
            "Pretrained-only macro-F1 is a linear probe (logistic regression on file-mean "
            f"embeddings, no head). Time: {secs}.")
    header = ["metric"] + [_column(m, s["joint_weight"]) for m in models]
    return note + "\n\n" + C.markdown_table(header, rows)


if __name__ == "__main__":
    main()
