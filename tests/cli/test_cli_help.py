"""Every command's ``--help`` reads like a person wrote it: no Python type names
(``<bool>``, ``<list[Path]>``), no ``{clips}...`` usage, no reST markup, no line broken in
the middle of a sentence."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from sonicsearch.cli import app


def _commands(group, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        if getattr(cmd, "commands", None):
            yield from _commands(cmd, (*prefix, name))
        yield (*prefix, name)


COMMANDS = [(), *_commands(typer.main.get_command(app))]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "sonicsearch")
def test_help_reads_like_prose(command):
    result = CliRunner().invoke(app, [*command, "--help"], prog_name="sonicsearch",
                                env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = "\n".join(line.strip() for line in result.output.splitlines())
    assert not re.search(r"<[a-z][\w\[\]|, -]*>", text), text  # <bool>, <list[Path]>, <int>
    assert "{" not in text and "``" not in text and "list[" not in text, text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert re.fullmatch(r"Usage: sonicsearch[ \w-]* \[OPTIONS\]( [A-Z_]+(\.\.\.)?"
                        r"| COMMAND \[ARGS\]\.\.\.)*\s*", usage), usage
    # a wide terminal shows each paragraph of the description on one line
    body = text.split(usage, 1)[1].split("╭", 1)[0]
    for paragraph in body.strip().split("\n\n"):
        assert "\n" not in paragraph.strip(), paragraph


def test_flags_carry_no_value_label_and_values_a_readable_one():
    text = CliRunner().invoke(app, ["build-index", "--help"], env={"COLUMNS": "400"}).output
    assert re.search(r"--rebuild\s+--no-rebuild\s+Start over", text), text
    assert re.search(r"--window\s+SECONDS\s", text) and re.search(r"--device\s+\[auto\|cpu\|cuda\]",
                                                                    text)
    assert re.search(r"\*\s+AUDIO\.\.\.\s+Audio files", text), text


def test_a_missing_argument_is_named_as_in_the_usage_line():
    result = CliRunner().invoke(app, ["query"], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and "Missing argument 'CLIPS...'" in result.output
