"""The no-match threshold of ``min_score="auto"``, measured on the index itself.

Excerpts of indexed files are searched against the rest of the collection, which gives the
distribution of best scores for a clip that is *not* in the collection; the threshold is
its ``1 - TARGET_FALSE_ACCEPT`` quantile, per roll-up. "The rest" leaves out the file itself,
its byte-identical copies, and its *variants*: other files that contain the sampled audio
(another encoding of it, a ``-long`` / ``-short`` cut), recognised by near-perfect window
matches at one time offset (:func:`contains_excerpt`). Counting a variant's ~1.0 as a
no-match score would put the threshold at ~1.0 and turn every real match into "no match".

It is computed once per generation (or carried over from an earlier one when few windows
changed: calibration_carry.py) and kept beside ``index.json`` as ``calibration.json``
(in memory only when the folder is read-only), with its own checksum (``self_sha256``,
:func:`sonicsearch.utils.fileio.self_hashed_json`); a file that fails it is measured again.

The same file holds each roll-up's confidence model (:func:`confidence_model`,
:mod:`sonicsearch.index.confidence_fit`), fitted on that roll-up's first query; a query that
only needs the model does not measure the thresholds, and the reverse.

Calibration is a client of the index: it searches through
:meth:`sonicsearch.index.reader.IndexReader.search`, and the index never calls it;
:func:`resolve_min_score` turns ``"auto"`` into a number before a query's search.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from sonicsearch.errors import IndexStoreError
from sonicsearch.index.calibration_carry import carried
from sonicsearch.index.confidence_fit import fit_confidence
from sonicsearch.index.filters import parse_min_score
from sonicsearch.index.request import QueryRequest
from sonicsearch.index.rollups import ROLLUP_REGISTRY
from sonicsearch.index.types import FileRecord
from sonicsearch.utils.fileio import SELF_SHA256, self_hash_problem, self_hashed_json

if TYPE_CHECKING:
    from sonicsearch.index.reader import IndexReader

CALIBRATION = "calibration.json"
# 2: vote scores above a background; 3: variants left out, counted, and a self_sha256;
# 4: the confidence model (index/confidence_fit.py); 5: a compact index's vote background
# decoded per vector (it was normalised across the neighbours: a background far too low)
CALIBRATION_VERSION = 5
TARGET_FALSE_ACCEPT = 0.01  # share of clips not in the collection that still get a match
CALIBRATION_SAMPLES = 300  # excerpts searched per generation
EXCERPT_SECONDS = 5.0  # length of a calibration excerpt (a typical "by ear" clip)
MIN_FILES = 3  # fewer indexed files give no meaningful distribution
CANDIDATES = 8  # results looked through per sample for the best non-variant file
# A window of the excerpt has a near-perfect match in another file at this cosine. Measured
# with the base model on two Debian sound themes (oxygen, freedesktop; 79 files) plus
# re-encodes and cuts: the same recording re-encoded (FLAC, WAV, MP3) at the same window
# alignment scores >= 0.9999, and so do two files of the themes that hold the same audio
# (waveform correlation 1.000); the best window of a *different* recording scores at most
# 0.9943 (99th percentile of file pairs 0.981). A cut at an offset that is not a multiple of the
# hop scores 0.95-0.98: on one window that is no different from a similar sound, so it is
# not taken for a variant (it does not collapse the threshold either).
COPY_COSINE = 0.998
COPY_SHARE = 0.5  # ... for at least this share of the excerpt's windows, at one offset
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def calibration(index: IndexReader, confidence_for: str | None = None,
                thresholds: bool = True) -> dict[str, Any]:
    """The no-match calibration of the index's generation: loaded from ``calibration.json``
    or computed (and saved there when the folder is writable), once per open index.

    Args:
        confidence_for: a roll-up whose confidence model (``confidence.fits``) is wanted:
            fitted now when the calibration has none for it yet.
        thresholds: measure the score thresholds when the calibration has none yet (a
            query that only needs a confidence model leaves them for later).
    """
    cached = _cache.get(index)
    data = cached[1] if cached is not None and cached[0] == index.gen else None  # not
    # from before a refresh
    path = Path(index.gen) / CALIBRATION
    changed = False
    if data is None:
        data = _load(path)
        if data is not None and not _current(data, index, vectors=True):
            data = None
        if data is None:  # an update that changed few windows keeps the last one measured
            data = carried(index, CALIBRATION, _load, lambda d: _current(d, index))
            changed = data is not None
        data = data if data is not None else _header(index)
        _cache[index] = (index.gen, data)
    if thresholds and "thresholds" not in data:
        data.update(calibrate(index))
        changed = True
    fits = data.get("confidence", {}).get("fits", {})
    if confidence_for is not None and confidence_for not in fits:
        with _one_faiss_thread():
            fit = fit_confidence(index, (confidence_for,), min_files=MIN_FILES)
        data.setdefault("confidence", {k: v for k, v in fit.items() if k != "fits"})
        data["confidence"].setdefault("fits", {}).update(fit["fits"])
        changed = True
    if changed:
        _save(path, data)
    return data


def _header(index: IndexReader) -> dict[str, Any]:
    """What a calibration is valid for: its version, generation, model and vectors."""
    return {"version": CALIBRATION_VERSION, "generation": Path(index.gen).name,
            "model_sha256": index.meta["model"]["sha256"], "vectors": index.ntotal}


def _load(path: Path) -> dict[str, Any] | None:
    """A saved calibration, or None when missing, unreadable or not the bytes written."""
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or self_hash_problem(raw) is not None:
        return None
    return data


def check_calibration_file(gen: Path) -> None:
    """``info --check`` of ``calibration.json``: absent, or from an older version (measured
    again on use), or exactly the bytes written.

    Raises:
        IndexStoreError: one line naming the file; deleting it is the fix.
    """
    path = gen / CALIBRATION
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _damaged(gen, f"is unreadable ({exc.strerror})") from None
    try:
        version = json.loads(raw.decode("utf-8")).get("version")
    except (ValueError, AttributeError):
        raise _damaged(gen, "is not a JSON object") from None
    if SELF_SHA256.encode() not in raw and isinstance(version, int) and version < 3:
        return  # written before calibrations had checksums: measured again on first use
    problem = self_hash_problem(raw)
    if problem is not None:
        raise _damaged(gen, problem)


def _damaged(gen: Path, why: str) -> IndexStoreError:
    return IndexStoreError(
        f"index {gen.parent} is damaged: {gen.name}/{CALIBRATION} {why}; delete it (the "
        "no-match threshold is measured again on the next `--min-score auto` query)")


def calibrate(index: IndexReader, target: float = TARGET_FALSE_ACCEPT,
              samples: int = CALIBRATION_SAMPLES, seconds: float = EXCERPT_SECONDS,
              seed: int = 0) -> dict[str, Any]:
    """Measure the best score a clip that is not in the collection gets, per roll-up.

    Each sample is a run of stored window vectors (about ``seconds`` long) of one indexed
    file, searched with that file and its byte-identical copies left out; the best other
    file that is not a variant holding the excerpt (:func:`contains_excerpt`) scores it.

    Returns:
        ``thresholds`` (roll-up -> score at the target false-accept rate; empty when the
        index has fewer than MIN_FILES files) and the facts of the measurement, among them
        ``variant_samples`` (samples whose results held a variant, left out) and
        ``variant_files`` (indexed files taken for a variant of a sampled one).
    """
    records = index.store.records
    out: dict[str, Any] = {
        **_header(index), "target_false_accept": target, "excerpt_seconds": seconds, "samples": 0,
        "variant_samples": 0, "variant_files": 0, "copy_cosine": COPY_COSINE,
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


def _measure(index: IndexReader, target: float, samples: int, seconds: float,
             seed: int) -> dict[str, Any]:
    store, records = index.store, index.store.records
    fc = index.meta["features"]
    out: dict[str, Any] = {"thresholds": {}, "median": {}}
    vectors = store.vectors()
    n_win = max(1, int(round((seconds - fc["window_seconds"]) / fc["hop_seconds"])) + 1)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(records))
                            for _ in range(-(-samples // len(records)))])[:samples]
    rollups = ROLLUP_REGISTRY.names()
    scores: dict[str, list[float]] = {r: [] for r in rollups}
    variant_samples, variants = 0, set()
    for f in order.tolist():
        rec = records[f]
        length = min(n_win, rec.n_windows)
        start = rec.first_row + int(rng.integers(0, rec.n_windows - length + 1))
        rows = np.arange(start, start + length)
        spans = store.spans(rows)
        spans -= spans[0, 0]
        excerpt = np.asarray(vectors[rows])
        is_variant = _Variants(index, excerpt, spans, fc["hop_seconds"])
        for rollup in rollups:
            res = index.search(QueryRequest(vectors=excerpt, spans=spans, k=CANDIDATES,
                                            rollup=rollup, exclude=rec.path))  # nor in
            # vote's background
            other = _first_other(res["results"], rec, index, is_variant)
            if other is not None:
                scores[rollup].append(other)
        found = [g for g, yes in is_variant.seen.items() if yes]
        variant_samples += bool(found)
        variants.update(found)
    out["samples"] = len(scores[rollups[0]])
    out["variant_samples"], out["variant_files"] = variant_samples, len(variants)
    for rollup, values in scores.items():
        if values:
            out["thresholds"][rollup] = round(float(np.quantile(values, 1 - target)), 6)
            out["median"][rollup] = round(float(np.median(values)), 6)
    return out


class _Variants:
    """Which files hold one sample's excerpt (:func:`contains_excerpt`), asked once each."""

    def __init__(self, index: IndexReader, excerpt: np.ndarray, spans: np.ndarray,
                 hop: float):
        self.index, self.excerpt, self.spans, self.hop = index, excerpt, spans, hop
        self.seen: dict[int, bool] = {}  # file id -> holds the excerpt

    def __call__(self, file: int) -> bool:
        if file not in self.seen:
            self.seen[file] = contains_excerpt(self.index, self.excerpt, self.spans, file,
                                               self.hop)
        return self.seen[file]


def contains_excerpt(index: IndexReader, excerpt: np.ndarray, spans: np.ndarray, file: int,
                     hop: float, cosine: float = COPY_COSINE) -> bool:
    """Whether indexed file ``file`` holds the audio of ``excerpt`` (window vectors with
    their ``spans``, seconds): at least COPY_SHARE of its windows match one of the file's
    windows at ``cosine`` or more, all at the same time offset (one hop of tolerance)."""
    rec = index.store.records[file]
    rows = np.arange(rec.first_row, rec.first_row + rec.n_windows)
    sims = excerpt @ np.asarray(index._exact[rows]).T  # (excerpt, file windows)
    best = sims.argmax(axis=1)
    near = sims[np.arange(len(excerpt)), best] >= cosine
    if near.sum() < max(1, COPY_SHARE * len(excerpt)):
        return False
    starts = index.store.spans(rows)[:, 0]
    offsets = np.round((starts[best[near]] - spans[near, 0]) / hop)
    mode = np.bincount((offsets - offsets.min()).astype(np.int64)).argmax() + offsets.min()
    consistent = np.abs(offsets - mode) <= 1
    return consistent.sum() >= max(1, COPY_SHARE * len(excerpt))


def _first_other(results: list[dict], rec: FileRecord, index: IndexReader,
                 is_variant: _Variants) -> float | None:
    """The score of the first result that is neither ``rec``, a byte-identical copy of it,
    nor a variant holding the excerpt (None when all of them are)."""
    for r in results:
        if r["path"] == rec.path:
            continue
        i = index.store.by_path.get(r["path"])
        if i is not None and (index.store.records[i].sha256 == rec.sha256 or is_variant(i)):
            continue
        return float(r["score"])
    return None


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{CALIBRATION}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(self_hashed_json(data))
        os.replace(tmp, path)
    except OSError:  # a read-only index, or the generation was just deleted: memory only
        tmp.unlink(missing_ok=True)


def confidence_fitted(index: IndexReader, rollup: str, thresholds: bool = False) -> bool:
    """Whether ``rollup``'s confidence model (and with ``thresholds``, the score
    thresholds) is already there (in memory or in a current ``calibration.json``), so that
    :func:`confidence_model` (:func:`calibration`) will not measure it now."""
    cached = _cache.get(index)
    data = (cached[1] if cached is not None and cached[0] == index.gen
            else _load(Path(index.gen) / CALIBRATION))
    return (data is not None and _current(data, index, vectors=True)
            and rollup in data.get("confidence", {}).get("fits", {})
            and (not thresholds or "thresholds" in data))


def _current(data: dict[str, Any], index: IndexReader, vectors: bool = False) -> bool:
    """Whether a saved calibration was measured with this version and the index's model
    (``vectors``: and on as many vectors as the index holds)."""
    return (data.get("version") == CALIBRATION_VERSION
            and data.get("model_sha256") == index.meta["model"]["sha256"]
            and (not vectors or data.get("vectors") == index.ntotal))


def confidence_model(index: IndexReader, rollup: str) -> dict[str, Any] | None:
    """The confidence model of ``rollup`` (:mod:`sonicsearch.index.confidence`), fitted on
    first use; None when the index is too small to fit one."""
    cal = calibration(index, confidence_for=rollup, thresholds=False)
    return cal["confidence"]["fits"][rollup].get("model")


def resolve_min_score(index: IndexReader, min_score: float | str | None, rollup: str,
                      segments: bool) -> float | None:
    """The threshold a query uses: a number as given, ``"auto"`` from the calibration (None
    when the index is too small to calibrate), or None."""
    min_score = parse_min_score(min_score)
    if min_score != "auto":
        return min_score
    thresholds = calibration(index).get("thresholds", {})
    value = thresholds.get("max" if segments else rollup)
    return None if value is None else float(value)
