"""Evaluation of a trained model on a labelled split: the evaluate JSON (docs/formats.md) and a
confusion-matrix PNG. File predictions average the logits of all the file's windows."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from sonicsearch.config import Config
from sonicsearch.data.manifest import Dataset, read_split
from sonicsearch.data.windows import FileWindows, collate_files
from sonicsearch.errors import DataError, ModelError
from sonicsearch.eval.metrics import classification_report, confusion
from sonicsearch.model.checkpoint import load_checkpoint
from sonicsearch.model.infer import run_files
from sonicsearch.model.weights import MODEL_FILE_KIND, load_file
from sonicsearch.utils.progress import log
from sonicsearch.utils.runtime import resolve_device


def predict_files(model, loader: DataLoader, device, max_windows: int = 64):
    """Run every window of every file through the model (eval mode).

    Returns:
        ``(file_logits, window_logits, targets, files)``: per file, the mean of its window
        logits (C,), its window logits (n, C), its target index and its dataset index.
    """
    out = run_files(model, loader, max_windows, device)
    return out.file_logits(), out.logits, out.targets, out.files


def validation_metrics(model, loader: DataLoader, device, labels: list[str]) -> dict:
    """Validation metrics at file level (window logits averaged) and at window level, and
    the mean file-level cross-entropy: ``{"file": report, "window": report, "loss": x}``."""
    logits, owner, targets, _ = predict_files(model, loader, device)
    file_pred = [int(np.argmax(lg)) for lg in logits]
    win_true = np.concatenate([np.full(len(w), t) for w, t in zip(owner, targets)])
    win_pred = np.concatenate([np.argmax(w, axis=1) for w in owner])
    loss = float(np.mean([F.cross_entropy(torch.from_numpy(lg)[None], torch.tensor([t])).item()
                          for lg, t in zip(logits, targets)]))
    return {"file": classification_report(targets, file_pred, labels),
            "window": classification_report(win_true, win_pred, labels), "loss": loss}


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
        # deferred: matplotlib loads only when a figure is drawn
        from sonicsearch.utils.plots import plot_confusion

        cm = confusion(targets, pred, len(labels))
        plot_confusion(cm, labels, out / f"confusion_{split}.png",
                       f"{split}: accuracy {report['accuracy']:.3f}, "
                       f"macro-F1 {report['macro_f1']:.3f} (n={report['n']})")
        (out / f"eval_{split}.json").write_text(json.dumps(report, indent=2))
    return report


def model_config(model_path: str | Path) -> Config:
    """The resolved config a model file was trained with (defaults for keys it lacks).

    Raises:
        ModelError: not a readable sonicsearch model file.
        ConfigError: its config does not load.
    """
    obj = load_file(Path(model_path), "model file")
    if not isinstance(obj, dict) or obj.get("kind") != MODEL_FILE_KIND:
        raise ModelError(f"{model_path} is not a sonicsearch model file")
    return Config.from_dict(obj.get("config") or {})


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
