"""The Milvus backend (pymilvus): a Milvus server, or milvus-lite embedded in a local file.

One collection per generation, named ``<prefix>_gen_NNNNNN`` after the generation folder
(prefix: ``ss_`` + a hash of the index directory, so many indexes can share a server). A
build fills and loads the new collection completely before our atomic CURRENT swap names
it (through the generation's index.json); a killed build leaves an orphan collection that
the next successful build drops. After a commit every collection of the index but the live
generation's and the one before it is dropped: readers that opened the previous generation
keep working until the build after.

Rows: ``id`` (INT64, the window's row in meta.sqlite), ``vector`` (FLOAT_VECTOR, IP
metric), and the scalar fields ``label`` (VARCHAR, nullable), ``folders`` (ARRAY of
VARCHAR: every folder the file lies under) and ``duration`` (DOUBLE, the file's seconds),
so label / path-prefix / duration filters run inside the search (:func:`filter_expr`).

``uri``: ``http(s)://host:19530`` for a server (token from $SONICSEARCH_MILVUS_TOKEN), or a
local ``*.db`` path for milvus-lite, which one process at a time may open.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.errors import ConfigError, IndexStoreError
from sonicsearch.index.backends.base import BACKEND_REGISTRY, MAX_FOLDERS, WindowFields

MAX_TOPK = 16_384  # Milvus answers at most this many neighbours per query
INSERT_ROWS = 5_000  # rows per insert call (keeps gRPC messages small)
MAX_PATH = 4_096
MAX_LABEL = 512
TOKEN_ENV = "SONICSEARCH_MILVUS_TOKEN"
_LITE_USERS: dict[str, int] = {}  # open clients per milvus-lite file in this process
_INDEX = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT", "ivfpq": "IVF_PQ"}


def collection_prefix(index_root: str | Path) -> str:
    """``ss_`` + 12 hex digits of the index directory's absolute path."""
    digest = hashlib.sha256(str(Path(index_root).resolve()).encode()).hexdigest()
    return f"ss_{digest[:12]}"


def collection_name(index_root: str | Path, gen_name: str) -> str:
    """The collection of a generation: ``gen-000003`` -> ``ss_<hash>_gen_000003``."""
    return f"{collection_prefix(index_root)}_{gen_name.replace('-', '_')}"


def is_server(uri: str) -> bool:
    return "://" in uri


def index_params(index_type: str, params: dict[str, Any],
                 lite: bool = False) -> tuple[str, dict[str, Any]]:
    """Our index type and params -> Milvus index type and build params.

    Raises:
        ConfigError: an unknown type, or IVF-PQ on milvus-lite (which lacks it).
    """
    if index_type not in _INDEX:
        raise ConfigError(f"unknown index type '{index_type}' for milvus; choose one of: "
                          f"{', '.join(_INDEX)}")
    if lite and index_type == "ivfpq":
        raise ConfigError("milvus-lite has no IVF_PQ index: use --index-type flat, hnsw or "
                          "ivf, or a Milvus server (--uri http://host:19530)")
    if index_type == "hnsw":
        return "HNSW", {"M": int(params["M"]), "efConstruction": int(params["ef_construction"])}
    if index_type == "ivf":
        return "IVF_FLAT", {"nlist": int(params["nlist"])}
    if index_type == "ivfpq":
        return "IVF_PQ", {"nlist": int(params["nlist"]), "m": int(params["pq_m"]),
                          "nbits": int(params.get("pq_nbits", 8))}
    return "FLAT", {}


def search_params(index_type: str, params: dict[str, Any], k: int) -> dict[str, Any]:
    """Milvus search params: ef (>= k) for HNSW, nprobe for IVF."""
    if index_type == "hnsw":
        return {"ef": max(int(params["ef_search"]), k)}
    if index_type in ("ivf", "ivfpq"):
        return {"nprobe": int(params["nprobe"])}
    return {}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def filter_expr(labels: Iterable[str] | None = None, path_prefix: str | Path | None = None,
                min_duration: float | None = None, max_duration: float | None = None) -> str:
    """A Milvus boolean expression for our filter kinds ("" means no filter).

    Args:
        labels: keep windows of files with one of these labels.
        path_prefix: keep files under this folder (absolute, or resolved here): an exact
            ``array_contains`` on the stored ancestor folders, so no wildcard escaping.
        min_duration, max_duration: keep files whose duration (seconds) lies in range.

    Raises:
        ConfigError: an empty label list, or min_duration > max_duration.
    """
    parts = []
    if labels is not None:
        labels = list(labels)
        if not labels:
            raise ConfigError("the label filter needs at least one label")
        parts.append(f"label in [{', '.join(_quote(str(lab)) for lab in labels)}]")
    if path_prefix is not None:
        folder = os.path.normpath(os.path.abspath(os.fspath(path_prefix)))
        parts.append(f"array_contains(folders, {_quote(folder)})")
    if min_duration is not None and max_duration is not None and min_duration > max_duration:
        raise ConfigError(f"min duration {min_duration:g} s is above max duration "
                          f"{max_duration:g} s")
    if min_duration is not None:
        parts.append(f"duration >= {float(min_duration)!r}")
    if max_duration is not None:
        parts.append(f"duration <= {float(max_duration)!r}")
    return " and ".join(f"({p})" for p in parts) if len(parts) > 1 else "".join(parts)


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

    def __init__(self, client, collection: str, dim: int, index_type: str = "flat",
                 params: dict[str, Any] | None = None, uri: str = "", owns_client: bool = True):
        self.client, self.collection, self.d = client, collection, int(dim)
        self.index_type, self.params = index_type, params or {}
        self.uri, self._owns = uri, owns_client
        self._count: int | None = None

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
            schema.add_field("label", DataType.VARCHAR, max_length=MAX_LABEL, nullable=True)
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
            res = self.client.query(self.collection, filter="", output_fields=["count(*)"])
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
                     "label": f.label[i - a] if f else None,
                     "folders": f.folders[i - a] if f else [],
                     "duration": float(f.duration[i - a]) if f else 0.0}
                    for i in range(a, b)]
            self.client.insert(self.collection, rows)
        self._count = None

    def delete(self, ids: np.ndarray) -> int:
        """Delete rows by id; returns the number Milvus reports."""
        ids = [int(i) for i in np.asarray(ids, np.int64)]
        if not ids:
            return 0
        res = self.client.delete(self.collection, ids=ids)
        self._count = None
        return int(res.get("delete_count", len(ids)) if isinstance(res, dict) else len(res))

    def search(self, vectors: np.ndarray, k: int,
               expr: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product (k capped at Milvus's 16384), padded with id -1."""
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        kk = max(1, min(int(k), MAX_TOPK))
        scores = np.full((len(x), k), -np.finfo(np.float32).max, np.float32)
        ids = np.full((len(x), k), -1, np.int64)
        res = self.client.search(
            self.collection, data=x.tolist(), limit=kk, filter=expr or "",
            output_fields=["id"],
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
