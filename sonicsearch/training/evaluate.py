"""Evaluation of a trained model on a labelled split: the evaluate JSON (docs/formats.md) and a
confusion-matrix PNG. File predictions average the logits of all the file's windows."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from sonicsearch.data.manifest import Dataset, read_split
from sonicsearch.data.windows import FileWindows, collate_files
from sonicsearch.errors import DataError
from sonicsearch.eval.metrics import classification_report, confusion
from sonicsearch.progress import log


@torch.no_grad()
def predict_files(model, loader: DataLoader, device, max_windows: int = 64):
    """Run every window of every file through the model (eval mode).

    Returns:
        ``(file_logits, window_logits, targets, files)``: per file, the mean of its window
        logits (C,), its window logits (n, C), its target index and its dataset index.
    """
    model.eval()
    per_file: dict[int, list[np.ndarray]] = {}
    targets: dict[int, int] = {}
    for windows, owner, tgt, files in loader:
        for i in range(0, windows.shape[0], max_windows):
            logits, _ = model(windows[i : i + max_windows].to(device))
            for f, lg in zip(owner[i : i + max_windows].tolist(), logits.float().cpu().numpy()):
                per_file.setdefault(f, []).append(lg)
        targets.update(zip(files.tolist(), tgt.tolist()))
    order = sorted(per_file)
    window_logits = [np.stack(per_file[f]) for f in order]
    return ([w.mean(axis=0) for w in window_logits], window_logits,
            [targets[f] for f in order], order)


def evaluate_model(
    data: Dataset,
    model_path: str | Path,
    split: str = "test",
    out_dir: str | Path | None = None,
    device: str = "auto",
    quiet: bool = False,
) -> dict:
    """Evaluate ``model_path`` on one split of ``data``.

    The split comes from the run's ``split.csv`` beside the model when it covers the data
    (so that the test files of training are the test files here), else from the data.

    Args:
        data: a dataset (its own split is used when the run's split.csv does not apply).
        model_path: a model.pt from ``train``.
        split: train, val, test, or all.
        out_dir: where to write ``confusion_<split>.png`` (default: beside the model).

    Returns:
        The evaluate JSON (docs/formats.md, docs/schemas/evaluate.schema.json) as a dict.

    Raises:
        DataError: labels the model does not know, or an empty split.
    """
    from sonicsearch.model.checkpoint import load_checkpoint
    from sonicsearch.training.finetune import resolve_device

    dev = resolve_device(device)
    model, info = load_checkpoint(model_path, device=dev)
    labels = list(info["labels"])
    if not labels:
        raise DataError(f"{model_path} has no labels (a pretrain-only model); fine-tune it "
                        "with `sonicsearch train DATA --weights MODEL` to classify")
    unknown = sorted({it.label for it in data.items} - set(labels))
    if unknown:
        raise DataError(f"label(s) unknown to the model: {', '.join(unknown)}; "
                        f"it knows: {', '.join(labels)}")
    items = _items_of_split(data, Path(model_path).parent / "split.csv", split, quiet)
    fc = model.feature_config
    loader = DataLoader(FileWindows(items, labels, fc), batch_size=4, num_workers=2,
                        collate_fn=collate_files)
    logits, _, targets, _ = predict_files(model, loader, dev)
    pred = [int(np.argmax(lg)) for lg in logits]
    report = classification_report(targets, pred, labels)
    out = Path(out_dir) if out_dir is not None else Path(model_path).parent
    if out.is_dir():
        from sonicsearch.plots import plot_confusion

        cm = confusion(targets, pred, len(labels))
        plot_confusion(cm, labels, out / f"confusion_{split}.png",
                       f"{split}: accuracy {report['accuracy']:.3f}, "
                       f"macro-F1 {report['macro_f1']:.3f} (n={report['n']})")
        (out / f"eval_{split}.json").write_text(json.dumps(report, indent=2))
    return report


def _items_of_split(data: Dataset, split_csv: Path, split: str, quiet: bool):
    items = data.items
    covered = False
    if split_csv.is_file():
        known = read_split(split_csv, data.root)
        paths = [os.path.realpath(it.path) for it in items]
        covered = all(p in known for p in paths)
        if covered:
            items = [replace(it, split=known[p]) for it, p in zip(items, paths)]
            if not quiet:
                log(f"using the run's split from {split_csv}")
    if not covered and not data.given_split and split != "all":
        if not quiet:
            log(f"the data is not the model's training data and has no split column: "
                f"evaluating all {len(items)} files")
        split = "all"
    if split != "all":
        items = [it for it in items if it.split == split]
    if not items:
        raise DataError(f"no files in split '{split}'")
    return items
