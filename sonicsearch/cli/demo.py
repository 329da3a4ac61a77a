"""`sonicsearch demo`: the whole pipeline offline on a small synthetic corpus.

corpus -> train (resnet18 from scratch, short recipe) -> index of the training and
validation clips -> queries with the held-out test clips -> recall@1 and @10 (the fraction
of queries with a file of their genre among the top 1 / 10 results) and the accuracy of the
label the index predicts. The README's "Measured so far" quotes this summary line.

Repeatable: ``seed`` (``--seed``, default 0) makes the corpus, the split, the initialisation,
the crops and the augmentation, so the same seed gives the same numbers on the same CPU with
the same number of torch threads (the line after the summary says both). Another thread
count or CPU sums floating point in another order; over ten epochs that moves the model, and
so the numbers, a little. ``corpus.json`` in the work folder records what the corpus was
made with; a corpus made otherwise is refused, not reused.

Each step line says the time spent so far; training prints an ETA after every epoch, and
the index build and the queries show progress with their own ETA.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from sonicsearch.config import load_config
from sonicsearch.data.manifest import load_dataset
from sonicsearch.data.synth import make_synth_corpus
from sonicsearch.errors import DataError
from sonicsearch.eval.metrics import hit_rate_at_k
from sonicsearch.index import AudioIndex
from sonicsearch.training.finetune import fit
from sonicsearch.utils.progress import format_seconds, log

DEMO_CORPUS = {"genres": 8, "per_genre": 15, "seconds": 15.0}
DEMO_OVERRIDES = {
    "model.weights": "none",
    "train.phase1_epochs": 2,
    "train.phase2_epochs": 8,
    "train.patience": 4,
}


def run_demo(workdir: str | Path, show: int = 3, seed: int = 0, *,
             corpus_spec: dict | None = None, overrides: dict | None = None) -> dict:
    """Run the demo in ``workdir`` (reusing a corpus it made there before) and return its numbers.

    Args:
        workdir: where the corpus, the run and the index go.
        show: how many queries to print with their top results.
        seed: the corpus, split and training seed; the same seed repeats the numbers on the
            same CPU and thread count.
        corpus_spec: ``make_synth_corpus`` arguments instead of :data:`DEMO_CORPUS` (tests).
        overrides: dotted config overrides on top of :data:`DEMO_OVERRIDES` (tests).

    Raises:
        DataError: a negative seed, or a corpus in ``workdir`` made with another seed or size.
    """
    if seed < 0:
        raise DataError(f"the demo's seed must be a non-negative integer, got {seed}")
    spec = {**DEMO_CORPUS, **(corpus_spec or {}), "seed": seed}
    work = Path(workdir)
    corpus, run, index_dir = work / "corpus", work / "run", work / "index"
    t0 = time.monotonic()
    step = _Steps(t0, 4)
    _corpus(corpus, work / "corpus.json", spec, step)
    config = load_config(None, {**DEMO_OVERRIDES, **(overrides or {}), "runtime.seed": seed})
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
    numbers = {**_query_held_out(index, held_out, show),
               "test_macro_f1": (result.test or {}).get("macro_f1"),
               "queries": len(held_out), "seconds": time.monotonic() - t0}
    print("\n" + summary_line(numbers))
    print(f"(seed {seed}, {torch_threads()} CPU threads: the same seed and thread count on "
          "this CPU repeat these numbers)")
    print(f"try: sonicsearch query {held_out[0].path} --index {index_dir} --k 5")
    return numbers


def _query_held_out(index, held_out, show: int) -> dict:
    """Query with each held-out clip: recall@1/10 and precision@10 of its genre, and how
    often the predicted label is right; the first ``show`` are printed."""
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
    return {"recall@1": hit_rate_at_k(rel, 1), "recall@10": hit_rate_at_k(rel, 10),
            "precision@10": float(rel.mean()), "query_label_accuracy": float(np.mean(correct))}


def _corpus(corpus: Path, record: Path, spec: dict, step: _Steps) -> None:
    """Synthesise the corpus and record its arguments, or check the one there was made so."""
    if not corpus.is_dir() or not any(corpus.iterdir()):
        step(f"synthesising {spec['genres']} genres x {spec['per_genre']} clips x "
             f"{spec['seconds']:g}s (seed {spec['seed']}) into {corpus}")
        made = make_synth_corpus(corpus, **spec)
        record.write_text(json.dumps({k: made[k] for k in sorted(spec)}, indent=2) + "\n",
                          encoding="utf-8")
        return
    if not record.is_file():
        raise DataError(f"{corpus} holds files but {record} is missing, so what made them is "
                        "unknown; delete the folder or choose another --workdir")
    try:
        was = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{record} is unreadable ({exc}); delete {corpus.parent} or choose "
                        "another --workdir") from exc
    want = {k: spec[k] for k in sorted(spec)}
    if {k: was.get(k) for k in want} != want:
        raise DataError(f"the corpus in {corpus} was made with {_describe(was)}, not "
                        f"{_describe(want)}; choose another --workdir (or delete this one)")
    step(f"reusing the corpus in {corpus} (seed {spec['seed']})")


def _describe(spec: dict) -> str:
    return ", ".join(f"{k} {spec.get(k)}" for k in sorted(spec))


def torch_threads() -> int:
    """The intra-op thread count torch sums with (part of what makes a run repeatable)."""
    import torch

    return torch.get_num_threads()


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
