"""Query filters and the no-match threshold.

Filters keep the results whose indexed file has one of the given labels, lies under a path
(a folder, or one file), lasts between a minimum and a maximum duration, and caps the
results per folder (an album). They apply before the top-``k`` cut: files outside the
labels, path and durations are never candidates of the exact scoring
(:func:`sonicsearch.index.search.search`'s ``allowed``), and the search goes deeper until
``k`` results pass (the per-folder cap included) or the candidates run out. For a fixed
filter, the results for ``k`` are the first ``k`` for any larger ``k``.

A minimum score turns a weak best match into "no match". ``min_score="auto"`` takes it
from the index itself (:mod:`sonicsearch.index.calibration`, which sits above the index
and resolves it before the search: this module only ever sees a number).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.errors import ConfigError
from sonicsearch.index.backends.base import FieldFilter
from sonicsearch.index.search import Hit
from sonicsearch.index.types import FileRecord

__all__ = ["Filters", "filtered_hits", "parse_min_score", "resolve_prefix", "under"]


@dataclass(frozen=True)
class Filters:
    """Which indexed files may be results.

    Attributes:
        labels: keep files whose label is one of these (empty: any label).
        path_prefix: keep files at or under this absolute path (a folder or a file).
        min_duration, max_duration: keep files lasting this long, seconds.
        max_per_folder: at most this many results from one folder (album).
    """

    labels: tuple[str, ...] = field(default_factory=tuple)
    path_prefix: str | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    max_per_folder: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(x for x in self.labels if x))
        for name in ("min_duration", "max_duration"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"{name} must be >= 0 seconds, got {value}")
        if (self.min_duration is not None and self.max_duration is not None
                and self.min_duration > self.max_duration):
            raise ConfigError(f"min_duration {self.min_duration} is above max_duration "
                              f"{self.max_duration}; swap them")
        if self.max_per_folder is not None and self.max_per_folder < 1:
            raise ConfigError(f"max_per_folder must be at least 1, got {self.max_per_folder}")
        if self.path_prefix is not None:
            if not os.path.isabs(self.path_prefix):
                raise ConfigError(f"path prefix {self.path_prefix!r} must be absolute "
                                  "(resolve it against the collection first)")
            object.__setattr__(self, "path_prefix", os.path.normpath(self.path_prefix))

    def fields(self) -> FieldFilter:
        """The same filter (max_per_folder aside) as conditions on a backend's stored
        fields."""
        return FieldFilter(self.labels, self.path_prefix, self.min_duration, self.max_duration)

    @property
    def active(self) -> bool:
        return bool(self.labels or self.path_prefix or self.min_duration is not None
                    or self.max_duration is not None or self.max_per_folder)

    def file_mask(self, records: Sequence[FileRecord]) -> np.ndarray:
        """Boolean mask over file ids: which files pass (max_per_folder aside)."""
        keep = np.ones(len(records), dtype=bool)
        if self.labels:
            keep &= np.array([r.label in self.labels for r in records], dtype=bool)
        if self.path_prefix:
            keep &= np.array([under(r.path, self.path_prefix) for r in records], dtype=bool)
        if self.min_duration is not None or self.max_duration is not None:
            dur = np.array([r.duration for r in records], dtype=np.float64)
            if self.min_duration is not None:
                keep &= dur >= self.min_duration
            if self.max_duration is not None:
                keep &= dur <= self.max_duration
        return keep


def under(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or lies in the folder ``prefix`` (whole components)."""
    return path == prefix or path.startswith(prefix.rstrip(os.sep) + os.sep)


def resolve_prefix(prefix: str | Path | None, base: str | Path | None = None) -> str | None:
    """An absolute, symlink-free path prefix: relative ones are taken under ``base`` (the
    current directory when None), ``~`` is expanded."""
    if prefix is None or str(prefix) == "":
        return None
    p = Path(prefix).expanduser()
    if not p.is_absolute():
        p = Path(base or Path.cwd()) / p
    return str(p.resolve())


def parse_min_score(value: str | float | None) -> float | str | None:
    """``None``, a finite number, or ``"auto"`` (from a CLI or HTTP string).

    Raises:
        ConfigError: anything else, ``nan``, ``inf`` and numbers too large for a float
            (``1e309``) included: no threshold means the option's absence, not ``nan``.
    """
    if value is None:
        return None
    if isinstance(value, float | int) and not isinstance(value, bool):
        number = float(value)
    else:
        text = str(value).strip().lower()
        if text in ("", "none", "off"):
            return None
        if text == "auto":
            return "auto"
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"min score must be a number or 'auto', got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"min score must be a finite number or 'auto', got {value!r}")
    return number


def filtered_hits(records: Sequence[FileRecord], n_rows: int,
                  run: Callable[[int, np.ndarray | None], list[Hit]], k: int,
                  filters: Filters | None, threshold: float | None, segments: bool
                  ) -> tuple[list[Hit], dict[str, Any]]:
    """Top-``k`` hits that pass ``filters`` and ``threshold``, searching deeper as needed.

    Args:
        records: the indexed files (file id = position).
        n_rows: the number of indexed windows.
        run: ``run(depth, allowed)`` returns the best ``depth`` hits among the files of the
            mask ``allowed`` (None: all), best first (fewer: no more); the hits for a depth
            are the first ones for any larger depth.
        threshold: the minimum score, already resolved (None: none).
        k, segments: as in ``AudioIndex.query``.

    Returns:
        The hits, and the keys the query JSON gains: ``min_score`` (the threshold used, or
        None), ``no_match`` (no result) and ``reason`` (why not, or None).
    """
    filters = filters if filters is not None and filters.active else None
    mask = filters.file_mask(records) if filters is not None else None
    limit = n_rows if segments else len(records)
    depth, best = k, None
    kept: list[Hit] = []
    while mask is None or mask.any():
        hits = run(depth, mask)
        if hits and best is None:
            best = hits[0].score
        kept, below = _admit(hits, records, mask, filters, threshold, k)
        if len(kept) >= k or below or len(hits) < depth or depth >= limit:
            break
        depth = min(limit, depth * 4)
    extra: dict[str, Any] = {"min_score": None if threshold is None else round(threshold, 6),
                             "no_match": not kept, "reason": None}
    if not kept:
        extra["reason"] = _why_none(mask, best, threshold, len(records))
    return kept, extra


def _admit(hits: list[Hit], records: Sequence[FileRecord], mask: np.ndarray | None,
           filters: Filters | None, threshold: float | None, k: int) -> tuple[list[Hit], bool]:
    """(hits that pass, in order, at most k; whether a hit fell below the threshold)."""
    kept: list[Hit] = []
    per_folder: dict[str, int] = {}
    cap = filters.max_per_folder if filters is not None else None
    for hit in hits:
        if threshold is not None and hit.score < threshold:
            return kept, True  # best first (per search stage): stop, as for any larger k
        if mask is not None and not mask[hit.file]:
            continue
        if cap:
            folder = os.path.dirname(records[hit.file].path)
            if per_folder.get(folder, 0) >= cap:
                continue
            per_folder[folder] = per_folder.get(folder, 0) + 1
        kept.append(hit)
        if len(kept) >= k:
            break
    return kept, False


def _why_none(mask: np.ndarray | None, best: float | None, threshold: float | None,
              n_files: int) -> str:
    if n_files == 0:
        return "the index is empty"
    if mask is not None and not mask.any():
        return "no indexed file passes the filters"
    if best is not None and threshold is not None and best < threshold:
        return (f"no match: the best score {best:.3f} is below the threshold "
                f"{threshold:.3f}")
    return "no match among the files that pass the filters"
