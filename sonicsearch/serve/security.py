"""Who may talk to the server: loopback by default, a bearer token otherwise.

A token is any text of at least 16 characters without control characters or surrounding
whitespace: spaces, ``%``, ``;``, ``=``, quotes and any Unicode are fine. It travels as
UTF-8 bytes in ``Authorization: Bearer TOKEN``, or percent-encoded (as JavaScript's
``encodeURIComponent`` writes it) in the cookie the web page sets for its players.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import unicodedata
from urllib.parse import unquote_to_bytes

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from sonicsearch.errors import ConfigError
from sonicsearch.serve.problems import error_response

TOKEN_ENV = "SONICSEARCH_TOKEN"
TOKEN_COOKIE = "sonicsearch_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
MIN_TOKEN_CHARS = 16
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\[\]:]*)(?::[0-9]*)?")


def is_loopback(host: str) -> bool:
    """True for a host name or address that only this machine can reach."""
    if host.strip("[]").lower() in LOOPBACK_NAMES or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_host_header(value: str | None) -> bool:
    """True for a ``Host`` header naming this machine by a loopback name (any port)."""
    match = _HOST.fullmatch(value or "")
    return match is not None and match[1].lower() in LOOPBACK_NAMES


class LoopbackHostOnly:
    """ASGI middleware: refuse (400, the JSON error) a request whose ``Host`` header is not
    a loopback name, so that no other site can rebind its name to 127.0.0.1 and read."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = Headers(scope=scope).get("host") if scope["type"] == "http" else None
        if scope["type"] == "http" and not loopback_host_header(host):
            shown = "no Host header" if host is None else f"Host {host[:80]!r}"
            refusal = error_response(400, f"{shown} does not name this machine; a server on "
                                     "loopback answers only localhost, 127.0.0.1 and [::1]")
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def resolve_token(token: str | None, host: str) -> str | None:
    """The token to require: ``token``, else $SONICSEARCH_TOKEN, else None (loopback only).

    Raises:
        ConfigError: a non-loopback bind without a token, a token too short to resist
            guessing, or one no HTTP client could send as typed (control characters,
            surrounding whitespace, bytes that are not UTF-8).
    """
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is not None:
        check_token(token)
    if token is None and not is_loopback(host):
        raise ConfigError(f"refusing to listen on {host} without a token: anyone who can "
                          f"reach it could search and play your collection; pass --token or "
                          f"set {TOKEN_ENV}, or bind 127.0.0.1")
    return token


def check_token(token: str) -> None:
    """Refuse a token that is too short or that a header or the page would alter.

    Raises:
        ConfigError: naming what is wrong (never echoing the token).
    """
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the token has {len(token)} characters; use at least "
                          f"{MIN_TOKEN_CHARS} (e.g. `python -c 'import secrets; "
                          "print(secrets.token_urlsafe(24))'`)")
    for i, ch in enumerate(token):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise ConfigError(f"the token is not valid UTF-8 (character {i + 1}); "
                              "use text your terminal can type")
        if unicodedata.category(ch) == "Cc":
            raise ConfigError(f"the token has a control character (U+{ord(ch):04X}, "
                              f"character {i + 1}); use printable characters only")
    if token != token.strip():
        raise ConfigError("the token starts or ends with whitespace, which HTTP headers "
                          "drop; remove it")


def token_ok(expected: str | None, authorization: str | None, cookie: str | None) -> bool:
    """Check a request's ``Authorization: Bearer`` header or token cookie (constant time).

    ``authorization`` is the header as the server decoded it (Latin-1, so its bytes are
    recovered exactly); ``cookie`` is the cookie's value, percent-encoded.
    """
    if expected is None:
        return True
    given = None
    if authorization and authorization[:7].lower() == "bearer ":
        given = authorization[7:].encode("latin-1", "replace").strip(b" \t")
    elif cookie:
        given = unquote_to_bytes(cookie)
    return given is not None and hmac.compare_digest(given, expected.encode("utf-8"))
