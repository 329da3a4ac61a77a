"""Audio inside archives that Debian packages ship: .pk3/.zip files and OpenTTD's .cat
sound banks, unpacked beside each archive once (used by :mod:`sonicsearch.data.debian`)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

AUDIO_SUFFIXES = (".ogg", ".oga", ".opus", ".wav", ".flac", ".mp3")
ARCHIVE_SUFFIXES = (".pk3", ".zip")
STAMP = ".extracted"  # written into a folder once it is completely unpacked


def unpack_archives(root: str | Path) -> int:
    """Unpack the audio inside .pk3/.zip archives (and OpenTTD .cat sound banks) under
    ``root`` into a folder ``ARCHIVE.d/`` beside each (once); return the files written.
    Members with absolute paths or ``..`` are ignored."""
    written = 0
    for arc in sorted(Path(root).rglob("*")):
        suffix = arc.suffix.lower()
        out = arc.with_name(arc.name + ".d")
        if not arc.is_file() or (out / STAMP).is_file() or arc.parent.name.endswith(".d"):
            continue
        if suffix in ARCHIVE_SUFFIXES:
            try:
                with zipfile.ZipFile(arc) as z:
                    for m in z.infolist():
                        name = Path(m.filename)
                        if (m.is_dir() or name.is_absolute() or ".." in name.parts
                                or name.suffix.lower() not in AUDIO_SUFFIXES):
                            continue
                        (out / name).parent.mkdir(parents=True, exist_ok=True)
                        (out / name).write_bytes(z.read(m))
                        written += 1
            except zipfile.BadZipFile:
                continue
        elif suffix == ".cat":
            count = _unpack_sound_bank(arc, out)
            if not count:
                continue
            written += count
        else:
            continue
        out.mkdir(exist_ok=True)
        (out / STAMP).write_text(arc.name + "\n")
    return written


def _unpack_sound_bank(cat: Path, out: Path) -> int:
    """OpenTTD's .cat: a table of (offset, size), each entry a name then a RIFF WAV."""
    data = cat.read_bytes()
    if len(data) < 8 or b"RIFF" not in data:
        return 0  # another kind of .cat (a message catalogue, say)
    n = min((struct.unpack_from("<I", data)[0] & 0x7FFFFFFF) // 8, len(data) // 8)
    count = 0
    for i in range(n):
        off, size = struct.unpack_from("<II", data, 8 * i)
        start = data.find(b"RIFF", off & 0x7FFFFFFF, (off & 0x7FFFFFFF) + size)
        if start < 0 or start + 8 > len(data):
            continue
        riff = struct.unpack_from("<I", data, start + 4)[0]
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{i:03d}.wav").write_bytes(data[start:start + 8 + riff])
        count += 1
    return count
