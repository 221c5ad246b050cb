"""The HTTP application: routes, the life cycle of store and workers, and error mapping.

The only module that imports starlette. The webhook route does the least that lets it answer
honestly: read the body within the limit, verify the signature, check that the body is a JSON
object with a ``Type``, refuse replays, commit the raw body to the inbox, answer 202. The typed
parse, the rules and the delivery happen after the answer, in the workers, so Orchestrator
(which disables a webhook for an hour after a slow or failed delivery) never waits on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.dispatch import Backoff, Dispatcher
from receiver.errors import ConfigError, EventParseError, RulesError, SignatureError, StoreError
from receiver.events import EVENT_TYPES, parse_log_entries
from receiver.metrics import Metrics
from receiver.notifier import AppriseNotifier, Notifier, check_url
from receiver.rules import RuleSet, load_rules
from receiver.settings import Settings
from receiver.signature import SignatureForm, verify_signature
from receiver.store import InboxItem, Store, open_store
from receiver.worker import InboxWorker

__all__ = ["SourceAuth", "create_app", "resolve_sources"]

log = structlog.get_logger()

DEFAULT_SOURCE = "uipath"


@dataclass(frozen=True, slots=True)
class SourceAuth:
    """How one source proves itself: webhook secrets (rotation: several), robot-log token."""

    name: str
    secrets: tuple[str, ...]
    logs_token: str | None
    insecure: bool
    allow_hex: bool

    def __repr__(self) -> str:  # never show secrets
        return f"SourceAuth(name={self.name!r}, secrets=<{len(self.secrets)}>, insecure={self.insecure})"


def resolve_sources(ruleset: RuleSet, settings: Settings) -> dict[str, SourceAuth]:
    """Merge the sources of ``rules.yaml`` with the default source ``uipath`` from the environment.

    Args:
        ruleset: the loaded rules, whose ``sources:`` may also name ``uipath``.
        settings: supplies ``RECEIVER_WEBHOOK_SECRET`` and ``RECEIVER_LOGS_TOKEN`` for ``uipath``.

    Returns:
        Every source by name.

    Raises:
        ConfigError: a source without a secret that is not marked ``insecure: true``.
    """
    sources: dict[str, SourceAuth] = {}
    for name, source in ruleset.sources.items():
        sources[name] = SourceAuth(
            name=name,
            secrets=tuple(source.secret_values()),
            logs_token=source.logs_token_value(),
            insecure=source.insecure,
            allow_hex=source.accept_hex_signature,
        )
    env_secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    env_token = settings.logs_token.get_secret_value() if settings.logs_token else None
    default = sources.get(DEFAULT_SOURCE)
    sources[DEFAULT_SOURCE] = SourceAuth(
        name=DEFAULT_SOURCE,
        secrets=(*((env_secret,) if env_secret else ()), *(default.secrets if default else ())),
        logs_token=env_token or (default.logs_token if default else None),
        insecure=default.insecure if default else False,
        allow_hex=default.allow_hex if default else False,
    )
    missing = sorted(name for name, s in sources.items() if not s.secrets and not s.insecure)
    if missing:
        raise ConfigError(
            "source(s) "
            + ", ".join(repr(m) for m in missing)
            + " have no webhook secret: set RECEIVER_WEBHOOK_SECRET for 'uipath', give others `secrets:` in "
            "rules.yaml, or mark a source `insecure: true` to accept unsigned webhooks (not recommended)"
        )
    return sources


@dataclass
class _Runtime:
    """What the routes share: settings, store, the current rules and the workers."""

    settings: Settings
    store: Store
    ruleset: RuleSet
    sources: dict[str, SourceAuth]
    clock: Callable[[], float]
    metrics: Metrics
    worker: InboxWorker | None = None
    dispatcher: Dispatcher | None = None
    reload_problems: list[str] = field(default_factory=list)
    rules_loaded_at: float = 0.0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def current_rules(self) -> RuleSet:
        return self.ruleset

    async def reload(self, reason: str) -> list[str]:
        """Load the rules file again and swap it in whole; on any problem keep the running rules."""
        path = self.settings.rules
        try:
            ruleset = await asyncio.to_thread(_load, str(path))
            sources = resolve_sources(ruleset, self.settings)
        except RulesError as exc:
            problems = [str(p) for p in exc.problems]
        except ConfigError as exc:
            problems = [f"{path}: {exc}"]
        else:
            # One assignment each: a worker reads self.ruleset once per event, so no event
            # sees half of a rule set.
            self.ruleset, self.sources = ruleset, sources
            self.reload_problems = []
            self.rules_loaded_at = self.clock()
            self.metrics.rules_loaded.set(len(ruleset.rules))
            log.info("rules_reloaded", reason=reason, rules=len(ruleset.rules), channels=len(ruleset.channels))
            if self.dispatcher is not None:
                self.dispatcher.wake()
            return []
        self.reload_problems = problems
        self.metrics.rules_reload_failures.inc()
        log.error("rules_reload_failed", reason=reason, problems=problems)
        return problems


def _load(path: str) -> RuleSet:
    import os  # noqa: PLC0415 - read at call time: a reload must see the environment as it is now

    return load_rules(path, environ=dict(os.environ), check_url=check_url)


def _error(status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing as soon as it passes ``limit`` (with or without Content-Length)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _lookup(obj: Mapping[str, Any], key: str) -> Any:
    """``obj[key]``, or the first key equal ignoring case (Orchestrator is PascalCase; others are not)."""
    if key in obj:
        return obj[key]
    lowered = key.lower()
    for name, value in obj.items():
        if name.lower() == lowered:
            return value
    return None


def _event_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _event_id(raw: Mapping[str, Any], body: bytes) -> str:
    value = _lookup(raw, "EventId")
    if isinstance(value, str) and value.strip():
        return value.strip()[:200]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    # No usable EventId: the body itself is the identity, so an exact resend still dedups.
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _parse_envelope(body: bytes) -> dict[str, Any]:
    """The body as a JSON object with a non-empty string ``Type``, or EventParseError."""
    try:
        raw = json.loads(body)
    except UnicodeDecodeError as exc:
        raise EventParseError("invalid_json", "body is not UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise EventParseError("invalid_json", f"body is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(raw, dict):
        raise EventParseError("not_an_object", f"body is a JSON {type(raw).__name__}, expected an object")
    event_type = _lookup(raw, "Type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise EventParseError("missing_type", "body has no string field 'Type'")
    return raw


def create_app(
    settings: Settings,
    *,
    notifier: Notifier | None = None,
    clock: Callable[[], float] = time.time,
    ruleset: RuleSet | None = None,
) -> Starlette:
    """Build the application.

    Args:
        settings: process settings.
        notifier: what sends notifications (apprise by default; tests pass a fake).
        clock: the time source of workers and replay checks (tests drive it).
        ruleset: rules already loaded by the caller; loaded from ``settings.rules`` otherwise.

    Returns:
        The Starlette app; its lifespan opens the store and starts the workers.
    """
    state: dict[str, _Runtime] = {}

    def runtime() -> _Runtime:
        return state["runtime"]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        rules = ruleset if ruleset is not None else await asyncio.to_thread(_load, str(settings.rules))
        sources = resolve_sources(rules, settings)
        store = open_store(settings.database_url)
        await store.open()
        metrics = Metrics(CollectorRegistry(auto_describe=True))
        metrics.rules_loaded.set(len(rules.rules))
        rt = _Runtime(settings=settings, store=store, ruleset=rules, sources=sources, clock=clock, metrics=metrics)
        rt.rules_loaded_at = clock()
        rt.dispatcher = Dispatcher(
            store,
            rt.current_rules,
            notifier or AppriseNotifier(),
            clock=clock,
            lease=settings.lease_seconds,
            poll=settings.poll_seconds,
            backoff=Backoff(base=settings.retry_initial_seconds, cap=settings.retry_max_seconds),
            metrics=metrics,
        )
        rt.worker = InboxWorker(
            store,
            rt.current_rules,
            clock=clock,
            lease=settings.lease_seconds,
            poll=settings.poll_seconds,
            on_deliveries=rt.dispatcher.wake,
            metrics=metrics,
        )
        state["runtime"] = rt
        rt.tasks = [
            asyncio.create_task(rt.worker.run(), name="inbox-worker"),
            asyncio.create_task(rt.dispatcher.run(), name="dispatcher"),
        ]
        if settings.watch_rules:
            rt.tasks.append(asyncio.create_task(_watch_rules(rt), name="rules-watcher"))
        _install_sighup(rt)
        if settings.admin_token is None:
            log.info("admin_api_disabled", hint="set RECEIVER_ADMIN_TOKEN to enable /api")
        log.info(
            "receiver_started",
            sources=sorted(sources),
            insecure_sources=sorted(n for n, s in sources.items() if s.insecure and not s.secrets),
            rules=len(rules.rules),
            channels=len(rules.channels),
        )
        try:
            yield
        finally:
            for task in rt.tasks:
                task.cancel()
            await asyncio.gather(*rt.tasks, return_exceptions=True)
            await store.close()
            log.info("receiver_stopped")

    async def webhook(request: Request) -> Response:
        started = time.perf_counter()
        rt = runtime()
        source_name = request.path_params["source"]
        try:
            response = await _accept_webhook(rt, source_name, request)
        except _Refused as refusal:
            response = _refuse(rt, source_name, refusal)
        rt.metrics.handler_duration.labels("webhook").observe(time.perf_counter() - started)
        return response

    async def logs(request: Request) -> Response:
        started = time.perf_counter()
        rt = runtime()
        source_name = request.path_params["source"]
        try:
            response = await _accept_logs(rt, source_name, request)
        except _Refused as refusal:
            response = _refuse(rt, source_name, refusal)
        rt.metrics.handler_duration.labels("logs").observe(time.perf_counter() - started)
        return response

    async def metrics(_: Request) -> Response:
        rt = runtime()
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        rt = state.get("runtime")
        if rt is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        problems: dict[str, Any] = {}
        try:
            await rt.store.ping()
        except StoreError as exc:
            problems["store"] = str(exc)
        body: dict[str, Any] = {
            "status": "ok" if not problems else "unavailable",
            "rules": {"loaded": len(rt.ruleset.rules), "last_reload_problems": rt.reload_problems},
        }
        if problems:
            body["problems"] = problems
        return JSONResponse(body, status_code=200 if not problems else 503)

    def admin(handler: Callable[[Request, _Runtime], Any]) -> Callable[[Request], Any]:
        async def guarded(request: Request) -> Response:
            rt = runtime()
            token = rt.settings.admin_token
            if token is None:
                return _error(404, "admin_api_disabled", "set RECEIVER_ADMIN_TOKEN to enable the admin API")
            if not _bearer_ok(request, token.get_secret_value()):
                return _error(401, "unauthorized", "missing or wrong bearer token")
            result: Response = await handler(request, rt)
            return result

        return guarded

    async def rules_reload(_: Request, rt: _Runtime) -> Response:
        problems = await rt.reload("api")
        if problems:
            return JSONResponse({"status": "failed", "problems": problems}, status_code=422)
        return JSONResponse({"status": "reloaded", "rules": len(rt.ruleset.rules)})

    async def rules_status(_: Request, rt: _Runtime) -> Response:
        return JSONResponse(
            {
                "path": str(rt.settings.rules),
                "rules": [r.name for r in rt.ruleset.rules],
                "channels": sorted(rt.ruleset.channels),
                "loaded_at": rt.rules_loaded_at,
                "last_reload_problems": rt.reload_problems,
            }
        )

    async def deliveries(request: Request, rt: _Runtime) -> Response:
        state_filter = request.query_params.get("state")
        if state_filter not in (None, "pending", "sent", "dead"):
            return _error(400, "invalid_state", "state must be one of pending, sent, dead")
        rows = await rt.store.list_deliveries(state=state_filter, limit=_limit(request))
        return JSONResponse({"deliveries": [_delivery_json(r) for r in rows]})

    async def delivery_retry(request: Request, rt: _Runtime) -> Response:
        try:
            delivery_id = int(request.path_params["id"])
        except ValueError:
            return _error(400, "invalid_id", "delivery id must be an integer")
        if not await rt.store.retry_delivery(delivery_id, now=rt.clock()):
            return _error(404, "not_found", f"no unsent delivery {delivery_id}")
        if rt.dispatcher is not None:
            rt.dispatcher.wake()
        return JSONResponse({"status": "retrying", "id": delivery_id})

    async def deliveries_retry_dead(_: Request, rt: _Runtime) -> Response:
        count = await rt.store.retry_dead(now=rt.clock())
        if rt.dispatcher is not None:
            rt.dispatcher.wake()
        return JSONResponse({"status": "retrying", "count": count})

    async def events(request: Request, rt: _Runtime) -> Response:
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

    routes = [
        Route("/webhooks/{source}", webhook, methods=["POST"]),
        Route("/logs/{source}", logs, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/api/rules", admin(rules_status), methods=["GET"]),
        Route("/api/rules/reload", admin(rules_reload), methods=["POST"]),
        Route("/api/events", admin(events), methods=["GET"]),
        Route("/api/deliveries", admin(deliveries), methods=["GET"]),
        Route("/api/deliveries/retry-dead", admin(deliveries_retry_dead), methods=["POST"]),
        Route("/api/deliveries/{id}/retry", admin(delivery_retry), methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _method_not_allowed, 500: _server_error},
    )


class _Refused(Exception):
    """A request the edge refuses: mapped once to the JSON error body, a log line and a metric."""

    def __init__(self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        self.status, self.code, self.detail, self.headers = status, code, detail, headers
        super().__init__(detail)


def _refuse(rt: _Runtime, source: str, refusal: _Refused) -> Response:
    # Unknown source names come from the URL: label them as one value, not as what was sent.
    label = source if source in rt.sources else "unknown"
    rt.metrics.webhooks_refused.labels(label, refusal.code).inc()
    log.warning("webhook_refused", source=source[:100], reason=refusal.code, status=refusal.status)
    return _error(refusal.status, refusal.code, refusal.detail, refusal.headers)


async def _read_limited(request: Request, limit: int) -> bytes:
    try:
        return await _read_body(request, limit)
    except _BodyTooLarge:
        raise _Refused(413, "body_too_large", f"body is over the limit of {limit} bytes") from None


async def _accept_webhook(rt: _Runtime, source_name: str, request: Request) -> Response:
    """Verify, check and store one webhook; raises _Refused for anything it will not take."""
    source = rt.sources.get(source_name)
    if source is None:
        raise _Refused(404, "unknown_source", f"no source {source_name[:100]!r} is configured")
    body = await _read_limited(request, rt.settings.max_body_bytes)
    if source.secrets:
        try:
            form = verify_signature(
                body, request.headers.get("x-uipath-signature"), source.secrets, allow_hex=source.allow_hex
            )
        except SignatureError as exc:
            raise _Refused(401, f"signature_{exc.reason}", str(exc)) from None
        if form is SignatureForm.HEX:
            log.info("signature_hex_form_used", source=source_name)
    try:
        raw = _parse_envelope(body)
    except EventParseError as exc:
        raise _Refused(400, exc.code, str(exc)) from None
    event_type = str(_lookup(raw, "Type")).strip()
    event_id = _event_id(raw, body)
    now = rt.clock()
    event_time = _event_time(_lookup(raw, "Timestamp"))
    if event_time is not None and now - event_time > rt.settings.max_event_age_seconds:
        raise _Refused(
            400,
            "stale_event",
            f"Timestamp is older than {rt.settings.max_event_age_seconds:.0f} s: refused as a possible replay",
        )
    item = InboxItem(
        source=source_name, event_id=event_id, type=event_type, body=body, received_at=now, event_time=event_time
    )
    try:
        accepted = await rt.store.accept(item)
    except StoreError as exc:
        log.error("webhook_not_stored", source=source_name, event_id=event_id, error=str(exc))
        raise _Refused(
            503, "store_unavailable", "the event could not be stored; retry later", {"Retry-After": "5"}
        ) from None
    status = "duplicate" if accepted.duplicate else "accepted"
    if not accepted.duplicate and rt.worker is not None:
        rt.worker.wake()
    type_label = event_type if event_type in EVENT_TYPES else "unknown"
    rt.metrics.webhooks_received.labels(source_name, type_label, status).inc()
    log.info("webhook_received", source=source_name, type=event_type, event_id=event_id, status=status)
    return JSONResponse({"status": status, "event_id": event_id}, status_code=202)


async def _accept_logs(rt: _Runtime, source_name: str, request: Request) -> Response:
    """Check the token and store each robot-log entry as one ``robot.log`` event."""
    source = rt.sources.get(source_name)
    if source is None or source.logs_token is None:
        raise _Refused(404, "unknown_source", f"no robot-log route is configured for source {source_name[:100]!r}")
    if not _bearer_ok(request, source.logs_token):
        raise _Refused(401, "unauthorized", "missing or wrong bearer token")
    body = await _read_limited(request, rt.settings.max_body_bytes)
    try:
        entries = _log_entries(body)
    except EventParseError as exc:
        raise _Refused(400, exc.code, str(exc)) from None
    now = rt.clock()
    items = [
        InboxItem(source=source_name, event_id=event_id, type="robot.log", body=raw, received_at=now)
        for event_id, raw in entries
    ]
    try:
        results = await asyncio.gather(*(rt.store.accept(item) for item in items))
    except StoreError as exc:
        log.error("logs_not_stored", source=source_name, error=str(exc))
        raise _Refused(
            503, "store_unavailable", "the entries could not be stored; retry later", {"Retry-After": "5"}
        ) from None
    if rt.worker is not None:
        rt.worker.wake()
    accepted = sum(not r.duplicate for r in results)
    rt.metrics.webhooks_received.labels(source_name, "robot.log", "accepted").inc(accepted)
    rt.metrics.webhooks_received.labels(source_name, "robot.log", "duplicate").inc(len(items) - accepted)
    log.info("logs_received", source=source_name, entries=len(items), accepted=accepted)
    return JSONResponse(
        {"status": "accepted", "accepted": accepted, "duplicates": len(items) - accepted}, status_code=202
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


def _bearer_ok(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _log_entries(body: bytes) -> list[tuple[str, bytes]]:
    """Split a robot-log body into (event id, canonical entry bytes), validating every entry."""
    try:
        raw = json.loads(body)
    except UnicodeDecodeError as exc:
        raise EventParseError("invalid_json", "body is not UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise EventParseError("invalid_json", f"body is not JSON: {str(exc)[:200]}") from exc
    if isinstance(raw, dict):
        wrapped = _lookup(raw, "logs")
        entries = wrapped if isinstance(wrapped, list) else [raw]
    elif isinstance(raw, list):
        entries = raw
    else:
        raise EventParseError("invalid_logs", 'expected a log entry object, an array, or {"logs": [...]}')
    result: list[tuple[str, bytes]] = []
    for entry in entries:
        events = parse_log_entries(entry)
        if len(events) != 1:
            raise EventParseError("invalid_logs", "each log entry must be a JSON object")
        event_id = (
            events[0].event_id or "sha256:" + hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()
        )
        result.append((event_id, json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()))
    return result


async def _watch_rules(rt: _Runtime) -> None:
    """Reload when rules.yaml changes on disk (editors replace files, so watch the directory)."""
    from watchfiles import awatch  # noqa: PLC0415 - only servers that watch pay for the import

    path = rt.settings.rules.resolve()
    try:
        async for changes in awatch(path.parent, debounce=300, recursive=False):
            if any(changed == str(path) for _, changed in changes):
                await rt.reload("file_changed")
    except (OSError, RuntimeError) as exc:
        log.warning("rules_watch_stopped", error=str(exc))


def _install_sighup(rt: _Runtime) -> None:
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(rt.reload("SIGHUP")))
    except (NotImplementedError, RuntimeError, ValueError):
        # Not the main thread (tests) or no signals on this platform: file watch and API remain.
        log.debug("sighup_unavailable")


async def _not_found(_: Request, __: Exception) -> Response:
    return _error(404, "not_found", "no such route")


async def _method_not_allowed(_: Request, __: Exception) -> Response:
    return _error(405, "method_not_allowed", "method not allowed on this route")


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("request_failed", path=request.url.path, exc_info=exc)
    return _error(500, "internal_error", "internal error; see the server log")
