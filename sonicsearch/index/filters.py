"""Query filters and the no-match threshold.

Filters keep the results whose indexed file has one of the given labels, lies under a path
(a folder, or one file), lasts between a minimum and a maximum duration, and caps the
results per folder (an album). They apply before the top-``k`` cut: files outside the
labels, path and durations are never candidates of the exact scoring
(:func:`sonicsearch.index.search.search`'s ``allowed``), and the search goes deeper until
``k`` results pass (the per-folder cap included) or the candidates run out. For a fixed
filter, the results for ``k`` are the first ``k`` for any larger ``k``.

A minimum score turns a weak best match into "no match". ``min_score="auto"`` takes it
from the index itself: excerpts of indexed files are searched against the rest of the
collection (the file itself and byte-identical copies left out), which gives the
distribution of best scores for a clip that is *not* in the collection; the threshold is
its ``1 - TARGET_FALSE_ACCEPT`` quantile, per roll-up. It is computed once per generation
and kept beside ``index.json`` as ``calibration.json`` (in memory only when the folder is
read-only).
"""

from __future__ import annotations

import json
import math
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from sonicsearch.errors import ConfigError
from sonicsearch.index.search import ROLLUPS, Hit
from sonicsearch.index.types import FileRecord

if TYPE_CHECKING:
    from sonicsearch.index.api import AudioIndex

CALIBRATION = "calibration.json"
CALIBRATION_VERSION = 2  # 2: vote scores above a background
TARGET_FALSE_ACCEPT = 0.01  # share of clips not in the collection that still get a match
CALIBRATION_SAMPLES = 300  # excerpts searched per generation
EXCERPT_SECONDS = 5.0  # length of a calibration excerpt (a typical "by ear" clip)
MIN_FILES = 3  # fewer indexed files give no meaningful distribution
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


def filtered_hits(index: AudioIndex, run: Callable[[int, np.ndarray | None], list[Hit]],
                  k: int, filters: Filters | None, min_score: float | str | None, rollup: str,
                  segments: bool) -> tuple[list[Hit], dict[str, Any]]:
    """Top-``k`` hits that pass ``filters`` and ``min_score``, searching deeper as needed.

    Args:
        index: the index searched (for its records and calibration).
        run: ``run(depth, allowed)`` returns the best ``depth`` hits among the files of the
            mask ``allowed`` (None: all), best first (fewer: no more); the hits for a depth
            are the first ones for any larger depth.
        k, rollup, segments: as in ``AudioIndex.query``.

    Returns:
        The hits, and the keys the query JSON gains: ``min_score`` (the threshold used, or
        None), ``no_match`` (no result) and ``reason`` (why not, or None).
    """
    filters = filters if filters is not None and filters.active else None
    threshold = resolve_min_score(index, min_score, rollup, segments)
    records = index.store.records
    mask = filters.file_mask(records) if filters is not None else None
    limit = index.ntotal if segments else len(records)
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


def resolve_min_score(index: AudioIndex, min_score: float | str | None, rollup: str,
                      segments: bool) -> float | None:
    """The threshold a query uses: a number as given, ``"auto"`` from the calibration (None
    when the index is too small to calibrate), or None."""
    min_score = parse_min_score(min_score)
    if min_score != "auto":
        return min_score
    thresholds = calibration(index).get("thresholds", {})
    value = thresholds.get("max" if segments else rollup)
    return None if value is None else float(value)


def calibration(index: AudioIndex) -> dict[str, Any]:
    """The no-match calibration of the index's generation: loaded from ``calibration.json``
    or computed (and saved there when the folder is writable), once per open index."""
    if index in _cache:
        return _cache[index]
    path = Path(index.gen) / CALIBRATION
    data = None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if (data.get("version") != CALIBRATION_VERSION
                or data.get("model_sha256") != index.meta["model"]["sha256"]
                or data.get("vectors") != index.ntotal):
            data = None
    except (OSError, ValueError, AttributeError):
        data = None
    if data is None:
        data = calibrate(index)
        _save(path, data)
    _cache[index] = data
    return data


def calibrate(index: AudioIndex, target: float = TARGET_FALSE_ACCEPT,
              samples: int = CALIBRATION_SAMPLES, seconds: float = EXCERPT_SECONDS,
              seed: int = 0) -> dict[str, Any]:
    """Measure the best score a clip that is not in the collection gets, per roll-up.

    Each sample is a run of stored window vectors (about ``seconds`` long) of one indexed
    file, searched with that file and its byte-identical copies left out.

    Returns:
        ``thresholds`` (roll-up -> score at the target false-accept rate; empty when the
        index has fewer than MIN_FILES files) and the facts of the measurement.
    """
    records = index.store.records
    out: dict[str, Any] = {
        "version": CALIBRATION_VERSION, "generation": Path(index.gen).name,
        "model_sha256": index.meta["model"]["sha256"], "vectors": index.ntotal,
        "target_false_accept": target, "excerpt_seconds": seconds, "samples": 0,
        "thresholds": {}, "median": {}}
    distinct = len({r.sha256 for r in records})
    if distinct < MIN_FILES:
        out["reason"] = f"{distinct} distinct files; calibration needs at least {MIN_FILES}"
        return out
    with _one_faiss_thread():
        out.update(_measure(index, target, samples, seconds, seed))
    return out


@contextmanager
def _one_faiss_thread() -> Iterator[None]:
    """Many tiny searches run far faster on one OpenMP thread than on a busy team."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _measure(index: AudioIndex, target: float, samples: int, seconds: float,
             seed: int) -> dict[str, Any]:
    store, records = index.store, index.store.records
    fc = index.meta["features"]
    out: dict[str, Any] = {"thresholds": {}, "median": {}}
    vectors = store.vectors()
    n_win = max(1, int(round((seconds - fc["window_seconds"]) / fc["hop_seconds"])) + 1)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(records))
                            for _ in range(-(-samples // len(records)))])[:samples]
    scores: dict[str, list[float]] = {r: [] for r in ROLLUPS}
    for f in order.tolist():
        rec = records[f]
        length = min(n_win, rec.n_windows)
        start = rec.first_row + int(rng.integers(0, rec.n_windows - length + 1))
        rows = np.arange(start, start + length)
        spans = store.spans(rows)
        spans -= spans[0, 0]
        for rollup in ROLLUPS:
            res = index.query_vectors(np.asarray(vectors[rows]), spans, k=4, rollup=rollup,
                                      exclude=rec.path)  # nor in vote's background
            other = _first_other(res["results"], rec, index)
            if other is not None:
                scores[rollup].append(other)
    out["samples"] = len(scores[ROLLUPS[0]])
    for rollup, values in scores.items():
        if values:
            out["thresholds"][rollup] = round(float(np.quantile(values, 1 - target)), 6)
            out["median"][rollup] = round(float(np.median(values)), 6)
    return out


def _first_other(results: Iterable[dict], rec: FileRecord, index: AudioIndex) -> float | None:
    for r in results:
        i = index.store.by_path.get(r["path"])
        if r["path"] != rec.path and (i is None or index.store.records[i].sha256 != rec.sha256):
            return float(r["score"])
    return None


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{CALIBRATION}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except OSError:  # a read-only index, or the generation was just deleted: memory only
        tmp.unlink(missing_ok=True)
