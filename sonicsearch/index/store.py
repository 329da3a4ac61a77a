"""Metadata store of a generation: SQLite tables whose window row i is FAISS id i, plus the
raw vectors and head probabilities, so an update rebuilds FAISS without re-embedding.

    files(id, path UNIQUE, size, mtime_ns, sha256, duration, sample_rate, label,
          n_windows, first_row)
    windows(row = FAISS id, file_id, start, end)

Each build writes the whole store afresh, files sorted by path and rows renumbered from 0,
so a file's windows are the contiguous rows ``first_row .. first_row + n_windows - 1`` and
``files.id`` is the file's position. Removing a file works for every index type: its rows
are simply not copied into the next generation.

Paths are stored losslessly: as TEXT when they are valid UTF-8, else as a BLOB of the file
name's bytes (``os.fsencode``), read back with ``os.fsdecode`` (surrogate escapes).

Any SQLite error while reading (a damaged file) is an IndexStoreError naming the file and
the fix.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sonicsearch.index.codec import CODES, CompactVectors, open_vectors
from sonicsearch.index.layout import META_DB, PROBS, VECTORS, damaged, fsync_file
from sonicsearch.index.types import FileRecord

_SCHEMA = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, duration REAL NOT NULL,
    sample_rate INTEGER NOT NULL, label TEXT, n_windows INTEGER NOT NULL,
    first_row INTEGER NOT NULL
);
CREATE TABLE windows (
    row INTEGER PRIMARY KEY, file_id INTEGER NOT NULL REFERENCES files(id),
    start REAL NOT NULL, "end" REAL NOT NULL
);
CREATE INDEX windows_file ON windows(file_id);
"""
_FILE_COLUMNS = ("path, size, mtime_ns, sha256, duration, sample_rate, label, n_windows, "
                 "first_row")
_IN_CHUNK = 500  # ids per "WHERE row IN (...)" query


def write_meta(gen: Path, records: Sequence[FileRecord], spans: np.ndarray) -> None:
    """Write meta.sqlite into a new generation (fsynced).

    ``records`` must be in row order with ``first_row`` / ``n_windows`` set, covering the
    rows of ``spans`` exactly.
    """
    n = len(spans)
    if sum(r.n_windows for r in records) != n:
        raise ValueError(f"{len(records)} files cover {sum(r.n_windows for r in records)} "
                         f"rows, but there are {n} spans")
    db = gen / META_DB
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=OFF")  # a new, not yet live file: no journal needed
        conn.execute("PRAGMA synchronous=OFF")  # fsynced below, once
        conn.executescript(_SCHEMA)
        conn.executemany(
            f"INSERT INTO files (id, {_FILE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            ((i, _path_value(r.path), r.size, r.mtime_ns, r.sha256, r.duration, r.sample_rate,
              r.label, r.n_windows, r.first_row) for i, r in enumerate(records)))
        file_of_row = np.repeat(np.arange(len(records)), [r.n_windows for r in records])
        conn.executemany(
            'INSERT INTO windows (row, file_id, start, "end") VALUES (?,?,?,?)',
            zip(range(n), file_of_row.tolist(), spans[:, 0].tolist(), spans[:, 1].tolist()))
        conn.commit()
    finally:
        conn.close()
    fsync_file(db)


def _path_value(path: str) -> str | bytes:
    """How a path is stored: TEXT when it is valid UTF-8, else its bytes as a BLOB."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def _path_of(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


class Store:
    """Read side of one generation's metadata (opened read-only, never modified).

    Raises:
        IndexStoreError: the database is missing or inconsistent.
    """

    def __init__(self, gen: Path):
        self.gen = Path(gen)
        db = (self.gen / META_DB).resolve()
        if not db.is_file():
            raise damaged(self.gen, META_DB, "is missing")
        try:
            # immutable: no locks, no journal; the file is never written after its build
            self._conn = sqlite3.connect(db.as_uri() + "?mode=ro&immutable=1", uri=True,
                                         check_same_thread=False)
            rows = self._conn.execute(
                f"SELECT {_FILE_COLUMNS} FROM files ORDER BY id").fetchall()
            n_rows, max_row = self._conn.execute(
                "SELECT count(*), max(row) FROM windows").fetchone()
        except sqlite3.Error as exc:
            raise damaged(self.gen, META_DB, f"is unreadable ({exc})") from None
        self.records = [FileRecord(_path_of(r[0]), *r[1:]) for r in rows]
        self.first_rows = np.array([r.first_row for r in self.records], dtype=np.int64)
        self.n_windows = np.array([r.n_windows for r in self.records], dtype=np.int64)
        self.n_rows = int(n_rows)
        expected = np.cumsum(np.concatenate([[0], self.n_windows[:-1]]))
        if (not np.array_equal(self.first_rows, expected)
                or int(self.n_windows.sum()) != self.n_rows
                or (self.n_rows and max_row != self.n_rows - 1)):
            raise damaged(self.gen, META_DB, "has rows that do not match its files")
        self.by_path = {r.path: i for i, r in enumerate(self.records)}
        self._span_table: np.ndarray | None = None

    def file_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """File ids (positions in ``records``) of FAISS ids."""
        return np.searchsorted(self.first_rows, np.asarray(rows), side="right") - 1

    def spans(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 2) start, end seconds of the given FAISS ids."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._span_table is not None and (rows.size == 0 or (
                rows.min() >= 0 and rows.max() < self.n_rows)):
            return self._span_table[rows].reshape(-1, 2)
        unique = np.unique(rows)
        found: dict[int, tuple[float, float]] = {}
        for i in range(0, unique.size, _IN_CHUNK):
            chunk = unique[i : i + _IN_CHUNK].tolist()
            marks = ",".join("?" * len(chunk))
            for row, start, end in self._sql(
                    f'SELECT row, start, "end" FROM windows WHERE row IN ({marks})', chunk):
                found[row] = (start, end)
        if len(found) != unique.size:
            raise damaged(self.gen, META_DB, "lacks rows of its windows table")
        return np.array([found[r] for r in rows.tolist()], dtype=np.float64).reshape(-1, 2)

    def file_spans(self, file_id: int) -> np.ndarray:
        """(n_windows, 2) start, end seconds of one file's windows, in row order."""
        a, n = int(self.first_rows[file_id]), int(self.n_windows[file_id])
        if self._span_table is not None:  # read once already (span_table)
            return self._span_table[a : a + n].copy()
        data = self._sql('SELECT start, "end" FROM windows WHERE row BETWEEN ? AND ? '
                         "ORDER BY row", (a, a + n - 1))
        if len(data) != n:
            raise damaged(self.gen, META_DB, "lacks rows of its windows table")
        return np.array(data, dtype=np.float64).reshape(-1, 2)

    def all_spans(self) -> np.ndarray:
        """(n_rows, 2) spans of every row, in row order."""
        data = self._sql('SELECT start, "end" FROM windows ORDER BY row')
        if len(data) != self.n_rows:
            raise damaged(self.gen, META_DB, "lacks rows of its windows table")
        return np.array(data, dtype=np.float64).reshape(-1, 2)

    def span_table(self) -> np.ndarray:
        """:meth:`all_spans`, read on first use and kept (16 bytes a row in memory): what
        the candidates of every query are scored with."""
        if self._span_table is None:
            self._span_table = self.all_spans()
        return self._span_table

    def integrity_problem(self) -> str | None:
        """SQLite's ``PRAGMA integrity_check``: None when fine, else its first complaint."""
        try:
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.Error as exc:
            return str(exc)
        first = str(rows[0][0]) if rows else "no answer"
        return None if first == "ok" else first[:160]

    def _sql(self, sql: str, params: Sequence = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise damaged(self.gen, META_DB, f"is unreadable ({exc})") from None

    def vectors(self) -> np.ndarray | CompactVectors:
        """The stored vectors, read-only: the raw float32 memory map, or a compact
        generation's codes decoded on access (index/codec.py); row i = id i."""
        array = open_vectors(self.gen)
        if len(array) != self.n_rows:
            name = VECTORS if isinstance(array, np.ndarray) else CODES
            raise damaged(self.gen, name, f"has shape {array.shape} for {self.n_rows} windows")
        return array

    def probs(self) -> np.ndarray | None:
        """The window probabilities, memory-mapped, or None for a label-free model."""
        return self._load(PROBS) if (self.gen / PROBS).is_file() else None

    def _load(self, name: str) -> np.ndarray:
        try:
            array = np.load(self.gen / name, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise damaged(self.gen, name, f"is unreadable ({exc.__class__.__name__})") from None
        if array.ndim != 2 or len(array) != self.n_rows:
            raise damaged(self.gen, name, f"has shape {array.shape} for {self.n_rows} windows")
        return array

    def close(self) -> None:
        self._conn.close()
