"""Files written whole or not at all, and their digests.

A run's ``model.pt`` and ``last.pt`` and an index's model copy are read back by later
commands; a crash in the middle of a write must leave the previous file, never half of one.

A small JSON file can also carry its own checksum (:func:`self_hashed_json`): its last key
``self_sha256`` holds the SHA-256 of the file's exact bytes with those 64 hex digits
written as zeros, so any changed byte (a value, a key, the digest itself) is found by
:func:`self_hash_problem` without a second file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sonicsearch.errors import SonicsearchError

SELF_SHA256 = "self_sha256"  # the key of a JSON file's checksum of itself
_ZEROS = "0" * 64
_SELF_RE = re.compile(rb'"' + SELF_SHA256.encode() + rb'": "([0-9a-f]{64})"')


class UnreadableFileError(SonicsearchError, OSError):
    """A file that cannot be read. Also an OSError (``errno``, ``strerror``), so callers
    that skip unreadable files on OSError keep doing so."""

    def __str__(self) -> str:
        return f"cannot read {self.filename}: {self.strerror}"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes.

    Raises:
        UnreadableFileError: the file cannot be read (a SonicsearchError and an OSError).
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as exc:
        raise UnreadableFileError(exc.errno, exc.strerror or str(exc), str(path)) from None
    return h.hexdigest()


def self_hashed_json(data: dict[str, Any]) -> bytes:
    """``data`` as indented JSON bytes whose last key ``self_sha256`` is the SHA-256 of
    these bytes with its own 64 hex digits as zeros (an existing ``self_sha256`` is
    replaced)."""
    body = {k: v for k, v in data.items() if k != SELF_SHA256}
    body[SELF_SHA256] = _ZEROS
    text = (json.dumps(body, indent=2) + "\n").encode("utf-8")
    digest = hashlib.sha256(text).hexdigest()
    field = f'"{SELF_SHA256}": "{_ZEROS}"'.encode()
    at = text.rindex(field)  # the last key: nested values cannot shift it
    return text[:at] + field.replace(_ZEROS.encode(), digest.encode()) + text[at + len(field):]


def self_hash_problem(raw: bytes) -> str | None:
    """Why the bytes of a :func:`self_hashed_json` file are not the ones written, or None
    when they are."""
    found = list(_SELF_RE.finditer(raw))
    if len(found) != 1:
        return f"has no readable {SELF_SHA256} (its checksum of itself)"
    m = found[0]
    zeroed = raw[:m.start(1)] + _ZEROS.encode() + raw[m.end(1):]
    if hashlib.sha256(zeroed).hexdigest() != m.group(1).decode():
        return f"does not match its {SELF_SHA256} (the checksum recorded when it was written)"
    return None


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same folder, fsynced and
    renamed over ``path``: readers see the old file or the new one, never a partial one.

    Raises:
        OSError: the folder is not writable or the disk is full (``path`` is left as it was).
    """
    import torch

    _atomic_write(path, "wb", lambda fh: torch.save(obj, fh))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a small text file through a fsynced temporary file and a rename."""
    _atomic_write(path, "w", lambda fh: fh.write(text))


def _atomic_write(path: str | Path, mode: str, write: Callable[[Any], Any]) -> None:
    """``write(fh)`` into a temporary file beside ``path``, fsync it, rename it over
    ``path`` and fsync the folder; on any failure ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fsync_dir(path.parent)
