"""The index: FAISS factory, metadata store, atomic on-disk generations, incremental build,
and query by example with window-to-file roll-up.

    faiss_index.py  choose_index_type / build_faiss_index (CPU or GPU)
    store.py        meta.sqlite (files, windows: row i = FAISS id i), vectors.npy, probs.npy
    layout.py       DIR/CURRENT -> DIR/gen-NNNNNN/, locks, atomic commit, checksums, cleanup
    writer.py       writing one generation
    build.py        build_index: incremental update from files and folders
    search.py       candidate search, then exact roll-ups (vote, max, mean-top)
    api.py          AudioIndex
"""

from __future__ import annotations

from sonicsearch.index.api import DEFAULT_INDEX_DIR, AudioIndex, load_embedder
from sonicsearch.index.build import build_index
from sonicsearch.index.faiss_index import INDEX_TYPES, choose_index_type
from sonicsearch.index.metrics import recall_at_k
from sonicsearch.index.search import ROLLUP_DEFAULT, ROLLUPS
from sonicsearch.index.types import BuildReport, EmbeddedFile, Embedder, FileRecord, QueryResult

__all__ = [
    "DEFAULT_INDEX_DIR",
    "INDEX_TYPES",
    "ROLLUPS",
    "ROLLUP_DEFAULT",
    "AudioIndex",
    "BuildReport",
    "EmbeddedFile",
    "Embedder",
    "FileRecord",
    "QueryResult",
    "build_index",
    "choose_index_type",
    "load_embedder",
    "recall_at_k",
]
