"""The HTTP application: the route table, the life cycle of store and workers, error mapping.

``create_app`` wires the pieces explicitly: the edge (``receiver.http.edge``), the admin API
(``receiver.http.api``), health and metrics here, and the workers started in the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from receiver import __version__
from receiver.admin import audit
from receiver.admin.retention import Pruner, Retention, StoreStatsCache
from receiver.delivery import keepalive, onloop
from receiver.delivery.notifier import AppriseNotifier, Notifier
from receiver.errors import StoreError
from receiver.http import actions, api, auth, edge, responses, ui
from receiver.http.limiter import FailureLimiter
from receiver.http.runtime import (
    SHORT_SECRET,
    RulesInForce,
    Runtime,
    action_links,
    load_rules_file,
    resolve_sources,
    short_secrets,
)
from receiver.metrics import Metrics
from receiver.pipeline.activity import EdgeActivity
from receiver.pipeline.dispatch import Backoff, Dispatcher
from receiver.pipeline.enrich import Enricher
from receiver.pipeline.gaps import GapRecoveries
from receiver.pipeline.heartbeat import Heartbeats
from receiver.pipeline.rulewatch import watch_rules
from receiver.pipeline.worker import InboxWorker
from receiver.rules import RuleSet
from receiver.settings import Settings
from receiver.store import open_store

__all__ = ["create_app", "tune_collector"]

log = structlog.get_logger()

_DRAIN_SECONDS = 5.0
"""On shutdown, how long sends in flight may take to end before they are cut short."""

_GC_YOUNG_THRESHOLD = 10_000
"""Allocations between two young collections while serving (CPython's default is 700)."""


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
    keepalive.install()  # apprise's sends reuse their connections (docs/performance.md, "Fast paths")
    onloop.install()  # the common webhook plugins send on the event loop, no thread (same section)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rules = ruleset if ruleset is not None else await asyncio.to_thread(load_rules_file, settings.rules)
        sources = resolve_sources(rules, settings)
        for setting, characters in short_secrets(rules, settings):
            hint = f"use at least {SHORT_SECRET} random characters, e.g. `openssl rand -base64 24`"
            log.warning("secret_too_short", setting=setting, characters=characters, hint=hint)
        store = open_store(settings.database_url)
        await store.open()
        metrics = Metrics(CollectorRegistry(auto_describe=True))
        metrics.rules_loaded.set(len(rules.rules))
        metrics.info.info({"version": __version__})
        in_force = RulesInForce(rules, sources, loaded_at=clock())
        edge_activity = EdgeActivity()
        links = action_links(settings)
        dispatcher = Dispatcher(
            store,
            in_force.current,
            notifier or AppriseNotifier(),
            clock=clock,
            lease=settings.lease_seconds,
            poll=settings.poll_seconds,
            backoff=Backoff(base=settings.retry_initial_seconds, cap=settings.retry_max_seconds),
            metrics=metrics,
            edge=edge_activity,
        )
        # Held messages of `enrich:` rules get Orchestrator's details after the worker's commit.
        enricher = Enricher(store, in_force.current, clock=clock, wake=dispatcher.wake, metrics=metrics)
        worker = InboxWorker(
            store,
            in_force.current,
            clock=clock,
            lease=settings.lease_seconds,
            poll=settings.poll_seconds,
            metrics=metrics,
            edge=edge_activity,
            event_budget=settings.event_budget_seconds,
            enrich=enricher.submit,
            links=links,
            handoff=dispatcher,  # deliveries leased by the commit that writes them (docs/performance.md)
        )
        rt = Runtime(
            settings=settings,
            store=store,
            rules=in_force,
            clock=clock,
            metrics=metrics,
            worker=worker,
            dispatcher=dispatcher,
            edge=edge_activity,
            auth_failures=FailureLimiter(settings.auth_failures_per_minute, 60.0),
            logs_auth_failures=FailureLimiter(settings.auth_failures_per_minute, 60.0),
            store_stats=StoreStatsCache(store),
            signer=None if links is None else links.signer,
        )
        app.state.runtime = rt
        # The one path of wake-ups: the store's bus hears this process's commits and, on PostgreSQL,
        # every replica's and the CLI's.
        await store.listen(_wake_workers(worker, dispatcher))
        store.hand_claimed_to(worker.adopt)  # the events the edge stores claimed for it (adoption_lease)
        rt.tasks = [
            asyncio.create_task(worker.run(), name="inbox-worker"),
            asyncio.create_task(dispatcher.run(), name="dispatcher"),
            asyncio.create_task(rt.reads.run(), name="read-deadlines"),
        ]
        retention = Retention(
            events_days=settings.retain_events_days,
            dead_days=settings.retain_dead_days,
            noise_log_days=settings.retain_noise_log_days,
            max_event_age=settings.max_event_age_seconds,
        )
        pruner = Pruner(
            store,
            retention,
            clock=clock,
            interval=settings.prune_interval_seconds,
            metrics=metrics,
            pause=settings.prune_pause_seconds,
            busy=lambda: edge_activity.inflight > 0,
        )
        rt.tasks.append(asyncio.create_task(pruner.run(), name="pruner"))
        if Heartbeats.configured(rules):
            rt.heartbeats = Heartbeats(
                store,
                in_force.current,
                rt.webhook_path,
                metrics.registry,
                clock=clock,
                secrets=lambda name: in_force.sources[name].secrets if name in in_force.sources else (),
            )
            rt.tasks.append(asyncio.create_task(rt.heartbeats.run(), name="heartbeats"))
        if GapRecoveries.configured(rules):
            gaps = GapRecoveries(store, in_force.current, clock=clock)
            if rt.heartbeats is not None:
                rt.heartbeats.on_restored = gaps.kick  # what was lost while the path was down
            rt.tasks.append(asyncio.create_task(gaps.run(), name="gap-recovery"))
        if settings.watch_rules:
            rt.tasks.append(asyncio.create_task(_watch_rules(rt), name="rules-watcher"))
        _install_sighup(rt)
        if auth.admin_secret(rt) is None:
            log.info("admin_api_disabled", hint="set RECEIVER_ADMIN_TOKEN (not empty) to enable /api and /ui")
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
            # Sends in flight end and are recorded (else a restart sends them again), within a bound
            # that leaves time in a container's usual 10 s stop window.
            await rt.dispatcher.drain(_DRAIN_SECONDS)
            for task in rt.tasks:
                task.cancel()
            await asyncio.gather(*rt.tasks, return_exceptions=True)
            await enricher.aclose()  # what it held goes out at the end of the budget, after a restart too
            await store.close()
            log.info("receiver_stopped")

    routes = [
        Route("/webhooks/{source}", edge.webhook, methods=["POST"]),
        Route("/logs/{source}", edge.logs, methods=["POST"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
        *api.routes(),
        *actions.routes(),
        *ui.routes(),
    ]
    return ReceiverApp(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _method_not_allowed, 500: _server_error},
    )


class ReceiverApp(Starlette):
    """Starlette, with ``POST /webhooks/{source}`` answered ahead of its middleware and router.

    See ``edge.is_webhook`` for why (docs/performance.md, "Fast paths"); every other request, and the
    lifespan, go through Starlette.
    An https request (TLS at a trusted proxy, see ``RECEIVER_TRUSTED_PROXIES``) gets HSTS on its answer.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("scheme") == "https":
            send = _with_header(send, _HSTS)
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith("/"):
            scope = edge.without_trailing_slash(scope)
        if edge.is_webhook(scope):
            scope["app"] = self
            await edge.webhook(scope, receive, send)
            return
        if scope["type"] == "http":
            receive, send = _close_if_unread(scope, receive, send)
        await super().__call__(scope, receive, send)


_HSTS = (b"strict-transport-security", b"max-age=31536000")
"""One year; no includeSubDomains: other hosts of the domain are not ours to decide for."""


def _with_header(send: Send, header: tuple[bytes, bytes]) -> Send:
    """``send`` that adds ``header`` to the answer's head."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return sending


def _close_if_unread(scope: Scope, receive: Receive, send: Send) -> tuple[Receive, Send]:
    """Answers given before the request body was read in full also end the connection.

    A route that answers without reading the body (a 401, a 404, a 429) would otherwise leave the
    connection to a client that keeps trickling that body: uvicorn re-arms its keep-alive timer
    only after the answer, and every byte that arrives disarms it again.
    """
    headers = dict(scope["headers"])
    unread = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
    if not unread:
        return receive, send

    async def receiving() -> Message:
        nonlocal unread
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            unread = False
        return message

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and unread:
            message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
        await send(message)

    return receiving, sending


def tune_collector() -> None:
    """Set the garbage collector up for serving: the start-up heap frozen, young collections rarer.

    Called by ``receiver serve`` once everything is loaded, just before it serves: collections
    walking long-lived or in-flight objects stalled webhooks (docs/performance.md, "Fast paths").
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _wake_workers(worker: InboxWorker, dispatcher: Dispatcher) -> Callable[[str], None]:
    """Route the store's wake-ups (other replicas' commits, CLI re-drives) to the workers they concern."""

    def wake(topic: str) -> None:
        if topic == "inbox":
            worker.wake()
        elif topic.startswith("deliveries:"):
            dispatcher.wake([topic.removeprefix("deliveries:")])

    return wake


async def _metrics(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    # Queue depths and ages are read from the store at scrape time: the store is shared by every
    # replica, so each one reports the same, current numbers.
    try:
        rt.metrics.set_queues(await audit.queue_snapshot(rt.store, now=rt.clock(), channels=rt.ruleset.channels))
        stats = await rt.store_stats.get()
        rt.metrics.set_store_size(stats.rows, stats.size_bytes)
        rt.metrics.set_store_writable(await _write_problem(rt) is None)
    except StoreError as exc:
        log.warning("metrics_store_unavailable", error=str(exc))
        rt.metrics.set_queues(None)
        rt.metrics.set_store_size(None)
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


_READY_PING_SECONDS = 1.5
"""How long /readyz waits for the store: a probe gives up after a few seconds (Kubernetes' default is 1 s),
and a store that cannot be reached would otherwise hold the answer for the pool's 10 s wait."""


async def _readyz(request: Request) -> Response:
    """Ready or not, and which component fails; the details (store error, rule problems) need the admin token.

    Without the token nothing is said that helps an attacker (the store's host, port and database,
    the rule file's problems); a probe needs only the status code.
    """
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    problems: dict[str, Any] = {}
    try:
        async with asyncio.timeout(_READY_PING_SECONDS):
            await rt.store.ping()
    except StoreError as exc:
        problems["store"] = str(exc)
    except TimeoutError:
        problems["store"] = f"the store did not answer within {_READY_PING_SECONDS:g} s"
    if not problems and (failure := await _write_problem(rt)) is not None:
        # Read but not written (disk full, read-only, locked): every webhook gets 503.
        problems["store"] = f"the store takes no writes: {failure}"
    status = 200 if not problems else 503
    body: dict[str, Any] = {"status": "ok" if not problems else "unavailable"}
    if problems:
        body["failing"] = sorted(problems)
    # A deaf webhook path is degraded, not unready: restarting the receiver would not fix it.
    paths = rt.heartbeats.states if rt.heartbeats is not None else {}
    degraded = sorted(f"webhook_path:{n}" for n, s in paths.items() if s.state == "down" or s.missing_types)
    if degraded:
        body["degraded"] = degraded
    if not _admin_asks(rt, request):
        return JSONResponse(body, status_code=status)
    body["rules"] = {"loaded": len(rt.ruleset.rules), "last_reload_problems": rt.reload_problems}
    if paths:
        body["webhook_path"] = {n: s.snapshot() for n, s in sorted(paths.items())}
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=status)


async def _write_problem(rt: Runtime) -> str | None:
    """Why the store takes no writes, or None: after a webhook it could not store, a small write of our own."""
    if rt.store_writes.failure is None:
        return None
    try:
        async with asyncio.timeout(_READY_PING_SECONDS):
            return await rt.store_writes.check(rt.store, rt.worker.owner, rt.clock())
    except TimeoutError:
        return rt.store_writes.failure


def _admin_asks(rt: Runtime, request: Request) -> bool:
    """Whether the request carries the admin token; a wrong one counts as a failed check (no 429 here)."""
    if "authorization" not in request.headers or auth.admin_secret(rt) is None:
        return False
    if auth.admin_throttled(rt, request) is not None:
        return False
    if auth.bearer_ok(rt, request):
        return True
    auth.note_failure(rt, request, "readyz")
    return False


async def _watch_rules(rt: Runtime) -> None:
    """Reload when rules.yaml changes on disk (see ``receiver.pipeline.rulewatch``)."""
    await watch_rules(rt.settings.rules, rt.reload)


def _install_sighup(rt: Runtime) -> None:
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(rt.reload("SIGHUP")))
    except (NotImplementedError, RuntimeError, ValueError):
        # Not the main thread (tests) or no signals on this platform: file watch and API remain.
        log.debug("sighup_unavailable")


async def _not_found(_: Request, __: Exception) -> Response:
    return responses.error_response(404, "not_found", "no such route")


async def _method_not_allowed(_: Request, exc: Exception) -> Response:
    # Starlette's HTTPException for a 405 carries the Allow header (RFC 9110 requires it).
    headers = exc.headers if isinstance(exc, HTTPException) else None
    return responses.error_response(405, "method_not_allowed", "method not allowed on this route", headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("request_failed", path=request.url.path, exc_info=exc)
    return JSONResponse(responses.INTERNAL_ERROR, status_code=500)
