"""For the CLI tests that run ``main()`` in process, as the console script does."""

from __future__ import annotations

import sys


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``main()`` with ``args`` as argv; (exit code, stdout, stderr)."""
    from sonicsearch.cli import main

    monkeypatch.setattr(sys, "argv", ["sonicsearch", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
