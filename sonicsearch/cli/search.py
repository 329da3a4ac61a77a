"""`sonicsearch build-index`, `query` and `info`."""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from sonicsearch.cli import app
from sonicsearch.cli.common import DEFAULT_INDEX, DeviceOpt, IndexOpt, IndexType, JsonOpt
from sonicsearch.cli.train import report_skipped
from sonicsearch.progress import log, progress_bar


class Rollup(str, Enum):
    vote = "vote"
    max = "max"
    mean_top = "mean-top"


@app.command("build-index")
def build_index_cmd(
    audio: Annotated[list[Path], typer.Argument(help="Audio files and/or folders (recursive).")],
    model: Annotated[Path | None, typer.Option(
        "--model", "-m", help="model.pt from train/pretrain; default: the index's own model.")
    ] = None,
    index: IndexOpt = DEFAULT_INDEX,
    window: Annotated[float | None, typer.Option(help="Window seconds (default: the model's).")
                      ] = None,
    hop: Annotated[float | None, typer.Option(help="Hop seconds (default: the model's).")] = None,
    index_type: Annotated[IndexType, typer.Option(help="FAISS index; auto picks by size.")
                          ] = IndexType.auto,
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
    """Embed audio and build (or update, incrementally) a self-contained index."""
    from sonicsearch.config import IndexConfig
    from sonicsearch.errors import IndexStoreError
    from sonicsearch.index import AudioIndex
    from sonicsearch.index.api import load_embedder
    from sonicsearch.index.backends import check_backend

    dev = device.value if device else "auto"
    try:
        live = _live_meta(index)
    except IndexStoreError:  # damaged: --model (with --rebuild) builds it again
        if model is None:
            raise
        live = None
    if model is None:
        if live is None:
            raise IndexStoreError(f"no index at {index} yet: pass --model PATH")
        model = Path(index) / live["gen"] / "model.pt"
        features = live.get("features")
    else:
        features = None
    old = (live or {}).get("backend") or {"name": "faiss"}
    name = backend.value if backend else old["name"]
    if uri is None and name == old["name"] == "milvus":  # keep the index's Milvus
        uri = old["uri"] if "://" in old["uri"] else str(Path(index) / old["uri"])
    check_backend(name, uri)
    cfg = IndexConfig(index_type=index_type.value, device=dev, backend=name, uri=uri or "")
    embedder = load_embedder(model, dev, features)
    log(f"model {embedder.arch} ({embedder.model_sha256[:12]}), {embedder.dim}-d, "
        f"on {embedder.device}")
    if ray or ray_address:
        embedder = _ray_embedder(embedder, model, dev, ray_address, ray_workers)
    t0 = time.monotonic()
    with progress_bar(0, "embedding") as bar:
        state = {"done": 0}

        def progress(done: int, total: int, path: str, windows: int, seconds: float) -> None:
            bar.set_total(total)
            if done > state["done"]:
                speed = seconds / 3600 / max(time.monotonic() - t0, 1e-9)
                bar.advance(done - state["done"], f"{windows} windows, {seconds / 3600:.2f} h "
                            f"audio, {speed * 3600:.0f} audio-h/h  {Path(path).name[:30]}")
                state["done"] = done

        idx = AudioIndex.build(audio, embedder, index, cfg, rebuild, progress, dev, window, hop)
    report = idx.build_report
    idx.close()
    report_skipped(report.skipped)
    wall = time.monotonic() - t0
    log(f"added {len(report.added)}, updated {len(report.updated)}, removed "
        f"{len(report.removed)}, unchanged {report.unchanged}, skipped {len(report.skipped)}")
    if report.audio_seconds:
        log(f"embedded {report.audio_seconds / 3600:.2f} h of audio in {wall:.1f}s "
            f"({report.audio_seconds / max(wall, 1e-9):.0f}x real time)")
    state_word = "wrote" if report.written else "unchanged:"
    log(f"{state_word} {index}: {report.files} files, {report.vectors} vectors, "
        f"{report.index_type} ({report.reason})")


class Backend(str, Enum):
    faiss = "faiss"
    milvus = "milvus"


def _live_meta(index: Path) -> dict | None:
    """The live generation's index.json (plus its folder name as ``gen``), or None."""
    from sonicsearch.index import layout as L

    gen = L.IndexLayout(index).current()
    if gen is None:
        return None
    return {**L.read_index_json(gen), "gen": gen.name}


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


@app.command()
def query(
    clips: Annotated[list[Path], typer.Argument(help="Query clips and/or folders of clips.")],
    index: IndexOpt = DEFAULT_INDEX,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Results per query.")] = 10,
    segments: Annotated[bool, typer.Option(help="List matching windows, not files.")] = False,
    json_out: JsonOpt = False,
    rollup: Annotated[Rollup | None, typer.Option(
        help="How window hits make a file's score (default: the library's, vote).")] = None,
    exclude_self: Annotated[bool, typer.Option(
        help="Leave a query file out of its own results when it is indexed.")] = False,
    device: DeviceOpt = None,
) -> None:
    """Find the indexed files that sound most like each clip."""
    from sonicsearch.audio import find_audio_files
    from sonicsearch.errors import AudioError
    from sonicsearch.index import ROLLUP_DEFAULT, AudioIndex

    idx = AudioIndex.open(index, device=device.value if device else "auto")
    errors: list[tuple[str, str]] = []
    paths = find_audio_files(clips, errors)
    skipped = list(errors)
    how = rollup.value if rollup else ROLLUP_DEFAULT
    for path, result in idx.query_files(paths, k=k, segments=segments, rollup=how,
                                        exclude_self=exclude_self):
        if isinstance(result, AudioError):
            skipped.append((str(path), result.reason))
            continue
        if json_out:
            typer.echo(json.dumps(result, ensure_ascii=False))
        else:
            _print_result(result, segments)
    idx.close()
    if skipped:
        report_skipped(skipped, "clips")
        if len(skipped) == len(paths) + len(errors):
            raise AudioError(skipped[0][0], "no usable query clip" if len(skipped) > 1
                             else skipped[0][1])


def _print_result(result: dict, segments: bool) -> None:
    head = f"{result['query']}  ({result['duration']:.1f}s"
    if result.get("predicted_label"):
        head += f", predicted: {result['predicted_label']}"
    typer.echo(head + ")")
    rows = [(str(r["rank"]), f"{r['score']:.3f}",
             f"{_clock(r['start'])}-{_clock(r['end'])}", r.get("label") or "-", r["path"])
            for r in result["results"]]
    header = ("rank", "score", "match" if not segments else "window", "label", "path")
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i])
              for i in range(4)]
    typer.echo("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  path")
    for row in rows:
        typer.echo("  " + "  ".join(c.rjust(w) if i < 2 else c.ljust(w)
                                    for i, (c, w) in enumerate(zip(row, widths))) + f"  {row[4]}")
    if not rows:
        typer.echo("  (no results)")
    typer.echo("")


def _clock(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


@app.command()
def info(index: IndexOpt = DEFAULT_INDEX, json_out: JsonOpt = False) -> None:
    """Describe an index: files, vectors, type and the model it holds."""
    from sonicsearch.index import AudioIndex

    with AudioIndex.open(index, device="cpu") as idx:
        facts = idx.info()
    if json_out:
        typer.echo(json.dumps(facts, ensure_ascii=False))
        return
    model = facts["model"]
    labels = ", ".join(model["labels"]) if model["labels"] else "(none: label-free model)"
    typer.echo(
        f"index       {index}\nfiles       {facts['files']}\nvectors     {facts['vectors']}\n"
        f"dim         {facts['dim']}\ntype        {facts['index_type']}\n"
        f"model       {model['arch']} sha256 {model['sha256'][:16]}\nlabels      {labels}\n"
        f"created     {facts['created']}")
