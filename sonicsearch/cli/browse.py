"""`sonicsearch similar`, `path` and `map`: browse an index by similarity from its indexed
files, with nothing uploaded or embedded again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sonicsearch.cli import app
from sonicsearch.cli.common import DEFAULT_INDEX, IndexOpt, JsonOpt, echo_json
from sonicsearch.cli.search import Mode, check_min_score, check_style_min_score
from sonicsearch.cli.tables import print_result
from sonicsearch.index import AudioIndex, QueryRequest
from sonicsearch.index.browse import file_id
from sonicsearch.utils.reporting import display_path

FileArg = Annotated[Path, typer.Argument(help="An indexed audio file (its path, as indexed).")]


@app.command()
def similar(
    file: FileArg,
    index: IndexOpt = DEFAULT_INDEX,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Results.")] = 10,
    mode: Annotated[Mode, typer.Option(
        help="style: files that sound like it (more like this); recording: other copies of "
        "its recording (same recording elsewhere).")] = Mode("style"),
    segments: Annotated[bool, typer.Option(
        help="List matching windows (style mode: 20 s segments), not files.")] = False,
    label: Annotated[list[str] | None, typer.Option(
        help="Keep files the model labels so (repeat for any of several).")] = None,
    path_prefix: Annotated[Path | None, typer.Option(
        help="Keep files under this folder (or this file).")] = None,
    max_per_folder: Annotated[int | None, typer.Option(
        min=1, help="At most N results from one folder (album).")] = None,
    min_score: Annotated[str | None, typer.Option(
        metavar="X|auto", callback=check_min_score,
        help="Drop results scoring below X ('auto': recording mode's no-match threshold).")
                         ] = None,
    json_out: JsonOpt = False,
) -> None:
    """More like an indexed file, from its stored vectors: files that sound like it (--mode
    style, the default) or other copies of its recording (--mode recording).

    The file itself is left out. Nothing is embedded: to ask with a file that is not
    indexed, use 'sonicsearch query'.
    """
    mode_name = getattr(mode, "value", mode)
    check_style_min_score(mode_name, min_score)
    request = QueryRequest.from_options(
        labels=label, path_prefix=path_prefix, max_per_folder=max_per_folder,
        min_score=min_score, k=k, segments=segments, mode=mode_name)
    with AudioIndex.open(index, device="cpu") as idx:
        fid = file_id(idx.store.records, idx.store.by_path, file, index)
        result = idx.similar(fid, request)
    if json_out:
        echo_json(result.to_dict())
    else:
        print_result(result, segments and mode_name == "recording")


@app.command()
def path(
    start: Annotated[Path, typer.Argument(help="The first file of the playlist (indexed).")],
    end: Annotated[Path, typer.Argument(help="The last file of the playlist (indexed).")],
    n: Annotated[int, typer.Option("--n", "-n", help="Files in the playlist, both ends "
                                   "included (at least 2).")] = 10,
    index: IndexOpt = DEFAULT_INDEX,
    json_out: JsonOpt = False,
) -> None:
    """A playlist of N indexed files that moves from START to END by small steps of style.

    Built from the index's style vectors: the largest step is split first by the file that
    lies best between its two ends, until the playlist holds N files.
    """
    with AudioIndex.open(index, device="cpu") as idx:
        found = idx.path_between(start, end, n).to_dict()
    if json_out:
        echo_json(found)
        return
    typer.echo(f"{found['n']} files from {display_path(found['from'])} to "
               f"{display_path(found['to'])}  (worst step {found['worst_step']:.3f}, mean "
               f"{found['mean_step']:.3f})")
    typer.echo("  step  step-sim  to-start  to-end  label  path")
    for f in found["files"]:
        typer.echo(f"  {f['step']:>4}  {f['similarity']:>8.3f}  {f['to_start']:>8.3f}  "
                   f"{f['to_end']:>6.3f}  {f['label'] or '-'}  {display_path(f['path'])}")


@app.command("map")
def map_cmd(
    index: IndexOpt = DEFAULT_INDEX,
    json_out: JsonOpt = False,
) -> None:
    """Every indexed file placed in 2-D by what it sounds like (the first two principal
    components of its style vector), with its label and folder: for a plot, or the page's
    map (sonicsearch serve)."""
    with AudioIndex.open(index, device="cpu") as idx:
        found = idx.collection_map().to_dict()
    if json_out:
        echo_json(found)
        return
    ex = found["explained"]
    typer.echo(f"{found['files']} files; the axes keep {ex[0]:.1%} and {ex[1]:.1%} of the "
               "style variance")
    typer.echo("         x         y  label  path")
    for p in found["points"]:
        typer.echo(f"  {p['x']:>8.4f}  {p['y']:>8.4f}  {p['label'] or '-'}  "
                   f"{display_path(p['path'])}")
