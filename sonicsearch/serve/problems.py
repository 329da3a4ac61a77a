"""One JSON shape for every error the server answers (4xx and 5xx)::

    {"detail": "one line for a person", "status": 422,
     "errors": [{"field": "min_score", "message": "..."}]}

``detail`` is always a string; ``errors`` lists the request's bad fields (empty when the
error is not about a field). docs/schemas/error.schema.json is its schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from sonicsearch.errors import IndexStoreError, SonicsearchError

_WHERE = ("query", "body", "path", "header", "cookie")


class FieldError(BaseModel):
    field: str = Field(description="The parameter or form field, e.g. 'k' or 'label.0'.")
    message: str = Field(description="What is wrong with it.")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    detail: str = Field(description="What went wrong and, where there is one, the fix; "
                        "one line.")
    status: int = Field(description="The HTTP status, repeated.")
    errors: list[FieldError] = Field(default_factory=list, description="The request's "
                                     "bad fields; empty when the error is not about one.")


RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "Refused: see `detail`"},
    "5XX": {"model": ErrorBody, "description": "The server or its index failed"},
}


def error_response(status: int, detail: str, errors: Iterable[FieldError] = (),
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(detail=detail, status=status, errors=list(errors))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """Pydantic's error dicts as ``FieldError``s, without the parameter's location."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in _WHERE:
            loc = loc[1:]
        message = str(err.get("msg", "invalid"))
        out.append(FieldError(field=".".join(loc) or "request",
                              message=message.removeprefix("Value error, ")))
    return out


def add_error_handlers(app: FastAPI, refusals: tuple[type[Exception], ...] = ()) -> None:
    """Answer HTTP errors, bad parameters, library errors and crashes as ``ErrorBody``.

    ``refusals``: more exception types, with ``.status`` and ``.reason``, answered alike.
    A crash is answered 500 here and still raised on to the server, which logs it.
    """

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc.errors())
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "invalid request"
        return error_response(422, detail, errors)

    @app.exception_handler(SonicsearchError)
    async def _library(request: Request, exc: SonicsearchError) -> JSONResponse:
        return error_response(503 if isinstance(exc, IndexStoreError) else 422, str(exc))

    for kind in refusals:
        @app.exception_handler(kind)
        async def _refused(request: Request, exc: Any) -> JSONResponse:
            return error_response(exc.status, exc.reason)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal server error; the server's log has the details")
