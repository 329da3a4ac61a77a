"""`sonicsearch pretrain`: self-supervised contrastive pretraining on unlabelled audio."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from sonicsearch.cli import app
from sonicsearch.cli.common import (
    ArchOpt,
    ConfigOpt,
    DeviceOpt,
    OverwriteOpt,
    ResumeOpt,
    SeedOpt,
    WeightsOpt,
)
from sonicsearch.cli.train import report_skipped
from sonicsearch.config import load_config
from sonicsearch.data.excerpts import scan_audio
from sonicsearch.errors import DataError
from sonicsearch.model import base
from sonicsearch.training.run import RunFolder
from sonicsearch.utils.progress import log


class Method(str, Enum):
    ntxent = "ntxent"
    byol = "byol"


@app.command()
def pretrain(
    audio: Annotated[list[Path], typer.Argument(help="Audio files and/or folders (recursive).")],
    config: ConfigOpt = None,
    arch: ArchOpt = None,
    weights: WeightsOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path(
        "runs/pretrain"),
    epochs: Annotated[int | None, typer.Option(
        min=1, help="Epochs (overrides pretrain.epochs).")] = None,
    method: Annotated[Method | None, typer.Option(
        help="Objective (overrides pretrain.method): ntxent pulls two views together and "
             "pushes other excerpts away; byol regresses an EMA target, no negatives.")] = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Learn embeddings from unlabelled audio; write OUT/model.pt for train --weights and
    build-index --model.

    Two degraded views of each excerpt are taught to agree. OUT must not hold another run
    unless --resume or --overwrite is given."""
    # deferred: pretraining loads torchvision, which --help does not need
    from sonicsearch.training.pretrain import pretrain as run_pretrain

    if resume and config is None and (out / "config.yaml").is_file():
        config = out / "config.yaml"
    cfg = load_config(config, {"model.arch": arch, "model.weights": weights,
                               "runtime.device": device.value if device else None,
                               "runtime.seed": seed, "pretrain.epochs": epochs,
                               "pretrain.method": method.value if method else None})
    if base.is_base(cfg.model.weights):  # its filters only fit the front end they learned on
        cfg = base.adopt_features(cfg)
        log("--weights base: using the base model's front end (16 kHz, 64 mels, 2 s windows)")
    RunFolder(out).check(cfg, resume=resume, overwrite=overwrite)  # fail before the scan
    files, skipped = scan_audio(audio, cfg.features.min_seconds)
    report_skipped(skipped)
    if not files:
        raise DataError(f"no usable audio files in {', '.join(map(str, audio))}"
                        + (f" ({len(skipped)} skipped)" if skipped else ""))
    result = run_pretrain(cfg, files, out, resume=resume, overwrite=overwrite)
    last = result.history[-1] if result.history else {}
    log(f"final {cfg.pretrain.method} loss {last.get('loss', float('nan')):.4f} after "
        f"{last.get('epoch', 0)} epochs")
    log(f"wrote {result.model_path} (sha256 {(result.sha256 or '')[:12]}, no labels) in "
        f"{result.seconds:.0f}s")
