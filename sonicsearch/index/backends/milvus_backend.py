"""The Milvus backend (pymilvus): a Milvus server, or milvus-lite embedded in a local file.

One live collection serves the generations of an index, named ``<prefix>_gen_NNNNNN``
after the generation that filled it (prefix: ``ss_`` + a hash of the index directory, so
many indexes can share a server). A build that adds, changes or removes files updates it
in place: it inserts only the windows of new and changed files and hides the removed
ones, each generation seeing its own rows through a filter (``born`` and hidden id
ranges; milvus_generations.py), so CURRENT's atomic swap switches readers from one
generation's rows to the next and a killed build leaves the live generation intact. A
build fills a new collection when there is none to update (first build, another place,
index type or build params, or too many hidden rows) and commits it the same way; a
killed build's half-filled collection is dropped by the next successful build. After a
commit every collection of the index but the live generation's and the one before it is
dropped, and rows hidden from both are deleted: readers that opened the previous
generation keep working until the build after.

Rows: ``id`` (INT64, stable: the generation's ``milvus-ids.npy`` maps its rows to ids),
``born`` (INT64, the generation that inserted the row), ``vector`` (FLOAT_VECTOR, IP
metric), and the scalar fields ``label`` (VARCHAR; ``""`` for an unlabelled file: a Milvus
2.3 server has no nullable fields and refuses a null, and our filters never ask for the
empty label), ``folders`` (ARRAY of VARCHAR: every folder the file lies under) and
``duration`` (DOUBLE, the file's seconds), so label / path-prefix / duration filters run
inside the search (:func:`filter_expr`). Collections written by milvus-lite before this
(label nullable, null for no label) answer the same filters unchanged.
A filtered search (:class:`Selection`) becomes one expression (:func:`selection_expr`):
id ranges when the allowed windows form few runs, else the conditions on those fields
(the expressions and index settings are in milvus_params.py).

Reads and writes: a server answers searches at bounded staleness (its default; a strong
read waits ~200 ms for the server's time tick), so the backend that wrote (added or
deleted) reads strongly from then on, and the row count is always read strongly; a
reader of a committed (flushed, indexed, loaded) collection searches at the default.

``uri``: ``http(s)://host:19530`` for a server (token from $SONICSEARCH_MILVUS_TOKEN), or a
local ``*.db`` path for milvus-lite, which one process at a time may open.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.errors import ConfigError, IndexStoreError
from sonicsearch.index.backends.base import (
    BACKEND_REGISTRY,
    MAX_FOLDERS,
    GenerationSpec,
    Selection,
    WindowFields,
)
from sonicsearch.index.backends.milvus_client import (
    DEFAULT_LITE_FILE,  # noqa: F401
    LITE_USERS,  # noqa: F401 - the tests count milvus-lite users here
    collection_name,
    collection_prefix,
    connect,
    disconnect,
    drop_stale,
    first_line,
    is_server,
    local_uri,
    resolve_uri,
)
from sonicsearch.index.backends.milvus_generations import (
    IDS_FILE,
    IdMap,
    Update,
    View,
    new_entry,
    plan_update,
    save_ids,
    shared_hidden,
)
from sonicsearch.index.backends.milvus_params import (
    filter_expr,
    index_params,
    ranges_expr,
    search_params,
    selection_expr,
)
from sonicsearch.index.codec import open_vectors, stored_dim
from sonicsearch.index.layout import damaged, link_or_copy

__all__ = ["MilvusBackend", "collection_name", "collection_prefix", "connect", "disconnect",
           "drop_stale", "filter_expr", "index_params", "local_uri", "resolve_uri",
           "search_params", "selection_expr"]

MAX_TOPK = 16_384  # Milvus answers at most this many neighbours per query
INSERT_ROWS = 5_000  # rows per insert call (keeps gRPC messages small)
MAX_PATH = 4_096
MAX_LABEL = 512
ADD_ROWS = 50_000  # vectors read from vectors.npy per insert batch


@BACKEND_REGISTRY.register("milvus")
class MilvusBackend:
    """One Milvus collection: a generation's view of it (born, hidden ids), or all of it."""

    name = "milvus"
    compact_index = False  # a collection keeps floats of its own; milvus-lite has no IVF_PQ
    FILES: tuple[str, ...] = ()  # the vectors live in Milvus, not in the generation folder
    max_k = MAX_TOPK
    on_gpu = False

    def __init__(self, client, collection: str, dim: int, index_type: str = "flat",
                 params: dict[str, Any] | None = None, uri: str = "", owns_client: bool = True):
        self.client, self.collection, self.d = client, collection, int(dim)
        self.index_type, self.params = index_type, params or {}
        self.uri, self._owns = uri, owns_client
        self._count: int | None = None
        self._wrote = False  # added or deleted: read strongly (see the module docstring)
        self.born: int | None = None  # the generation rows are inserted as (None: no field)
        self.view: View | None = None  # the rows of the collection this generation sees
        self.idmap: IdMap | None = None  # its window rows <-> the collection's ids

    @classmethod
    def create(cls, uri: str, collection: str, dim: int, index_type: str = "flat",
               params: dict[str, Any] | None = None) -> MilvusBackend:
        """Create an empty collection (an existing one of that name, a killed build's
        leftover, is dropped first)."""
        from pymilvus import DataType, MilvusClient

        kind, build = index_params(index_type, params or {"factory": "Flat"},
                                   lite=not is_server(uri))
        client = connect(uri)
        try:
            if client.has_collection(collection):
                client.drop_collection(collection)
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
            schema.add_field("label", DataType.VARCHAR, max_length=MAX_LABEL)
            schema.add_field("folders", DataType.ARRAY, element_type=DataType.VARCHAR,
                             max_capacity=MAX_FOLDERS, max_length=MAX_PATH)
            schema.add_field("duration", DataType.DOUBLE)
            schema.add_field("born", DataType.INT64)
            ip = client.prepare_index_params()
            ip.add_index(field_name="vector", index_type=kind, metric_type="IP", params=build)
            client.create_collection(collection, schema=schema, index_params=ip)
        except IndexStoreError:
            raise
        except Exception as exc:
            disconnect(client, uri)
            raise IndexStoreError(f"cannot create Milvus collection {collection} at {uri} "
                                  f"({first_line(exc)})") from None
        backend = cls(client, collection, dim, index_type, params, uri)
        backend.born = 0
        return backend

    @classmethod
    def open(cls, uri: str, collection: str, dim: int, index_type: str,
             params: dict[str, Any]) -> MilvusBackend:
        """Open (and load) an existing collection.

        Raises:
            IndexStoreError: it does not exist (dropped, or another server).
        """
        client = connect(uri)
        if not client.has_collection(collection):
            disconnect(client, uri)
            raise IndexStoreError(f"Milvus collection {collection} is missing at {uri}; "
                                  "pass --rebuild to build the index again")
        client.load_collection(collection)
        backend = cls(client, collection, dim, index_type, params, uri)
        fields = client.describe_collection(collection).get("fields", [])
        backend.born = 0 if any(f.get("name") == "born" for f in fields) else None
        return backend

    @property
    def ntotal(self) -> int:
        if self._count is None:
            view = self.view.expr() if self.view is not None else ""
            res = self.client.query(self.collection, filter=view, output_fields=["count(*)"],
                                    consistency_level="Strong")
            self._count = int(res[0]["count(*)"])
        return self._count

    def add(self, vectors: np.ndarray, ids: np.ndarray,
            fields: WindowFields | None = None) -> None:
        """Insert rows (in chunks); without ``fields`` the scalar fields are empty."""
        vectors = np.asarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, np.int64)
        if len(vectors) != len(ids) or (fields is not None and len(fields) != len(ids)):
            raise ValueError(f"{len(vectors)} vectors, {len(ids)} ids and "
                             f"{len(fields) if fields else 0} field rows must agree")
        born = {"born": self.born} if self.born is not None else {}
        for a in range(0, len(ids), INSERT_ROWS):
            b = min(a + INSERT_ROWS, len(ids))
            f = fields.slice(a, b) if fields is not None else None
            rows = [{"id": int(ids[i]), "vector": vectors[i].tolist(),
                     "label": (f.label[i - a] or "") if f else "",
                     "folders": f.folders[i - a] if f else [],
                     "duration": float(f.duration[i - a]) if f else 0.0,
                     **born}
                    for i in range(a, b)]
            self.client.insert(self.collection, rows)
        self._count, self._wrote = None, True

    def delete(self, ids: np.ndarray) -> int:
        """Delete rows by id; returns the number Milvus reports."""
        ids = [int(i) for i in np.asarray(ids, np.int64)]
        if not ids:
            return 0
        res = self.client.delete(self.collection, ids=ids)
        self._count, self._wrote = None, True
        return int(res.get("delete_count", len(ids)) if isinstance(res, dict) else len(res))

    def search(self, vectors: np.ndarray, k: int, where: Selection | None = None,
               expr: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product (k capped at Milvus's 16384), padded with id -1, among
        the windows ``where`` allows (or that pass the Milvus expression ``expr``)."""
        if where is not None:
            expr = selection_expr(where, self.idmap.ids if self.idmap is not None else None)
        if self.view is not None:
            expr = f"({self.view.expr()}) and ({expr})" if expr else self.view.expr()
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        kk = max(1, min(int(k), MAX_TOPK))
        scores = np.full((len(x), k), -np.finfo(np.float32).max, np.float32)
        ids = np.full((len(x), k), -1, np.int64)
        strong = {"consistency_level": "Strong"} if self._wrote else {}
        res = self.client.search(
            self.collection, data=x.tolist(), limit=kk, filter=expr or "",
            output_fields=["id"], **strong,
            search_params={"metric_type": "IP",
                           "params": search_params(self.index_type, self.params, kk)})
        for q, hits in enumerate(res):
            for j, hit in enumerate(hits):
                ids[q, j], scores[q, j] = int(hit["id"]), float(hit["distance"])
        return scores, (ids if self.idmap is None else self.idmap.rows(ids))

    def delete_where(self, expr: str) -> None:
        """Delete the rows passing a Milvus expression (``born > 3``, id ranges)."""
        if expr:
            self.client.delete(self.collection, filter=expr)
            self._count, self._wrote = None, True

    def commit(self, timeout: float = 24 * 3600) -> None:
        """Make the inserts durable and searchable: flush, wait until the vector index
        covers every row (Milvus builds it in the background), then load.

        Raises:
            IndexStoreError: the index is not built within ``timeout`` seconds.
        """
        self.client.flush(self.collection)
        deadline = time.monotonic() + timeout
        while True:
            info = self.client.describe_index(self.collection, "vector")
            if not int(info.get("pending_index_rows", 0) or 0):
                break
            if time.monotonic() > deadline:
                raise IndexStoreError(f"Milvus is still indexing {self.collection} after "
                                      f"{timeout:.0f} s")
            time.sleep(0.2)
        self.client.load_collection(self.collection)
        self._count = None

    def close(self) -> None:
        if self.client is not None and self._owns:
            disconnect(self.client, self.uri)
        self.client = None

    # -- one generation ------------------------------------------------------------------

    @classmethod
    def check_uri(cls, uri: str | None) -> None:
        if uri and "://" not in uri and not uri.endswith(".db"):
            raise ConfigError(f"--uri {uri}: a milvus-lite file must end in .db (or give a "
                              "server, http://host:19530)")

    @classmethod
    def open_generation(cls, root: Path, gen: Path, meta: dict[str, Any],
                        counts: tuple[int, int], device: str = "auto",
                        nprobe: int | None = None, ef_search: int | None = None
                        ) -> MilvusBackend:
        """The generation's view of its collection, checked against ``counts`` (rows,
        files).

        Raises:
            IndexStoreError: unreachable, missing, or holding another number of vectors.
        """
        entry = meta["backend"]
        n_rows = counts[0]
        backend = cls.open(local_uri(entry["uri"], root), entry["collection"],
                           stored_dim(meta), meta["index_type"], meta["index_params"])
        backend.view = View.of(entry)
        if backend.view is not None:
            backend.idmap = IdMap.load(gen)
            if backend.idmap is None or len(backend.idmap.ids) != n_rows:
                backend.close()
                raise damaged(gen, IDS_FILE, "is missing or does not match the windows")
        if backend.ntotal != n_rows or n_rows != meta.get("counts", {}).get("vectors"):
            backend.close()
            raise IndexStoreError(f"index {root} is damaged: Milvus collection "
                                  f"{entry['collection']} and the metadata disagree on the "
                                  "number of vectors; pass --rebuild")
        return backend

    @classmethod
    def write_generation(cls, gen: Path, prev: tuple[Path, dict[str, Any]] | None,
                         records, plan: GenerationSpec) -> tuple[dict[str, Any], list[str]]:
        """Index a new generation: update the live collection in place (insert the new and
        changed files' windows, hide the removed ones) or fill a new collection from
        ``vectors.npy`` (milvus_generations.py says when); with ``same_index`` the previous
        generation's entry is named again.

        Raises:
            IndexStoreError: Milvus cannot be reached or refuses the rows.
        """
        root = gen.parent
        stored = resolve_uri(plan.uri, root)
        if plan.same_index and prev is not None:
            if not (prev[0] / IDS_FILE).is_file():
                return dict(prev[1]["backend"]), []
            link_or_copy(prev[0] / IDS_FILE, gen / IDS_FILE)
            return dict(prev[1]["backend"]), [IDS_FILE]
        update = plan_update(gen, prev, records, plan, stored)
        if update is None:
            name = collection_name(root, gen.name)
            backend = cls.create(local_uri(stored, root), name, plan.dim, plan.index_type,
                                 plan.params)
            entry = new_entry(stored, name, gen, sum(r.n_windows for r in records))
            ids, rows, insert = None, None, records
        else:
            entry = update.entry
            backend = cls.open(local_uri(stored, root), entry["collection"], plan.dim,
                               plan.index_type, plan.params)
            ids, rows, insert = update.ids, update.insert_rows, update.insert
        backend.born = entry["generation"]
        try:
            n_rows = _fill(backend, gen, insert, rows, ids, update)
            save_ids(gen, ids if ids is not None else np.arange(n_rows))
        except IndexStoreError:
            raise
        except Exception as exc:  # pymilvus / grpc errors
            raise IndexStoreError(f"cannot fill Milvus collection {backend.collection} "
                                  f"({first_line(exc)})") from None
        finally:
            backend.close()
        return entry, []

    @classmethod
    def kept_uri(cls, entry: dict[str, Any], index_dir: Path) -> str:
        """The stored uri as the build's option: a server as is, a lite file under
        ``index_dir`` when relative."""
        stored = entry["uri"]
        return stored if "://" in stored else str(index_dir / stored)

    @classmethod
    def same_place(cls, entry: dict[str, Any], uri: str | None, root: Path) -> bool:
        return entry["uri"] == resolve_uri(uri, root)

    @classmethod
    def after_commit(cls, root: Path, entries: list[dict[str, Any]]) -> list[str]:
        """Drop the index's collections but the live and the previous generation's, on
        every Milvus the two use, and delete the rows both of them hide. Failures only
        warn (the next build retries)."""
        keep = {e["collection"] for e in entries}
        dropped: list[str] = []
        for uri in dict.fromkeys(local_uri(e["uri"], root) for e in entries):
            try:
                dropped += drop_stale(uri, root, keep)
                if len(entries) == 2 and (gone := shared_hidden(*entries)):
                    live = entries[0]
                    backend = cls(connect(uri), live["collection"], 0, uri=uri)
                    try:
                        backend.delete_where(ranges_expr(gone))
                    finally:
                        backend.close()
            except Exception as exc:  # noqa: BLE001 - clean-up is best effort after a commit
                warnings.warn(f"could not drop old Milvus collections at {uri}: {exc}",
                              stacklevel=3)
        return dropped


def _fill(backend: MilvusBackend, gen: Path, records, rows: np.ndarray | None,
          ids: np.ndarray | None, update: Update | None) -> int:
    """Insert the windows of ``records`` (``rows`` of ``gen/vectors.npy``, all of them when
    None) as ``ids`` (rows when None), after an update's deletes; commit and check the
    generation's row count. Returns the generation's rows."""
    if update is not None:  # never a row the live generation or the one before it sees
        backend.delete_where(f"born > {update.orphans_above}")
        backend.delete_where(ranges_expr(update.purge))
    vectors = open_vectors(gen)
    rows = np.arange(len(vectors)) if rows is None else rows
    ids = np.arange(len(vectors)) if ids is None else ids
    fields = WindowFields.of_records(records)
    for a in range(0, len(rows), ADD_ROWS):
        take = rows[a : a + ADD_ROWS]
        backend.add(vectors[take], ids[take], fields.slice(a, a + len(take)))
    backend.commit()
    backend.view = View.of({"generation": backend.born, "hidden": (update.entry["hidden"]
                                                                   if update else [])})
    if backend.ntotal != len(vectors):
        raise IndexStoreError(f"Milvus collection {backend.collection} shows "
                              f"{backend.ntotal} rows to generation {gen.name} after the "
                              f"inserts, not {len(vectors)}; run the build again")
    return len(vectors)
