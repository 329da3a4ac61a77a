"""The server's browse routes: ``GET /map`` (every file in 2-D) and
``GET /files/{id}/path`` (a playlist from one indexed file to another), the library's
:meth:`AudioIndex.collection_map` and :meth:`AudioIndex.path_between` answered as their
JSON, each file with the id the other routes (``/files/{id}/audio``) take."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query

from sonicsearch.index import AudioIndex
from sonicsearch.serve import media
from sonicsearch.serve.live import LiveIndex

FileIndex = Callable[[AudioIndex, str], int]  # a file id -> its position (404 if unknown)


def add_routes(app: FastAPI, live: LiveIndex, auth: Any, run: Any,
               file_index: FileIndex) -> None:
    """Add ``GET /map`` and ``GET /files/{fid}/path`` behind ``auth``; ``run`` runs a
    blocking call in the query pool."""

    @app.get("/map", dependencies=[auth], summary="Every indexed file in 2-D by what it "
             "sounds like (the map JSON, each point with its file id)")
    async def collection_map() -> dict:
        return await run(_map, live)

    @app.get("/files/{fid}/path", dependencies=[auth], summary="A playlist of n indexed "
             "files from this one to another by small steps of style (the path JSON)")
    async def file_path(
            fid: str,
            to: Annotated[str, Query(description="The id of the last file.")],
            n: Annotated[int, Query(description="Files in the playlist, both ends "
                                    "included (2 to the number of indexed files).")] = 10,
    ) -> dict:
        return await run(_path, live, fid, to, n, file_index)


def _map(live: LiveIndex) -> dict:
    with live.use() as idx, live.model_lock:  # the style table may load on first use
        out = idx.collection_map().to_dict()
    for p in out["points"]:
        p["id"] = media.file_id(p["path"])
    return out


def _path(live: LiveIndex, fid: str, to: str, n: int, file_index: FileIndex) -> dict:
    with live.use() as idx:
        start, end = file_index(idx, fid), file_index(idx, to)
        with live.model_lock:
            out = idx.path_between(start, end, n).to_dict()
    for f in out["files"]:
        f["id"] = media.file_id(f["path"])
    return out
