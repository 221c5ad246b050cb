"""The admin API under ``/api/``: rules, events, deliveries and their re-drive.

Every route needs ``Authorization: Bearer $RECEIVER_ADMIN_TOKEN``; with no token configured
(or an empty or blank one) the API is off (404 ``admin_api_disabled``). Every failed check is
logged (client address and route, never what was sent) and counted per client address; past
``RECEIVER_AUTH_FAILURES_PER_MINUTE`` the address gets 429 with ``Retry-After`` until its minute
is over, the right token included, on ``/api`` and the login of ``/ui`` alike. Behind a reverse
proxy the address is the client's only when the proxy is trusted (``RECEIVER_TRUSTED_PROXIES``).

``GET /api/openapi.json`` (the document describing these routes and the webhook routes) is open:
it holds no data. The shapes of events and deliveries come from ``receiver.admin.audit``, which the web
page shares.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.admin import alerting, audit, silencing
from receiver.http import openapi
from receiver.http.auth import admin_secret, admin_throttled, bearer_ok, note_failure, too_many_failures
from receiver.http.deadline import BodyError
from receiver.http.responses import EventJSONResponse, error_body, error_response
from receiver.http.runtime import Runtime
from receiver.http.views import event_detail, event_list, rules_json
from receiver.store import DeliveryRow, EventRow

__all__ = ["routes"]

log = structlog.get_logger()

_Handler = Callable[[Request, Runtime], Awaitable[Response]]


def _by_method(**handlers: _Handler) -> _Handler:
    """One handler that hands each request to the handler of its method (HEAD: GET's)."""

    async def dispatch(request: Request, rt: Runtime) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request, rt)

    return dispatch


def admin(handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap ``handler`` so it runs only with the admin token (compared in constant time)."""

    async def guarded(request: Request) -> Response:
        rt: Runtime = request.app.state.runtime
        if admin_secret(rt) is None:
            return error_response(404, "admin_api_disabled", "set RECEIVER_ADMIN_TOKEN to enable the admin API")
        wait = admin_throttled(rt, request)
        if wait is not None:
            return too_many_failures(wait)
        if not bearer_ok(rt, request):
            note_failure(rt, request, "api")
            return error_response(401, "unauthorized", "missing or wrong bearer token")
        twice = sorted(k for k in set(request.query_params) if k != "type" and len(request.query_params.getlist(k)) > 1)
        if twice:
            # `?state=dead&state=sent` would silently mean the last one; only `type` takes several values.
            return error_response(400, "invalid_query", f"given more than once: {', '.join(twice)}")
        result: Response = await handler(request, rt)
        return result

    return guarded


async def rules_reload(_: Request, rt: Runtime) -> Response:
    problems = await rt.reload("api")
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        body = error_body("invalid_rules", f"{rt.settings.rules} has {count}; the running rules stay")
        return JSONResponse({**body, "status": "failed", "problems": problems}, status_code=422)
    return JSONResponse({"status": "reloaded", "rules": len(rt.ruleset.rules)})


async def rules_status(_: Request, rt: Runtime) -> Response:
    return JSONResponse(rules_json(rt))


async def deliveries(request: Request, rt: Runtime) -> Response:
    params = request.query_params
    state_filter = params.get("state") or None
    if state_filter is not None and state_filter not in audit.DELIVERY_STATES:
        return error_response(400, "invalid_state", f"state must be one of {', '.join(audit.DELIVERY_STATES)}")
    inbox_id = _optional_id(params.get("event"))
    before = _optional_id(params.get("before"))
    if inbox_id == -1 or before == -1:
        return error_response(400, "invalid_id", "event and before must be integer ids")
    limit = _limit(request)
    if limit is None:
        return _bad_limit()
    rows = await rt.store.list_deliveries(
        state=None if state_filter == "failing" else state_filter,
        failing=state_filter == "failing",
        channel=params.get("channel") or None,
        rule=params.get("rule") or None,
        inbox_ids=None if inbox_id is None else [inbox_id],
        before=before,
        limit=limit,
    )
    return JSONResponse(
        {"deliveries": [audit.delivery_json(r) for r in rows], "next_before": _next_before(rows, limit)}
    )


async def delivery(request: Request, rt: Runtime) -> Response:
    delivery_id = _optional_id(request.path_params["id"])
    if delivery_id is None or delivery_id < 0:
        return error_response(400, "invalid_id", "delivery id must be an integer")
    row = await rt.store.get_delivery(delivery_id)
    if row is None:
        return error_response(404, "not_found", f"no delivery {delivery_id}")
    attempts = await rt.store.list_attempts([row.id])
    data = audit.delivery_json(row)
    data["body"] = row.body
    data["attempt_log"] = [audit.attempt_json(a) for a in attempts]
    return JSONResponse(data)


async def delivery_retry(request: Request, rt: Runtime) -> Response:
    delivery_id = _optional_id(request.path_params["id"])
    if delivery_id is None or delivery_id < 0:
        return error_response(400, "invalid_id", "delivery id must be an integer")
    if not await rt.store.retry_delivery(delivery_id, now=rt.clock()):
        return error_response(404, "not_found", f"no unsent delivery {delivery_id}")
    return JSONResponse({"status": "retrying", "id": delivery_id})


async def deliveries_retry_dead(_: Request, rt: Runtime) -> Response:
    count = await rt.store.retry_dead(now=rt.clock())
    return JSONResponse({"status": "retrying", "count": count})


async def events(request: Request, rt: Runtime) -> Response:
    """Recent events, filtered; each with its matched rules, decisions and deliveries (``explain=1``: why not)."""
    try:
        query = audit.event_query(request.query_params, request.query_params.getlist("type"), now=rt.clock())
    except audit.QueryError as exc:
        return error_response(400, "invalid_query", str(exc))
    limit = _limit(request)
    if limit is None:
        return _bad_limit()
    rows = await rt.store.list_events(limit=limit, query=query)
    explain = request.query_params.get("explain", "") in ("1", "true", "yes")
    items = await event_list(rt, rows, explain=explain)
    return EventJSONResponse({"events": items, "next_before": _next_before(rows, limit)})


async def event(request: Request, rt: Runtime) -> Response:
    inbox_id = _optional_id(request.path_params["id"])
    if inbox_id is None or inbox_id < 0:
        return error_response(400, "invalid_id", "event id must be an integer (the id of GET /api/events)")
    data = await event_detail(rt, inbox_id)
    if data is None:
        return error_response(404, "not_found", f"no event {inbox_id}")
    return EventJSONResponse(data)


async def silences(request: Request, rt: Runtime) -> Response:
    """Ad-hoc silences: those not ended yet, or every one with ``all=1``."""
    now = rt.clock()
    every = request.query_params.get("all", "") in ("1", "true", "yes")
    limit = _limit(request)
    if limit is None:
        return _bad_limit()
    rows = await rt.store.list_silences(active_at=None if every else now, limit=limit)
    return JSONResponse({"silences": [silencing.silence_json(r, now) for r in rows]})


async def silence_create(request: Request, rt: Runtime) -> Response:
    """Create an ad-hoc silence: ``{"matchers", "comment", "created_by", "for" | "ends_at", "starts_at"?}``."""
    try:
        body = await rt.reads.read_body(
            request.receive, limit=rt.settings.max_body_bytes, within=rt.settings.body_timeout_seconds
        )
    except BodyError as exc:
        return error_response(exc.status, exc.code, exc.detail)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return error_response(400, "invalid_json", "the body must be a JSON object")
    if not isinstance(data, dict):
        return error_response(400, "invalid_json", "the body must be a JSON object")
    matchers = data.get("matchers")
    if isinstance(matchers, str):
        matchers = [matchers]
    if not isinstance(matchers, list) or not all(isinstance(m, str) for m in matchers):
        return error_response(400, "invalid_silence", "matchers: a string or a list of strings (process=Invoice*)")
    unknown = sorted(set(data) - {"matchers", "comment", "created_by", "for", "starts_at", "ends_at"})
    if unknown:
        return error_response(400, "invalid_silence", f"unknown keys: {', '.join(unknown)}")
    now = rt.clock()
    try:
        new = silencing.build_silence(
            matchers,
            comment=str(data.get("comment") or ""),
            created_by=str(data.get("created_by") or ""),
            now=now,
            duration=data.get("for"),
            starts_at=data.get("starts_at"),
            ends_at=data.get("ends_at"),
        )
    except silencing.SilenceError as exc:
        return error_response(400, "invalid_silence", str(exc))
    except OverflowError:
        # parse_duration lets timedelta's OverflowError through for a duration of millions of
        # weeks ("for": "200000000w"), which was a 500. A silence lasts a year at most anyway.
        return error_response(400, "invalid_silence", "a silence may last a year at most")
    if not (_representable(new.starts_at) and _representable(new.ends_at)):
        # Stored, such a silence made every later list of silences a 500: its times are shown
        # as ISO 8601, which stops at the year 9999.
        return error_response(400, "invalid_silence", "starts_at and ends_at must lie between 1970 and 9999")
    row = await rt.store.add_silence(new, now=now)
    return JSONResponse({"silence": silencing.silence_json(row, now)}, status_code=201)


async def silence_expire(request: Request, rt: Runtime) -> Response:
    """End an ad-hoc silence now (idempotent)."""
    silence_id = _optional_id(request.path_params["id"])
    if silence_id is None or silence_id < 0:
        return error_response(400, "invalid_id", "silence id must be an integer")
    now = rt.clock()
    row = await rt.store.expire_silence(silence_id, now=now)
    if row is None:
        return error_response(404, "not_found", f"no silence {silence_id}")
    return JSONResponse({"silence": silencing.silence_json(row, now)})


async def suppressions(request: Request, rt: Runtime) -> Response:
    """Noise decisions, newest first: suppressions only, or every decision with ``all=1``; ``event=ID`` filters."""
    inbox_id = _optional_id(request.query_params.get("event"))
    if inbox_id == -1:
        return error_response(400, "invalid_id", "event must be an integer id")
    every = request.query_params.get("all", "") in ("1", "true", "yes")
    limit = _limit(request)
    if limit is None:
        return _bad_limit()
    rows = await rt.store.list_noise_log(limit=limit, suppressed_only=not every, inbox_id=inbox_id)
    return JSONResponse({"suppressions": [audit.noise_json(r) for r in rows]})


async def alerts(request: Request, rt: Runtime) -> Response:
    """Alerts: open ones first (oldest first), then resolved ones; ``state=open`` for open ones only."""
    state = request.query_params.get("state", "")
    if state not in ("", "open"):
        return error_response(400, "invalid_query", "state: open, or leave it out")
    limit = _limit(request)
    if limit is None:
        return _bad_limit()
    rows = await rt.store.list_alerts(limit=limit, open_only=state == "open")
    return JSONResponse({"alerts": [alerting.alert_json(a) for a in rows]})


async def alert(request: Request, rt: Runtime) -> Response:
    """One alert with its trail (who did what when)."""
    alert_id = request.path_params["id"]
    row = await rt.store.get_alert(alert_id) if alerting.valid_id(alert_id) else None
    if row is None:
        return error_response(404, "not_found", "no such alert")
    trail = alerting.trail_json(await rt.store.alert_trail(row.id))
    return JSONResponse({"alert": alerting.alert_json(row), "trail": trail})


async def _actor(request: Request, rt: Runtime) -> str | Response:
    """``by`` of an optional JSON body (who acts), or ``api``."""
    try:
        body = await rt.reads.read_body(request.receive, limit=4096, within=rt.settings.body_timeout_seconds)
    except BodyError as exc:
        return error_response(exc.status, exc.code, exc.detail)
    if not body.strip():
        return "api"
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return error_response(400, "invalid_json", "the body must be a JSON object")
    if not isinstance(data, dict) or not isinstance(data.get("by", ""), str) or set(data) - {"by"}:
        return error_response(400, "invalid_json", 'the body must be {"by": "who acts"} or empty')
    return alerting.actor_name(data.get("by", "")) or "api"


async def alert_acknowledge(request: Request, rt: Runtime) -> Response:
    """Acknowledge a firing alert: its reminders and escalations stop."""
    return await _alert_action(request, rt, alerting.acknowledge, "firing")


async def alert_resolve(request: Request, rt: Runtime) -> Response:
    """Resolve an open alert by hand."""
    return await _alert_action(request, rt, alerting.resolve, "open")


async def _alert_action(
    request: Request, rt: Runtime, action: Callable[..., Awaitable[object]], needs: str
) -> Response:
    alert_id = request.path_params["id"]
    if not alerting.valid_id(alert_id):
        return error_response(404, "not_found", "no such alert")
    actor = await _actor(request, rt)
    if isinstance(actor, Response):
        return actor
    done = await action(rt.store, alert_id, actor=actor, via="api", now=rt.clock(), metrics=rt.metrics)
    current = await rt.store.get_alert(alert_id)
    if current is None:
        return error_response(404, "not_found", "no such alert")
    if done is None:
        return error_response(409, "conflict", f"alert {alert_id} is {current.state}, not {needs}")
    return JSONResponse({"alert": alerting.alert_json(current)})


async def openapi_document(_: Request) -> Response:
    return JSONResponse(openapi.document())


def _representable(at: float) -> bool:
    """Whether Unix time ``at`` can be written as an ISO 8601 date-time (years 1970 to 9999)."""
    return 0 <= at < _LAST_ISO_TIME


_LAST_ISO_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def _limit(request: Request) -> int | None:
    """``limit`` clamped to 1-1000 (100 when absent), or None when it is not an integer.

    Refused rather than silently read as 100: ``limit=1O`` (a letter O) would otherwise answer a
    different page size than asked, with nothing to say so.
    """
    value = request.query_params.get("limit", "").strip() or "100"
    digits = value.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        return None
    if len(digits) > 4:  # out of range either way; int() of thousands of digits is slow, then refused
        return 1 if value.startswith("-") else 1000
    return max(1, min(1000, int(value)))


def _bad_limit() -> Response:
    return error_response(400, "invalid_query", "limit must be an integer (1-1000)")


def _optional_id(value: str | None) -> int | None:
    """None when absent, -1 when not an id (ASCII digits, at most a signed 64-bit integer), else the id."""
    if value is None or value == "":
        return None
    parsed = audit.parse_id(value)
    return -1 if parsed is None else parsed


def _next_before(rows: Sequence[EventRow] | Sequence[DeliveryRow], limit: int) -> int | None:
    """The ``before`` of the next page, when this page was full."""
    return rows[-1].id if len(rows) == limit and rows else None


def routes() -> list[Route]:
    """The admin routes, each behind the bearer-token guard."""
    return [
        Route("/api/rules", admin(rules_status), methods=["GET"]),
        Route("/api/rules/reload", admin(rules_reload), methods=["POST"]),
        Route("/api/events", admin(events), methods=["GET"]),
        Route("/api/events/{id}", admin(event), methods=["GET"]),
        Route("/api/deliveries", admin(deliveries), methods=["GET"]),
        Route("/api/deliveries/retry-dead", admin(deliveries_retry_dead), methods=["POST"]),
        Route("/api/deliveries/{id}", admin(delivery), methods=["GET"]),
        Route("/api/deliveries/{id}/retry", admin(delivery_retry), methods=["POST"]),
        # One route for both methods: with two, a 405's Allow header would name only the first's.
        Route("/api/silences", admin(_by_method(GET=silences, POST=silence_create)), methods=["GET", "POST"]),
        Route("/api/silences/{id}", admin(silence_expire), methods=["DELETE"]),
        Route("/api/silences/{id}/expire", admin(silence_expire), methods=["POST"]),
        Route("/api/suppressions", admin(suppressions), methods=["GET"]),
        Route("/api/alerts", admin(alerts), methods=["GET"]),
        Route("/api/alerts/{id}", admin(alert), methods=["GET"]),
        Route("/api/alerts/{id}/ack", admin(alert_acknowledge), methods=["POST"]),
        Route("/api/alerts/{id}/resolve", admin(alert_resolve), methods=["POST"]),
        Route("/api/openapi.json", openapi_document, methods=["GET"]),
    ]
