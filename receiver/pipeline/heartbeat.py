"""The heartbeat: each source with ``orchestrator.heartbeat`` has its webhook path proven end to end.

Every ``every`` seconds, on the one replica holding the ``heartbeat`` lease, each such source's
round runs in the background with its own time budget: read the source's webhooks (found by
``public_url``; at most every ``health_every``, and after a failed round), enable a disabled one
again when ``auto_enable`` says so, ask Orchestrator to Ping it, and wait ``within`` seconds for
the signed ``ping`` at ``/webhooks/{source}`` (the edge's :class:`PathSignals`; the store's inbox
when another replica took it). An outage is one alert, a recovery one "restored" message, both
written to the outbox like any rule's notification: a synthetic inbox row (source
``heartbeat:<source>``, never a configurable source name) finished with its deliveries in one
transaction, so the dispatcher sends them with retries and nothing due is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Gauge

from receiver.errors import StoreError
from receiver.orchestrator import (
    Circuit,
    OrchestratorClient,
    OrchestratorError,
    OrchestratorUnavailableError,
    PrometheusObserver,
    RetryPolicy,
    Webhook,
    desired_events,
    list_webhooks,
    ping_webhook,
    update_webhook,
)
from receiver.orchestrator.path import Cause, Notice, PathSignals, PathState, Watch
from receiver.pipeline.per_source import run_per_source
from receiver.rules import Heartbeat, OrchestratorLink, RuleSet
from receiver.store import EventQuery, InboxItem, NewDelivery, Processed, Store

__all__ = ["HEARTBEAT_RULE", "Heartbeats", "PathMetrics"]

log = structlog.get_logger()

HEARTBEAT_RULE = "receiver.heartbeat"
"""The rule name of the path's notifications (not a rule of the file: names there cannot have this form)."""
_LEASE = "heartbeat"
_API_FAILURES = 2  # an API that fails is an outage after two rounds in a row, not on one blip
_BUDGET_CAP = 30.0


class PathMetrics:
    """``receiver_webhook_path_up{source}`` and ``receiver_webhook_path_roundtrip_seconds{source}``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "receiver_webhook_path_up",
            "1 while the last heartbeat's ping came back through the source's webhook, 0 when it did not.",
            ["source"],
            registry=registry,
        )
        self.roundtrip = Gauge(
            "receiver_webhook_path_roundtrip_seconds",
            "Seconds from the heartbeat's Ping request to the signed ping's arrival, last success.",
            ["source"],
            registry=registry,
        )

    def record(self, state: PathState) -> None:
        """Publish one source's state."""
        if state.state != "unknown":
            self.up.labels(state.source).set(1 if state.state == "up" else 0)
        if state.roundtrip is not None:
            self.roundtrip.labels(state.source).set(state.roundtrip)


class Heartbeats:
    """The heartbeat of every source that has one; started by the app factory when some source does.

    Args:
        store: where the alerts go (the outbox) and where the lease and other replicas' pings are.
        rules: the rule set in force (read at each round: a reload takes effect at the next one).
        signals: the edge's hook.
        registry: the app's metrics registry.
        clock: wall time (the alerts' times).
        transport: an httpx2 transport for tests; None for the network.
        secrets: a source's webhook secrets as the edge verifies with them, the first first
            (``RECEIVER_WEBHOOK_SECRET`` before the file's for ``uipath``); by default the file's.
    """

    def __init__(
        self,
        store: Store,
        rules: Callable[[], RuleSet],
        signals: PathSignals,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
        transport: Any = None,
        secrets: Callable[[str], Sequence[str]] | None = None,
    ) -> None:
        self._store = store
        self._rules = rules
        self._secrets = secrets or self._file_secrets
        self._signals = signals
        self._clock = clock
        self._transport = transport
        self.metrics = PathMetrics(registry)
        self._observer = PrometheusObserver(registry)
        self.states: dict[str, PathState] = {}
        self._clients: dict[str, tuple[OrchestratorLink, OrchestratorClient]] = {}
        self._health_at: dict[str, float] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.on_restored: Callable[[str], None] | None = None
        """Called with the source's name when its path comes back (gap recovery runs then)."""

    def _file_secrets(self, name: str) -> Sequence[str]:
        source = self._rules().sources.get(name)
        return () if source is None else source.secret_values()

    def _enabling(self, name: str, found: Webhook) -> dict[str, Any]:
        """The fields that enable ``found`` again; its Secret too when the API did not show the real one.

        The webhook goes back whole (PUT), as read: a ``Secret`` read as null or masked (whether
        Cloud masks it is unconfirmed) would replace the one Orchestrator holds, and every later
        event would come unsigned or mis-signed. Then the source's first secret is sent, as sync does.
        """
        changes: dict[str, Any] = {"Enabled": True}
        ours = tuple(self._secrets(name))
        held = found.secret.get_secret_value() if found.secret is not None else ""
        if ours and held not in ours and not held.strip("*•●"):
            changes["Secret"] = ours[0]
        return changes

    @staticmethod
    def configured(ruleset: RuleSet) -> dict[str, Heartbeat]:
        """The sources with a heartbeat, and theirs."""
        return {
            name: source.orchestrator.heartbeat
            for name, source in ruleset.sources.items()
            if source.orchestrator is not None and source.orchestrator.heartbeat is not None
        }

    async def run(self) -> None:
        """Run every source's rounds until cancelled; one task per source, each with its own period."""
        try:
            await run_per_source(
                lambda: self.configured(self._rules()),
                self._source_loop,
                label="heartbeat",
                on_removed=self._signals.unwatch,
            )
        finally:
            for _, client in self._clients.values():
                await client.aclose()
            with contextlib.suppress(StoreError, OSError):
                await self._store.release_lease(_LEASE, self.owner)

    async def _source_loop(self, name: str) -> None:
        watch = self._signals.watch(name)
        while True:
            source = self._rules().sources.get(name)
            link = source.orchestrator if source is not None else None
            if link is None or link.heartbeat is None:
                return
            started = time.monotonic()
            try:
                if await self._leader(link.heartbeat.every):
                    await self.round(name, link, watch)
            except asyncio.CancelledError:
                raise
            except Exception:  # a round must never end the heartbeat
                log.exception("heartbeat_round_failed", source=name)
            await asyncio.sleep(max(0.0, link.heartbeat.every - (time.monotonic() - started)))

    async def _leader(self, every: float) -> bool:
        try:
            return await self._store.acquire_lease(_LEASE, self.owner, now=self._clock(), ttl=max(3 * every, 30.0))
        except StoreError as exc:
            log.warning("heartbeat_lease_unavailable", error=str(exc))
            return False

    def _client(self, name: str, link: OrchestratorLink) -> OrchestratorClient:
        known = self._clients.get(name)
        if known is not None and known[0] == link:
            return known[1]
        if known is not None:
            # A reload changed the block: the old client closes in the background.
            asyncio.get_running_loop().create_task(known[1].aclose())
        assert link.heartbeat is not None  # noqa: S101  # only sources with a heartbeat get here
        every = link.heartbeat.every
        budget = max(1.0, min(_BUDGET_CAP, every))
        # The circuit's pause fits the period: a heartbeat must notice the API's recovery soon.
        circuit = Circuit(cooldown=max(5.0, min(60.0, 2 * every)))
        client = OrchestratorClient(
            name,
            link,
            transport=self._transport,
            policy=RetryPolicy(budget=budget),
            circuit=circuit,
            observer=self._observer,
        )
        self._clients[name] = (link, client)
        return client

    def _state(self, name: str, link: OrchestratorLink) -> PathState:
        state = self.states.get(name)
        if state is None or state.public_url != link.public_url or state.tenant != link.url:
            state = PathState(name, link.url, link.public_url)
            self.states[name] = state
        return state

    async def round(self, name: str, link: OrchestratorLink, watch: Watch) -> None:
        """One heartbeat round of one source: health, Ping, wait, and the notice it leads to."""
        beat = link.heartbeat
        assert beat is not None  # noqa: S101  # only sources with a heartbeat get here
        client = self._client(name, link)
        state = self._state(name, link)
        asked_at = self._clock()
        began = time.monotonic()
        notice: Notice | None = None
        note = ""
        # Rounds start `every` apart (a little more): with health_every == every, each one reads.
        due = began - self._health_at.get(name, float("-inf")) >= beat.health_every
        read = due or state.webhook_id is None or state.state != "up"
        try:
            if read:
                found = await self._health(name, link, state, client, began)
                if found is None:
                    notice = state.failed("webhook_missing", asked_at=asked_at, now=self._clock())
                    await self._finish(name, beat, state, notice)
                    return
                if not found.enabled:
                    if not beat.auto_enable:
                        notice = state.failed("webhook_disabled", asked_at=asked_at, now=self._clock())
                        await self._finish(name, beat, state, notice)
                        return
                    await update_webhook(client, found, self._enabling(name, found))
                    state.webhook_enabled, state.auto_enabled_at = True, self._clock()
                    note = "; receiver enabled it again (auto_enable)"
                    log.warning("webhook_enabled_again", source=name, webhook_id=found.id)
                    # One alert at once: a person disabled it, and events were dropped meanwhile.
                    notice = state.failed("webhook_disabled", asked_at=asked_at, now=self._clock(), note=note)
                    if notice is not None:
                        await self._send(name, beat, notice)
            assert state.webhook_id is not None  # noqa: S101  # set by _health above
            mono = time.monotonic()
            watch.arrived.clear()
            ping = await ping_webhook(client, state.webhook_id)
        except OrchestratorError as exc:
            cause: Cause = "api_unavailable" if isinstance(exc, OrchestratorUnavailableError) else "ping_refused"
            notice = state.failed(
                cause, asked_at=asked_at, now=self._clock(), threshold=_API_FAILURES, detail=exc.detail
            )
            log.warning("heartbeat_api_failed", source=name, error=str(exc), failures=state.failures)
            await self._finish(name, beat, state, notice)
            return
        arrival = await self._wait(name, watch, mono, ping.event_id, beat.within, asked_at)
        now = self._clock()
        if arrival is not None:
            roundtrip, matched_by = arrival
            notice = state.succeeded(asked_at=asked_at, now=now, roundtrip=roundtrip, matched_by=matched_by)
            log.info("heartbeat_ok", source=name, roundtrip_seconds=round(roundtrip, 3), matched_by=matched_by)
        elif watch.mismatch_at is not None and watch.mismatch_at >= mono:
            notice = state.failed("signature_mismatch", asked_at=asked_at, now=now)
        else:
            if not read:
                # Read before this round: a person may have disabled or deleted it since (a disabled
                # webhook takes the Ping and sends nothing). Named as such, not as a suspension.
                with contextlib.suppress(OrchestratorError):
                    await self._health(name, link, state, client, began)
                now = self._clock()
            if state.webhook_id is None:
                notice = state.failed("webhook_missing", asked_at=asked_at, now=now)
            elif state.webhook_enabled is False:
                notice = state.failed("webhook_disabled", asked_at=asked_at, now=now)
            else:
                notice = state.failed("nothing_arrived", asked_at=asked_at, now=now, within=beat.within)
        await self._finish(name, beat, state, notice)

    async def _health(
        self, name: str, link: OrchestratorLink, state: PathState, client: OrchestratorClient, began: float
    ) -> Webhook | None:
        """Read the webhook by ``public_url``; compare its event types with the rules'.

        ``began``: the round's start (monotonic), from which the next read is due.
        """
        hooks = await list_webhooks(client, url=link.public_url)
        self._health_at[name] = began
        if not hooks:
            state.webhook_id, state.webhook_enabled = None, None
            return None
        found = sorted(hooks, key=lambda w: (not w.enabled, w.id))[0]
        state.webhook_id, state.webhook_enabled = found.id, found.enabled
        subscribe_all, events = desired_events(self._rules(), name)
        missing: tuple[str, ...] = ()
        if not found.subscribe_to_all:
            missing = ("every event type",) if subscribe_all else tuple(t for t in events if t not in found.events)
        if missing != state.missing_types and missing:
            log.warning(
                "webhook_missing_event_types",
                source=name,
                webhook_id=found.id,
                missing=list(missing),
                hint="run `receiver orchestrator sync`",
            )
        state.missing_types = missing
        return found

    async def _wait(
        self, name: str, watch: Watch, asked: float, event_id: str | None, within: float, asked_wall: float
    ) -> tuple[float, str] | None:
        """Wait for the ping; returns (round-trip seconds, matched by) or None.

        A webhook refused for its signature meanwhile does not end the wait: anyone can send one to
        the public URL, and Orchestrator's own ping may still come. It names the cause only when no
        ping arrived in time (see ``round``).
        """
        deadline = asked + within
        while True:
            found = _arrival(watch, asked, event_id)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            watch.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.arrived.wait(), remaining)
        return await self._elsewhere(name, event_id, asked_wall, within)

    async def _elsewhere(
        self, name: str, event_id: str | None, asked_wall: float, within: float
    ) -> tuple[float, str] | None:
        """The ping accepted by another replica: it is in the shared inbox."""
        try:
            rows = await self._store.list_events(
                limit=20, query=EventQuery(source=name, types=("ping",), since=asked_wall)
            )
        except StoreError as exc:
            log.warning("heartbeat_inbox_unavailable", source=name, error=str(exc))
            return None
        for row in rows:
            if event_id is not None and row.event_id == event_id:
                return max(0.0, row.received_at - asked_wall), "event_id"
        if rows:
            first = min(rows, key=lambda r: r.received_at)
            return max(0.0, first.received_at - asked_wall), "time"
        return None

    async def _finish(self, name: str, beat: Heartbeat, state: PathState, notice: Notice | None) -> None:
        self.metrics.record(state)
        if state.state == "down":
            log.warning("webhook_path_down", source=name, reason=state.reason, failures=state.failures)
        if notice is not None:
            await self._send(name, beat, notice)
            if notice.kind == "restored" and self.on_restored is not None:
                self.on_restored(name)

    async def _send(self, name: str, beat: Heartbeat, notice: Notice) -> None:
        """Write the notice to the outbox: a synthetic inbox row finished with its deliveries at once."""
        body = json.dumps(
            {"Type": f"receiver.webhook_path.{notice.kind}", "EventId": notice.key, "Source": name},
            separators=(",", ":"),
        ).encode()
        now = self._clock()
        deliveries = [
            NewDelivery(HEARTBEAT_RULE, channel, notice.title, notice.body, notice.severity, "text")
            for channel in beat.notify
        ]
        try:
            accepted = await self._store.accept(
                InboxItem(f"heartbeat:{name}", notice.key, f"receiver.webhook_path.{notice.kind}", body, now, now)
            )
            outcome = json.dumps({"heartbeat": notice.kind, "channels": list(beat.notify)})
            await self._store.finish_inbox(
                [Processed(accepted.inbox_id, "processed", outcome, deliveries)], now=self._clock()
            )
        except StoreError as exc:
            log.error("webhook_path_notice_not_stored", source=name, kind=notice.kind, error=str(exc))
            if notice.kind == "down" and name in self.states:
                self.states[name].alerted = False  # the next failed round writes it again (same key)
            return
        log.warning("webhook_path_notice", source=name, kind=notice.kind, channels=list(beat.notify))


def _arrival(watch: Watch, asked: float, event_id: str | None) -> tuple[float, str] | None:
    """The ping this round asked for: the one with its EventId, else the first one since the request."""
    since = [a for a in watch.pings if a.at >= asked]
    for arrival in since:
        if event_id is not None and arrival.event_id == event_id:
            return arrival.at - asked, "event_id"
    if since:
        return since[0].at - asked, "time"
    return None
