"""GTZAN with the fault-filtered, artist-aware split (Kereliuk, Sturm & Larsen 2015).

GTZAN's 1000 clips include repeats, mislabelings and distortions (Sturm 2013), and a random
split puts the same artist or recording on both sides, which inflates accuracy. The lists
shipped in ``sonicsearch/data/gtzan/`` keep 930 clips: 443 train, 197 validation, 290 test,
one ``genre/genre.NNNNN.wav`` per line. :func:`make_gtzan_csv` turns them into a DATA CSV
``path,label,split`` for a GTZAN copy on disk (GTZAN itself is not shipped).
"""

from __future__ import annotations

import csv
import os
import tempfile
from importlib import resources
from pathlib import Path

from sonicsearch.errors import DataError

LISTS = {"train": "train_filtered.txt", "val": "valid_filtered.txt", "test": "test_filtered.txt"}
GENRE_FOLDERS = ("genres", "genres_original", "Data/genres_original")  # common layouts
SHOW_MISSING = 5


def gtzan_split() -> list[tuple[str, str, str]]:
    """The fault-filtered split: ``(relative path, genre, split)`` for each of the 930 clips,
    in list order (train, then val, then test)."""
    rows = []
    folder = resources.files("sonicsearch.data").joinpath("gtzan")
    for split, name in LISTS.items():
        for line in folder.joinpath(name).read_text(encoding="utf-8").splitlines():
            rel = line.strip()
            if rel:
                rows.append((rel, rel.split("/", 1)[0], split))
    return rows


def find_genres_folder(root: str | Path) -> Path:
    """The folder holding GTZAN's genre sub-folders: ``root`` itself, or one of the usual
    sub-folders (``genres/``, Kaggle's ``genres_original/``).

    Raises:
        DataError: no ``blues/`` sub-folder in any of them.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no such folder: {root}")
    for candidate in (root, *(root / g for g in GENRE_FOLDERS)):
        if (candidate / "blues").is_dir():
            return candidate
    raise DataError(f"{root} does not look like GTZAN: no blues/ folder in it or in "
                    f"{', '.join(g + '/' for g in GENRE_FOLDERS)}")


def make_gtzan_csv(root: str | Path, out: str | Path) -> dict:
    """Write the fault-filtered split of the GTZAN copy at ``root`` as a DATA CSV.

    Paths are written relative to the CSV's folder when the clips lie under it (the CSV
    then works as is); otherwise they are absolute, and reading the CSV needs
    ``--allow-external-paths``.

    Args:
        root: GTZAN's ``genres/`` folder (with ``blues/``, ``classical/``, ...) or a folder
            above it (see :data:`GENRE_FOLDERS`).
        out: the CSV to write (``path,label,split``; split is train/val/test), atomically.

    Returns:
        ``{"path", "genres_folder", "files", "splits": {split: n}, "external_paths"}``.

    Raises:
        DataError: not a GTZAN folder, or listed files missing (how many, and the first few).
    """
    genres = find_genres_folder(root).resolve()
    rows = gtzan_split()
    missing = [rel for rel, _, _ in rows if not (genres / rel).is_file()]
    if missing:
        first = ", ".join(missing[:SHOW_MISSING])
        more = f" and {len(missing) - SHOW_MISSING} more" if len(missing) > SHOW_MISSING else ""
        raise DataError(f"{len(missing)} of the {len(rows)} files of the fault-filtered split "
                        f"are missing under {genres}: {first}{more}")
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise DataError(f"{out}: the output must be a .csv file")
    base = out.parent.resolve()
    base.mkdir(parents=True, exist_ok=True)
    external = not genres.is_relative_to(base)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=base)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label", "split"])
            for rel, genre, split in rows:
                p = genres / rel
                w.writerow([str(p) if external else p.relative_to(base).as_posix(), genre, split])
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    counts = {s: sum(r[2] == s for r in rows) for s in LISTS}
    return {"path": str(out), "genres_folder": str(genres), "files": len(rows),
            "splits": counts, "external_paths": external}
