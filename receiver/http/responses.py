"""The JSON error body every HTTP refusal uses: ``{"error": CODE, "detail": MESSAGE}``.

One home for it, so that the webhook edge, the admin API, the web page and the application's own
handlers answer errors the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

__all__ = ["INTERNAL_ERROR", "error_body", "error_response"]


def error_body(code: str, detail: str) -> dict[str, str]:
    """``{"error": CODE, "detail": MESSAGE}``, for a route that writes its answer itself (the webhook edge)."""
    return {"error": code, "detail": detail}


INTERNAL_ERROR = error_body("internal_error", "internal error; see the server log")
"""The body of every 500: the cause goes to the log, never to the client."""


def error_response(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error body every refusal uses: ``{"error": CODE, "detail": MESSAGE}``."""
    return JSONResponse(error_body(code, detail), status_code=status, headers=headers)
