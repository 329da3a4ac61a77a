"""Generations of one live Milvus collection: stable window ids, the rows each generation
sees, and the in-place update that inserts only the windows of new and changed files.

Every row carries a stable ``id`` (never reused) and ``born``, the generation that
inserted it. A generation's ``milvus-ids.npy`` gives the id of each of its window rows
(meta.sqlite renumbers rows at every build; the ids stay). A generation G sees the rows
with ``born <= G`` but its ``hidden`` id ranges (files removed or changed, whose rows
are not deleted yet), as its index.json entry says::

    "backend": {"name": "milvus", "uri": ..., "collection": "ss_<hash>_gen_000001",
                "generation": 7, "next_id": 120400,
                "hidden": [[a, b], ...], "removed": [[a, b], ...]}

An update (a build of G from the live generation P) never touches a row that P or the
generation before it sees:

  1. it deletes the rows of killed builds (``born > P``) and the rows nobody sees (P's
     hidden ranges but those P itself removed);
  2. it inserts the windows of new and changed files, ``born = G``, with fresh ids;
  3. its entry hides the ids of the files it removed or changed (``removed``) besides
     P's, and the atomic CURRENT swap switches readers from P's view to G's.

After the commit, rows hidden in both the live and the previous generation are deleted
(``MilvusBackend.after_commit``). A build killed at any point leaves P and the generation
before it answering exactly as before; the next build deletes what it left.

A build fills a new collection instead (ids = rows, as before) when there is no live
collection to update (first build; another place, index type or build params; a
collection from before ``born``) or when the hidden rows would pass MAX_HIDDEN_RUNS id
ranges or MAX_HIDDEN_SHARE of the collection: a new collection compacts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.index.backends.base import GenerationSpec
from sonicsearch.index.backends.milvus_params import id_runs, ranges_expr
from sonicsearch.index.codec import same_space, stored_dim
from sonicsearch.index.layout import fsync_file
from sonicsearch.index.store import Store
from sonicsearch.index.types import FileRecord

IDS_FILE = "milvus-ids.npy"  # per generation: the collection's id of each window row
MAX_HIDDEN_RUNS = 256  # id ranges one generation may hide (each is a term of its filter)
MAX_HIDDEN_SHARE = 0.25  # rows hidden but not yet deleted, as a share of the collection
SEARCH_ONLY = ("nprobe", "ef_search")  # params applied at search time, not in the index

Runs = list[tuple[int, int]]


def generation_number(gen: Path) -> int:
    """``gen-000007`` -> 7."""
    return int(gen.name.rsplit("-", 1)[1])


def expand(runs: Runs) -> np.ndarray:
    """The ids of ``runs``."""
    if not runs:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in runs])


def _runs(entry: dict[str, Any], key: str) -> Runs:
    return [(int(a), int(b)) for a, b in entry.get(key, ())]


@dataclass(frozen=True)
class View:
    """The rows of a live collection that one generation sees."""

    generation: int  # rows born in it or before
    hidden: tuple[tuple[int, int], ...] = ()  # but these id ranges

    @classmethod
    def of(cls, entry: dict[str, Any]) -> View | None:
        """A generation's view; None for a collection of its own (from before ``born``)."""
        if "generation" not in entry:
            return None
        return cls(int(entry["generation"]), tuple(_runs(entry, "hidden")))

    def expr(self) -> str:
        """The view as a Milvus expression."""
        if not self.hidden:
            return f"born <= {self.generation}"
        return f"born <= {self.generation} and not ({ranges_expr(self.hidden)})"


class IdMap:
    """A generation's window rows and the collection's ids, both ways."""

    def __init__(self, ids: np.ndarray):
        self.ids = np.asarray(ids, np.int64)
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted = self.ids[self._order]

    @classmethod
    def load(cls, gen: Path) -> IdMap | None:
        path = gen / IDS_FILE
        return cls(np.load(path)) if path.is_file() else None

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The rows of ``ids``; -1 (padding, or an id outside the generation) stays -1."""
        ids = np.asarray(ids, np.int64)
        if not len(self._sorted):
            return np.full(ids.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        return np.where((ids >= 0) & (self._sorted[pos] == ids), self._order[pos], -1)


def save_ids(gen: Path, ids: np.ndarray) -> None:
    """Write a generation's ``milvus-ids.npy`` (fsynced)."""
    with open(gen / IDS_FILE, "wb") as f:
        np.save(f, np.asarray(ids, np.int64))
    fsync_file(gen / IDS_FILE)


def new_entry(stored: str, collection: str, gen: Path, n_rows: int) -> dict[str, Any]:
    """The entry of a freshly filled collection: ids are rows, nothing hidden."""
    return {"name": "milvus", "uri": stored, "collection": collection,
            "generation": generation_number(gen), "next_id": int(n_rows),
            "hidden": [], "removed": []}


@dataclass
class Update:
    """What an in-place update does to the live collection (see the module docstring)."""

    ids: np.ndarray  # the new generation's id of each window row
    insert: list[FileRecord]  # the files whose windows are inserted, in row order
    purge: Runs  # ids nobody sees any more: deleted first
    orphans_above: int  # rows born after this generation are a killed build's
    entry: dict[str, Any]  # the new generation's index.json entry

    @property
    def insert_rows(self) -> np.ndarray:
        """The new generation's rows to insert (those of ``insert``)."""
        if not self.insert:
            return np.zeros(0, np.int64)
        return np.concatenate([np.arange(r.first_row, r.first_row + r.n_windows)
                               for r in self.insert])


def plan_update(gen: Path, prev: tuple[Path, dict[str, Any]] | None,
                records: list[FileRecord], spec: GenerationSpec, stored: str
                ) -> Update | None:
    """The in-place update of the previous generation's collection that gives ``records``;
    None when a new collection is to be filled instead."""
    if (prev is None or not _updatable(prev[1], spec, stored)
            or not same_space(prev[0], gen)):  # a new projection: every row changes
        return None
    old_map = IdMap.load(prev[0])
    if old_map is None:
        return None
    store = Store(prev[0])
    try:
        old = {r.path: r for r in store.records}
    finally:
        store.close()
    entry = prev[1]["backend"]
    next_id = int(entry["next_id"])
    ids = np.empty(sum(r.n_windows for r in records), np.int64)
    kept = np.zeros(len(old_map.ids), bool)
    insert: list[FileRecord] = []
    for rec in records:
        rows = slice(rec.first_row, rec.first_row + rec.n_windows)
        was = old.get(rec.path)
        if was is not None and (was.sha256, was.n_windows) == (rec.sha256, rec.n_windows):
            old_rows = slice(was.first_row, was.first_row + was.n_windows)
            ids[rows], kept[old_rows] = old_map.ids[old_rows], True
        else:  # new or changed: fresh ids
            ids[rows] = np.arange(next_id, next_id + rec.n_windows)
            next_id += rec.n_windows
            insert.append(rec)
    removed = id_runs(old_map.ids[~kept])
    old_hidden, old_removed = _runs(entry, "hidden"), _runs(entry, "removed")
    hidden = id_runs(np.concatenate([expand(old_removed), expand(removed)]))
    n_hidden = int(sum(b - a for a, b in hidden))
    if len(hidden) > MAX_HIDDEN_RUNS or n_hidden > MAX_HIDDEN_SHARE * (len(ids) + n_hidden):
        return None
    purge = id_runs(np.setdiff1d(expand(old_hidden), expand(old_removed)))
    new = {**entry, "generation": generation_number(gen), "next_id": next_id,
           "hidden": [list(r) for r in hidden], "removed": [list(r) for r in removed]}
    return Update(ids, insert, purge, int(entry["generation"]), new)


def _updatable(meta: dict[str, Any], spec: GenerationSpec, stored: str) -> bool:
    """Whether the previous generation's collection can take this build's rows."""
    entry = meta["backend"]
    return (entry.get("name") == "milvus" and "generation" in entry
            and entry.get("uri") == stored and stored_dim(meta) == spec.dim
            and meta["index_type"] == spec.index_type
            and _build_params(meta["index_params"]) == _build_params(spec.params))


def _build_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in SEARCH_ONLY}


def shared_hidden(live: dict[str, Any], prev: dict[str, Any]) -> Runs:
    """Ids hidden in both generations of one collection: no reader of either sees them."""
    if live.get("collection") != prev.get("collection") or View.of(prev) is None:
        return []
    return id_runs(np.intersect1d(expand(_runs(live, "hidden")), expand(_runs(prev, "hidden"))))
