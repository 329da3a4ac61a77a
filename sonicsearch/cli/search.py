"""`sonicsearch build-index`, `query` and `info`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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
from sonicsearch.index.backends.base import BACKEND_REGISTRY
from sonicsearch.index.rollups import ROLLUP_DEFAULT, ROLLUP_REGISTRY
from sonicsearch.progress import log, progress_bar
from sonicsearch.reporting import display_path

if TYPE_CHECKING:
    from sonicsearch.config import IndexConfig


Rollup = ROLLUP_REGISTRY.enum("Rollup")


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
) -> None:
    """Embed audio and build (or update, incrementally) a self-contained index.

    Every key of the config file's ``index:`` section applies; --index-type and --device
    override it.

    \f
    Long: typer declares its eleven options in the signature; the body resolves config,
    backend and model, then calls AudioIndex.build.
    """
    import time

    from sonicsearch.index import AudioIndex
    from sonicsearch.index import layout as L
    from sonicsearch.index.api import load_embedder
    from sonicsearch.index.backends import check_backend

    _check_inputs(audio)  # before the model loads
    cfg, keys = _index_config(config)
    cfg.index_type = index_type.value if index_type else cfg.index_type
    cfg.device = device.value if device else cfg.device
    old = _live_backend(index)
    cfg.backend = backend.value if backend else (
        cfg.backend if "backend" in keys else old["name"])
    if uri is not None:
        cfg.uri = uri
    elif not cfg.uri and cfg.backend == old["name"] == "milvus":  # keep the index's Milvus
        cfg.uri = old["uri"] if "://" in old["uri"] else str(Path(index) / old["uri"])
    check_backend(cfg.backend, cfg.uri or None)  # before the model loads
    if model is None and not (index / L.CURRENT).exists():
        model, features = Path("base"), None  # a new index: the shipped base model
        from sonicsearch.model import base

        log(f"no --model given: embedding with the shipped base model ({base.VERSION})")
    elif model is None:
        model, features = _index_model(index)
    else:
        features = None
    embedder = load_embedder(model, cfg.device, features, batch_size=cfg.batch_size)
    _check_windowing(ctx, embedder.feature_config, window, hop)
    log(f"model {embedder.arch} ({embedder.model_sha256[:12]}), {embedder.dim}-d, "
        f"on {getattr(embedder, 'device', cfg.device)}")
    if ray or ray_address:
        embedder = _ray_embedder(embedder, model, cfg.device, ray_address, ray_workers)
    t0 = time.monotonic()
    with progress_bar(0, "embedding") as bar:
        state = {"done": 0}

        def progress(done: int, total: int, path: str, windows: int, seconds: float) -> None:
            bar.set_total(total)
            if done > state["done"]:
                speed = seconds / 3600 / max(time.monotonic() - t0, 1e-9)
                bar.advance(done - state["done"], f"{windows} windows, {seconds / 3600:.2f} h "
                            f"audio, {speed * 3600:.0f} audio-h/h  "
                            f"{display_path(Path(path).name)[:30]}")
                state["done"] = done

        idx = AudioIndex.build(audio, embedder, index, config=cfg, rebuild=rebuild,
                               progress=progress, device=cfg.device, window_seconds=window,
                               hop_seconds=hop)
    report = idx.build_report
    idx.close()
    report_skipped(report.skipped)
    log(f"{'wrote' if report.written else 'unchanged:'} {index}: {report.summary()}")


def _check_inputs(inputs: list[Path]) -> None:
    """Every input exists and at least one audio file is among them.

    Raises:
        AudioError: an input that does not exist.
        DataError: no audio file under the inputs.
    """
    from sonicsearch.audio import AUDIO_EXTENSIONS, find_audio_files
    from sonicsearch.errors import DataError

    errors: list[tuple[str, str]] = []
    if not find_audio_files(inputs, errors) and not errors:
        raise DataError(f"no audio files found in {', '.join(map(str, inputs))} (looked for "
                        f"{', '.join(sorted(AUDIO_EXTENSIONS))})")


def _check_windowing(ctx: typer.Context, fc, window: float | None, hop: float | None) -> None:
    """--window and --hop against the loaded model's front end: a usage error (exit 2)."""
    from sonicsearch.embedding_types import check_hop, check_window
    from sonicsearch.errors import ConfigError

    for value, check, flag in ((window, check_window, "--window"), (hop, check_hop, "--hop")):
        try:
            if value is not None:
                check(fc, value)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc), ctx=ctx, param_hint=f"'{flag}'") from None


def _index_config(path: Path | None) -> tuple[IndexConfig, set[str]]:
    """The ``index:`` section of a config file (defaults without one), and the keys the
    file sets. A file that sets ``runtime.device`` (or the older ``train.device``) but no
    ``index.device`` gives its device to the index too."""
    import yaml

    from sonicsearch.config import load_config

    full = load_config(path)
    cfg = full.index
    if path is None:
        return cfg, set()
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    sections = data if isinstance(data, dict) else {}
    section = sections.get("index")
    keys = set(section) if isinstance(section, dict) else set()
    if "device" not in keys and any(
            isinstance(sections.get(s), dict) and "device" in sections[s]
            for s in ("runtime", "train")):
        cfg.device = full.runtime.device
        keys.add("device")
    return cfg, keys


def _index_model(index: Path) -> tuple[Path, dict | None]:
    """The model an existing index holds, and its windowing, without opening the rest (so
    that ``--rebuild`` works on an index whose other files are damaged)."""
    from sonicsearch.errors import IndexStoreError
    from sonicsearch.index import layout as L

    try:
        gen = L.IndexLayout(index).current()
    except IndexStoreError:
        gen = None
    meta = None
    if gen is not None:
        try:
            meta = L.read_index_json(gen)
        except IndexStoreError:
            meta = None
    if meta is None or not (gen / L.MODEL).is_file():
        raise IndexStoreError(f"no usable index at {index} to take the model from: pass "
                              "--model PATH")
    return gen / L.MODEL, meta.get("features")


Backend = BACKEND_REGISTRY.enum("Backend")


def _live_backend(index: Path) -> dict:
    """The backend entry of the live generation's index.json; faiss when there is no index
    yet or it is too damaged to say (``--rebuild`` with ``--model`` then starts over)."""
    from sonicsearch.errors import IndexStoreError
    from sonicsearch.index import layout as L
    from sonicsearch.index.backends import backend_of

    try:
        gen = L.IndexLayout(index).current()
        return backend_of(L.read_index_json(gen)) if gen is not None else {"name": "faiss"}
    except IndexStoreError:
        return {"name": "faiss"}


def _ray_embedder(embedder, model: Path, device: str, address: str | None,
                  workers: int | None):
    """Wrap the model for Ray: workers load it from ``model`` with the same windowing."""
    import functools

    from sonicsearch.index.api import load_embedder
    from sonicsearch.scale.ray_embed import RayEmbedder

    factory = functools.partial(load_embedder, str(Path(model).resolve()),
                                "auto" if device == "auto" else device)
    where = f"Ray at {address}" if address else "a local Ray"
    log(f"embedding on {where} with {workers or 'all'} workers")
    return RayEmbedder(embedder, factory, address, workers)


def _check_min_score(value: str | None) -> str | None:
    """--min-score is a finite number or 'auto': a usage error otherwise, before loading."""
    from sonicsearch.errors import ConfigError
    from sonicsearch.index.filters import parse_min_score

    try:
        parse_min_score(value)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


@app.command()
def query(
    clips: Annotated[list[Path], typer.Argument(help="Query clips and/or folders of clips.")],
    index: IndexOpt = DEFAULT_INDEX,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Results per query.")] = 10,
    segments: Annotated[bool, typer.Option(help="List matching windows, not files.")] = False,
    json_out: JsonOpt = False,
    rollup: Annotated[Rollup | None, typer.Option(
        help=f"How window hits make a file's score (default: the library's, "
        f"{ROLLUP_DEFAULT}).")] = None,
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
        metavar="X|auto", callback=_check_min_score,
        help="Drop results scoring below X; 'auto': the index's no-match threshold "
        "(1% false accepts). Nothing left: no match.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML config: its index: hnsw_ef_search / ivf_nprobe / device "
        "override the index's search settings.")] = None,
) -> None:
    """Find the indexed files that sound most like each clip.

    Labels are the model's predictions: the query's (in its heading) and each indexed
    file's (the "predicted" column); nobody's hand labels.

    \f
    Long: typer declares its fourteen options in the signature; the body builds the
    filters and loops over AudioIndex.query_files.
    """
    from sonicsearch.audio import AUDIO_EXTENSIONS, find_audio_files
    from sonicsearch.errors import AudioError, DataError
    from sonicsearch.index import AudioIndex
    from sonicsearch.index.filters import Filters, parse_min_score, resolve_prefix

    filters = Filters(tuple(label or ()), resolve_prefix(path_prefix), min_duration,
                      max_duration, max_per_folder)
    threshold = parse_min_score(min_score)
    cfg, keys = _index_config(config)
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
    how = rollup.value if rollup else ROLLUP_DEFAULT
    try:
        for path, result in idx.query_files(paths, k=k, segments=segments, rollup=how,
                                            exclude_self=exclude_self,
                                            filters=filters if filters.active else None,
                                            min_score=threshold):
            if isinstance(result, AudioError):
                skipped.append((str(path), result.reason))
            elif json_out:
                echo_json(result.to_dict())
            else:
                _print_result(result, segments)
    finally:
        idx.close()
    if len(skipped) == len(paths) + len(errors):  # nothing answered: one error, said once
        if len(skipped) == 1:
            raise AudioError(skipped[0][0], skipped[0][1])
        report_skipped(skipped, "clips")
        raise AudioError(skipped[0][0], f"no usable query clip ({len(skipped)} skipped)")
    report_skipped(skipped, "clips")


def _print_result(result, segments: bool) -> None:
    """A table: rank, score, the matching span (with the query's span in segments mode),
    the model's predicted label for the match, and its path."""
    head = f"{display_path(result.query)}  ({result.duration:.1f}s"
    if result.predicted_label:
        head += f", predicted: {result.predicted_label}"
    typer.echo(head + ")")
    labelled = result.predicted_label is not None or any(r.get("label") for r in result)
    header = (["rank", "score", "match"] + (["query"] if segments else [])
              + (["predicted"] if labelled else []))  # a label-free model predicts nothing
    rows = []
    for r in result:
        row = [str(r["rank"]), f"{r['score']:.3f}", f"{_clock(r['start'])}-{_clock(r['end'])}"]
        if segments:
            row.append(f"{_clock(r['query_start'])}-{_clock(r['query_end'])}")
        rows.append((row + ([r.get("label") or "-"] if labelled else []),
                     display_path(r["path"])))
    widths = [max(len(h), *(len(row[i]) for row, _ in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    typer.echo("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  path")
    for row, path in rows:
        typer.echo("  " + "  ".join(c.rjust(w) if i < 2 else c.ljust(w)
                                    for i, (c, w) in enumerate(zip(row, widths))) + f"  {path}")
    if not rows:
        typer.echo(f"  ({result.get('reason') or 'no results'})")
    typer.echo("")


def _clock(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


@app.command()
def info(
    index: IndexOpt = DEFAULT_INDEX,
    json_out: JsonOpt = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Read every file: checksums recorded at build time and SQLite's "
        "integrity check; a damaged index is an error naming the file.")] = False,
) -> None:
    """Describe an index: files, vectors, type and the model it holds."""
    from sonicsearch.index import AudioIndex

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
        f"dim         {facts['dim']}\ntype        {facts['index_type']}\n"
        f"model       {model['arch']} sha256 {model['sha256'][:16]}\nlabels      {labels}\n"
        f"created     {facts['created']}" + ("\ncheck       ok: every file matches its checksum"
                                            if check else "")
        + ("" if facts["manifest_verified"] else "\nindex.json  has no checksum of itself (built "
           "by an older sonicsearch): it cannot be verified; `build-index --rebuild` adds one"))
