"""`sonicsearch demo`: the whole pipeline offline on a small synthetic corpus.

corpus -> train (resnet18 from scratch, short recipe) -> index of the training and
validation clips -> queries with the held-out test clips -> recall@1 and @10 (the fraction
of queries with a file of their genre among the top 1 / 10 results) and the accuracy of the
label the index predicts. The README's "Measured so far" quotes this summary line.

Each step line says the time spent so far; training prints an ETA after every epoch, and
the index build and the queries show progress with their own ETA.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sonicsearch.config import load_config
from sonicsearch.progress import format_seconds, log

DEMO_CORPUS = {"genres": 8, "per_genre": 15, "seconds": 15.0}
DEMO_OVERRIDES = {
    "model.weights": "none",
    "train.phase1_epochs": 2,
    "train.phase2_epochs": 8,
    "train.patience": 4,
}


def run_demo(workdir: str | Path, show: int = 3) -> dict:
    """Run the demo in ``workdir`` (reusing a corpus already there) and return its numbers."""
    from sonicsearch.data.manifest import load_dataset
    from sonicsearch.data.synth import make_synth_corpus
    from sonicsearch.eval.metrics import hit_rate_at_k
    from sonicsearch.index import AudioIndex
    from sonicsearch.training.finetune import fit

    work = Path(workdir)
    corpus, run, index_dir = work / "corpus", work / "run", work / "index"
    t0 = time.monotonic()
    step = _Steps(t0, 4)
    if not corpus.is_dir() or not any(corpus.iterdir()):
        step(f"synthesising {DEMO_CORPUS['genres']} genres x {DEMO_CORPUS['per_genre']} "
            f"clips x {DEMO_CORPUS['seconds']:g}s into {corpus}")
        make_synth_corpus(corpus, seed=0, **DEMO_CORPUS)
    else:
        step(f"reusing the corpus in {corpus}")
    config = load_config(None, DEMO_OVERRIDES)
    ds = load_dataset(corpus, config.train.val_fraction, config.train.test_fraction,
                      config.runtime.seed)
    epochs = config.train.phase1_epochs + config.train.phase2_epochs
    step(f"training resnet18 from scratch on {len(ds.split('train'))} clips "
         f"({len(ds.split('val'))} validation, {len(ds.split('test'))} held out), up to "
         f"{epochs} epochs; each epoch line ends with the ETA of the rest")
    result = fit(config, ds, run, overwrite=True)  # the demo's own folder: always a new run
    step(f"indexing the {len(ds.split('train')) + len(ds.split('val'))} training and "
        "validation clips")
    collection = [it.path for it in ds.items if it.split in ("train", "val")]
    index = AudioIndex.build(collection, result.model_path, index_dir, rebuild=True)
    held_out = ds.split("test")
    step(f"querying with the {len(held_out)} held-out clips")
    relevant, correct = [], []
    for n, (item, (_, res)) in enumerate(zip(held_out, index.query_files(
            [it.path for it in held_out], k=10))):
        genres = [_genre(r["path"]) for r in res["results"]]
        relevant.append([g == item.label for g in genres] + [False] * (10 - len(genres)))
        correct.append(res["predicted_label"] == item.label)
        if n < show:
            _show(res, item.label)
    index.close()
    rel = np.array(relevant, dtype=bool)
    numbers = {"recall@1": hit_rate_at_k(rel, 1), "recall@10": hit_rate_at_k(rel, 10),
               "precision@10": float(rel.mean()), "query_label_accuracy": float(np.mean(correct)),
               "test_macro_f1": (result.test or {}).get("macro_f1"),
               "queries": len(held_out), "seconds": time.monotonic() - t0}
    print("\n" + summary_line(numbers))
    print(f"try: sonicsearch query {held_out[0].path} --index {index_dir} --k 5")
    return numbers


def summary_line(numbers: dict) -> str:
    """The demo's result line, in the words and order the README quotes it."""
    return (f"held-out queries: {numbers['queries']}  recall@1 {numbers['recall@1']:.3f}  "
            f"recall@10 {numbers['recall@10']:.3f}  "
            f"label accuracy {numbers['query_label_accuracy']:.3f}; "
            f"{numbers['seconds'] / 60:.1f} min in all")


class _Steps:
    """``[k/n] message (Xs so far)`` lines."""

    def __init__(self, t0: float, total: int):
        self.t0, self.total, self.done = t0, total, 0

    def __call__(self, message: str) -> None:
        self.done += 1
        log(f"[{self.done}/{self.total}] {message} "
            f"({format_seconds(time.monotonic() - self.t0)} so far)")


def _genre(path: str) -> str:
    return Path(path).parent.name


def _show(res: dict, true_label: str) -> None:
    print(f"\nquery {Path(res['query']).name} (genre {true_label}, predicted "
          f"{res['predicted_label']})")
    for r in res["results"][:5]:
        mark = "+" if _genre(r["path"]) == true_label else " "
        print(f"  {r['rank']:>2} {mark} {r['score']:.3f}  {r['start']:6.1f}-{r['end']:6.1f}s  "
              f"{Path(r['path']).parent.name}/{Path(r['path']).name}")
