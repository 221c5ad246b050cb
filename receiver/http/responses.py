"""The JSON error body every HTTP refusal uses: ``{"error": CODE, "detail": MESSAGE}``.

One home for it, so that the webhook edge, the admin API, the web page and the application's own
handlers answer errors the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

__all__ = ["INTERNAL_ERROR", "error_response"]


INTERNAL_ERROR = {"error": "internal_error", "detail": "internal error; see the server log"}
"""The body of every 500: the cause goes to the log, never to the client."""


def error_response(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error body every refusal uses: ``{"error": CODE, "detail": MESSAGE}``."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)
