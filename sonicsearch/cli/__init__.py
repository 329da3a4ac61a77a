"""The ``sonicsearch`` command line: one typer app; each command group lives in its own file
and calls one library function. ``main()`` turns library errors into one-line messages."""

from __future__ import annotations

import sys

import typer

from sonicsearch._version import __version__
from sonicsearch.cli import doctor as _doctor
from sonicsearch.cli.help import App
from sonicsearch.errors import SonicsearchError

app = App(
    name="sonicsearch",
    help="Audio similarity search: index audio with the shipped base model (or a CNN you "
    "fine-tune on log-mel spectrograms) in FAISS, then find what sounds like a clip and the "
    "recording it came from.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sonicsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Audio similarity search."""


@app.command("doctor")
def doctor_cmd() -> None:
    """Load torch, torchvision, torchaudio, FAISS and soundfile and check they fit together."""
    for c in _doctor.check_stack():
        typer.echo(f"{c.name:<12} {c.version:<16} {c.detail}".rstrip())
    typer.echo("ok")


# Command modules register themselves on `app` when imported, listed in this order.
# isort: off
from sonicsearch.cli import data as _data  # noqa: E402,F401
from sonicsearch.cli import pretrain as _pretrain  # noqa: E402,F401
from sonicsearch.cli import search as _search  # noqa: E402,F401
from sonicsearch.cli import browse as _browse  # noqa: E402,F401
from sonicsearch.cli import serve as _serve  # noqa: E402,F401
from sonicsearch.cli import train as _train  # noqa: E402,F401
from sonicsearch.cli import tune as _tune  # noqa: E402,F401
# isort: on


def main() -> None:
    """Entry point: run the app; a SonicsearchError becomes ``error: ...`` and exit 1."""
    try:
        # Typer turns Ctrl-C into an exit code of 130 and, outside standalone mode, returns
        # exit codes instead of exiting: pass them on, or an interrupted run would exit 0.
        code = app(standalone_mode=False)
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except SonicsearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        # click's usage errors carry their own message and exit code (2). Typer >= 0.29
        # vendors click as typer._click, so they are recognised by shape, not by class.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None),
                                                               int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
