"""Progress for long work: a rich bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True)


def log(message: str) -> None:
    """A status line on stderr (stdout stays clean for results and JSON)."""
    console.print(message, highlight=False, soft_wrap=True)


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


class _Plain:
    """Line-per-step progress for logs (not a terminal): at most one line every ``every``
    seconds, each with the ETA of the rest at the rate so far."""

    def __init__(self, total: int, description: str, every: float = 10.0):
        self.total, self.description, self.every = total, description, every
        self.done, self.last, self.extra = 0, 0.0, ""
        self.start = time.monotonic()

    def set_total(self, total: int) -> None:
        self.total = total

    def advance(self, n: int = 1, info: str = "") -> None:
        self.done += n
        self.extra = info or self.extra
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            print(self.line(now), file=sys.stderr, flush=True)

    def line(self, now: float | None = None) -> str:
        """``description: done/total extra, ETA 1m20s`` (no ETA once done)."""
        now = time.monotonic() if now is None else now
        eta = ""
        if 0 < self.done < self.total:
            left = (now - self.start) / self.done * (self.total - self.done)
            eta = f" ETA {format_seconds(left)}"
        return f"{self.description}: {self.done}/{self.total} {self.extra}".rstrip() + eta


class _Rich:
    def __init__(self, progress: Progress, task):
        self.progress, self.task = progress, task

    def set_total(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def advance(self, n: int = 1, info: str = "") -> None:
        self.progress.update(self.task, advance=n, info=info)


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator:
    """Yield an object with ``advance(n, info="")`` and ``set_total(n)``.

    A rich bar on a terminal, plain log lines elsewhere, nothing when not ``enabled``.
    """
    if not enabled:
        yield _Plain(total, description, every=float("inf"))
        return
    if not console.is_terminal:
        yield _Plain(total, description)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        yield _Rich(progress, progress.add_task(description, total=total, info=""))
