"""Milvus index settings and filter expressions: our index types and params as Milvus's,
and our filters (a :class:`Selection`, or label / folder / duration conditions) as one
Milvus boolean expression."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.errors import ConfigError
from sonicsearch.index.backends.base import Selection

_INDEX = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT", "ivfpq": "IVF_PQ"}
MAX_EXPR_RANGES = 64  # a selection of at most this many id runs is sent as id ranges


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
        if "" in labels:  # stored for an unlabelled file (a server has no null), so refuse it
            raise ConfigError("the label filter takes non-empty labels (an unlabelled file "
                              "has no label to match)")
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


def id_runs(ids: np.ndarray) -> list[tuple[int, int]]:
    """Distinct ids as sorted runs ``[a, b)``."""
    ids = np.unique(np.asarray(ids, np.int64))
    if not len(ids):
        return []
    cut = np.flatnonzero(np.diff(ids) != 1) + 1
    starts, ends = ids[np.r_[0, cut]], ids[np.r_[cut - 1, len(ids) - 1]] + 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def ranges_expr(runs: Iterable[tuple[int, int]]) -> str:
    """Ids in any of ``runs`` (``[a, b)`` each), as a Milvus expression."""
    return " or ".join(f"(id >= {a} and id < {b})" for a, b in runs)


def selection_expr(where: Selection, ids: np.ndarray | None = None) -> str:
    """One Milvus expression for the windows ``where`` allows: its id runs when there are
    at most MAX_EXPR_RANGES (exact whatever the stored fields), else the conditions on the
    stored label, folders and duration with the excluded id range left out. ``ids``: the
    collection's id of each window row (a generation of an updated collection), None when
    ids are rows."""
    runs = where.ranges() if ids is None else id_runs(ids[where.rows])
    if not runs:
        return "id < 0"
    if len(runs) <= MAX_EXPR_RANGES or where.fields is None:
        return ranges_expr(runs)
    f = where.fields
    parts = [filter_expr(f.labels or None, f.path_prefix, f.min_duration, f.max_duration)]
    if f.exclude is not None:
        a, b = f.exclude
        parts.append(f"not ({ranges_expr([(a, b)] if ids is None else id_runs(ids[a:b]))})")
    return " and ".join(f"({p})" for p in parts if p) or ""
