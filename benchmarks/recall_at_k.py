"""How good is the search? Label retrieval and near-duplicate retrieval on a labelled corpus,
side by side for an MFCC-statistics baseline (exact search), the backbone untrained (random
init) and the fine-tuned model.

(a) Label retrieval: every held-out clip queries an index of all clips (its own file left
    out); a result is relevant when it has the query's label. precision@k, recall@k, mAP@k
    for k = 1, 5, 10.
(b) Near-duplicates: an excerpt (5-10 s at a random offset) of an indexed file, degraded
    (sonicsearch.eval.degrade.DEGRADATIONS), must find its source: recall@1 and recall@10.

    python benchmarks/recall_at_k.py --quick                   # synthetic corpus, tiny model
    python benchmarks/recall_at_k.py --data DATA --model runs/r18/model.pt

Writes benchmarks/results/recall_at_k.{json,md}. See benchmarks/README.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from sonicsearch.eval.retrieval import (  # noqa: E402
    KS,
    MfccFileSearch,
    exact_index,
    label_retrieval,
    near_duplicates,
)

TINY_FEATURES = {"features.sample_rate": 8000, "features.n_mels": 32, "features.n_fft": 512,
                 "features.hop_length": 256, "features.window_seconds": 1.0,
                 "features.hop_seconds": 0.5}
PRESETS = {
    "tiny": {"genres": 3, "per_genre": 4, "seconds": 6.0, "sample_rate": 8000,
             "dup_queries": 3, "excerpt": "2,4", "epochs": "1,1"},
    "quick": {"genres": 8, "per_genre": 10, "seconds": 15.0, "sample_rate": 22050,
              "dup_queries": 16, "excerpt": "5,10", "epochs": "1,5"},
    "full": {"genres": 8, "per_genre": 40, "seconds": 30.0, "sample_rate": 22050,
             "dup_queries": 64, "excerpt": "5,10", "epochs": "2,18"},
}


def parse_args(argv: list[str] | None = None):
    p = C.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None,
                   help="DATA folder or CSV (default: the synthetic corpus, made in the cache)")
    p.add_argument("--model", type=Path, default=None,
                   help="a fine-tuned model.pt (default: train one on DATA, kept in the cache)")
    p.add_argument("--arch", default=None, help="backbone of the untrained model and of a "
                   "model trained here (default: the model's, else resnet18)")
    p.add_argument("--weights", default="none", help="start of a model trained here")
    p.add_argument("--epochs", default=None, help="PHASE1,PHASE2 epochs of a model trained here")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    C.add_near_duplicate_args(p)
    p.add_argument("--allow-external-paths", action="store_true")
    C.add_corpus_args(p, PRESETS)
    args = p.parse_args(argv)
    C.preset(args, PRESETS)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    C.set_threads(args.threads)
    from sonicsearch.embed.embedder import Embedder
    from sonicsearch.eval.degrade import DEGRADATIONS
    from sonicsearch.index.search import ROLLUP_DEFAULT, ROLLUPS

    cache, t0 = args.cache, time.monotonic()
    data = args.data or C.synth_corpus(cache, args.genres, args.per_genre, args.seconds,
                                       args.sample_rate, args.seed)
    degradations = args.degradations.split(",") if args.degradations else list(DEGRADATIONS)
    unknown = sorted(set(degradations) - set(DEGRADATIONS))
    if unknown:
        sys.exit(f"unknown degradation(s) {unknown}; choose from: {', '.join(DEGRADATIONS)}")

    ds, model_path, split_source = dataset_and_model(args, data)
    held = [it for it in ds.items if it.split == "test"]
    C.log(f"{len(ds.items)} clips, {len(ds.labels)} labels, {len(held)} held out "
          f"({split_source}); fine-tuned model {model_path}")
    tuned = Embedder.from_checkpoint(model_path, device=args.device)
    arch = args.arch or tuned.arch
    untrained_path = untrained_checkpoint(tuned, arch, ds, cache, args.seed)
    models = {"mfcc": MfccFileSearch(ds.items, tuned.feature_config.sample_rate, C.log),
              "untrained": Embedder.from_checkpoint(untrained_path, device=args.device),
              "fine-tuned": tuned}

    with tempfile.TemporaryDirectory(dir=C.mkdir(cache / "tmp")) as tmp:
        indexes = {name: exact_index(m, [it.path for it in ds.items], Path(tmp) / name,
                                     args.device, C.log)
                   for name, m in models.items() if name != "mfcc"}
        indexes["mfcc"] = models["mfcc"]
        label = label_retrieval(indexes, ds, held, ROLLUPS)
        dup = near_duplicate_recall(indexes, ds, held, degradations, args, ROLLUPS)
        for ix in indexes.values():
            ix.close()

    results = {
        "benchmark": "recall_at_k", "mode": C.mode(args), "machine": C.machine(),
        "corpus": {"data": str(data), "files": len(ds.items), "labels": ds.labels,
                   "held_out": len(held), "split": split_source,
                   "hours": round(sum(it.duration for it in ds.items) / 3600, 3)},
        "models": {"mfcc": "MFCC+delta mean/std (80-d), standardised on the non-held-out "
                           "clips, L2-normalised, exact inner-product search",
                   "untrained": {"arch": arch, "path": str(untrained_path)},
                   "fine-tuned": {"arch": tuned.arch, "path": str(model_path),
                                  "sha256": tuned.model_sha256,
                                  "run_test_metrics": _run_test_metrics(model_path)}},
        "rollup": ROLLUP_DEFAULT,
        "label_retrieval": label,
        "near_duplicate": dup,
        "seconds": round(time.monotonic() - t0, 1),
    }
    sections = tables(results, degradations, ROLLUP_DEFAULT, ROLLUPS)
    js, md = C.write_results("recall_at_k", args.out, results, sections)
    print("\n\n".join(body for _, body in sections))
    C.log(f"wrote {js} and {md}")
    return results


# -- data and models ----------------------------------------------------------------------

def dataset_and_model(args, data: Path):
    """The labelled clips with a held-out (test) split, and the fine-tuned model to use."""
    from sonicsearch.data.manifest import load_dataset, read_split

    ds = load_dataset(data, 0.15, 0.15, seed=args.seed,
                      allow_external_paths=args.allow_external_paths)
    if args.model is not None:
        split_csv = args.model.parent / "split.csv"
        if not split_csv.is_file():
            return ds, args.model, "seeded split (the model has no split.csv beside it)"
        splits = read_split(split_csv, ds.root)
        # held out: the model's test files, and files it never saw
        ds.items = [dataclasses.replace(it, split=splits.get(os.path.realpath(it.path), "test"))
                    for it in ds.items]
        return ds, args.model, f"the model's {split_csv}"
    return ds, train_model(args, ds), "seeded split, the one the model was trained on"


def train_model(args, ds) -> Path:
    """Fine-tune a model on ``ds`` (short recipe in quick mode), kept in the cache."""
    from sonicsearch.config import load_config
    from sonicsearch.training.finetune import fit

    p1, p2 = (int(x) for x in args.epochs.split(","))
    overrides = {"model.arch": args.arch or "resnet18", "model.weights": args.weights,
                 "train.phase1_epochs": p1, "train.phase2_epochs": p2,
                 "train.patience": max(4, p2 // 3), "runtime.seed": args.seed,
                 "runtime.device": args.device}
    if args.tiny:
        overrides.update(TINY_FEATURES)
        overrides.update({"runtime.num_workers": 0, "train.batch_size": 16})
    key = json.dumps([str(Path(ds.root).resolve()), len(ds.items), overrides], sort_keys=True)
    run = args.cache / "runs" / f"recall-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (run / "model.pt").is_file() and (run / "metrics.json").is_file():
        C.log(f"reusing the model trained before in {run}")
        return run / "model.pt"
    C.log(f"training {overrides['model.arch']} ({p1}+{p2} epochs) into {run}")
    fit(load_config(None, overrides), ds, run, overwrite=True, show_progress=not args.tiny)
    return run / "model.pt"


def untrained_checkpoint(tuned, arch: str, ds, cache: Path, seed: int) -> Path:
    """The backbone at random init (seeded), with only the input standardisation fitted on
    training crops, saved as a model file the index can hold."""
    import torch

    from sonicsearch.config import ModelConfig, load_config
    from sonicsearch.data.windows import RandomCrops
    from sonicsearch.model.backbones import AudioModel
    from sonicsearch.model.checkpoint import save_checkpoint

    fc = tuned.feature_config
    torch.manual_seed(seed)
    model = AudioModel.from_config(fc, ModelConfig(arch, "none", 0.0), ds.labels)
    train = [it for it in ds.items if it.split == "train"] or ds.items
    crops = RandomCrops(train, ds.labels, fc, crops_per_file=4, seed=seed)
    idx = np.random.default_rng(seed).choice(len(crops), min(64, len(crops)), replace=False)
    with torch.no_grad():
        model.fit_normalization(model.frontend(torch.stack([crops[int(i)][0] for i in idx])))
    config = load_config(None, {"model.arch": arch, "model.weights": "none"})
    config.features = fc
    path = C.mkdir(cache / "models") / f"untrained-{arch}-{tuned.model_sha256[:12]}-s{seed}.pt"
    save_checkpoint(path, model, config=config.to_dict(), labels=ds.labels,
                    metrics={"note": "random init; input standardisation only"})
    return path


def near_duplicate_recall(indexes: dict, ds, held, degradations, args, rollups,
                          sample_rate: int | None = None) -> dict:
    """:func:`sonicsearch.eval.retrieval.near_duplicates` with this run's settings, timed."""
    with C.Timer() as t:
        out = near_duplicates(indexes, ds, held, degradations, args.seed, args.dup_queries,
                              tuple(float(x) for x in args.excerpt.split(",")), rollups,
                              sample_rate)
    C.log(f"near-duplicates: {out['queries']} excerpts x {len(degradations)} degradations "
          f"in {t.seconds:.1f}s")
    return out


def tables(results: dict, degradations, default: str, rollups) -> list[tuple[str, str]]:
    lr, nd = results["label_retrieval"], results["near_duplicate"]
    models = ["mfcc", f"untrained/{default}", f"fine-tuned/{default}"]
    names = {"mfcc": "MFCC baseline (exact)", f"untrained/{default}": "untrained backbone",
             f"fine-tuned/{default}": "fine-tuned"}
    head = ["model"] + [f"{m}@{k}" for m in ("P", "R", "mAP") for k in KS]
    rows = [[names[m]] + [lr[m][f"{x}@{k}"] for x in ("precision", "recall", "map") for k in KS]
            for m in models]
    c = results["corpus"]
    label_text = (f"{lr['queries']} held-out queries against {c['files']} clips "
                  f"({len(c['labels'])} labels); neural models roll windows up to files "
                  f"with `{default}`.\n\n" + C.markdown_table(head, rows))
    head = ["degradation"] + [f"{names[m]} R@{k}" for m in models for k in (1, 10)]
    rows = [[d] + [nd[m][d][f"recall@{k}"] for m in models for k in (1, 10)]
            for d in degradations]
    dup_text = (f"{nd['queries']} excerpts of {nd['excerpt_seconds'][0]:g}-"
                f"{nd['excerpt_seconds'][1]:g} s ({nd['held_out_sources']} from held-out "
                "files); recall@k of the source file.\n\n" + C.markdown_table(head, rows))
    head = ["roll-up"] + [f"{x}@10" for x in ("P", "mAP")] + ["mean dup R@1", "mean dup R@10"]
    rows = []
    for m in ("untrained", "fine-tuned"):
        for r in rollups:
            key = f"{m}/{r}"
            rows.append([f"{m} {r}", lr[key]["precision@10"], lr[key]["map@10"],
                         float(np.mean([nd[key][d]["recall@1"] for d in degradations])),
                         float(np.mean([nd[key][d]["recall@10"] for d in degradations]))])
    return [("Label retrieval", label_text), ("Near-duplicate retrieval", dup_text),
            ("Window-to-file roll-ups", C.markdown_table(head, rows))]


def _run_test_metrics(model_path: Path) -> dict | None:
    """Accuracy and macro-F1 on the test split from the run's metrics.json, if any."""
    try:
        test = json.loads((model_path.parent / "metrics.json").read_text()).get("test") or {}
    except (OSError, ValueError):
        return None
    return {k: test[k] for k in ("n", "accuracy", "macro_f1") if k in test} or None


if __name__ == "__main__":
    main()
