"""`sonicsearch build-index`, `query`, `duplicates` and `info`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sonicsearch.audio import AUDIO_EXTENSIONS, find_audio_files
from sonicsearch.cli import app
from sonicsearch.cli.common import (
    DEFAULT_INDEX,
    NON_NEGATIVE,
    POSITIVE,
    ConfigOpt,
    DeviceOpt,
    IndexOpt,
    IndexType,
    JsonOpt,
    echo_json,
    report_skipped,
)
from sonicsearch.cli.tables import clock, print_result
from sonicsearch.config import load_index_config
from sonicsearch.errors import AudioError, ConfigError, DataError, OptionError
from sonicsearch.index import AudioIndex, builder
from sonicsearch.index import duplicates as dup
from sonicsearch.index.backends.base import BACKEND_REGISTRY
from sonicsearch.index.codec import VECTOR_FORMATS
from sonicsearch.index.filters import parse_min_score
from sonicsearch.index.request import MODE_DEFAULT, MODE_REGISTRY, QueryRequest
from sonicsearch.index.rollups import ROLLUP_DEFAULT, ROLLUP_REGISTRY
from sonicsearch.utils.progress import log, progress_bar
from sonicsearch.utils.reporting import display_path

Rollup = ROLLUP_REGISTRY.enum("Rollup")
Mode = MODE_REGISTRY.enum("Mode")


@app.command("build-index")
def build_index_cmd(
    ctx: typer.Context,
    audio: Annotated[list[Path], typer.Argument(help="Audio files and/or folders (recursive).")],
    model: Annotated[Path | None, typer.Option(
        "--model", "-m", help="model.pt from train/pretrain, or 'base' (the shipped base "
        "model); default: the index's own model, or base for a new index.")
    ] = None,
    index: IndexOpt = DEFAULT_INDEX,
    config: ConfigOpt = None,
    window: Annotated[float | None, typer.Option(
        metavar="SECONDS", callback=POSITIVE,
        help="Window length (default: the model's); at least the model's FFT can take.")
                      ] = None,
    hop: Annotated[float | None, typer.Option(
        metavar="SECONDS", callback=POSITIVE,
        help="Hop between window starts (default: the model's).")] = None,
    index_type: Annotated[IndexType | None, typer.Option(
        help="FAISS index; auto picks by size (default: the config's, auto).")] = None,
    vectors: Annotated[VectorFormat | None, typer.Option(
        help="Stored vectors: float32, pca-int8 (projected and 8-bit: 1/16 the bytes) or "
             "auto: pca-int8 from 10,000 windows (default: the config's, else the index's, "
             "else auto).")] = None,
    device: DeviceOpt = None,
    rebuild: Annotated[bool, typer.Option(
        help="Start over (needed to switch models or windows).")] = False,
    backend: Annotated[Backend | None, typer.Option(
        help="Vector index: faiss (in the index folder) or milvus (default: the index's, "
             "else faiss).")] = None,
    uri: Annotated[str | None, typer.Option(
        help="milvus: a milvus-lite FILE.db, or http://host:19530 (default: DIR/milvus.db).")
                   ] = None,
    ray: Annotated[bool, typer.Option(
        "--ray", help="Embed on Ray Data (a local Ray unless --ray-address).")] = False,
    ray_address: Annotated[str | None, typer.Option(
        help="A Ray cluster to join with --ray: auto, or ray://host:10001.")] = None,
    ray_workers: Annotated[int | None, typer.Option(
        min=1, help="Ray embedding actors (default: one per CPU, or per GPU).")] = None,
    fast: Annotated[bool | None, typer.Option(
        "--fast/--no-fast", help="Embed on the int8 CPU path: about 1.5x the windows per "
        "second, vectors within 0.998 cosine of float32 (default: the config's, else the "
        "index's, else off).")] = None,
    calibrate: Annotated[bool, typer.Option(
        help="Measure the new generation's match confidence and no-match threshold now "
             "(degraded excerpts of its own files), not on its first query.")] = True,
) -> None:
    """Embed audio and build (or update, incrementally) a self-contained index.

    Every key of the config file's ``index:`` section applies; --index-type and --device
    override it.

    \f
    It is long because typer declares its fifteen options in the signature; the body
    maps them one to one onto the library's build_index and shows its progress.
    """
    import contextlib
    import time

    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        state: dict = {"done": 0, "bar": None}

        def progress(done: int, total: int, path: str, windows: int, seconds: float) -> None:
            if state["bar"] is None:  # opened once embedding starts, after the model logs
                state["bar"] = stack.enter_context(progress_bar(0, "embedding"))
            bar = state["bar"]
            bar.set_total(total)
            if done > state["done"]:
                speed = seconds / 3600 / max(time.monotonic() - t0, 1e-9)
                bar.advance(done - state["done"], f"{windows} windows, {seconds / 3600:.2f} h "
                            f"audio, {speed * 3600:.0f} audio-h/h  "
                            f"{display_path(Path(path).name)[:30]}")
                state["done"] = done

        try:
            report = builder.build_index(
                audio, model=model, index=index, config=config, window=window, hop=hop,
                index_type=index_type.value if index_type else None,
                vectors=vectors.value if vectors else None,
                device=device.value if device else None, rebuild=rebuild,
                backend=backend.value if backend else None, uri=uri, ray=ray,
                ray_address=ray_address, ray_workers=ray_workers, fast=fast,
                calibrate=calibrate, progress=progress)
        except OptionError as exc:  # --window / --hop do not suit the model: exit 2
            raise typer.BadParameter(str(exc), ctx=ctx, param_hint=f"'{exc.option}'") \
                from None
    report_skipped(report.skipped)
    log(f"{'wrote' if report.written else 'unchanged:'} {index}: {report.summary()}")


Backend = BACKEND_REGISTRY.enum("Backend")
VectorFormat = VECTOR_FORMATS.enum("VectorFormat")


def check_style_min_score(mode_name: str, min_score: str | None) -> None:
    """'auto' is recording mode's: in style mode, a usage error (exit 2)."""
    if mode_name == "style" and min_score == "auto":
        raise typer.BadParameter("'auto' is recording mode's calibrated no-match threshold; "
                                 "in style mode give a cosine (e.g. 0.8)",
                                 param_hint="'--min-score'")


def check_min_score(value: str | None) -> str | None:
    """--min-score is a finite number or 'auto': a usage error otherwise, before loading."""
    try:
        parse_min_score(value)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


@app.command()
def query(
    clips: Annotated[list[Path], typer.Argument(help="Query clips and/or folders of clips.")],
    index: IndexOpt = DEFAULT_INDEX,
    k: Annotated[int | None, typer.Option(
        "--k", "-k", min=1, help="Results per query (default 10; with --occurrences: all).")
                 ] = None,
    mode: Annotated[Mode, typer.Option(
        help="recording: the recording each clip came from (window vectors); style: files "
        "that sound like it (style vectors of files and 20 s segments).")
                    ] = Mode(MODE_DEFAULT),
    segments: Annotated[bool, typer.Option(
        help="List matching windows (style mode: 20 s segments), not files.")] = False,
    occurrences: Annotated[bool, typer.Option(
        "--occurrences", help="Every span of every file where the clip occurs, each with "
        "its score, not each file's best (recording mode).")] = False,
    json_out: JsonOpt = False,
    rollup: Annotated[Rollup | None, typer.Option(
        help=f"How window hits make a file's score, in recording mode (default: the "
        f"library's, {ROLLUP_DEFAULT}).")] = None,
    exclude_self: Annotated[bool, typer.Option(
        help="Leave a query file out of its own results when it is indexed.")] = False,
    device: DeviceOpt = None,
    label: Annotated[list[str] | None, typer.Option(
        help="Keep files the model labels so, the predicted column (repeat for any of "
        "several).")] = None,
    path_prefix: Annotated[Path | None, typer.Option(
        help="Keep files under this folder (or this file).")] = None,
    min_duration: Annotated[float | None, typer.Option(
        min=0, callback=NON_NEGATIVE, metavar="SECONDS",
        help="Keep files at least this long.")] = None,
    max_duration: Annotated[float | None, typer.Option(
        min=0, callback=NON_NEGATIVE, metavar="SECONDS",
        help="Keep files at most this long.")] = None,
    max_per_folder: Annotated[int | None, typer.Option(
        min=1, help="At most N results from one folder (album).")] = None,
    min_score: Annotated[str | None, typer.Option(
        metavar="X|auto", callback=check_min_score,
        help="Drop results scoring below X; 'auto': the index's no-match threshold "
        "(1% false accepts). Nothing left: no match.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML config: its index: hnsw_ef_search / ivf_nprobe / device "
        "override the index's search settings.")] = None,
) -> None:
    """Find the indexed files that sound most like each clip: the recording it came from
    (--mode recording, the default) or files that sound like it (--mode style).

    Labels are the model's predictions: the query's (in its heading) and each indexed
    file's (the "predicted" column); nobody's hand labels.

    \f
    It is long because typer declares its fifteen options in the signature; the body
    builds one QueryRequest and prints what AudioIndex.run_clips answers.
    """
    mode_name = getattr(mode, "value", mode)
    _check_occurrences(occurrences, mode_name, segments, rollup)
    if mode_name == "style" and rollup is not None:
        raise typer.BadParameter("a roll-up scores window matches: it applies to --mode "
                                 "recording only", param_hint="'--rollup'")
    check_style_min_score(mode_name, min_score)
    request = QueryRequest.from_options(
        labels=label, path_prefix=path_prefix, min_duration=min_duration,
        max_duration=max_duration, max_per_folder=max_per_folder, min_score=min_score,
        k=k if k is not None or occurrences else 10, occurrences=occurrences,
        segments=segments, rollup=rollup.value if rollup else ROLLUP_DEFAULT,
        exclude_self=exclude_self, mode=mode_name)
    cfg, keys = load_index_config(config)
    dev = device.value if device else (cfg.device if "device" in keys else "auto")
    errors: list[tuple[str, str]] = []
    paths = find_audio_files(clips, errors)
    if not paths and not errors:
        raise DataError(f"no audio files found in {', '.join(map(str, clips))} (looked for "
                        f"{', '.join(sorted(AUDIO_EXTENSIONS))})")
    idx = AudioIndex.open(index, device=dev,
                          nprobe=cfg.ivf_nprobe if "ivf_nprobe" in keys else None,
                          ef_search=cfg.hnsw_ef_search if "hnsw_ef_search" in keys else None)
    skipped = list(errors)
    idx.announce_fit = lambda: log(
        "this index's match confidence is measured once, now (degraded excerpts of its own "
        "files; kept in calibration.json): this query takes longer")
    try:
        for path, result in idx.run_clips(request.replace(clips=tuple(paths))):
            if isinstance(result, AudioError):
                skipped.append((str(path), result.reason))
            elif json_out:
                echo_json(result.to_dict())
            else:
                print_result(result, (segments and mode_name == "recording") or occurrences)
    finally:
        idx.close()
    if len(skipped) == len(paths) + len(errors):  # nothing answered: one error, said once
        if len(skipped) == 1:
            raise AudioError(skipped[0][0], skipped[0][1])
        report_skipped(skipped, "clips")
        raise AudioError(skipped[0][0], f"no usable query clip ({len(skipped)} skipped)")
    report_skipped(skipped, "clips")


def _check_occurrences(occurrences: bool, mode: str, segments: bool, rollup) -> None:
    """--occurrences lists spans of recordings: no style mode, segments or roll-up."""
    if not occurrences:
        return
    for clash, flag in ((mode == "style", "--mode style"), (segments, "--segments"),
                        (rollup is not None, "--rollup")):
        if clash:
            raise typer.BadParameter(f"--occurrences lists every span where the clip occurs "
                                     f"in recording mode; it takes no {flag}",
                                     param_hint="'--occurrences'")


@app.command()
def duplicates(
    index: IndexOpt = DEFAULT_INDEX,
    min_overlap: Annotated[float, typer.Option(
        min=0, callback=NON_NEGATIVE, metavar="SECONDS",
        help="Seconds of one recording two files must share (a shorter file: 80% of it).")
                           ] = dup.MIN_OVERLAP,
    min_score: Annotated[float, typer.Option(
        min=0, max=1, callback=NON_NEGATIVE, metavar="X",
        help="Lowest confidence of a match, 0..1.")] = dup.MIN_SCORE,
    stride: Annotated[float, typer.Option(
        callback=POSITIVE, metavar="SECONDS",
        help="Search one stored window every this many seconds (larger: faster).")
                      ] = dup.STRIDE_SECONDS,
    json_out: JsonOpt = False,
) -> None:
    """Every group of indexed files that hold the same recording, whole or in part.

    Other encodings, sample rates, trimmed, faded or louder copies, a mix holding a track:
    each group with the spans its files share, from the stored vectors (nothing is
    embedded again).
    """
    with AudioIndex.open(index, device="cpu") as idx:
        found = idx.duplicates(min_overlap, min_score, stride)
    out = found.to_dict()
    if json_out:
        echo_json(out)
    else:
        _print_duplicates(out)
    log(f"{len(out['groups'])} groups holding {sum(len(g['files']) for g in out['groups'])} "
        f"of {out['files']} files, in {found.seconds:.1f}s")


def _print_duplicates(out: dict) -> None:
    """Each group: its confidence, files and matching spans."""
    for g in out["groups"]:
        typer.echo(f"group {g['group']}  confidence {g['confidence']:.3f}  "
                   f"{len(g['files'])} files")
        for f in g["files"]:
            typer.echo(f"  {display_path(f['path'])}  ({clock(f['duration'])})")
        for m in g["matches"]:
            typer.echo(f"    {display_path(Path(m['a']).name)} {clock(m['a_start'])}-"
                       f"{clock(m['a_end'])} = {display_path(Path(m['b']).name)} "
                       f"{clock(m['b_start'])}-{clock(m['b_end'])}  "
                       f"{m['confidence']:.3f}")
        typer.echo("")
    if not out["groups"]:
        typer.echo(f"no duplicates among {out['files']} files")


def _style_line(style: dict | None) -> str:
    if style is None:
        return ("none stored (built by an older sonicsearch): --mode style pools them from "
                "the window vectors; build-index stores them")
    what = "the model's style head" if style["kind"] == "head" else "window-vector means"
    return f"{style['files']} files, {style['segments']} segments, {style['dim']}-d ({what})"


@app.command()
def info(
    index: IndexOpt = DEFAULT_INDEX,
    json_out: JsonOpt = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Read every file: checksums recorded at build time and SQLite's "
        "integrity check; a damaged index is an error naming the file.")] = False,
) -> None:
    """Describe an index: files, vectors, type and the model it holds."""
    with AudioIndex.open(index, device="cpu") as idx:
        if check:
            idx.check()
        facts = idx.info()
    if check:
        facts["check"] = "ok"
    if json_out:
        echo_json(facts)
        return
    model = facts["model"]
    labels = ", ".join(model["labels"]) if model["labels"] else "(none: label-free model)"
    typer.echo(
        f"index       {index}\nfiles       {facts['files']}\nvectors     {facts['vectors']}\n"
        f"dim         {facts['dim']} (stored: {facts['vector_format']}, "
        f"{facts['stored_dim']}-d)\ntype        {facts['index_type']}\n"
        f"model       {model['arch']} sha256 {model['sha256'][:16]}\nlabels      {labels}\n"
        f"created     {facts['created']}\nstyle       {_style_line(facts['style'])}"
        + ("\ncheck       ok: every file matches its checksum"
                                            if check else "")
        + ("" if facts["manifest_verified"] else "\nindex.json  has no checksum of itself (built "
           "by an older sonicsearch): it cannot be verified; `build-index --rebuild` adds one"))
