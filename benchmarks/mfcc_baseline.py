"""The MFCC-statistics + logistic-regression baseline on a training run's own split.

    python benchmarks/mfcc_baseline.py DATA --run runs/r18 [--out benchmarks/results]

Fits on the run's train (and val) files and scores its test files, so the numbers sit
beside ``sonicsearch train``'s test metrics like for like. Without --run, a seeded
stratified split of DATA with the default fractions is used.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--run", type=Path, default=None, help="A train run folder (split.csv).")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)

    from sonicsearch.data.manifest import load_dataset, read_split
    from sonicsearch.eval.baseline import evaluate_baseline

    data = load_dataset(args.data, full_decode=False)
    split = {os.path.realpath(it.path): it.split for it in data.items}
    if args.run is not None:
        split = read_split(args.run / "split.csv", data.root)
    pairs = [(it.path, it.label, split.get(os.path.realpath(it.path))) for it in data.items]
    train = [(p, lab) for p, lab, s in pairs if s in ("train", "val")]
    test = [(p, lab) for p, lab, s in pairs if s == "test"]
    result = evaluate_baseline(train, test)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mfcc_baseline.json").write_text(json.dumps(result, indent=2))
    print(f"MFCC baseline: fit on {len(train)} files, test n={result['n']}: accuracy "
          f"{result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}")
    return result


if __name__ == "__main__":
    main()
