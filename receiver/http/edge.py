"""The edge Orchestrator talks to: ``POST /webhooks/{source}`` and ``POST /logs/{source}``.

It does the least that lets it answer honestly: read the body within the limit, verify the
signature (or the bearer token for robot logs), check that the body is a JSON object with a
``Type``, refuse replays, commit the raw body to the inbox, answer 202. The typed parse, the
rules and the delivery happen after the answer, in the workers, so Orchestrator (which
disables a webhook for an hour after a slow or failed delivery) never waits on them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from receiver.errors import EventParseError, SignatureError, StoreError
from receiver.events import EVENT_TYPES, end_key, lookup, parse_log_entries
from receiver.http.auth import client_address, token_matches
from receiver.http.quota import retry_after
from receiver.http.responses import INTERNAL_ERROR, error_body
from receiver.http.runtime import Runtime
from receiver.jsonfmt import dumps
from receiver.logconfig import log_summary
from receiver.signature import SignatureForm, verify_signature
from receiver.store import InboxItem
from receiver.timefmt import parse_iso

__all__ = ["is_webhook", "logs", "webhook", "without_trailing_slash"]

log = structlog.get_logger()


_WEBHOOKS = "/webhooks/"


def is_webhook(scope: Scope) -> bool:
    """Whether ``scope`` is ``POST /webhooks/{source}``, the one hot path.

    ``app.ReceiverApp`` answers it with ``webhook`` before Starlette's middleware stack and router,
    which cost a webhook more CPU than the rest of its path (docs/performance.md, "Fast paths"). The
    route stays in the table (mounting the same handler) for 405s and for apps built without this.
    """
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return False
    path: str = scope["path"]
    return path.startswith(_WEBHOOKS) and len(path) > len(_WEBHOOKS) and "/" not in path[len(_WEBHOOKS) :]


_EDGE_PREFIXES = (_WEBHOOKS, "/logs/")


def without_trailing_slash(scope: Scope) -> Scope:
    """``POST /webhooks/{source}/`` and ``/logs/{source}/`` as the same path without the slash at its end.

    A URL pasted into Orchestrator or NLog with a slash at its end was redirected (307), and a client
    does not follow an https request to the http Location a receiver behind a proxy builds: the
    delivery failed. Any other scope is returned as it is.
    """
    path: str = scope["path"]
    if not path.endswith("/") or not path.startswith(_EDGE_PREFIXES) or path.count("/") != 3 or path[-2] == "/":
        return scope
    raw: bytes = scope.get("raw_path") or path.encode()
    return {**scope, "path": path[:-1], "raw_path": raw[:-1] if raw.endswith(b"/") else raw}


class _Webhook:
    """``POST /webhooks/{source}``: one summary line per request (``webhook_received`` or ``webhook_refused``).

    A plain ASGI app (an instance, so that Starlette's Route mounts it as it is).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        rt: Runtime = scope["app"].state.runtime
        source_name = scope["path"].rpartition("/")[2]
        try:
            status, payload, headers, summary = await _accept_webhook(rt, source_name, scope, receive)
        except _Refused as refusal:
            status, payload, headers, summary = _refusal(rt, source_name, refusal)
        except ClientDisconnect:
            return
        except Exception:
            # Outside Starlette's ServerErrorMiddleware (see is_webhook): the same logged JSON 500.
            log.exception("request_failed", path=scope["path"][:200])
            status, payload, headers = 500, dict(INTERNAL_ERROR), None
            summary = ("webhook_failed", {"source": source_name[:100], "status": 500})
        body = dumps(payload)
        raw_headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        elapsed = time.perf_counter() - started
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})
        rt.metrics.webhook_duration.observe(elapsed)
        _summarise(summary, elapsed)


webhook = _Webhook()


async def logs(request: Request) -> Response:
    """``POST /logs/{source}``: one summary line per request (``logs_received`` or ``webhook_refused``)."""
    return await _handle(request, "logs", _accept_logs)


async def _handle(
    request: Request, route: str, accept: Callable[[Runtime, str, Request], Awaitable[tuple[Response, _Summary]]]
) -> Response:
    """Run ``accept``, turn a refusal into its JSON error, time it, and log the one summary line."""
    started = time.perf_counter()
    rt: Runtime = request.app.state.runtime
    source_name = request.path_params["source"]
    try:
        response, summary = await accept(rt, source_name, request)
    except _Refused as refusal:
        response, summary = _refuse(rt, source_name, refusal)
    elapsed = time.perf_counter() - started
    rt.metrics.handler_duration.labels(route).observe(elapsed)
    _summarise(summary, elapsed)
    return response


_Summary = tuple[str, dict[str, Any]]
"""A request's summary line: its event name and fields, logged once the handler's duration is known."""


def _summarise(summary: _Summary, elapsed: float) -> None:
    name, fields = summary
    fields["duration_ms"] = round(elapsed * 1000, 2)
    log_summary("info" if name.endswith("_received") else "warning", name, fields)


def _event_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value).timestamp()
    except ValueError:
        return None


def _event_id(raw: Mapping[str, Any], body: bytes) -> str:
    value = lookup(raw, "EventId")
    if isinstance(value, str) and value.strip():
        return value.strip()[:200]
    if isinstance(value, int) and not isinstance(value, bool):
        # Bounded like a string: JSON allows 4,300 digits, past PostgreSQL's unique index entry limit.
        return str(value)[:200]
    # No usable EventId: the body itself is the identity, so an exact resend still dedups.
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _parse_envelope(body: bytes) -> tuple[dict[str, Any], str]:
    """The body as a JSON object and its non-empty string ``Type`` (stripped), or EventParseError."""
    raw = _json_body(body)
    if not isinstance(raw, dict):
        raise EventParseError("not_an_object", f"body is a JSON {type(raw).__name__}, expected an object")
    event_type = lookup(raw, "Type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise EventParseError("missing_type", "body has no string field 'Type'")
    return raw, event_type.strip()


class _Refused(Exception):
    """A request the edge refuses: mapped once to the JSON error body, a log line and a metric."""

    def __init__(self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        self.status, self.code, self.detail, self.headers = status, code, detail, headers
        super().__init__(detail)


_Answer = tuple[int, dict[str, Any], Mapping[str, str] | None, _Summary]
"""Status, JSON body, extra headers and summary line of a webhook answer."""


def _refusal(rt: Runtime, source: str, refusal: _Refused) -> _Answer:
    # Unknown source names come from the URL: label them as one value, not as what was sent.
    label = source if source in rt.sources else "unknown"
    rt.metrics.webhooks_refused.labels(label, refusal.code).inc()
    if refusal.code == "signature_mismatch":
        rt.webhook_path.signature_mismatch(source)  # evidence for the heartbeat
    summary = ("webhook_refused", {"source": source[:100], "reason": refusal.code, "status": refusal.status})
    return refusal.status, error_body(refusal.code, refusal.detail), refusal.headers, summary


def _refuse(rt: Runtime, source: str, refusal: _Refused) -> tuple[Response, _Summary]:
    status, payload, headers, summary = _refusal(rt, source, refusal)
    return JSONResponse(payload, status_code=status, headers=headers), summary


def _signature_header(scope: Scope) -> str | None:
    """The one ``X-UiPath-Signature``; two are refused, since which one counts would be a guess."""
    found = [value for key, value in scope["headers"] if key == b"x-uipath-signature"]
    if len(found) > 1:
        raise _Refused(400, "duplicate_signature", "the request has more than one X-UiPath-Signature header")
    return found[0].decode("latin-1") if found else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _receive_body(rt: Runtime, scope: Scope, receive: Receive) -> bytes:
    """The body from the ASGI messages, refused as soon as it passes the size limit or its time.

    A single chunk (the usual webhook) is not copied. A client still sending after
    ``body_timeout_seconds`` gets a 408 and the connection is closed (see ``ReadDeadlines``).
    """
    limit = rt.settings.max_body_bytes
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _Refused(413, "body_too_large", f"body is over the limit of {limit} bytes", _CLOSE)
    task = rt.reads.watch(rt.settings.body_timeout_seconds)
    if task is None:  # not in a task: nothing to watch (only possible outside a server)
        return await _receive_chunks(receive, limit)
    try:
        return await _receive_chunks(receive, limit)
    except asyncio.CancelledError:
        if not rt.reads.done(task):
            raise  # the server is stopping, or the client went away
        task.uncancel()
        within = rt.settings.body_timeout_seconds
        raise _Refused(408, "body_timeout", f"the body did not arrive within {within:g} s", _CLOSE) from None
    finally:
        rt.reads.done(task)


_CLOSE = {"Connection": "close"}
"""Answers that leave the request body unread also end the connection (what follows is garbage)."""


async def _receive_chunks(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Refused(413, "body_too_large", f"body is over the limit of {limit} bytes", _CLOSE)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _accept_webhook(rt: Runtime, source_name: str, scope: Scope, receive: Receive) -> _Answer:
    """Verify, check and store one webhook; raises _Refused for anything it will not take."""
    source = rt.sources.get(source_name)
    if source is None:
        raise _Refused(404, "unknown_source", f"no source {source_name[:100]!r} is configured", _CLOSE)
    body = await _receive_body(rt, scope, receive)
    if source.secrets:
        try:
            form = verify_signature(body, _signature_header(scope), source.secrets, allow_hex=source.allow_hex)
        except SignatureError as exc:
            raise _Refused(401, f"signature_{exc.reason}", str(exc)) from None
        if form is SignatureForm.HEX:
            log.info("signature_hex_form_used", source=source_name)
    # Counted as a burst only once authenticated (see receiver/pipeline/activity.py): a few unsigned bodies
    # trickled in must not make the workers wait.
    with rt.edge.handling():
        return await _store_webhook(rt, source_name, body, key_job_ends=source.key_job_ends)


async def _store_webhook(rt: Runtime, source_name: str, body: bytes, *, key_job_ends: bool) -> _Answer:
    """Check and store one authenticated webhook; raises _Refused for anything it will not take."""
    try:
        raw, event_type = _parse_envelope(body)
    except EventParseError as exc:
        raise _Refused(400, exc.code, str(exc)) from None
    event_id = _event_id(raw, body)
    # Where gap recovery may store a job's end (a queue item's failure) too, both use the same key
    # (events/identity.py).
    inbox_key = (end_key(raw) if key_job_ends else None) or event_id
    now = rt.clock()
    event_time = _event_time(lookup(raw, "Timestamp"))
    if event_time is not None and now - event_time > rt.settings.max_event_age_seconds:
        raise _Refused(
            400,
            "stale_event",
            f"Timestamp is older than {rt.settings.max_event_age_seconds:.0f} s: refused as a possible replay",
        )
    lease_until = rt.worker.adoption_lease(now)
    item = InboxItem(
        source=source_name,
        event_id=inbox_key,
        type=event_type,
        body=body,
        received_at=now,
        event_time=event_time,
        lease_until=lease_until,
    )
    try:
        accepted = await rt.store.accept(item)
    except StoreError as exc:
        log.error("webhook_not_stored", source=source_name, event_id=event_id, error=str(exc))
        rt.store_writes.failed(str(exc), len(body))
        raise _Refused(
            503, "store_unavailable", "the event could not be stored; retry later", {"Retry-After": "5"}
        ) from None
    if rt.store_writes.failure is not None:
        rt.store_writes.succeeded()
    status = "duplicate" if accepted.duplicate else "accepted"
    if event_type == "ping":
        rt.webhook_path.ping_accepted(source_name, event_id)  # the heartbeat's round trip
    type_label = event_type if event_type in EVENT_TYPES else "unknown"
    rt.metrics.received(source_name, type_label, status).inc()
    summary = (
        "webhook_received",
        {
            "source": source_name,
            "type": event_type[:100],
            "event_id": event_id,
            "status": status,
            "inbox_id": accepted.inbox_id,
            **({"inbox_key": inbox_key} if inbox_key != event_id else {}),
        },
    )
    return 202, {"status": status, "event_id": event_id}, None, summary


async def _accept_logs(rt: Runtime, source_name: str, request: Request) -> tuple[Response, _Summary]:
    """Check the token and the source's quota, then store each robot-log entry as one ``robot.log`` event."""
    source = rt.sources.get(source_name)
    if source is None or source.logs_token is None:
        raise _Refused(404, "unknown_source", f"no robot-log route is configured for source {source_name[:100]!r}")
    client = client_address(request)
    wait_failures = rt.logs_auth_failures.retry_after(client)
    if wait_failures is not None:
        detail = f"too many failed token checks from this address; retry in {wait_failures} s"
        raise _Refused(429, "too_many_failures", detail, {"Retry-After": str(wait_failures), **_CLOSE})
    if not token_matches(request.headers.get("authorization"), source.logs_token):
        failures = rt.logs_auth_failures.failed(client)
        log.warning("logs_auth_failed", client=client, source=source_name, failures=failures)
        raise _Refused(401, "unauthorized", "missing or wrong bearer token")
    rate, burst = _logs_rate(rt)
    # A source already over its rate is refused before its body is read or parsed.
    wait = rt.logs_quota.wait(source_name, 1, rate=rate, burst=burst)
    if wait > 0:
        raise _rate_limited(source_name, rate, burst, wait, close=True)
    body = await _receive_body(rt, request.scope, request.receive)
    with rt.edge.handling():  # counted as a burst once authenticated and read, as for webhooks
        return await _store_logs(rt, source_name, body)


def _logs_rate(rt: Runtime) -> tuple[float, int]:
    """The robot-log rate and bucket size; a bucket never smaller than one full request."""
    settings = rt.settings
    return settings.logs_rate_per_second, max(settings.logs_burst, settings.logs_max_entries)


def _rate_limited(source_name: str, rate: float, burst: int, wait: float, *, close: bool = False) -> _Refused:
    after = retry_after(wait)
    return _Refused(
        429,
        "rate_limited",
        f"source {source_name[:100]!r} is over its robot-log rate ({rate:g} entries/s, burst {burst}); "
        f"nothing of this request was stored: retry after {after} s",
        {"Retry-After": after, **(_CLOSE if close else {})},
    )


_INLINE_PARSE_BYTES = 2048
"""Log bodies up to this size are parsed on the loop, where a small one costs less than a hop to a thread.

Larger ones go to a thread: the loop must keep answering while a big batch of entries is parsed.
"""


async def _store_logs(rt: Runtime, source_name: str, body: bytes) -> tuple[Response, _Summary]:
    limit = rt.settings.logs_max_entries
    try:
        if len(body) <= _INLINE_PARSE_BYTES:
            entries = _log_entries(body, limit)
        else:
            entries = await asyncio.to_thread(_log_entries, body, limit)
    except EventParseError as exc:
        raise _Refused(400, exc.code, str(exc)) from None
    rate, burst = _logs_rate(rt)
    wait = rt.logs_quota.take(source_name, len(entries), rate=rate, burst=burst)
    if wait > 0:
        raise _rate_limited(source_name, rate, burst, wait)
    now = rt.clock()
    items = [
        InboxItem(source=source_name, event_id=event_id, type="robot.log", body=raw, received_at=now)
        for event_id, raw in entries
    ]
    try:
        results = await asyncio.gather(*(rt.store.accept(item) for item in items))
    except StoreError as exc:
        log.error("logs_not_stored", source=source_name, error=str(exc))
        rt.store_writes.failed(str(exc), len(body))
        raise _Refused(
            503, "store_unavailable", "the entries could not be stored; retry later", {"Retry-After": "5"}
        ) from None
    rt.store_writes.succeeded()
    accepted = sum(not r.duplicate for r in results)
    rt.metrics.webhooks_received.labels(source_name, "robot.log", "accepted").inc(accepted)
    rt.metrics.webhooks_received.labels(source_name, "robot.log", "duplicate").inc(len(items) - accepted)
    summary = (
        "logs_received",
        {"source": source_name, "type": "robot.log", "entries": len(items), "accepted": accepted, "status": "accepted"},
    )
    reply = {"status": "accepted", "accepted": accepted, "duplicates": len(items) - accepted}
    return JSONResponse(reply, status_code=202), summary


def _log_entries(body: bytes, limit: int) -> list[tuple[str, bytes]]:
    """Split a robot-log body into (event id, canonical entry bytes), validating every entry.

    More than ``limit`` entries is a 413 (``_Refused``), found before any entry is validated.
    """
    raw = _json_body(body)
    if isinstance(raw, dict):
        # The first key that is "logs" in any casing, as parse_log_entries reads it.
        wrapped = next((value for key, value in raw.items() if isinstance(key, str) and key.lower() == "logs"), None)
        entries = wrapped if isinstance(wrapped, list) else [raw]
    elif isinstance(raw, list):
        entries = raw
    else:
        raise EventParseError("invalid_logs", 'expected a log entry object, an array, or {"logs": [...]}')
    if len(entries) > limit:
        raise _Refused(
            413,
            "too_many_entries",
            f"the body has {len(entries)} log entries, over the limit of {limit} per request; "
            f"nothing of it was stored: send at most {limit} entries per request",
        )
    # The body as a whole, so that an error names the entry's place in it ("log entry 7 ...").
    events = parse_log_entries(raw)
    result: list[tuple[str, bytes]] = []
    for entry, event in zip(entries, events, strict=True):
        event_id = event.event_id or "sha256:" + hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()
        result.append((event_id, _entry_bytes(entry)))
    return result


def _entry_bytes(entry: Any) -> bytes:
    """One entry as compact JSON, as posted (NaN too); a lone surrogate escaped, which UTF-8 cannot encode.

    A message cut inside a UTF-16 pair (NLog writes it ``"\\ud83d"``) holds one.
    """
    text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(entry, separators=(",", ":")).encode()


class _DuplicateKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(f"body repeats the key {key[:100]!r} in one object")
            seen.add(key)
    return obj


def _json_body(body: bytes) -> Any:
    """The body as JSON, or EventParseError naming why not (the webhook's and the robot logs' one mapping)."""
    try:
        return _loads(body)
    except UnicodeDecodeError as exc:
        raise EventParseError("invalid_json", "body is not UTF-8") from exc
    except _DuplicateKeyError as exc:
        raise EventParseError("duplicate_keys", str(exc)) from exc
    except (ValueError, RecursionError) as exc:
        raise EventParseError("invalid_json", f"body is not JSON: {str(exc)[:200]}") from exc


def _loads(body: bytes) -> Any:
    """``json.loads`` that refuses an object with a repeated key.

    Parsers disagree on which of two equal keys wins, so a signed body with ``"Type"`` twice
    could mean one thing to us and another to whoever checks our logs.
    """
    # What json.loads does with bytes (UTF-8, -16 or -32, BOM or not), with a decoder built once:
    # json.loads(..., object_pairs_hook=...) builds a new JSONDecoder on every call.
    return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)
