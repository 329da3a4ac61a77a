"""Labelled data: a folder with one sub-folder per label, or a CSV ``path,label[,split]``.

A split is made per file, stratified by label and seeded, so that no window of a test file
is ever trained on; it is written beside the run as ``split.csv``.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sonicsearch.audio import SILENCE_PEAK, audio_info, find_audio_files, iter_blocks, too_short
from sonicsearch.errors import AudioError, DataError

SPLITS = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test"}


@dataclass(frozen=True)
class Item:
    """One labelled file."""

    path: Path
    label: str
    split: str | None = None
    duration: float = 0.0


@dataclass
class Dataset:
    """A labelled collection: items, sorted label names, and the files skipped with reasons."""

    root: Path
    items: list[Item]
    labels: list[str]
    skipped: list[tuple[str, str]]
    given_split: bool = False  # the split came from the CSV, not from assign_split

    def split(self, name: str) -> list[Item]:
        return [it for it in self.items if it.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{label: {split: files}}``, for the class-count report."""
        table = {label: dict.fromkeys(SPLITS, 0) for label in self.labels}
        for it in self.items:
            table[it.label][it.split or "train"] += 1
        return table


def read_items(data: str | Path, allow_external_paths: bool = False) -> tuple[Path, list[Item]]:
    """List the labelled files of DATA (a label-per-folder tree or a CSV), unchecked.

    Args:
        data: a folder with one sub-folder per label, or a CSV with columns path,label[,split].
        allow_external_paths: let CSV rows name absolute paths or paths outside its folder.

    Returns:
        ``(root, items)``; CSV paths are resolved against the CSV's folder.

    Raises:
        DataError: DATA missing, an empty folder, a malformed CSV or a path escaping it.
    """
    data = Path(data)
    if not data.exists():
        raise DataError(f"no such dataset: {data}")
    if data.is_dir():
        return data, _read_folder(data)
    if data.suffix.lower() != ".csv":
        raise DataError(f"{data}: DATA must be a folder of label folders or a .csv file")
    return data.parent, _read_csv(data, allow_external_paths)


def _read_folder(root: Path) -> list[Item]:
    """One item per real file: a file reached twice (symlinks) under one label counts once;
    under two labels it is an error, since it cannot be both."""
    items = []
    seen: dict[str, Item] = {}
    labels = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for label_dir in labels:
        for path in find_audio_files([label_dir]):
            real = os.path.realpath(path)
            first = seen.get(real)
            if first is not None and first.label != label_dir.name:
                raise DataError(f"{path} and {first.path} are the same file under labels "
                                f"'{first.label}' and '{label_dir.name}'; keep it in one label "
                                "folder")
            if first is None:
                seen[real] = Item(path, label_dir.name)
                items.append(seen[real])
    if not items:
        raise DataError(f"{root}: no audio files in label sub-folders (expected ROOT/LABEL/*.wav)")
    return items


def _read_csv(path: Path, allow_external: bool) -> list[Item]:
    root = path.parent.resolve()
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from None
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise DataError(f"{path}: the CSV needs a header with columns path,label[,split]")
    items = []
    first: dict[str, tuple[int, str]] = {}  # real path -> (CSV line, label)
    for line, row in enumerate(rows, start=2):
        raw, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not raw or not label:
            raise DataError(f"{path}:{line}: empty path or label")
        p = Path(raw)
        full = (p if p.is_absolute() else root / p).resolve()
        if not allow_external and (p.is_absolute() or not full.is_relative_to(root)):
            where = "absolute" if p.is_absolute() else "outside the CSV's folder"
            raise DataError(
                f"{path}:{line}: path '{raw}' is {where}; "
                "use paths relative to the CSV's folder, or pass --allow-external-paths"
            )
        split = (row.get("split") or "").strip().lower() or None
        if split is not None and split not in _SPLIT_ALIASES:
            raise DataError(f"{path}:{line}: unknown split '{split}'; use train, val or test")
        real = os.path.realpath(full)
        if real in first:
            seen_line, seen_label = first[real]
            what = (f"under labels '{seen_label}' and '{label}'" if seen_label != label
                    else "twice")
            raise DataError(f"{path}: lines {seen_line} and {line} list the same file "
                            f"'{raw}' {what}; list each file once, with one label")
        first[real] = (line, label)
        items.append(Item(full, label, _SPLIT_ALIASES.get(split) if split else None))
    return items


def check_items(
    items: list[Item], min_seconds: float = 0.5, workers: int = 2, full_decode: bool = True
) -> tuple[list[Item], list[tuple[str, str]]]:
    """Keep the usable files and record their duration; the others are returned with reasons.

    With ``full_decode`` every file is decoded once (streaming, flat memory) so that a file
    corrupt in the middle, silent throughout or too short is caught before training.
    """

    def check(it: Item) -> Item | tuple[str, str]:
        try:
            info = audio_info(it.path)
            if info.duration < min_seconds:
                raise AudioError(it.path, too_short(info.duration, min_seconds))
            if full_decode:
                peak = 0.0
                for block, _ in iter_blocks(it.path, None, block_seconds=120.0):
                    peak = max(peak, float(np.abs(block).max(initial=0.0)))
                if peak < SILENCE_PEAK:
                    raise AudioError(it.path, "silent (peak below -80 dBFS)")
            return replace(it, duration=info.duration)
        except AudioError as exc:
            return (exc.path, exc.reason)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(check, items))
    good = [r for r in results if isinstance(r, Item)]
    bad = [r for r in results if not isinstance(r, Item)]
    return good, bad


def assign_split(
    items: list[Item], val_fraction: float, test_fraction: float, seed: int
) -> list[Item]:
    """Give every item a split: keep a CSV's split column, else a seeded stratified split.

    Raises:
        DataError: a label with too few files to have one in each split (names them), or
            a given split without training files for some label.
    """
    if all(it.split is not None for it in items):
        missing = sorted({it.label for it in items} - {it.label for it in items
                                                        if it.split == "train"})
        if missing:
            raise DataError(f"no training files for label(s): {', '.join(missing)}")
        return items
    if any(it.split is not None for it in items):
        raise DataError("the split column is filled for some rows but not others")
    by_label: dict[str, list[Item]] = {}
    for it in sorted(items, key=lambda i: (i.label, str(i.path))):
        by_label.setdefault(it.label, []).append(it)
    need = 1 + (val_fraction > 0) + (test_fraction > 0)
    small = sorted(f"{lab} ({len(v)})" for lab, v in by_label.items() if len(v) < need)
    if small:
        raise DataError(
            f"too few files to split for label(s): {', '.join(small)}; each label needs at "
            f"least {need} files (one per split), or give a split column in a CSV"
        )
    rng = np.random.default_rng(seed)
    out = []
    for label in sorted(by_label):
        files = by_label[label]
        order = rng.permutation(len(files))
        n = len(files)
        n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
        n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
        while n - n_test - n_val < 1:  # keep at least one training file
            if n_val >= n_test and n_val > 1:
                n_val -= 1
            else:
                n_test -= 1
        for rank, idx in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            out.append(replace(files[idx], split=split))
    return sorted(out, key=lambda i: (i.label, str(i.path)))


def load_dataset(
    data: str | Path,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    min_seconds: float = 0.5,
    allow_external_paths: bool = False,
    full_decode: bool = True,
) -> Dataset:
    """Read, check and split DATA (docs/formats.md). Bad files are skipped, listed in ``skipped``.

    Raises:
        DataError: as :func:`read_items` and :func:`assign_split`; or no usable file at all.
    """
    root, items = read_items(data, allow_external_paths)
    good, skipped = check_items(items, min_seconds, full_decode=full_decode)
    if not good:
        raise DataError(f"{data}: none of the {len(items)} files is usable")
    given = all(it.split is not None for it in good)
    good = assign_split(good, val_fraction, test_fraction, seed)
    labels = sorted({it.label for it in good})
    if len(labels) < 2:
        raise DataError(f"{data}: need at least 2 labels, found {len(labels)}")
    return Dataset(Path(root), good, labels, skipped, given)


def split_csv_text(dataset: Dataset) -> str:
    """The ``path,label,split`` CSV of a dataset, paths relative to its root where possible."""
    import io

    root = dataset.root.resolve()
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "split"])
    for it in dataset.items:
        p = it.path.resolve()
        rel = p.relative_to(root) if p.is_relative_to(root) else p
        w.writerow([rel.as_posix() if not rel.is_absolute() else str(rel), it.label, it.split])
    return buf.getvalue()


def write_split(dataset: Dataset, path: str | Path) -> None:
    """Write ``path,label,split`` with paths relative to the dataset root where possible."""
    Path(path).write_text(split_csv_text(dataset), encoding="utf-8", newline="")


def read_split(path: str | Path, root: str | Path) -> dict[str, str]:
    """``{resolved path: split}`` from a run's split.csv, resolved against the data root."""
    out = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            p = Path(row["path"])
            out[os.path.realpath(p if p.is_absolute() else Path(root) / p)] = row["split"]
    return out


def class_count_table(dataset: Dataset) -> str:
    """A small text table of files per label and split."""
    counts = dataset.counts()
    width = max(5, *(len(lab) for lab in counts))
    lines = [f"{'label':<{width}}  {'train':>5}  {'val':>5}  {'test':>5}"]
    for label, c in counts.items():
        lines.append(f"{label:<{width}}  {c['train']:>5}  {c['val']:>5}  {c['test']:>5}")
    total = Counter(it.split for it in dataset.items)
    lines.append(f"{'total':<{width}}  {total['train']:>5}  {total['val']:>5}  {total['test']:>5}")
    return "\n".join(lines)
