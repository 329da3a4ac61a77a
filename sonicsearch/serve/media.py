"""Indexed audio out: opening only the files the index holds, byte ranges, spectrograms.

A file is served by its id in the index's metadata, never by a path from the client. It is
opened without following a final symlink, and refused unless its resolved path is still
the indexed (resolved) path and its size and modification time are still the indexed ones:
a symlink or another file swapped in after indexing is never read.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sonicsearch.index.types import FileRecord

CHUNK = 64 * 1024
SPECTRO_RATE = 16000
SPECTRO_BINS = 80
SPECTRO_MAX_COLS = 480
SPECTRO_MAX_SECONDS = 60.0
_TYPES = {".wav": "audio/wav", ".wave": "audio/wav", ".flac": "audio/flac",
          ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg", ".mp3": "audio/mpeg",
          ".aif": "audio/aiff", ".aiff": "audio/aiff", ".au": "audio/basic"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class FileRefused(Exception):
    """An indexed file that may not be served; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def file_id(path: str) -> str:
    """A file's id: stable across generations for the same indexed path, and opaque."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def media_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return _TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def open_indexed(rec: FileRecord) -> tuple[int, int]:
    """Open an indexed file for reading, after checking it is still the file indexed.

    Returns:
        ``(fd, size)``; the caller closes fd.

    Raises:
        FileRefused: 404 gone, 403 a symlink or outside the indexed path, 409 changed.
    """
    try:
        real = os.path.realpath(rec.path, strict=True)
    except OSError:
        raise FileRefused(404, "the indexed file is gone from disk; rebuild the index") \
            from None
    if real != rec.path:
        raise FileRefused(403, "the indexed path now leads elsewhere (a symlink was put in "
                               "its place); refusing to serve it")
    try:
        fd = os.open(rec.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        raise FileRefused(403, "the indexed path is not a plain readable file") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileRefused(403, "the indexed path is not a plain file")
    if st.st_size != rec.size or st.st_mtime_ns != rec.mtime_ns:
        os.close(fd)
        raise FileRefused(409, "the file changed on disk since it was indexed; rebuild the "
                               "index")
    return fd, st.st_size


@dataclass
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The byte range a ``Range`` header asks for (first range only), None for the whole
    file (no header, or one this server ignores: not bytes, or several ranges).

    Raises:
        FileRefused: 416 when the range lies outside the file.
    """
    if not header:
        return None
    m = _RANGE.match(header.strip().replace(" ", ""))
    if m is None:
        return None
    first, last = m.groups()
    if first == "" and last == "":
        return None
    if first == "":  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise FileRefused(416, "empty suffix range")
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or end < start:
        raise FileRefused(416, f"range starts past the end of a {size}-byte file")
    return ByteRange(start, end)


def iter_fd(fd: int, start: int, length: int) -> Iterator[bytes]:
    """Read ``length`` bytes from ``start`` in chunks, closing fd at the end."""
    try:
        pos, left = start, length
        while left > 0:
            block = os.pread(fd, min(CHUNK, left), pos)
            if not block:
                break
            pos += len(block)
            left -= len(block)
            yield block
    finally:
        os.close(fd)


def spectrogram(wave: np.ndarray, sr: int, offset: float = 0.0,
                max_cols: int = SPECTRO_MAX_COLS, bins: int = SPECTRO_BINS) -> dict:
    """A small log-frequency spectrogram for the page to draw.

    Returns:
        ``{width, height, offset, duration, data}``: ``data`` is base64 of ``height`` rows
        of ``width`` bytes, lowest frequency first, 0 = 80 dB below the loudest, 255 = it.
    """
    wave = np.asarray(wave, dtype=np.float32)
    duration = wave.size / sr
    n_fft = 512 if sr >= 12000 else 256
    if wave.size < n_fft:
        wave = np.pad(wave, (0, n_fft - wave.size))
    cols = max(1, min(max_cols, (wave.size - n_fft) // (n_fft // 4) + 1))
    starts = np.linspace(0, wave.size - n_fft, cols).astype(np.int64)
    frames = wave[starts[:, None] + np.arange(n_fft)[None, :]] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (cols, n_fft/2+1)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    edges = np.geomspace(40.0, sr / 2, bins + 1)
    band = np.clip(np.searchsorted(edges, freqs) - 1, 0, bins - 1)
    ok = freqs >= edges[0]
    spec = np.zeros((cols, bins))
    np.add.at(spec.T, band[ok], power[:, ok].T)
    counts = np.bincount(band[ok], minlength=bins)
    spec = spec / np.maximum(counts, 1)
    # empty bands (narrower than one FFT bin at the bottom): copy the band above
    for b in range(bins - 2, -1, -1):
        if counts[b] == 0:
            spec[:, b] = spec[:, b + 1]
    db = 10 * np.log10(spec + 1e-12)
    db = np.clip(db - db.max() + 80.0, 0, 80) / 80 * 255
    image = db.T.astype(np.uint8)  # (bins, cols)
    return {"width": int(cols), "height": int(bins), "offset": round(offset, 3),
            "duration": round(duration, 3),
            "data": base64.b64encode(image.tobytes()).decode("ascii")}
