"""Browse a collection by similarity, from the style vectors an index already holds (no
second index): a similarity path between two indexed files, and a 2-D map of the files.

**A similarity path** (:func:`similarity_path`) is a playlist of ``n`` indexed files that
starts at one file and ends at another by small steps. It is built by refining the largest
step: start with ``[a, b]``; while the playlist is short, take its largest step ``u -> v``
(by cosine distance of the files' style vectors) that some unused file can shorten, and
put between them the unused file ``x`` with the smallest ``max(d(u, x), d(x, v))``; when
no file shortens any step, the file that adds the least length goes where it adds least.
Why this and not the two usual recipes (measured by ``benchmarks/browse.py`` on 203
excerpts of real music, 300 pairs of files from two soundtracks, n = 8; cosine of
consecutive files' style vectors):

- *interpolate, then take the nearest unused file at each point* follows a straight line
  between the two vectors; in 128 dimensions that line runs through empty space, so a
  pick can be far from the one before it: worst step 0.40 on average (5th percentile
  -0.04), against 0.62 (0.42) here;
- *a shortest path in a k-nearest-neighbour graph* (squared distances) has steps as small
  (worst 0.63) and moves away from the end less often (6 % of steps, 19 % here), but it
  chooses its own length: it had exactly n files for 11 % of the pairs, and padding or
  cutting it to n repeats, detours or jumps.

Refinement gives exactly ``n`` distinct files and shrinks the worst jump first. Each
insertion costs one matrix-vector product over the collection and a pass over the steps:
a path of 8 files among 10^4 takes about 0.04 s, of 50 files 0.7 s (loaded 2-core CPU).

**A map** (:func:`collection_map`) is the principal-component projection of every file's
style vector to 2-D: exact, deterministic (signs fixed), one SVD of a (files, 128) matrix,
0.6 s for 10^4 files on the loaded 2-core CPU. Files close on the map sound alike along
the two directions in which the collection varies most; ``explained`` says how much of
the variance the two keep.

Both use the index's style vectors (the model's style head, or the mean of the window
vectors for a model without one; an index built before style vectors gets them pooled
from its window vectors, with a note, as ``--mode style`` does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sonicsearch.errors import ConfigError, IndexStoreError

MAX_PATH_FILES = 500  # a playlist, not a sort of the collection


@dataclass
class SimilarityPath:
    """A playlist from one indexed file to another: ``files`` (ids, first is the start),
    ``steps`` (cosine similarity of each file to the one before it; 1.0 for the first)."""

    index: str
    files: list[int]
    paths: list[str]
    labels: list[str | None]
    durations: list[float]
    steps: list[float]
    to_start: list[float]
    to_end: list[float]

    def to_dict(self) -> dict[str, Any]:
        """The path JSON (docs/formats.md#path-json)."""
        return {
            "index": self.index, "from": self.paths[0], "to": self.paths[-1],
            "n": len(self.files), "method": "refine-largest-step",
            "worst_step": round(min(self.steps[1:]), 6),
            "mean_step": round(float(np.mean(self.steps[1:])), 6),
            "files": [{"step": i, "path": p, "label": lab, "duration": round(d, 3),
                       "similarity": round(s, 6), "to_start": round(a, 6),
                       "to_end": round(b, 6)}
                      for i, (p, lab, d, s, a, b) in enumerate(zip(
                          self.paths, self.labels, self.durations, self.steps,
                          self.to_start, self.to_end))],
        }


@dataclass
class CollectionMap:
    """Every indexed file placed in 2-D: ``xy (files, 2)`` and the share of the style
    vectors' variance each axis keeps (``explained``)."""

    index: str
    xy: np.ndarray
    explained: tuple[float, float]
    paths: list[str]
    labels: list[str | None]
    durations: list[float]

    def to_dict(self) -> dict[str, Any]:
        """The map JSON (docs/formats.md#map-json); ``folder`` is each file's parent."""
        return {
            "index": self.index, "files": len(self.paths), "method": "pca",
            "explained": [round(float(e), 6) for e in self.explained],
            "points": [{"path": p, "x": round(float(x), 6), "y": round(float(y), 6),
                        "label": lab, "folder": os.path.dirname(p), "duration": round(d, 3)}
                       for p, (x, y), lab, d in zip(self.paths, self.xy, self.labels,
                                                   self.durations)],
        }


def path_between(reader: Any, a: int | str | Path, b: int | str | Path,
                 n: int) -> SimilarityPath:
    """The similarity path of ``n`` files from ``a`` to ``b`` (ids or indexed paths) in an
    opened index (an :class:`~sonicsearch.index.reader.IndexReader`).

    Raises:
        IndexStoreError: a file not in the index; an index without files.
        ConfigError: the same file twice, n < 2, n above the collection.
    """
    records = reader.store.records
    ia = file_id(records, reader.store.by_path, a, reader.root)
    ib = file_id(records, reader.store.by_path, b, reader.root)
    if n > len(records):  # said before the style vectors are read (or pooled)
        raise ConfigError(f"a path of {n} files needs {n} indexed files; the index holds "
                          f"{len(records)}")
    v = usable_style(reader.style.files, reader.root)
    ids = similarity_path(v, ia, ib, n)
    sims = [1.0] + [float(v[p] @ v[q]) for p, q in zip(ids, ids[1:])]
    return SimilarityPath(str(reader.root), ids, [records[i].path for i in ids],
                          [records[i].label for i in ids],
                          [float(records[i].duration) for i in ids], sims,
                          [float(v[i] @ v[ia]) for i in ids], [float(v[i] @ v[ib]) for i in ids])


def map_of(reader: Any) -> CollectionMap:
    """Every file of an opened index placed in 2-D by :func:`pca_2d` of its style vector.

    Raises:
        IndexStoreError: an index without files.
    """
    records = reader.store.records
    v = usable_style(reader.style.files, reader.root)
    xy, explained = pca_2d(v)
    return CollectionMap(str(reader.root), xy, explained, [r.path for r in records],
                         [r.label for r in records], [float(r.duration) for r in records])


def file_id(records: Any, by_path: dict[str, int], file: int | str | Path,
            root: Path | str) -> int:
    """The id of an indexed file given by id or by path (resolved, as the index stores it).

    Raises:
        IndexStoreError: no such file in the index.
    """
    n = len(records)
    if isinstance(file, int | np.integer) and not isinstance(file, bool):
        if 0 <= int(file) < n:
            return int(file)
        raise IndexStoreError(f"no file {file} in index {root} (ids are 0 to {n - 1})")
    key = str(Path(file).resolve())
    if key not in by_path:
        raise IndexStoreError(f"{file} is not in index {root} ({n} files): index it with "
                              f"`sonicsearch build-index`, or ask with `sonicsearch query`")
    return by_path[key]


def similarity_path(vectors: np.ndarray, a: int, b: int, n: int) -> list[int]:
    """``n`` distinct file ids from ``a`` to ``b`` by small steps (see the module).

    Args:
        vectors: (files, S) style vectors, L2-normalised.
        a, b: the first and last file; n: files in the path, both ends included.

    Raises:
        ConfigError: a == b, n < 2, n above the collection or :data:`MAX_PATH_FILES`.
    """
    total = len(vectors)
    if a == b:
        raise ConfigError("a path needs two different files; for files like one, ask "
                          "`sonicsearch similar FILE`")
    if n < 2:
        raise ConfigError(f"a path holds at least its 2 ends; n={n}")
    if n > total:
        raise ConfigError(f"a path of {n} files needs {n} indexed files; the index holds "
                          f"{total}")
    if n > MAX_PATH_FILES:
        raise ConfigError(f"a path holds at most {MAX_PATH_FILES} files; n={n}")
    v = np.asarray(vectors, np.float32)
    used = np.zeros(total, bool)
    used[[a, b]] = True
    path, cols = [a, b], [_distances(v, a), _distances(v, b)]  # cols[i]: d(path[i], .)
    while len(path) < n:
        i, x = _split(path, cols, used)
        path.insert(i + 1, x)
        cols.insert(i + 1, _distances(v, x))
        used[x] = True
    return path


def _distances(v: np.ndarray, i: int) -> np.ndarray:
    """Cosine distance of every file to file ``i``."""
    return 1.0 - (v @ v[i]).astype(np.float64)


def _split(path: list[int], cols: list[np.ndarray], used: np.ndarray) -> tuple[int, int]:
    """Where to insert which file: the largest step that an unused file shrinks (the one
    with the smallest ``max(d(u, x), d(x, v))``; ties: the lowest id); when no file
    shrinks any step, the cheapest insertion (the least added length)."""
    gaps = np.array([cols[i][path[i + 1]] for i in range(len(path) - 1)])
    for i in np.argsort(-gaps, kind="stable"):
        cost = np.where(used, np.inf, np.maximum(cols[i], cols[i + 1]))
        x = int(np.argmin(cost))
        if cost[x] < gaps[i]:
            return int(i), x
    added = np.stack([cols[i] + cols[i + 1] - gaps[i] for i in range(len(gaps))])
    added[:, used] = np.inf
    i, x = np.unravel_index(int(np.argmin(added)), added.shape)
    return int(i), int(x)


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The first two principal components of ``vectors (n, S)`` and the share of the
    variance each keeps; a component's sign makes its largest loading positive, so a
    map does not flip between runs. Fewer than 3 distinct vectors: zeros where undefined."""
    x = np.asarray(vectors, np.float64)
    out = np.zeros((len(x), 2))
    if len(x) < 2:
        return out, (0.0, 0.0)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    total = float((s**2).sum())
    k = min(2, len(s))
    for j in range(k):
        if s[j] <= 1e-12 * max(s[0], 1e-300):
            continue
        axis = vt[j] * np.sign(vt[j][np.argmax(np.abs(vt[j]))])
        out[:, j] = x @ axis
    explained = [float(s[j] ** 2 / total) if total > 0 and j < k else 0.0 for j in range(2)]
    return out, (explained[0], explained[1])


def usable_style(vectors: np.ndarray, root: Path | str) -> np.ndarray:
    """The style vectors as float32, normalised; an index with none is an error."""
    v = np.asarray(vectors, np.float32)
    if v.ndim != 2 or len(v) == 0 or v.shape[1] == 0:
        raise IndexStoreError(f"index {root} holds no style vectors (no files): build it "
                              "with `sonicsearch build-index AUDIO`")
    if not np.isfinite(v).all():
        raise IndexStoreError(f"index {root} has non-finite style vectors: rebuild it with "
                              "`sonicsearch build-index --rebuild`")
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
