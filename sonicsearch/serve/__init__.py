"""`sonicsearch serve`: an HTTP API and a web page to search a collection by ear.

Needs the ``serve`` extra (FastAPI, uvicorn): ``pip install "sonicsearch[serve]"``.
"""

from __future__ import annotations

from sonicsearch.serve.app import QueryParams, ServeSettings, create_app

__all__ = ["QueryParams", "ServeSettings", "create_app"]
