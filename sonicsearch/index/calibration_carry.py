"""Carrying the no-match calibration over to a generation that changed few windows.

The calibration (calibration.py) searches hundreds of excerpts against the collection:
seconds on FAISS, tens of seconds over gRPC to a Milvus server (1,800 searches: 44 s on a
loaded 2-core machine), once per generation. An update that adds or removes a few files
of a large collection barely moves its thresholds (the 99th percentile of the best score
of a clip that is not in the collection): a sample changes only where a changed file is
sampled or becomes its best other file. So a generation whose files differ from the one
the calibration was measured on by at most CARRY_SHARE of the windows, counted over every
generation it was carried through, takes that calibration as it is, with ``carried``
(``from``, ``measured``, ``changed_windows``) saying so; past that share it is measured
again. Only an earlier generation still on disk can give one: a server keeps the
generation it serves while it opens the next.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sonicsearch.errors import IndexStoreError
from sonicsearch.index.layout import IndexLayout
from sonicsearch.index.store import Store

if TYPE_CHECKING:
    from sonicsearch.index.reader import IndexReader

CARRY_SHARE = 0.01  # windows changed (added + removed) since the measured generation


def carried(index: IndexReader, name: str, load: Callable[[Path], dict[str, Any] | None],
            valid: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The calibration of the newest earlier generation (its file ``name``, read with
    ``load`` and checked with ``valid``) for ``index``'s generation, when few windows
    changed between them (see the module docstring); None otherwise."""
    number = int(index.gen.name[4:])
    for gen in reversed(IndexLayout(index.root).generations()):
        if int(gen.name[4:]) >= number:
            continue
        data = load(gen / name)
        if data is None or not valid(data):
            continue
        before = data.get("carried", {})
        changed = int(before.get("changed_windows", 0)) + _changed_windows(gen, index)
        if changed > CARRY_SHARE * index.ntotal:
            return None
        return {**data, "vectors": index.ntotal, "generation": index.gen.name,
                "carried": {"from": gen.name, "measured": before.get("measured", gen.name),
                            "changed_windows": changed}}
    return None


def _changed_windows(gen: Path, index: IndexReader) -> int:
    """Windows of the files in one generation but not the other (by path and bytes)."""
    try:
        store = Store(gen)
        try:
            old = {(r.path, r.sha256): r.n_windows for r in store.records}
        finally:
            store.close()
    except (IndexStoreError, OSError):  # deleted or damaged meanwhile: count it all changed
        return index.ntotal + 1
    new = {(r.path, r.sha256): r.n_windows for r in index.store.records}
    return (sum(n for key, n in old.items() if key not in new)
            + sum(n for key, n in new.items() if key not in old))
