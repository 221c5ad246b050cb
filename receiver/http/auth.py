"""Who may in: the admin token and the robot-log tokens, compared in constant time, and the
per-client count of failed checks that the admin API, the web page's login and ``/readyz`` share.
"""

from __future__ import annotations

import hmac

import structlog
from starlette.requests import Request
from starlette.responses import Response

from receiver.http.responses import error_response
from receiver.http.runtime import Runtime

__all__ = [
    "admin_secret",
    "admin_throttled",
    "bearer_ok",
    "client_address",
    "note_failure",
    "secret_equals",
    "token_matches",
    "too_many_failures",
]

log = structlog.get_logger()


def client_address(request: Request) -> str:
    """The client's address as the server sees it (after trusted forwarded headers)."""
    return request.client.host if request.client else "unknown"


def admin_secret(rt: Runtime) -> str | None:
    """The admin token, or None when it is not set (an empty or blank value is not set either)."""
    token = rt.settings.admin_token
    if token is None:
        return None
    value = token.get_secret_value()
    return value if value.strip() else None


def admin_throttled(rt: Runtime, request: Request) -> int | None:
    """Seconds the client must wait before its admin token is checked again, or None."""
    return rt.auth_failures.retry_after(client_address(request))


def note_failure(rt: Runtime, request: Request, route: str) -> None:
    """Count and log one failed admin-token check by this request's client."""
    client = client_address(request)
    failures = rt.auth_failures.failed(client)
    log.warning("admin_auth_failed", client=client, route=route, failures=failures)
    if failures == rt.auth_failures.limit:
        log.warning("admin_auth_throttled", client=client, route=route, seconds=rt.auth_failures.window)


def bearer_ok(rt: Runtime, request: Request) -> bool:
    """Whether the request's ``Authorization: Bearer`` is the admin token (constant time)."""
    return token_matches(request.headers.get("authorization"), admin_secret(rt))


def too_many_failures(wait: int) -> Response:
    """429 for a client past its failed admin-token checks."""
    return error_response(
        429,
        "too_many_failures",
        f"too many failed token checks from this address; retry in {wait} s",
        {"Retry-After": str(wait)},
    )


def secret_equals(given: str, secret: str | None) -> bool:
    """True when ``given`` equals ``secret`` (constant time); never for an empty or blank secret.

    Args:
        given: what the client sent.
        secret: the configured value; None or blank means not set, which nothing matches.
    """
    if secret is None or not secret.strip():
        return False
    return hmac.compare_digest(given.encode(), secret.encode())


def token_matches(authorization: str | None, token: str | None) -> bool:
    """True when an ``Authorization`` header carries ``Bearer <token>`` (constant-time compare).

    An empty or blank ``token`` matches nothing, not even ``Bearer `` with nothing after it.
    """
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and secret_equals(given.strip(), token)
