"""Who may talk to the server: loopback by default, a bearer token otherwise."""

from __future__ import annotations

import hmac
import ipaddress
import os

from sonicsearch.errors import ConfigError

TOKEN_ENV = "SONICSEARCH_TOKEN"
TOKEN_COOKIE = "sonicsearch_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """True for a host name or address that only this machine can reach."""
    if host.strip("[]").lower() in LOOPBACK_NAMES or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(token: str | None, host: str) -> str | None:
    """The token to require: ``token``, else $SONICSEARCH_TOKEN, else None (loopback only).

    Raises:
        ConfigError: a non-loopback bind without a token, or a token too short to resist
            guessing.
    """
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the token has {len(token)} characters; use at least "
                          f"{MIN_TOKEN_CHARS} (e.g. `python -c 'import secrets; "
                          "print(secrets.token_urlsafe(24))'`)")
    if token is None and not is_loopback(host):
        raise ConfigError(f"refusing to listen on {host} without a token: anyone who can "
                          f"reach it could search and play your collection; pass --token or "
                          f"set {TOKEN_ENV}, or bind 127.0.0.1")
    return token


def token_ok(expected: str | None, authorization: str | None, cookie: str | None) -> bool:
    """Check a request's ``Authorization: Bearer`` header or token cookie (constant time)."""
    if expected is None:
        return True
    given = None
    if authorization and authorization[:7].lower() == "bearer ":
        given = authorization[7:].strip()
    elif cookie:
        given = cookie
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
