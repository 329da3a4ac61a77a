"""``--help`` that reads like a person wrote it.

Typer 0.29 labels values with Python's types (``<bool>``, ``<list[Path]>``, ``<float>``),
writes a required argument as ``{clips}...`` in the usage line, and keeps a docstring's
line breaks and reST markup (``index:`` in double back-quotes). :class:`App` is a
``typer.Typer`` whose commands and groups render instead:

    Usage: sonicsearch query [OPTIONS] CLIPS...
      --window   FLOAT            Window length ...
      --device   [auto|cpu|cuda]  Where to run.
      --json                      Machine-readable JSON on stdout.

An option's own ``metavar`` (``SECONDS``, ``X|auto``) wins over the label made from its type.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

_TYPE_NAMES = {"int": "INTEGER", "int range": "INTEGER", "float": "FLOAT",
               "float range": "FLOAT", "str": "TEXT", "path": "PATH", "file": "FILE",
               "directory": "DIR", "bool": ""}


def tidy_help(text: str | None) -> str | None:
    """A docstring as help: what follows ``\\f`` dropped, each paragraph on one line (the
    terminal wraps it), ``literal`` back-quotes turned into plain quotes."""
    if not text:
        return text
    text = text.partition("\f")[0].strip()
    text = re.sub(r"``([^`]+)``", r"'\1'", text)
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def type_label(display_type: str) -> str:
    """typer's ``<float>`` / ``<list[str]>`` / ``<a|b>`` -> ``FLOAT`` / ``TEXT`` / ``[a|b]``;
    a flag (``<bool>``) gets none."""
    label = display_type.strip("<>").removesuffix("...")
    while label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    if label in _TYPE_NAMES:
        return _TYPE_NAMES[label]
    return f"[{label}]" if "|" in label else label.upper()


class _Argument(TyperArgument):
    """A positional shown by its metavar alone (``CLIPS...``), in the usage line too."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        return self.display_name_raw if self.required else f"[{self.display_name_raw}]"


def _tidy_arguments(command: Any) -> None:
    """Positionals by metavar (also in "Missing argument 'CLIPS...'")."""
    for param in command.params:
        if type(param) is TyperArgument:  # typer builds it; there is no hook for the class
            param.__class__ = _Argument
            if param.metavar is None:
                param.metavar = param.name.upper() + ("..." if param.nargs != 1 else "")


def _tidy_options(command: Any, ctx: Any) -> None:
    """Options (``--help`` included) labelled by :func:`type_label` unless they have one."""
    for param in command.get_params(ctx):
        if not isinstance(param, TyperArgument) and param.metavar is None:
            param.metavar = type_label(param.display_type(ctx))


class _TidyHelp:
    """Mixed into a click command or group: its help is tidied (see the module docstring)."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, help=tidy_help(help), **kwargs)
        _tidy_arguments(self)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _tidy_options(self, ctx)
        super().format_help(ctx, formatter)


class HelpCommand(_TidyHelp, TyperCommand):
    """A command whose help is tidied."""


class HelpGroup(_TidyHelp, TyperGroup):
    """A command group whose help is tidied."""


class App(typer.Typer):
    """``typer.Typer`` with :class:`HelpGroup` and :class:`HelpCommand` as its defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cls", HelpGroup)
        super().__init__(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", HelpCommand)
        return super().command(*args, **kwargs)
