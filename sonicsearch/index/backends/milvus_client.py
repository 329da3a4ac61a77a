"""Reaching Milvus: clients for a server or a milvus-lite file, the names of an index's
collections, the uri stored in index.json, and dropping an index's stale collections.

``uri``: ``http(s)://host:19530`` for a server (token from $SONICSEARCH_MILVUS_TOKEN), or a
local ``*.db`` path for milvus-lite, which one process at a time may open.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from sonicsearch.errors import ConfigError, IndexStoreError

TOKEN_ENV = "SONICSEARCH_MILVUS_TOKEN"
LITE_USERS: dict[str, int] = {}  # open clients per milvus-lite file in this process
DEFAULT_LITE_FILE = "milvus.db"  # milvus-lite file inside the index directory by default


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
        raise IndexStoreError(f"cannot open Milvus at {uri} ({first_line(exc)}); {hint}") \
            from None
    if not is_server(uri):
        LITE_USERS[os.path.abspath(uri)] = LITE_USERS.get(os.path.abspath(uri), 0) + 1
    return client


def disconnect(client, uri: str) -> None:
    """Close a client from :func:`connect`; the last one of a milvus-lite file stops its
    embedded server, which releases the file for other processes."""
    client.close()
    if is_server(uri):
        return
    path = os.path.abspath(uri)
    LITE_USERS[path] = LITE_USERS.get(path, 1) - 1
    if LITE_USERS[path] <= 0:
        del LITE_USERS[path]
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)


def first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
    return str(text).splitlines()[0][:160]


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
