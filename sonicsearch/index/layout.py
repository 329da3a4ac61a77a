"""On-disk layout of an index directory, and how a build replaces it atomically.

    DIR/CURRENT             text: the name of the live generation, e.g. ``gen-000003``
    DIR/.lock               held (fcntl.flock) by the one running build
    DIR/FAILED              text: why the first build failed (only until a build succeeds;
                            a first build that created DIR removes DIR instead)
    DIR/gen-NNNNNN/         one complete, self-contained index:
        index.faiss         the FAISS index (CPU form); id i = row i of the tables below
        meta.sqlite         files and windows tables (see store.py)
        vectors.npy         float32 (n, dim): the raw window vectors, row i = id i (or,
                            compact: vectors-q8.npy and projection.npz, index/codec.py)
        probs.npy           float32 (n, labels): head probabilities (label models only)
        model.pt            the model the vectors came from (a copy)
        index.json          facts: format, model, features, dim, type, counts, times, the
                            size and sha256 of every other file (``verify`` checks them),
                            and ``self_sha256``, its own checksum (checked on every open)
        calibration.json    the no-match calibration, written on first use (filters.py),
                            with its own ``self_sha256``

A build never touches a live generation. It writes a new folder completely, fsyncs every
file and the folder, then points CURRENT at it with a temp file + ``os.replace`` (atomic on
POSIX) and fsyncs DIR. Only then are older generations and leftovers of killed builds
deleted. So a kill at any moment leaves CURRENT naming a complete generation. Files in a
generation are never modified after it is written, which also makes hard links between
generations safe.

A reader holds a shared ``flock`` on the folder of the generation it opened
(:func:`hold_generation`); clean-up deletes only generations nobody holds, so a long-lived
reader keeps answering (and can load its model lazily) until it closes or refreshes, and
the next build deletes what it left.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sonicsearch.errors import IndexStoreError
from sonicsearch.utils.fileio import SELF_SHA256, file_sha256, self_hash_problem, self_hashed_json

# 2: index.json carries its own checksum. 1 (older builds): it does not; such an index is
# read, its index.json unverifiable (``manifest_verified``)
DEFAULT_INDEX_DIR = Path("indexes/default")  # where --index and AudioIndex.open look
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
CURRENT = "CURRENT"
LOCK = ".lock"
FAILED = "FAILED"
INDEX_FILE = "index.faiss"
META_DB = "meta.sqlite"
VECTORS = "vectors.npy"
PROBS = "probs.npy"
INFO = "index.json"
MODEL = "model.pt"
_GEN_RE = re.compile(r"^gen-(\d{6,})$")
_TMP_PREFIX = CURRENT + ".tmp-"
_REBUILD = "rebuild it with `sonicsearch build-index AUDIO... --index DIR --rebuild`"


class IndexLayout:
    """Paths and atomic operations of one index directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def current_name(self) -> str | None:
        """The live generation's folder name, or None when there is no index yet.

        Raises:
            IndexStoreError: CURRENT is unreadable or names no generation.
        """
        try:
            name = (self.root / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise IndexStoreError(f"index {self.root} is damaged: cannot read CURRENT "
                                  f"({exc.__class__.__name__}); {_REBUILD}") from None
        if not _GEN_RE.match(name):
            raise IndexStoreError(f"index {self.root} is damaged: CURRENT holds "
                                  f"{name[:40]!r}; {_REBUILD}")
        return name

    def current(self) -> Path | None:
        """The live generation folder, or None when there is no index yet."""
        name = self.current_name()
        return None if name is None else self.root / name

    def why_no_index(self) -> str:
        """The one-line reason an existing folder holds no CURRENT: its first build failed
        (FAILED says why), is running, or was killed; or it was never built."""
        try:
            why = (self.root / FAILED).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            why = None
        if why:
            return (f"the first build of index {self.root} failed: {why[:300]}; run "
                    "`sonicsearch build-index` again")
        if (self.root / LOCK).is_file():
            holder = _lock_holder(self.root / LOCK)
            if holder is not None:
                return (f"the first build of index {self.root} is still running"
                        + (f" (pid {holder})" if holder else "") + "; wait for it to finish")
            return (f"the first build of index {self.root} did not finish (it was killed or "
                    "crashed); run `sonicsearch build-index` again")
        return (f"no index at {self.root}: it has no CURRENT file (build one with "
                "`sonicsearch build-index`)")

    def first_build_failed(self, created: bool, why: str) -> None:
        """After a failed first build (no CURRENT), with the lock held: remove DIR when this
        build created it, else leave only FAILED (saying ``why``) beside what was there."""
        try:
            if self.current_name() is not None or not self.root.is_dir():
                return
        except IndexStoreError:  # a damaged CURRENT: not a first build
            return
        for gen in self.generations():
            shutil.rmtree(gen, ignore_errors=True)
        for tmp in self.root.glob(_TMP_PREFIX + "*"):
            tmp.unlink(missing_ok=True)
        ours = {LOCK, FAILED}
        if created and all(p.name in ours for p in self.root.iterdir()):
            shutil.rmtree(self.root, ignore_errors=True)
            return
        try:
            (self.root / FAILED).write_text(" ".join(why.split()) + "\n", encoding="utf-8")
        except OSError:  # the disk that failed the build: the build's own error says it
            pass

    def generations(self) -> list[Path]:
        """Every generation folder, complete or not, oldest first."""
        if not self.root.is_dir():
            return []
        gens = [p for p in self.root.iterdir() if _GEN_RE.match(p.name)]
        return sorted(gens, key=lambda p: int(p.name[4:]))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the builder lock; a second builder gets IndexStoreError at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                raise IndexStoreError(
                    f"another build is running on index {self.root}"
                    + (f" (pid {holder})" if holder else "")
                    + "; wait for it to finish") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def new_generation(self) -> Path:
        """Create the next, empty generation folder (numbered after every existing one)."""
        self.root.mkdir(parents=True, exist_ok=True)
        gens = self.generations()
        number = int(gens[-1].name[4:]) + 1 if gens else 1
        path = self.root / f"gen-{number:06d}"
        path.mkdir()
        return path

    def commit(self, gen: Path) -> None:
        """Make a completely written generation the live one (atomic)."""
        fsync_dir(gen)
        tmp = self.root / f"{_TMP_PREFIX}{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(gen.name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / CURRENT)
        fsync_dir(self.root)

    def cleanup(self) -> list[str]:
        """Delete every generation but the live one and those a reader holds, and temp files
        of killed builds.

        Call with the lock held. Returns the names deleted.
        """
        live = self.current_name()
        removed = []
        for gen in self.generations():
            if gen.name != live and _delete_unless_held(gen):
                removed.append(gen.name)
        if self.root.is_dir():
            for tmp in self.root.glob(_TMP_PREFIX + "*"):
                tmp.unlink(missing_ok=True)
                removed.append(tmp.name)
        if live is not None:
            (self.root / FAILED).unlink(missing_ok=True)
        return removed


def _lock_holder(path: Path) -> str | None:
    """The pid a running build wrote in its lock file ("" when unknown), or None when no
    build holds the lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return None
    finally:
        os.close(fd)  # releases the probe's shared lock at once


def hold_generation(gen: Path) -> int:
    """Take a reader's shared lock on a generation folder; returns the fd to release with
    :func:`release_generation`. Clean-up does not delete a held generation.

    Raises:
        IndexStoreError: the generation is gone or being deleted (open the newest instead).
    """
    try:
        fd = os.open(gen, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        raise IndexStoreError(f"index {gen.parent}: generation {gen.name} is gone") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise IndexStoreError(f"index {gen.parent}: generation {gen.name} is being "
                              "deleted") from None
    return fd


def release_generation(fd: int | None) -> None:
    """Release :func:`hold_generation`'s lock (None: nothing held)."""
    if fd is not None:
        os.close(fd)


def _delete_unless_held(gen: Path) -> bool:
    """Delete a generation folder unless a reader holds it; True when deleted."""
    try:
        fd = os.open(gen, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a reader has it open: a later clean-up deletes it
        shutil.rmtree(gen, ignore_errors=True)
        return True
    finally:
        os.close(fd)


def damaged(gen: Path, name: str, why: str) -> IndexStoreError:
    """The one-line error for a damaged file of a generation, naming it and the fix."""
    return IndexStoreError(
        f"index {gen.parent} is damaged: {gen.name}/{name} {why}; rebuild it with "
        f"`sonicsearch build-index AUDIO... --index {gen.parent} --rebuild`")


def write_index_json(gen: Path, meta: dict[str, Any]) -> None:
    """Write a generation's ``index.json`` with its own checksum, fsynced."""
    with open(gen / INFO, "wb") as f:
        f.write(self_hashed_json(meta))
        f.flush()
        os.fsync(f.fileno())


def read_index_json(gen: Path) -> dict[str, Any]:
    """Read and check ``index.json`` of a generation: its own checksum (format 2; a format-1
    file has none and is read unverified) and its format version.

    Raises:
        IndexStoreError: missing, not JSON, a byte changed since it was written, or of a
            format this version cannot read; the message names the file.
    """
    try:
        raw = (gen / INFO).read_bytes()
        meta = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise damaged(gen, INFO, "is missing") from None
    except (OSError, ValueError) as exc:
        raise damaged(gen, INFO, f"is unreadable ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict):
        raise damaged(gen, INFO, "is unreadable (not a JSON object)")
    version = meta.get("format_version")
    problem = self_hash_problem(raw) if SELF_SHA256 in meta or version == 2 else None
    if problem is not None:
        raise damaged(gen, INFO, problem)
    if version not in READABLE_FORMATS:
        raise IndexStoreError(f"index {gen.parent}: {gen.name}/{INFO} has format version "
                              f"{version!r}; this sonicsearch reads versions "
                              f"{', '.join(map(str, READABLE_FORMATS))}: rebuild it")
    return meta


def manifest_verified(meta: dict[str, Any]) -> bool:
    """Whether ``index.json`` carried its own checksum (verified when it was read); False
    for an index built before checksums of index.json (format 1)."""
    return SELF_SHA256 in meta


def file_sizes(gen: Path) -> dict[str, int]:
    """Byte sizes of a generation's files (but index.json), recorded in index.json."""
    return {p.name: p.stat().st_size for p in sorted(gen.iterdir())
            if p.is_file() and p.name != INFO}


def file_checksums(gen: Path, known: dict[str, str] | None = None) -> dict[str, str]:
    """SHA-256 of a generation's files (but index.json), recorded in index.json at commit.

    ``known`` gives digests already computed (a hard-linked file of the previous
    generation, the model whose digest the embedder knows), used without reading again.
    """
    known = known or {}
    return {p.name: known.get(p.name) or file_sha256(p) for p in sorted(gen.iterdir())
            if p.is_file() and p.name != INFO}


def check_sizes(gen: Path, meta: dict[str, Any]) -> None:
    """Raise IndexStoreError when a file of the generation is missing or truncated."""
    for name, size in meta.get("sizes", {}).items():
        path = gen / name
        if not path.is_file():
            raise damaged(gen, name, "is missing")
        if path.stat().st_size != size:
            raise damaged(gen, name, f"has {path.stat().st_size} bytes, {size} were written")


def verify(gen: Path, meta: dict[str, Any], names: list[str] | None = None) -> None:
    """Check sizes and the sha256 recorded at commit of every file of a generation (or of
    ``names`` only; an index from before checksums passes those), reading them whole.

    Raises:
        IndexStoreError: the first damaged file, named, with the fix.
    """
    check_sizes(gen, meta)
    sums = meta.get("sha256")
    if names is not None:
        sums = {n: d for n, d in (sums or {}).items() if n in names}
    elif not sums:
        raise IndexStoreError(f"index {gen.parent} was written by an older sonicsearch that "
                              "recorded no checksums; rebuild it with `sonicsearch build-index "
                              f"AUDIO... --index {gen.parent} --rebuild` to check it")
    for name, digest in sums.items():
        if not (gen / name).is_file():
            raise damaged(gen, name, "is missing")
        if file_sha256(gen / name) != digest:
            raise damaged(gen, name, "does not match the checksum recorded when it was written")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (same file system), else copy it; fsynced either way.

    Only for files that nobody modifies in place, such as those of a generation.
    """
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    fsync_file(dst)


def install_model(gen: Path, source: Path, sha256: str, previous: Path | None) -> None:
    """Put the model into a generation as ``model.pt``.

    The previous generation's copy is hard-linked when it is the same model. A user's model
    file is always copied, never linked: training may rewrite that file in place later,
    which would silently change a linked copy and break the index.

    Raises:
        IndexStoreError: the model file is missing, or its bytes are not the model that
            embedded the vectors (it changed on disk since it was loaded).
    """
    dst = gen / MODEL
    old = previous / MODEL if previous is not None else None
    if old is not None and old.is_file() and file_sha256(old) == sha256:
        link_or_copy(old, dst)
        return
    source = Path(source)
    if not source.is_file():
        raise IndexStoreError(f"model file {source} not found; the index must hold a copy of "
                              "the model it was built with")
    shutil.copyfile(source, dst)
    fsync_file(dst)
    if file_sha256(dst) != sha256:
        raise IndexStoreError(f"model file {source} changed on disk while building (its "
                              f"sha256 is no longer {sha256[:12]}); run the build again")
