"""`sonicsearch make-dataset`: corpora for tests, the demo and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sonicsearch.cli import app
from sonicsearch.cli.common import NON_NEGATIVE, POSITIVE, SEED
from sonicsearch.cli.help import App
from sonicsearch.data.debian import make as make_debian
from sonicsearch.data.gtzan import make_gtzan_csv
from sonicsearch.utils.progress import log, progress_bar

make = App(help="Make a labelled dataset.", no_args_is_help=True)
app.add_typer(make, name="make-dataset")


@make.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="New (or empty) folder to write the corpus into.")],
    genres: Annotated[int, typer.Option(
        min=2, help="Number of genres (labels).")] = 8,
    per_genre: Annotated[int, typer.Option(min=1, help="Clips per genre.")] = 40,
    seconds: Annotated[float, typer.Option(
        min=1, callback=POSITIVE, metavar="SECONDS", help="Length of each clip.")] = 30.0,
    sample_rate: Annotated[int, typer.Option(
        min=8000, metavar="HZ", help="Sample rate of the WAV files.")] = 22050,
    seed: Annotated[int, typer.Option(
        min=0, callback=SEED, help="Random seed; the same seed gives the same files.")] = 0,
) -> None:
    """Write a deterministic synthetic genre corpus in the folder-per-label layout."""
    # deferred: the synthesiser loads SciPy (2 s), which --help does not need
    from sonicsearch.data.synth import make_synth_corpus

    with progress_bar(genres * per_genre, "synthesising") as bar:
        summary = make_synth_corpus(out, genres=genres, per_genre=per_genre, seconds=seconds,
                                    sample_rate=sample_rate, seed=seed,
                                    progress=lambda n: bar.advance(n))
    log(f"wrote {summary['files']} clips of {seconds:g}s in {len(summary['genres'])} genres "
        f"to {out}")


@make.command("gtzan")
def gtzan(
    root: Annotated[Path, typer.Argument(
        help="Your GTZAN copy: its genres/ folder (blues/, classical/, ...) or a folder above.")],
    out: Annotated[Path, typer.Argument(help="The DATA CSV to write (path,label,split).")],
) -> None:
    """Write GTZAN's fault-filtered, artist-aware split (930 clips) as a DATA CSV."""
    summary = make_gtzan_csv(root, out)
    s = summary["splits"]
    log(f"wrote {summary['files']} clips ({s['train']} train, {s['val']} val, {s['test']} "
        f"test) to {out}")
    if summary["external_paths"]:
        log(f"note: the clips are outside {out.parent}, so the CSV holds absolute paths; "
            f"use it with --allow-external-paths (e.g. sonicsearch train {out} "
            "--allow-external-paths)")


@make.command("debian")
def debian(
    out: Annotated[Path, typer.Argument(help="The DATA CSV to write "
                                        "(path,label,package,duration).")],
    pool: Annotated[str, typer.Option(help="train (game data, effects, speech; labels are "
                                      "kinds) or eval (*music* packages; labels are styles).")
                    ] = "train",
    cache: Annotated[Path | None, typer.Option(help="Where .debs are downloaded and extracted "
                                               "(default ~/.cache/sonicsearch/debian).")
                     ] = None,
    min_seconds: Annotated[float | None, typer.Option(
        callback=NON_NEGATIVE, metavar="SECONDS",
        help="Shortest file kept (default 1 for train, 30 for eval).")] = None,
    pack_hours: Annotated[float, typer.Option(
        callback=NON_NEGATIVE, metavar="HOURS",
        help="Also pack about this many hours as 16 kHz mono Ogg/Opus (0: no pack).")] = 0.0,
    pack_dir: Annotated[Path | None, typer.Option(help="The pack's folder "
                                                  "(default OUT's folder/packHh).")] = None,
    seed: Annotated[int, typer.Option(min=0, callback=SEED, help="Seed of the pack's pick.")] = 0,
) -> None:
    """Real audio from Debian's archive: download, extract and list a pool (needs apt-get)."""
    s = make_debian(out, pool, cache, min_seconds, pack_hours, pack_dir, seed, log=log)
    per = ", ".join(f"{k} {v['hours']:.2f} h" for k, v in s["labels"].items())
    log(f"wrote {s['files']} files ({s['hours']:.2f} h: {per}) to {out}; versions and "
        f"licences in {out.with_suffix('.sources.json')}")
    if "pack" in s:
        p = s["pack"]
        log(f"packed {p['files']} files, {p['hours']:.2f} h, {p['bytes'] / 2**20:.1f} MiB "
            f"into {p['dir']}")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the corpus, run and index go.")] = Path(
        "sonicsearch-demo"),
    seed: Annotated[int, typer.Option(
        min=0, help="Seed of the corpus, split and training; the same seed repeats the "
        "numbers on the same CPU and thread count.")] = 0,
) -> None:
    """Offline tour: synthetic corpus -> train -> index -> held-out queries -> recall@k."""
    # deferred: the demo loads training, SciPy and scikit-learn, which --help does not need
    from sonicsearch.cli.demo import run_demo

    run_demo(workdir, seed=seed)
