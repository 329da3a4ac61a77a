"""The real entry point (``main()``), run as a user runs it: exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sonicsearch", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (("bogus",), "No such command 'bogus'"),
    (("query", "--k", "0", "clip.wav"), "Invalid value for '--k'"),
    (("info", "--json", "--nonsense"), "No such option"),
])
def test_usage_errors_exit_2_without_a_traceback(args, message):
    proc = run(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_user_errors_are_one_line_and_exit_1(tmp_path):
    proc = run("info", "--index", str(tmp_path / "missing"))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


def test_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("sonicsearch ")
