"""Vector-index backends: FAISS (default, the index file inside each generation) and Milvus
(a server, or milvus-lite in a local file), behind one interface (:class:`IndexBackend`).

    base.py            IndexBackend protocol, Selection (a filtered search), WindowFields
    faiss_backend.py   FaissBackend: the FAISS index file of a generation
    milvus_backend.py  MilvusBackend: one live collection, written per generation
    milvus_generations.py  its in-place updates: stable ids, each generation's view
    milvus_client.py   clients, collection names, stored uris
    milvus_params.py   index settings and filter expressions

Every build and every query reaches its vectors through :data:`BACKEND_REGISTRY` (name ->
class; :data:`BACKENDS` is a dict view of it); no code outside this package asks which
backend it holds. Adding a backend is one new module with a class implementing
IndexBackend, registered with ``@BACKEND_REGISTRY.register("name")``, and its import line
below.

The generation layout, the SQLite metadata and the atomic CURRENT swap are the same for
all; a generation's index.json says where its vectors are searched::

    "backend": {"name": "faiss"}
    "backend": {"name": "milvus", "uri": "milvus.db", "collection": "ss_<hash>_gen_000003",
                "generation": 5, "next_id": 9120, "hidden": [[40, 47]], "removed": []}

A relative milvus-lite ``uri`` is relative to the index directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sonicsearch.errors import IndexStoreError
from sonicsearch.index.backends.base import (
    BACKEND_REGISTRY,
    FieldFilter,
    GenerationSpec,
    IndexBackend,
    Selection,
    WindowFields,
    ancestors,
)
from sonicsearch.index.backends.faiss_backend import FaissBackend  # registers "faiss"
from sonicsearch.index.backends.milvus_backend import (  # registers "milvus"
    MilvusBackend,
    resolve_uri,
)
from sonicsearch.index.types import FileRecord

# name -> class, a view of BACKEND_REGISTRY for older callers (the registry is the source)
BACKENDS: dict[str, type] = dict(BACKEND_REGISTRY.items())

__all__ = ["BACKENDS", "BACKEND_REGISTRY", "FaissBackend", "FieldFilter", "GenerationSpec",
           "IndexBackend", "MilvusBackend", "Selection", "WindowFields", "after_commit",
           "ancestors", "backend_files", "backend_of", "check_backend", "inherited_uri",
           "open_backend", "resolve_uri", "same_backend", "write_backend"]


def check_backend(name: str, uri: str | None = None) -> str:
    """Return ``name`` if it is a backend and ``uri`` suits it; raise ConfigError naming the
    valid ones."""
    BACKEND_REGISTRY.get(name).check_uri(uri)
    return name


def backend_of(meta: dict[str, Any]) -> dict[str, Any]:
    """A generation's backend entry (indexes written before backends existed are FAISS)."""
    return dict(meta.get("backend") or {"name": "faiss"})


def _class_of(root: Path, meta: dict[str, Any]) -> type:
    name = backend_of(meta)["name"]
    if name not in BACKEND_REGISTRY:
        raise IndexStoreError(f"index {root} uses backend {name!r}, which this sonicsearch "
                              f"does not know (it knows {', '.join(BACKEND_REGISTRY.names())})")
    return BACKEND_REGISTRY.get(name)


def backend_files(root: Path, meta: dict[str, Any]) -> tuple[str, ...]:
    """The files a generation holds for its backend (checked present before opening)."""
    return tuple(_class_of(root, meta).FILES)


def open_backend(root: Path, gen: Path, meta: dict[str, Any], counts: tuple[int, int],
                 device: str = "auto", nprobe: int | None = None,
                 ef_search: int | None = None) -> IndexBackend:
    """Open a generation's vectors for searching, checked against ``counts`` (rows, files).

    Raises:
        IndexStoreError: an unknown backend, or vectors missing, unreadable, or disagreeing
            with the metadata. ConfigError: ``device`` names an unusable GPU.
    """
    meta = {**meta, "backend": backend_of(meta)}
    return _class_of(root, meta).open_generation(root, gen, meta, counts, device, nprobe,
                                                 ef_search)


def write_backend(name: str, gen: Path, prev: tuple[Path, dict[str, Any]] | None,
                  records: Sequence[FileRecord], spec: GenerationSpec
                  ) -> tuple[dict[str, Any], list[str]]:
    """Index a new generation's vectors with backend ``name``; returns its index.json
    ``backend`` entry and the files linked from the previous generation."""
    if prev is not None:
        prev = (prev[0], {**prev[1], "backend": backend_of(prev[1])})
    return BACKEND_REGISTRY.get(name).write_generation(gen, prev, records, spec)


def inherited_uri(backend: str, old: dict[str, Any], index_dir: str | Path) -> str:
    """The uri a build with ``backend`` and no uri of its own keeps from the index's live
    backend entry ``old`` ("" when that is another backend, or one without a uri)."""
    if old["name"] != backend or backend not in BACKEND_REGISTRY:
        return ""
    return BACKEND_REGISTRY.get(backend).kept_uri(old, Path(index_dir))


def same_backend(meta: dict[str, Any], backend: str, uri: str | None,
                 index_root: str | Path) -> bool:
    """Whether a generation's index lives where a build with these settings puts it."""
    old = backend_of(meta)
    return (old["name"] == backend
            and BACKEND_REGISTRY.get(backend).same_place(old, uri, Path(index_root)))


def after_commit(root: Path, live: dict[str, Any] | None,
                 prev: dict[str, Any] | None) -> list[str]:
    """After a commit: each backend of the live and the previous generation cleans up what
    lies outside the folder (Milvus: collections of older generations)."""
    entries = [backend_of(m) for m in (live, prev) if m is not None]
    dropped: list[str] = []
    for name in dict.fromkeys(e["name"] for e in entries if e["name"] in BACKEND_REGISTRY):
        dropped += BACKEND_REGISTRY.get(name).after_commit(
            root, [e for e in entries if e["name"] == name])
    return dropped
