"""The HTTP API and the web page: one FastAPI app over a :class:`LiveIndex`.

The model and the index load once, when the app is made. Each query runs in a thread
pool (decoding, the model and FAISS never block the event loop); the model and FAISS run
under one lock, since neither promises thread safety. A watcher switches to every new
generation ``build-index`` commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sonicsearch._version import __version__
from sonicsearch.audio import load_audio
from sonicsearch.errors import AudioError, ConfigError
from sonicsearch.index import AudioIndex, duplicates
from sonicsearch.index.calibration import calibration, confidence_model
from sonicsearch.index.confidence import ACCEPT_CONFIDENCE
from sonicsearch.index.filters import parse_min_score
from sonicsearch.index.request import MODE_DEFAULT, MODE_REGISTRY, QueryRequest
from sonicsearch.index.rollups import ROLLUP_DEFAULT, ROLLUP_REGISTRY
from sonicsearch.index.types import Embedder
from sonicsearch.serve import apidocs, browse, media
from sonicsearch.serve.live import LiveIndex
from sonicsearch.serve.problems import RESPONSES, add_error_handlers, error_response
from sonicsearch.serve.security import (
    TOKEN_COOKIE,
    LoopbackHostOnly,
    is_loopback,
    resolve_token,
    token_ok,
)
from sonicsearch.serve.upload import UploadRejected, check_audio, receive

STATIC = Path(__file__).parent / "static"
RollupName = Literal[ROLLUP_REGISTRY.names()]  # the OpenAPI enum of ``rollup``
ModeName = Literal[MODE_REGISTRY.names()]  # of ``mode``
_ids: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class ServeSettings:
    """How the server runs; see ``sonicsearch serve --help``."""

    index_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    device: str = "auto"
    max_upload_mb: float = 50.0
    max_seconds: float = 600.0
    threads: int = 4
    poll_seconds: float = 1.0


class QueryParams(BaseModel):
    """Options of ``POST /query``, as query-string parameters or form fields."""

    model_config = ConfigDict(allow_inf_nan=False)
    k: int = Field(10, ge=1, le=1000, description="Results wanted.")
    mode: ModeName = Field(MODE_DEFAULT, description="recording: the recording the clip came "
                           "from; style: files that sound like it (style vectors).")
    rollup: RollupName = Field(ROLLUP_DEFAULT, description="Window hits -> file score "
                               "(recording mode).")
    segments: bool = Field(False, description="List matching windows (style: 20 s "
                           "segments), not files.")
    occurrences: bool = Field(False, description="Every span of every file where the clip "
                              "occurs, not each file's best (recording mode; all of them "
                              "unless k is given).")
    label: list[str] = Field(default_factory=list, description="Keep files with these labels.")
    path_prefix: str | None = Field(None, description="Keep files under this folder; "
                                    "relative: under the collection's root (see /info).")
    min_duration: float | None = Field(None, ge=0, description="Keep files this long, s.")
    max_duration: float | None = Field(None, ge=0, description="Keep files this short, s.")
    max_per_folder: int | None = Field(None, ge=1, description="Results per folder (album).")
    min_score: str | None = Field(None, description="A finite number, or 'auto' (keep results "
                                  f"whose calibrated confidence is {ACCEPT_CONFIDENCE:g} or more).")
    view: bool = Field(False, description="Add a 'view' key for the web page (file ids, "
                       "the query's spectrogram); without it the JSON is the CLI's.")

    @field_validator("min_score")
    @classmethod
    def _finite_min_score(cls, value: str | None) -> str | None:
        try:
            number = parse_min_score(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"must be a finite number or 'auto', got {value!r}")
        return value


class DuplicatesParams(BaseModel):
    """Options of ``GET /duplicates``: those of ``sonicsearch duplicates``."""

    model_config = ConfigDict(allow_inf_nan=False)
    min_overlap: float = Field(duplicates.MIN_OVERLAP, ge=0, description="Seconds of one "
                               "recording two files must share (a shorter file: 80 % of it).")
    min_score: float = Field(duplicates.MIN_SCORE, ge=0, le=1, description="Lowest "
                             "confidence of a match.")
    stride: float = Field(duplicates.STRIDE_SECONDS, gt=0, description="Search one stored "
                          "window every this many seconds.")
    view: bool = Field(False, description="Add a 'view' key for the web page (each file's "
                       "id); without it the JSON is the CLI's.")


class SimilarParams(QueryParams):
    """Options of ``GET /files/{id}/similar``: those of ``POST /query``, style by default."""

    mode: ModeName = Field("style", description="style: files that sound like this one "
                           "(more like this); recording: other copies of its recording.")


def _request(idx: AudioIndex, params: QueryParams, query: str) -> QueryRequest:
    """The library request of a query's or a similar's parameters."""
    return QueryRequest.from_options(
        labels=params.label, path_prefix=params.path_prefix,
        prefix_base=_root(idx) if params.path_prefix else None,
        min_duration=params.min_duration, max_duration=params.max_duration,
        max_per_folder=params.max_per_folder, min_score=params.min_score,
        k=None if params.occurrences and "k" not in params.model_fields_set else params.k,
        occurrences=params.occurrences, rollup=params.rollup, segments=params.segments,
        query=query, mode=params.mode)


def _view(idx: AudioIndex, out: dict, view: dict) -> dict:
    """``out`` with the web page's ``view`` key (the generation and the results' ids)."""
    view.update(generation=Path(idx.gen).name,
                ids=[media.file_id(r["path"]) for r in out["results"]])
    return {**out, "view": view}


def create_app(settings: ServeSettings, embedder: Embedder | None = None) -> FastAPI:
    """Load the index (and its model) and return the app.

    Raises:
        IndexStoreError: no index at ``settings.index_dir``. ConfigError: a non-loopback
            host without a token.
    """
    token = resolve_token(settings.token, settings.host)
    live = LiveIndex(settings.index_dir, settings.device, embedder)
    pool = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="query")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        watcher = asyncio.create_task(_watch(live, settings.poll_seconds))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            pool.shutdown(wait=True)
            live.close()

    app = FastAPI(title="sonicsearch", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, responses=RESPONSES,
                  description="Search an audio collection by ear: upload a clip, get the "
                  "indexed files that sound like it. Every error is JSON: `detail` (one "
                  "line), `status` and `errors` (the bad fields).")
    app.state.live, app.state.settings, app.state.pool = live, settings, pool
    if is_loopback(settings.host):  # no DNS rebinding: only loopback names reach the API
        app.add_middleware(LoopbackHostOnly)

    def auth(request: Request) -> None:
        if not token_ok(token, request.headers.get("authorization"),
                        request.cookies.get(TOKEN_COOKIE)):
            raise HTTPException(401, "a bearer token is required (Authorization: Bearer "
                                "TOKEN)", headers={"WWW-Authenticate": "Bearer"})

    add_error_handlers(app, (UploadRejected, media.FileRefused))
    _add_routes(app, live, settings, pool, Depends(auth))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _watch(live: LiveIndex, every: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        await loop.run_in_executor(None, live.refresh)


def _add_routes(app: FastAPI, live: LiveIndex, settings: ServeSettings,
                pool: ThreadPoolExecutor, auth: Any) -> None:
    async def run(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:  # made here from /openapi.json: no CDN, works offline
        return HTMLResponse(apidocs.render(app.openapi()))

    @app.get("/healthz", summary="Liveness: the generation served")
    async def healthz() -> dict:
        return {"status": "ok", "generation": live.generation}

    @app.get("/info", dependencies=[auth], summary="The index: files, model, labels, limits")
    async def info() -> dict:
        return await run(_info, live, settings)

    @app.get("/duplicates", dependencies=[auth], summary="Every group of indexed files "
             "that hold the same recording (the duplicates JSON)")
    async def find_duplicates(params: Annotated[DuplicatesParams, Query()]) -> dict:
        return await run(_duplicates, live, params)

    _add_query_route(app, live, settings, auth, run)
    _add_file_routes(app, live, auth, run)
    browse.add_routes(app, live, auth, run, _file_index)


def _add_query_route(app: FastAPI, live: LiveIndex, settings: ServeSettings, auth: Any,
                     run: Any) -> None:
    max_bytes = int(settings.max_upload_mb * 1e6)

    @app.post("/query", dependencies=[auth], summary="Find what sounds like an uploaded clip",
              openapi_extra=_UPLOAD_DOC)
    async def query(request: Request, params: Annotated[QueryParams, Query()],
                    filename: Annotated[str | None, Query(description="Name of a raw-body "
                                                          "upload.")] = None) -> dict:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes + 65536:
            raise UploadRejected(413, f"the clip is over the {settings.max_upload_mb:g} MB "
                                      "upload limit; send a shorter one")
        up = await receive(request.stream(), request.headers.get("content-type", ""),
                           max_bytes, filename)
        try:
            if up.fields:
                merged = {**params.model_dump(exclude_unset=True), **up.fields}
                try:
                    params = QueryParams.model_validate(merged)
                except ValidationError as exc:
                    raise RequestValidationError(exc.errors(include_url=False)) from None
            return await run(_query, live, up, params, settings)
        finally:
            up.discard()


def _add_file_routes(app: FastAPI, live: LiveIndex, auth: Any, run: Any) -> None:
    @app.get("/files/{fid}", dependencies=[auth], summary="An indexed file's metadata")
    async def file_meta(fid: str) -> dict:
        with live.use() as idx:
            rec = _record(idx, fid)
            return {"id": fid, "path": rec.path, "size": rec.size, "duration": rec.duration,
                    "sample_rate": rec.sample_rate, "label": rec.label,
                    "windows": rec.n_windows, "sha256": rec.sha256,
                    "media_type": media.media_type(rec.path)}

    @app.get("/files/{fid}/audio", dependencies=[auth], summary="An indexed file's bytes "
             "(HTTP Range requests supported)")
    async def file_audio(fid: str, request: Request) -> Response:
        with live.use() as idx:
            rec = _record(idx, fid)
        fd, size = await run(media.open_indexed, rec)
        try:
            rng = media.parse_range(request.headers.get("range"), size)
        except media.FileRefused:
            os.close(fd)
            return error_response(416, f"the range is outside the file's {size} bytes",
                                  headers={"Content-Range": f"bytes */{size}"})
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=60",
                   "ETag": f'"{rec.sha256[:32]}"'}
        start, length, status = 0, size, 200
        if rng is not None:
            start, length, status = rng.start, rng.length, 206
            headers["Content-Range"] = f"bytes {rng.start}-{rng.end}/{size}"
        headers["Content-Length"] = str(length)
        return StreamingResponse(media.iter_fd(fd, start, length), status_code=status,
                                 media_type=media.media_type(rec.path), headers=headers)

    @app.get("/files/{fid}/similar", dependencies=[auth],
             summary="More like this: the indexed files that sound like an indexed file")
    async def file_similar(fid: str, params: Annotated[SimilarParams, Query()]) -> dict:
        return await run(_similar, live, fid, params)

    @app.get("/files/{fid}/spectrogram", dependencies=[auth],
             summary="A spectrogram of the file around start..end (JSON for a canvas)")
    async def file_spectrogram(
            fid: str,
            start: Annotated[float, Query(ge=0, allow_inf_nan=False,
                                          description="Span start, s.")] = 0.0,
            end: Annotated[float | None, Query(ge=0, allow_inf_nan=False,
                                               description="Span end, s (default: the "
                                               "file's end).")] = None) -> dict:
        with live.use() as idx:
            rec = _record(idx, fid)
        return await run(_file_spectrogram, rec, start, end)


_UPLOAD_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "The clip: WAV, FLAC, Ogg Vorbis/Opus, MP3 or AIFF."}}}},
    "audio/*": {"schema": {"type": "string", "format": "binary"}}}}}


def _file_index(idx: AudioIndex, fid: str) -> int:
    ids = _ids.get(idx)
    if ids is None:
        ids = _ids[idx] = {media.file_id(r.path): i for i, r in enumerate(idx.store.records)}
    if fid not in ids:
        raise HTTPException(404, f"no indexed file has id {fid[:40]!r}")
    return ids[fid]


def _record(idx: AudioIndex, fid: str):
    return idx.store.records[_file_index(idx, fid)]


def _info(live: LiveIndex, settings: ServeSettings) -> dict:
    with live.use() as idx:
        facts = idx.info()
        cal = calibration(idx)
        facts.update(
            generation=live.generation, swaps=live.swaps, root=_root(idx),
            labels=idx.labels, file_labels=sorted({r.label for r in idx.store.records
                                                   if r.label}),
            no_match={"thresholds": cal.get("thresholds", {}),
                      "target_false_accept": cal.get("target_false_accept"),
                      "min_confidence": (ACCEPT_CONFIDENCE if confidence_model(
                          idx, ROLLUP_DEFAULT) is not None else None),
                      "reason": cal.get("reason")},
            limits={"max_upload_mb": settings.max_upload_mb,
                    "max_seconds": settings.max_seconds},
            version=__version__)
    return facts


def _root(idx: AudioIndex) -> str:
    folders = {os.path.dirname(r.path) for r in idx.store.records}
    return os.path.commonpath(sorted(folders)) if folders else ""


def _query(live: LiveIndex, up, params: QueryParams, settings: ServeSettings) -> dict:
    check_audio(up, settings.max_seconds)
    with live.use() as idx:
        request = _request(idx, params, up.filename)
        embedder = idx.embedder
        view = None
        if params.view:  # decoded for the picture outside the lock
            wave, sr = load_audio(up.path, sample_rate=media.SPECTRO_RATE)
            view = {"spectrogram": media.spectrogram(wave, sr)}
        with live.model_lock:
            try:
                emb = embedder.embed_file(up.path)
            except AudioError as exc:
                raise AudioError(up.filename, exc.reason) from None
            res = idx.run(request.with_clip(emb))
        out = res.to_dict()
        if view is not None:
            out = _view(idx, out, view)
    return out


def _duplicates(live: LiveIndex, params: DuplicatesParams) -> dict:
    with live.use() as idx, live.model_lock:  # FAISS runs under the one lock
        out = idx.duplicates(params.min_overlap, params.min_score, params.stride).to_dict()
    if params.view:
        out["view"] = {"ids": {f["path"]: media.file_id(f["path"])
                               for g in out["groups"] for f in g["files"]}}
    return out


def _similar(live: LiveIndex, fid: str, params: SimilarParams) -> dict:
    with live.use() as idx:
        file_id = _file_index(idx, fid)
        with live.model_lock:
            res = idx.similar(file_id, _request(idx, params, idx.store.records[file_id].path))
        out = res.to_dict()
        return _view(idx, out, {}) if params.view else out


def _file_spectrogram(rec, start: float, end: float | None) -> dict:
    end = rec.duration if end is None else min(end, rec.duration)
    if end < start:
        raise ConfigError(f"end {end} is before start {start}")
    pad = max(1.0, 0.25 * (end - start))
    lo = max(0.0, start - pad)
    hi = min(rec.duration, end + pad, lo + media.SPECTRO_MAX_SECONDS)
    fd, _ = media.open_indexed(rec)  # checked, then decoded through this very descriptor
    try:
        source = f"/dev/fd/{fd}" if os.path.exists(f"/dev/fd/{fd}") else rec.path
        wave, sr = load_audio(source, media.SPECTRO_RATE, offset=lo,
                              duration=max(hi - lo, 0.05))
    except AudioError as exc:
        raise AudioError(rec.path, exc.reason) from None
    finally:
        os.close(fd)
    return media.spectrogram(wave, sr, offset=lo)
