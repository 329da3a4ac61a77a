"""`sonicsearch train` and `sonicsearch evaluate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sonicsearch.cli import app
from sonicsearch.cli.common import (
    ArchOpt,
    ConfigOpt,
    DataArg,
    DeviceOpt,
    ExternalOpt,
    JsonOpt,
    ModelOpt,
    OverwriteOpt,
    ResumeOpt,
    SeedOpt,
    WeightsOpt,
    report_skipped,
)
from sonicsearch.config import load_config
from sonicsearch.data import manifest
from sonicsearch.errors import DataError
from sonicsearch.model import base
from sonicsearch.training.run import RunFolder
from sonicsearch.utils.progress import log


@app.command()
def train(
    data: DataArg,
    config: ConfigOpt = None,
    arch: ArchOpt = None,
    weights: WeightsOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/latest"),
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    epochs: Annotated[int | None, typer.Option(
        min=0, help="Phase-2 epochs (overrides config; 0: phase 1 only).")] = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    allow_external_paths: ExternalOpt = False,
) -> None:
    """Fine-tune a backbone on labelled audio; write OUT/model.pt and the run's records.

    OUT must not hold another run unless --resume or --overwrite is given."""
    # deferred: training loads torchvision and scikit-learn, which --help does not need
    from sonicsearch.training.finetune import fit

    if resume and config is None and (out / "config.yaml").is_file():
        config = out / "config.yaml"
    cfg = load_config(config, {"model.arch": arch, "model.weights": weights,
                               "runtime.device": device.value if device else None,
                               "runtime.seed": seed, "train.phase2_epochs": epochs})
    if base.is_base(cfg.model.weights):  # its filters only fit the front end they learned on
        cfg = base.adopt_features(cfg)
        log("--weights base: using the base model's front end (16 kHz, 64 mels, 2 s windows)")
        if config is None:  # the scratch recipe's rates would undo the base model's start
            cfg = base.adopt_finetune_rates(cfg)
            log(f"--weights base: rates head {cfg.train.head_lr:g}, backbone "
                f"{cfg.train.backbone_lr:g} (a fifth of the recipe's; --config sets others)")
    RunFolder(out).check(cfg, resume=resume, overwrite=overwrite)  # fail before the data scan
    tc = cfg.train
    ds = manifest.load_dataset(data, tc.val_fraction, tc.test_fraction, cfg.runtime.seed,
                               cfg.features.min_seconds, allow_external_paths)
    report_skipped(ds.skipped)
    log(f"{len(ds.items)} files, {len(ds.labels)} labels\n{manifest.class_count_table(ds)}")
    result = fit(cfg, ds, out, resume=resume, overwrite=overwrite)
    best = result.best
    log(f"best epoch {best.get('epoch')}: val macro-F1 {best.get('val_macro_f1', 0):.3f}, "
        f"accuracy {best.get('val_accuracy', 0):.3f}")
    if result.test:
        log(f"test: macro-F1 {result.test['macro_f1']:.3f}, "
            f"accuracy {result.test['accuracy']:.3f} (n={result.test['n']})"
            + _absent_note(result.test))
    log(f"wrote {result.model_path} (sha256 {result.sha256[:12]}) in {result.seconds:.0f}s")


@app.command("evaluate")
def evaluate_command(
    data: DataArg,
    model: ModelOpt,
    split: Annotated[str, typer.Option(help="train, val, test, or all.")] = "test",
    json_out: JsonOpt = False,
    device: DeviceOpt = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML config whose train.val_fraction / test_fraction and "
        "runtime.seed split DATA (default: the model's own).")] = None,
    allow_external_paths: ExternalOpt = False,
) -> None:
    """Classification metrics of a trained model on a labelled split."""
    # deferred: evaluation loads scikit-learn, which --help does not need
    from sonicsearch.training.evaluate import evaluate_model, model_config

    if split not in ("train", "val", "test", "all"):
        raise DataError(f"unknown split '{split}'; choose one of: train, val, test, all")
    cfg = load_config(config) if config is not None else model_config(model)
    tc = cfg.train
    ds = manifest.load_dataset(data, tc.val_fraction, tc.test_fraction, cfg.runtime.seed,
                               cfg.features.min_seconds, allow_external_paths, full_decode=False)
    report_skipped(ds.skipped)
    report = evaluate_model(ds, model, split=split, device=device.value if device else "auto",
                            quiet=json_out)
    if json_out:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    typer.echo(f"{split}: n={report['n']}  accuracy {report['accuracy']:.3f}  "
               f"macro-P {report['macro_precision']:.3f}  macro-R {report['macro_recall']:.3f}  "
               f"macro-F1 {report['macro_f1']:.3f}" + _absent_note(report))
    width = max(len(k) for k in report["per_class"])
    typer.echo(f"{'label':<{width}}  precision  recall     f1  support")
    for label, m in report["per_class"].items():
        typer.echo(f"{label:<{width}}  {m['precision']:>9.3f}  {m['recall']:>6.3f}  "
                   f"{m['f1']:>5.3f}  {m['support']:>7}"
                   + ("  absent" if label in report["absent_labels"] else ""))


def _absent_note(report: dict) -> str:
    """``; macro over the N labels present (absent from the split: a, b)``, or nothing."""
    absent = report.get("absent_labels") or []
    if not absent:
        return ""
    present = len(report["per_class"]) - len(absent)
    return (f"; macro over the {present} labels present (absent from the split: "
            f"{', '.join(absent)})")
