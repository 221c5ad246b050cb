"""The JSON error body every HTTP refusal uses: ``{"error": CODE, "detail": MESSAGE}``, and the
headers of every HTML page.

One home for them, so that the webhook edge, the admin API, the web page, the action links and the
application's own handlers answer the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from receiver.events import without_lone_surrogates

__all__ = ["INTERNAL_ERROR", "PAGE_HEADERS", "EventJSONResponse", "error_body", "error_response", "page_bytes"]

PAGE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Every HTML page's: no scripts at all (the pages have none), no framing, never cached."""


def error_body(code: str, detail: str) -> dict[str, str]:
    """``{"error": CODE, "detail": MESSAGE}``, for a route that writes its answer itself (the webhook edge)."""
    return {"error": code, "detail": detail}


INTERNAL_ERROR = error_body("internal_error", "internal error; see the server log")
"""The body of every 500: the cause goes to the log, never to the client."""


def error_response(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error body every refusal uses: ``{"error": CODE, "detail": MESSAGE}``."""
    return JSONResponse(error_body(code, detail), status_code=status, headers=headers)


class EventJSONResponse(JSONResponse):
    """A JSON answer that may hold event text as stored: a lone surrogate is written ``\\ud800``.

    JSON allows ``"\\ud800"`` alone (what a cut through an emoji leaves) and the parsed stored body
    keeps it; UTF-8 cannot hold it, so Starlette's answer was a 500 for such an event.
    """

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def page_bytes(html: str) -> bytes:
    """A page as UTF-8; a lone surrogate from event text (see ``EventJSONResponse``) shows as U+FFFD."""
    try:
        return html.encode()
    except UnicodeEncodeError:
        return without_lone_surrogates(html).encode()
