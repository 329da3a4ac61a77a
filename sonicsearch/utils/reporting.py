"""How batch commands show what they skipped, and paths, to people (dependency-free)."""

from __future__ import annotations

from collections.abc import Iterable


def display_path(path: str) -> str:
    """A path for humans: bytes of a file name that are not UTF-8 (held in the str as
    surrogate escapes, as ``os.fsdecode`` gives them) are shown as U+FFFD replacement
    characters, so printing never fails. The index itself keeps the exact bytes."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def skipped_by_reason(skipped: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Skipped files counted per reason (the text before any " (details)"), most frequent
    first: the one way batch summaries group them."""
    counts: dict[str, int] = {}
    for _, reason in skipped:
        key = reason.split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

