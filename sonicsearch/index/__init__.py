"""The index: FAISS factory, metadata store, atomic on-disk generations, incremental build,
and query by example with window-to-file roll-up.

    faiss_index.py  choose_index_type / build_faiss_index (CPU or GPU)
    backends/       IndexBackend: FAISS and Milvus behind one interface (BACKEND_REGISTRY)
    store.py        meta.sqlite (files, windows: row i = backend id i), vectors.npy, probs.npy
    layout.py       DIR/CURRENT -> DIR/gen-NNNNNN/, locks, atomic commit, checksums, cleanup
    writer.py       writing one generation
    build.py        build_index: incremental update from files and folders, with an Embedder
    search.py       candidate search (filtered in the backend), then exact roll-ups
    rollups.py      the roll-ups (vote, max, mean-top), one registered function each
    scoring.py      the same roll-ups over all candidate files at once (what search uses)
    filters.py      Filters, the filtered top-k loop over a resolved min_score
    request.py      QueryRequest: one query, as the CLI, the server and the API build it
    reader.py       IndexReader: an opened generation; search(QueryRequest)
    calibration.py  the no-match threshold of min_score="auto" (a client of IndexReader)
    confidence.py   each file result's calibrated confidence; "auto" keeps the confident
    confidence_fit.py  its logistic model, fitted on degraded excerpts of the index itself
    api.py          AudioIndex: IndexReader + embedding + "auto" resolved before the search
    builder.py      builder.build_index: build-index's options one to one
"""

from __future__ import annotations

from sonicsearch.index.api import DEFAULT_INDEX_DIR, AudioIndex, load_embedder
from sonicsearch.index.build import build_index
from sonicsearch.index.faiss_index import INDEX_TYPES, choose_index_type
from sonicsearch.index.metrics import recall_at_k
from sonicsearch.index.request import QueryRequest
from sonicsearch.index.rollups import ROLLUP_DEFAULT, ROLLUPS
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
    "QueryRequest",
    "QueryResult",
    "build_index",
    "choose_index_type",
    "load_embedder",
    "recall_at_k",
]
