"""Options shared by several commands, defined once."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from sonicsearch.index.faiss_index import INDEX_TYPE_REGISTRY
from sonicsearch.index.layout import DEFAULT_INDEX_DIR
from sonicsearch.utils.progress import log
from sonicsearch.utils.reporting import display_path, skipped_by_reason


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


IndexType = INDEX_TYPE_REGISTRY.enum("IndexType")
DEFAULT_INDEX = DEFAULT_INDEX_DIR
SEED_MAX = 2**32 - 1  # numpy's and Optuna's RandomState take seeds in [0, 2**32)


def number(*, above: float | None = None, at_least: float | None = None,
           below: float | None = None) -> Callable[[float | int | None], float | int | None]:
    """A typer callback for a numeric option: the value must be finite (``nan``, ``inf``
    and ``1e309`` are refused), more than ``above`` / at least ``at_least`` and less than
    ``below``. A bad value
    is a usage error (exit 2) that names the option, before any model or data is loaded;
    an absent option (None) passes."""

    def check(value: float | int | None) -> float | int | None:
        if value is None:
            return None
        if not math.isfinite(value):
            raise typer.BadParameter(f"must be a finite number, not {value}")
        if above is not None and value <= above:
            raise typer.BadParameter(f"must be more than {above:g}, not {value:g}")
        if at_least is not None and value < at_least:
            raise typer.BadParameter(f"must be at least {at_least:g}, not {value:g}")
        if below is not None and value >= below:
            raise typer.BadParameter(f"must be less than {below:.0f}, not {value}")
        return value

    return check


POSITIVE = number(above=0)  # seconds, sizes, hours: 0 or less means nothing
NON_NEGATIVE = number(at_least=0)
SEED = number(at_least=0, below=SEED_MAX + 1)  # with min=0, which the help shows

DataArg = Annotated[
    Path,
    typer.Argument(help="A folder with one sub-folder per label, or a CSV path,label[,split]."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config over the defaults.")
]
ArchOpt = Annotated[
    str | None,
    typer.Option(help="Backbone: alexnet, densenet121, resnet18, resnet34, vgg11_bn, vgg16_bn."),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(help="Start from: base (the shipped base model), imagenet (torchvision, "
                       "cached), none (scratch), or a PATH."),
]
DeviceOpt = Annotated[Device | None, typer.Option(help="Where to run.")]
SeedOpt = Annotated[int | None, typer.Option(min=0, callback=SEED, help="Random seed.")]
ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="A model.pt written by train.")]
IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="Index directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ExternalOpt = Annotated[
    bool,
    typer.Option("--allow-external-paths",
                 help="Let a CSV name absolute paths or paths outside its folder."),
]
ResumeOpt = Annotated[bool, typer.Option(
    help="Continue the interrupted run in --out (with its config.yaml unless --config).")]
OverwriteOpt = Annotated[bool, typer.Option(
    help="Replace the run in --out: its files are deleted before training starts.")]


def report_skipped(skipped: list[tuple[str, str]], what: str = "files") -> None:
    """One line per skipped file, then a count by reason (stderr)."""
    if not skipped:
        return
    for path, reason in skipped:
        log(f"skipped {display_path(path)}: {reason}")
    log(f"skipped {len(skipped)} {what}: "
        + ", ".join(f"{n} {r}" for r, n in skipped_by_reason(skipped).items()))


def echo_json(obj: Any) -> None:
    """One JSON line on stdout. A path whose name is not UTF-8 keeps its bytes as JSON
    escapes of its surrogates (``"caf\\udce9.wav"``), which ``json.loads`` turns back into
    the exact ``os.fsdecode`` str: printing never fails and nothing is lost."""
    text = json.dumps(obj, ensure_ascii=False)
    typer.echo(text.encode("utf-8", "backslashreplace").decode("utf-8"))
