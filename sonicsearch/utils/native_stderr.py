"""What C libraries write straight to file descriptor 2, caught around one call.

libsndfile's MP3 decoder (mpg123) prints warnings such as ``Warning: Xing stream size off
by more than 1%, fuzzy seeking may be even more fuzzy than by design!`` from C while it
opens a file, with no file name. :func:`native_stderr` points fd 2 at a temporary file for
the duration of a block, so the caller can say which file the message is about.

Anything else that reached fd 2 meanwhile (another thread's log line, a progress bar) is
written back unchanged, so nothing is lost; captures are serialised by a lock.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
# mpg123's and libsndfile's own message shapes: "Warning: ...", "Note: ...",
# "[src/libmpg123/parse.c:123] warning: ..."
_DECODER_LINE = re.compile(r"^(?:\[[^\]]*\]\s*)?(warning|note|error):\s*(.+)$", re.IGNORECASE)


@contextmanager
def native_stderr() -> Iterator[list[str]]:
    """Capture fd 2 inside the block; the yielded list gets the decoder's messages (without
    their ``Warning:`` prefix) when the block ends. Where fd 2 cannot be redirected (closed,
    or not a real descriptor) the block runs uncaptured and the list stays empty."""
    messages: list[str] = []
    with _LOCK:
        try:
            saved = os.dup(2)
        except OSError:
            yield messages
            return
        with tempfile.TemporaryFile() as tmp:
            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            try:
                yield messages
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                _sort(tmp.read(), messages)


def _sort(data: bytes, messages: list[str]) -> None:
    """Decoder lines into ``messages``; the rest back to fd 2, byte for byte."""
    other = bytearray()
    for chunk in data.splitlines(keepends=True):
        match = _DECODER_LINE.match(chunk.decode("utf-8", "replace").strip())
        if match:
            messages.append(match.group(2).strip())
        else:
            other += chunk
    if other:
        os.write(2, bytes(other))
