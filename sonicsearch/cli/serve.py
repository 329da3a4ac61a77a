"""`sonicsearch serve`: the HTTP API and web page over an index."""

from __future__ import annotations

from typing import Annotated

import typer

from sonicsearch.cli import app
from sonicsearch.cli.common import DEFAULT_INDEX, POSITIVE, DeviceOpt, IndexOpt
from sonicsearch.errors import ConfigError


@app.command()
def serve(
    index: IndexOpt = DEFAULT_INDEX,
    host: Annotated[str, typer.Option(
        help="Address to listen on; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    token: Annotated[str | None, typer.Option(
        envvar="SONICSEARCH_TOKEN", show_envvar=True,
        help="Require 'Authorization: Bearer TOKEN' (at least 16 printable "
             "characters).")] = None,
    device: DeviceOpt = None,
    max_upload_mb: Annotated[float, typer.Option(
        min=0.001, callback=POSITIVE, metavar="MB", help="Largest clip.")] = 50.0,
    max_seconds: Annotated[float, typer.Option(
        min=1, callback=POSITIVE, metavar="SECONDS", help="Longest clip.")] = 600.0,
    threads: Annotated[int, typer.Option(min=1, help="Query worker threads.")] = 4,
) -> None:
    """Serve an HTTP API and a web page to search the index by ear (docs at /docs)."""
    try:  # deferred: the server (FastAPI, uvicorn) is an optional extra, loaded to serve
        import uvicorn

        from sonicsearch.serve import ServeSettings, create_app
    except ImportError as exc:
        raise ConfigError(f"serve needs FastAPI and uvicorn ({exc.name} is missing): "
                          "pip install 'sonicsearch[serve]'") from None
    settings = ServeSettings(index, host, port, token, device.value if device else "auto",
                             max_upload_mb, max_seconds, threads)
    web = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"serving {index} ({web.state.live.generation}) on http://{shown}:{port}/ "
               f"(API docs: /docs)", err=True)
    uvicorn.run(web, host=host, port=port, log_level="info")
