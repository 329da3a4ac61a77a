"""Is an encoded file complete? Cheap checks of what a truncated file looks like: an Ogg
stream without its end-of-stream page, an MP3 shorter than its Xing/Info byte count, or
any file that decodes to fewer frames than its header promises."""

from __future__ import annotations

from pathlib import Path

from sonicsearch.errors import AudioError

MPEG_FRAME = 1152  # samples per MPEG-1 Layer III frame
TRUNCATION_SLACK = 2 * MPEG_FRAME  # frames a complete file may decode short of its header
# Real, complete MP3s can decode a little short of a header estimate (a Debian soundtrack
# mp3 decodes 440.76 s of 441.14 s): a shortfall counts only past 1 % of the file too.
TRUNCATION_FRACTION = 0.01
_OGG_TAIL = 1 << 16  # bytes read from the end of an Ogg file to find its last page


def check_complete(path, decoded: int, promised: int, sample_rate: int) -> None:
    """Raise AudioError when a file decoded to clearly fewer frames than its header says."""
    if promised - decoded > max(TRUNCATION_SLACK, TRUNCATION_FRACTION * promised):
        raise AudioError(path, f"truncated (decodes {decoded / sample_rate:.2f}s of the "
                               f"{promised / sample_rate:.2f}s its header promises)")


def ogg_truncated(p: Path, size: int) -> str | None:
    """Why an Ogg file is cut short, or None: its last page must be whole and carry the
    end-of-stream flag."""
    try:
        with open(p, "rb") as fh:
            fh.seek(max(0, size - _OGG_TAIL))
            tail = fh.read()
    except OSError:
        return None  # libsndfile reports unreadable files
    at = tail.rfind(b"OggS")
    if at < 0 or len(tail) - at < 27:
        return "truncated (the Ogg stream has no whole last page)"
    n_segments = tail[at + 26]
    length = 27 + n_segments + sum(tail[at + 27 : at + 27 + n_segments])
    if len(tail) - at < length:
        return "truncated (the last Ogg page is cut short)"
    if not tail[at + 5] & 0x04:
        return "truncated (the Ogg stream has no end-of-stream page)"
    return None


def mp3_truncated(p: Path, size: int) -> str | None:
    """Why an MP3 file is cut short, or None: a Xing/Info frame (LAME and most encoders
    write one) records the stream's byte count, which a truncated file falls short of."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(1 << 14)
    except OSError:
        return None
    start = 0
    if head[:3] == b"ID3" and len(head) >= 10:  # skip an ID3v2 tag (syncsafe size)
        start = 10 + sum((head[6 + i] & 0x7F) << (7 * (3 - i)) for i in range(4))
        try:
            with open(p, "rb") as fh:
                fh.seek(start)
                head = fh.read(1 << 12)
        except OSError:
            return None
    else:
        head = head[: 1 << 12]
    at = max(head.find(b"Xing", 0, 200), head.find(b"Info", 0, 200))
    if at < 0 or len(head) < at + 16:
        return None
    flags = int.from_bytes(head[at + 4 : at + 8], "big")
    if not flags & 0x02:
        return None
    stream_bytes = int.from_bytes(head[at + 8 + 4 * (flags & 0x01) :][:4], "big")
    if stream_bytes and size - start < 0.99 * stream_bytes:
        return (f"truncated ({size - start} bytes of the {stream_bytes} its Xing/Info header "
                "promises)")
    return None
