"""The admin API under ``/api/``: rules, events, deliveries and their re-drive.

Every route needs ``Authorization: Bearer $RECEIVER_ADMIN_TOKEN``; with no token configured
the API is off (404 ``admin_api_disabled``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.edge import error_response
from receiver.runtime import Runtime, token_matches

__all__ = ["routes"]

_Handler = Callable[[Request, Runtime], Awaitable[Response]]


def admin(handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap ``handler`` so it runs only with the admin token (compared in constant time)."""

    async def guarded(request: Request) -> Response:
        rt: Runtime = request.app.state.runtime
        token = rt.settings.admin_token
        if token is None:
            return error_response(404, "admin_api_disabled", "set RECEIVER_ADMIN_TOKEN to enable the admin API")
        if not token_matches(request.headers.get("authorization"), token.get_secret_value()):
            return error_response(401, "unauthorized", "missing or wrong bearer token")
        result: Response = await handler(request, rt)
        return result

    return guarded


async def rules_reload(_: Request, rt: Runtime) -> Response:
    problems = await rt.reload("api")
    if problems:
        return JSONResponse({"status": "failed", "problems": problems}, status_code=422)
    return JSONResponse({"status": "reloaded", "rules": len(rt.ruleset.rules)})


async def rules_status(_: Request, rt: Runtime) -> Response:
    return JSONResponse(
        {
            "path": str(rt.settings.rules),
            "rules": [r.name for r in rt.ruleset.rules],
            "channels": sorted(rt.ruleset.channels),
            "loaded_at": rt.rules_loaded_at,
            "last_reload_problems": rt.reload_problems,
        }
    )


async def deliveries(request: Request, rt: Runtime) -> Response:
    state_filter = request.query_params.get("state")
    if state_filter not in (None, "pending", "sent", "dead"):
        return error_response(400, "invalid_state", "state must be one of pending, sent, dead")
    rows = await rt.store.list_deliveries(state=state_filter, limit=_limit(request))
    return JSONResponse({"deliveries": [_delivery_json(r) for r in rows]})


async def delivery_retry(request: Request, rt: Runtime) -> Response:
    try:
        delivery_id = int(request.path_params["id"])
    except ValueError:
        return error_response(400, "invalid_id", "delivery id must be an integer")
    if not await rt.store.retry_delivery(delivery_id, now=rt.clock()):
        return error_response(404, "not_found", f"no unsent delivery {delivery_id}")
    if rt.dispatcher is not None:
        rt.dispatcher.wake()
    return JSONResponse({"status": "retrying", "id": delivery_id})


async def deliveries_retry_dead(_: Request, rt: Runtime) -> Response:
    count = await rt.store.retry_dead(now=rt.clock())
    if rt.dispatcher is not None:
        rt.dispatcher.wake()
    return JSONResponse({"status": "retrying", "count": count})


async def events(request: Request, rt: Runtime) -> Response:
    rows = await rt.store.list_events(limit=_limit(request))
    return JSONResponse(
        {
            "events": [
                {
                    "id": r.id,
                    "source": r.source,
                    "event_id": r.event_id,
                    "type": r.type,
                    "received_at": r.received_at,
                    "state": r.state,
                    "outcome": json.loads(r.outcome) if r.outcome else None,
                }
                for r in rows
            ]
        }
    )


def _limit(request: Request) -> int:
    value = request.query_params.get("limit", "100")
    return max(1, min(1000, int(value))) if value.isdigit() else 100


def _delivery_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "inbox_id": row.inbox_id,
        "rule": row.rule,
        "channel": row.channel,
        "title": row.title,
        "severity": row.severity,
        "state": row.state,
        "attempts": row.attempts,
        "created_at": row.created_at,
        "next_attempt_at": row.next_attempt_at if row.state == "pending" else None,
        "last_error": row.last_error,
        "sent_at": row.sent_at,
    }


def routes() -> list[Route]:
    """The admin routes, each behind the bearer-token guard."""
    return [
        Route("/api/rules", admin(rules_status), methods=["GET"]),
        Route("/api/rules/reload", admin(rules_reload), methods=["POST"]),
        Route("/api/events", admin(events), methods=["GET"]),
        Route("/api/deliveries", admin(deliveries), methods=["GET"]),
        Route("/api/deliveries/retry-dead", admin(deliveries_retry_dead), methods=["POST"]),
        Route("/api/deliveries/{id}/retry", admin(delivery_retry), methods=["POST"]),
    ]
