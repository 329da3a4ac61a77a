"""Uploaded clips in: streamed to a temporary file with the size limit enforced as the bytes
arrive, then checked to be audio the server can decode and not too long, before any
decoding work.

Two request shapes are accepted: ``multipart/form-data`` with the clip in a file part
(other small parts are form fields), or the clip as the raw body (``audio/*`` or
``application/octet-stream``, name in ``?filename=``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

from sonicsearch.audio import audio_info
from sonicsearch.errors import AudioError

MAX_FIELD_BYTES = 4096
MAX_FIELDS = 32
_SNIFF = 64


class UploadRejected(Exception):
    """The upload cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class Upload:
    """A received clip: where it was written, its name, and the form fields beside it."""

    path: Path
    filename: str
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


async def receive(stream: AsyncIterator[bytes], content_type: str, max_bytes: int,
                  filename: str | None = None) -> Upload:
    """Write an upload to a temporary file, refusing it (413) once it passes ``max_bytes``.

    Raises:
        UploadRejected: 413 too big, 400 malformed or no file part, 415 wrong content type.
    """
    ctype, params = parse_options_header(content_type or "")
    ctype = ctype.decode("latin-1").lower()
    fd, name = tempfile.mkstemp(prefix="sonicsearch-upload-")
    out = os.fdopen(fd, "wb")
    up = Upload(Path(name), base_name(filename))
    try:
        if ctype == "multipart/form-data":
            boundary = params.get(b"boundary")
            if not boundary:
                raise UploadRejected(400, "multipart body without a boundary")
            await _multipart(stream, boundary, out, up, max_bytes)
        elif ctype.startswith("audio/") or ctype in ("application/octet-stream", "video/webm",
                                                      "video/ogg"):
            async for chunk in stream:
                up.size += len(chunk)
                if up.size > max_bytes:
                    raise UploadRejected(413, _too_big(max_bytes))
                out.write(chunk)
        else:
            raise UploadRejected(415, f"send the clip as multipart/form-data (field 'file') or "
                                      f"as an audio/* body, not {ctype or 'no content type'}")
        out.close()
        if up.size == 0:
            raise UploadRejected(400, "no clip in the request (an empty file, or no 'file' part)")
        return up
    except BaseException:
        out.close()
        up.discard()
        raise


async def _multipart(stream: AsyncIterator[bytes], boundary: bytes, out, up: Upload,
                     max_bytes: int) -> None:
    part: dict = {}

    def on_part_begin() -> None:
        part.clear()
        part.update(headers={}, field=b"", value=b"", data=bytearray(), file=False)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].decode("latin-1").lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(part["headers"].get("content-disposition", b""))
        part["name"] = disp.get(b"name", b"").decode("utf-8", "replace")
        fname = disp.get(b"filename")
        part["file"] = fname is not None and not up.size
        if part["file"]:
            up.filename = base_name(fname.decode("utf-8", "replace"))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part["file"]:
            up.size += end - start
            if up.size > max_bytes:
                raise UploadRejected(413, _too_big(max_bytes))
            out.write(data[start:end])
        else:
            part["data"] += data[start:end]
            if len(part["data"]) > MAX_FIELD_BYTES:
                raise UploadRejected(413, f"form field {part['name']!r} is over "
                                          f"{MAX_FIELD_BYTES} bytes")

    def on_part_end() -> None:
        if not part["file"] and part.get("name"):
            if len(up.fields) >= MAX_FIELDS:
                raise UploadRejected(413, f"more than {MAX_FIELDS} form fields")
            up.fields[part["name"]] = part["data"].decode("utf-8", "replace")

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except UploadRejected:
        raise
    except Exception as exc:  # the parser's own errors: a malformed body
        raise UploadRejected(400, f"malformed multipart body ({exc})") from None


def base_name(name: str | None) -> str:
    """A client's file name without any folders (``/`` or ``\\``), else ``upload``."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base if base not in ("", ".", "..") else "upload"


def check_audio(up: Upload, max_seconds: float) -> float:
    """Check the received clip is audio this server decodes, no longer than ``max_seconds``
    (read from its header: nothing is decoded yet). Returns its duration.

    Raises:
        UploadRejected: 415 not audio (or a container libsndfile cannot read, named),
            413 too long.
    """
    with open(up.path, "rb") as f:
        head = f.read(_SNIFF)
    container = _unsupported_container(head)
    if container:
        raise UploadRejected(415, f"{up.filename}: {container} audio cannot be decoded by this "
                                  "server (libsndfile reads WAV, FLAC, Ogg Vorbis/Opus, MP3, "
                                  "AIFF); convert it, or use the web page, which converts in "
                                  "the browser")
    try:
        info = audio_info(up.path)
    except AudioError as exc:
        raise UploadRejected(415, f"{up.filename}: not an audio file this server can decode "
                                  f"({exc.reason})") from None
    if info.duration > max_seconds:
        raise UploadRejected(413, f"{up.filename}: {info.duration:.0f} s is over the "
                                  f"{max_seconds:.0f} s limit for a query clip; cut it")
    return info.duration


def _unsupported_container(head: bytes) -> str | None:
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "WebM/Matroska"
    if head[4:8] == b"ftyp":
        return "MP4/M4A (AAC)"
    return None


def _too_big(max_bytes: int) -> str:
    return f"the clip is over the {max_bytes / 1e6:g} MB upload limit; send a shorter one"
