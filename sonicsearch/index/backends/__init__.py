"""Vector-index backends: FAISS (default, the index file inside each generation) and Milvus
(a server, or milvus-lite in a local file), behind one interface (:class:`IndexBackend`).

    base.py            IndexBackend protocol, WindowFields (label, folders, duration per row)
    faiss_backend.py   FaissBackend: today's FAISS index
    milvus_backend.py  MilvusBackend: a collection per generation; filter_expr

The generation layout, the SQLite metadata and the atomic CURRENT swap are the same for
both; a generation's index.json says where its vectors are searched::

    "backend": {"name": "faiss"}
    "backend": {"name": "milvus", "uri": "milvus.db", "collection": "ss_<hash>_gen_000003"}

A relative milvus-lite ``uri`` is relative to the index directory.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.errors import ConfigError, IndexStoreError
from sonicsearch.index.backends import faiss_backend as _faiss  # noqa: F401 - registers
from sonicsearch.index.backends import milvus_backend as _milvus  # noqa: F401 - registers
from sonicsearch.index.backends.base import (
    BACKEND_REGISTRY,
    IndexBackend,
    WindowFields,
    ancestors,
)

BACKENDS: tuple[str, ...] = BACKEND_REGISTRY.names()  # faiss, milvus

DEFAULT_LITE_FILE = "milvus.db"  # milvus-lite file inside the index directory by default
ADD_ROWS = 50_000  # vectors read from vectors.npy per insert batch

__all__ = ["BACKENDS", "BACKEND_REGISTRY", "IndexBackend", "WindowFields", "ancestors",
           "backend_of",
           "check_backend", "open_backend", "resolve_uri", "same_backend",
           "write_backend_index", "drop_stale_collections"]


def check_backend(name: str, uri: str | None = None) -> str:
    """Return ``name`` if it is a backend; raise ConfigError naming the valid ones."""
    BACKEND_REGISTRY.check(name)
    if name == "faiss" and uri:
        raise ConfigError("--uri is for --backend milvus; the faiss backend keeps its index "
                          "inside the index directory")
    if name == "milvus" and uri and "://" not in uri and not uri.endswith(".db"):
        raise ConfigError(f"--uri {uri}: a milvus-lite file must end in .db (or give a "
                          "server, http://host:19530)")
    return name


def backend_of(meta: dict[str, Any]) -> dict[str, Any]:
    """A generation's backend entry (indexes written before backends existed are FAISS)."""
    return dict(meta.get("backend") or {"name": "faiss"})


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


def _local_uri(stored: str, index_root: str | Path) -> str:
    """A stored uri made usable: relative lite files are under the index directory."""
    if "://" in stored or Path(stored).is_absolute():
        return stored
    return str(Path(index_root).resolve() / stored)


def same_backend(meta: dict[str, Any], backend: str, uri: str | None,
                 index_root: str | Path) -> bool:
    """Whether a generation's index lives where a build with these settings puts it."""
    old = backend_of(meta)
    if old["name"] != backend:
        return False
    return backend == "faiss" or old["uri"] == resolve_uri(uri, index_root)


def write_backend_index(gen: Path, prev_meta: dict[str, Any] | None, records, dim: int,
                        same_index: bool, index_type: str, params: dict[str, Any],
                        uri: str | None) -> dict[str, Any]:
    """Fill a Milvus collection for a new generation from its ``vectors.npy``.

    With ``same_index`` (same vectors, type and place) the previous generation's collection
    is named again instead. Returns the index.json ``backend`` entry.

    Raises:
        IndexStoreError: Milvus cannot be reached or refuses the rows.
    """
    from sonicsearch.index.backends import milvus_backend as M
    from sonicsearch.index.layout import VECTORS

    root = gen.parent
    stored = resolve_uri(uri, root)
    if same_index and prev_meta is not None:
        return backend_of(prev_meta)
    name = M.collection_name(root, gen.name)
    backend = M.MilvusBackend.create(_local_uri(stored, root), name, dim, index_type, params)
    try:
        vectors = np.load(gen / VECTORS, mmap_mode="r")
        fields = WindowFields.of_records(records)
        for a in range(0, len(vectors), ADD_ROWS):
            b = min(a + ADD_ROWS, len(vectors))
            backend.add(vectors[a:b], np.arange(a, b), fields.slice(a, b))
        backend.commit()
        if backend.ntotal != len(vectors):
            raise IndexStoreError(f"Milvus collection {name} holds {backend.ntotal} rows after "
                                  f"inserting {len(vectors)}; run the build again")
    except IndexStoreError:
        raise
    except Exception as exc:  # pymilvus / grpc errors
        raise IndexStoreError(f"cannot fill Milvus collection {name} ({M._first_line(exc)})") \
            from None
    finally:
        backend.close()
    return {"name": "milvus", "uri": stored, "collection": name}


def open_backend(root: Path, meta: dict[str, Any], n_rows: int) -> IndexBackend:
    """Open a non-FAISS generation's index for searching; checked against ``n_rows``.

    Raises:
        IndexStoreError: unreachable, missing, or holding another number of vectors.
    """
    from sonicsearch.index.backends import milvus_backend as M

    entry = backend_of(meta)
    if entry["name"] != "milvus":
        raise IndexStoreError(f"index {root} uses backend {entry['name']!r}, which this "
                              f"sonicsearch does not know (it knows {', '.join(BACKENDS)})")
    backend = M.MilvusBackend.open(_local_uri(entry["uri"], root), entry["collection"],
                                   int(meta["dim"]), meta["index_type"], meta["index_params"])
    if backend.ntotal != n_rows or n_rows != meta.get("counts", {}).get("vectors"):
        backend.close()
        raise IndexStoreError(f"index {root} is damaged: Milvus collection "
                              f"{entry['collection']} and the metadata disagree on the number "
                              "of vectors; pass --rebuild")
    return backend


def close_index(meta: dict[str, Any], index: Any) -> None:
    """Close what :func:`open_backend` opened for ``meta``'s generation (a connection); a
    FAISS index needs nothing."""
    if backend_of(meta)["name"] != "faiss":
        index.close()


def drop_stale_collections(root: Path, live: dict[str, Any] | None,
                           prev: dict[str, Any] | None) -> list[str]:
    """After a commit: drop the index's Milvus collections but the live and the previous
    generation's, on every Milvus the two use. Failures only warn (the next build retries).
    """
    from sonicsearch.index.backends import milvus_backend as M

    entries = [backend_of(m) for m in (live, prev) if m is not None]
    entries = [e for e in entries if e["name"] == "milvus"]
    keep = {e["collection"] for e in entries}
    dropped: list[str] = []
    for uri in dict.fromkeys(_local_uri(e["uri"], root) for e in entries):
        try:
            dropped += M.drop_stale(uri, root, keep)
        except Exception as exc:  # noqa: BLE001 - clean-up is best effort after a commit
            warnings.warn(f"could not drop old Milvus collections at {uri}: {exc}",
                          stacklevel=2)
    return dropped
