"""The Milvus backend (pymilvus): a Milvus server, or milvus-lite embedded in a local file.

One collection per generation, named ``<prefix>_gen_NNNNNN`` after the generation folder
(prefix: ``ss_`` + a hash of the index directory, so many indexes can share a server). A
build fills and loads the new collection completely before our atomic CURRENT swap names
it (through the generation's index.json); a killed build leaves an orphan collection that
the next successful build drops. After a commit every collection of the index but the live
generation's and the one before it is dropped: readers that opened the previous generation
keep working until the build after.

Rows: ``id`` (INT64, the window's row in meta.sqlite), ``vector`` (FLOAT_VECTOR, IP
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

import hashlib
import os
import time
import warnings
from collections.abc import Iterable
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
from sonicsearch.index.backends.milvus_params import (
    filter_expr,
    index_params,
    search_params,
    selection_expr,
)
from sonicsearch.index.codec import open_vectors, stored_dim

__all__ = ["MilvusBackend", "collection_name", "collection_prefix", "connect", "disconnect",
           "drop_stale", "filter_expr", "index_params", "local_uri", "resolve_uri",
           "search_params", "selection_expr"]

MAX_TOPK = 16_384  # Milvus answers at most this many neighbours per query
INSERT_ROWS = 5_000  # rows per insert call (keeps gRPC messages small)
MAX_PATH = 4_096
MAX_LABEL = 512
TOKEN_ENV = "SONICSEARCH_MILVUS_TOKEN"
_LITE_USERS: dict[str, int] = {}  # open clients per milvus-lite file in this process
DEFAULT_LITE_FILE = "milvus.db"  # milvus-lite file inside the index directory by default
ADD_ROWS = 50_000  # vectors read from vectors.npy per insert batch


def collection_prefix(index_root: str | Path) -> str:
    """``ss_`` + 12 hex digits of the index directory's absolute path."""
    digest = hashlib.sha256(str(Path(index_root).resolve()).encode()).hexdigest()
    return f"ss_{digest[:12]}"


def collection_name(index_root: str | Path, gen_name: str) -> str:
    """The collection of a generation: ``gen-000003`` -> ``ss_<hash>_gen_000003``."""
    return f"{collection_prefix(index_root)}_{gen_name.replace('-', '_')}"


def is_server(uri: str) -> bool:
    return "://" in uri


def connect(uri: str):
    """A MilvusClient for ``uri``.

    Raises:
        ConfigError: pymilvus (or milvus-lite for a file) is not installed.
        IndexStoreError: the server or file cannot be opened (a milvus-lite file is open in
            another process, or the server is unreachable).
    """
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise ConfigError("the milvus backend needs pymilvus: pip install "
                          "'sonicsearch[scale]' (or pymilvus milvus-lite)") from None
    kwargs = {"token": os.environ[TOKEN_ENV]} if is_server(uri) and TOKEN_ENV in os.environ \
        else {}
    if not is_server(uri):
        if not uri.endswith(".db"):
            raise ConfigError(f"a milvus-lite file must end in .db, got {uri}")
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        client = MilvusClient(uri, **kwargs)
    except Exception as exc:  # pymilvus raises its own types, or grpc / OS errors
        hint = ("another process may have it open (milvus-lite allows one); close it or use a "
                "Milvus server" if not is_server(uri) else "is the server running?")
        raise IndexStoreError(f"cannot open Milvus at {uri} ({_first_line(exc)}); {hint}") \
            from None
    if not is_server(uri):
        _LITE_USERS[os.path.abspath(uri)] = _LITE_USERS.get(os.path.abspath(uri), 0) + 1
    return client


def disconnect(client, uri: str) -> None:
    """Close a client from :func:`connect`; the last one of a milvus-lite file stops its
    embedded server, which releases the file for other processes."""
    client.close()
    if is_server(uri):
        return
    path = os.path.abspath(uri)
    _LITE_USERS[path] = _LITE_USERS.get(path, 1) - 1
    if _LITE_USERS[path] <= 0:
        del _LITE_USERS[path]
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
    return str(text).splitlines()[0][:160]


@BACKEND_REGISTRY.register("milvus")
class MilvusBackend:
    """One Milvus collection (one generation's windows)."""

    name = "milvus"
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
            ip = client.prepare_index_params()
            ip.add_index(field_name="vector", index_type=kind, metric_type="IP", params=build)
            client.create_collection(collection, schema=schema, index_params=ip)
        except IndexStoreError:
            raise
        except Exception as exc:
            disconnect(client, uri)
            raise IndexStoreError(f"cannot create Milvus collection {collection} at {uri} "
                                  f"({_first_line(exc)})") from None
        return cls(client, collection, dim, index_type, params, uri)

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
        return cls(client, collection, dim, index_type, params, uri)

    @property
    def ntotal(self) -> int:
        if self._count is None:
            res = self.client.query(self.collection, filter="", output_fields=["count(*)"],
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
        for a in range(0, len(ids), INSERT_ROWS):
            b = min(a + INSERT_ROWS, len(ids))
            f = fields.slice(a, b) if fields is not None else None
            rows = [{"id": int(ids[i]), "vector": vectors[i].tolist(),
                     "label": (f.label[i - a] or "") if f else "",
                     "folders": f.folders[i - a] if f else [],
                     "duration": float(f.duration[i - a]) if f else 0.0}
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
            expr = selection_expr(where)
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
        return scores, ids

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
        """The generation's collection, checked against ``counts`` (rows, files).

        Raises:
            IndexStoreError: unreachable, missing, or holding another number of vectors.
        """
        entry = meta["backend"]
        n_rows = counts[0]
        backend = cls.open(local_uri(entry["uri"], root), entry["collection"],
                           stored_dim(meta), meta["index_type"], meta["index_params"])
        if backend.ntotal != n_rows or n_rows != meta.get("counts", {}).get("vectors"):
            backend.close()
            raise IndexStoreError(f"index {root} is damaged: Milvus collection "
                                  f"{entry['collection']} and the metadata disagree on the "
                                  "number of vectors; pass --rebuild")
        return backend

    @classmethod
    def write_generation(cls, gen: Path, prev: tuple[Path, dict[str, Any]] | None,
                         records, plan: GenerationSpec) -> tuple[dict[str, Any], list[str]]:
        """Fill a collection for a new generation from its ``vectors.npy``; with
        ``same_index`` the previous generation's collection is named again instead.

        Raises:
            IndexStoreError: Milvus cannot be reached or refuses the rows.
        """
        root = gen.parent
        stored = resolve_uri(plan.uri, root)
        if plan.same_index and prev is not None:
            return dict(prev[1]["backend"]), []
        name = collection_name(root, gen.name)
        backend = cls.create(local_uri(stored, root), name, plan.dim, plan.index_type,
                             plan.params)
        try:
            vectors = open_vectors(gen)
            fields = WindowFields.of_records(records)
            for a in range(0, len(vectors), ADD_ROWS):
                b = min(a + ADD_ROWS, len(vectors))
                backend.add(vectors[a:b], np.arange(a, b), fields.slice(a, b))
            backend.commit()
            if backend.ntotal != len(vectors):
                raise IndexStoreError(f"Milvus collection {name} holds {backend.ntotal} rows "
                                      f"after inserting {len(vectors)}; run the build again")
        except IndexStoreError:
            raise
        except Exception as exc:  # pymilvus / grpc errors
            raise IndexStoreError(f"cannot fill Milvus collection {name} "
                                  f"({_first_line(exc)})") from None
        finally:
            backend.close()
        return {"name": cls.name, "uri": stored, "collection": name}, []

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
        every Milvus the two use. Failures only warn (the next build retries)."""
        keep = {e["collection"] for e in entries}
        dropped: list[str] = []
        for uri in dict.fromkeys(local_uri(e["uri"], root) for e in entries):
            try:
                dropped += drop_stale(uri, root, keep)
            except Exception as exc:  # noqa: BLE001 - clean-up is best effort after a commit
                warnings.warn(f"could not drop old Milvus collections at {uri}: {exc}",
                              stacklevel=3)
        return dropped


def resolve_uri(uri: str | None, index_root: str | Path) -> str:
    """The milvus uri to store in index.json: a server URL as is; a local file absolute, or
    relative to the index directory when it lies inside it (so the folder can move)."""
    root = Path(index_root).resolve()
    if not uri:
        return DEFAULT_LITE_FILE
    if "://" in uri:
        return uri
    path = Path(uri).expanduser().resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def local_uri(stored: str, index_root: str | Path) -> str:
    """A stored uri made usable: relative lite files are under the index directory."""
    if "://" in stored or Path(stored).is_absolute():
        return stored
    return str(Path(index_root).resolve() / stored)


def drop_stale(uri: str, index_root: str | Path, keep: Iterable[str]) -> list[str]:
    """Drop the index's collections at ``uri`` except ``keep``; returns the names dropped."""
    prefix, keep = collection_prefix(index_root) + "_gen_", set(keep)
    client = connect(uri)
    try:
        stale = [c for c in client.list_collections() if c.startswith(prefix) and c not in keep]
        for name in stale:
            client.drop_collection(name)
        return stale
    finally:
        disconnect(client, uri)
