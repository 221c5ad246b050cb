"""Enrichment: Orchestrator's details of an event's job, added to its messages while they wait in the outbox.

A rule with ``enrich:`` on a job or queue item event of a source connected to Orchestrator has
its messages written to the outbox like any other, in the worker's transaction, but *held*: due
only after the enrichment's budget, and saying "details unavailable: timeout". Once the worker
committed them, :meth:`Enricher.submit` starts a task (the worker never waits for it) that asks
Orchestrator within the budget (:mod:`receiver.orchestrator.details`), renders each message
again with what it found (or with the reason it found nothing: ``HTTP 500``, ``circuit open``...)
and releases it (``release_held``): new text, due now. A message whose hold ended first is left
as written and goes out at the end of the budget; so does every held message after a crash or a
restart, since the hold is stored and the task is not. Nothing is lost and nothing waits longer
than the budget.

Answers are cached per source and job (bounded, ``_CACHE_TTL`` seconds), so a burst of events
about one job asks once. One client per source keeps its token and its circuit between events.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import structlog

from receiver.errors import StoreError
from receiver.events import Details, Event, QueueItem
from receiver.metrics import Metrics
from receiver.noise import Emitted
from receiver.orchestrator import (
    OrchestratorClient,
    OrchestratorError,
    RetryPolicy,
    Wanted,
    fetch_details,
    unavailable_reason,
)
from receiver.rules import BudgetExceededError, OrchestratorLink, RuleSet, event_budget
from receiver.store import HeldDelivery

__all__ = ["Enricher", "HeldStore"]

log = structlog.get_logger()

_CACHE_TTL = 30.0
"""Seconds an answer is reused: a job's details hardly change within them, an incident's burst fits."""
_CACHE_SIZE = 1_000
_RENDER_BUDGET = 0.2
"""Seconds one message's second rendering may take (the first one passed the worker's event budget)."""
_MAX_PENDING = 1_000
"""Enrichments in flight at most; past them a message goes out at the end of its budget without details."""


class HeldStore(Protocol):
    """What enrichment needs of the store: to release a held delivery."""

    async def release_held(self, held: HeldDelivery, *, title: str, body: str, now: float) -> bool:
        """Give a held delivery its final text and make it due now, if it is still held."""


def wanted_for(event: Event, emitted: Sequence[Emitted]) -> Wanted | str:
    """What to ask Orchestrator about ``event`` for these messages together, or why nothing can be asked."""
    asks = [e.enrich for e in emitted if e.enrich is not None]
    folder = event.folder
    if folder is None:
        return "the event names no folder"
    job = any(a.job for a in asks)
    logs = any(a.logs for a in asks)
    arguments = any(a.arguments for a in asks)
    lines = max((a.log_lines for a in asks), default=5)
    if event.type.startswith("queueItem."):
        item = getattr(event, "queue_item", None)
        if not isinstance(item, QueueItem) or item.id is None:
            return "the event names no queue item"
        return Wanted(folder, item.executor_job_id, item.executor_job_key, item.id, job, logs, arguments, lines)
    if event.job_id is None and event.job_key is None:
        return "the event names no job"
    return Wanted(folder, event.job_id, event.job_key, None, job, logs, arguments, lines)


def details_for(emitted: Emitted, found: Details) -> Details:
    """What one rule's message shows of the details found: the parts its ``enrich:`` asked for."""
    ask = emitted.enrich
    if ask is None or found.unavailable is not None:
        return found
    job = found.job if ask.job else None
    if job is not None and not ask.arguments:
        job = replace(job, input_arguments=None)
    logs = found.logs[-ask.log_lines :] if ask.logs and found.logs is not None else None
    return Details(job=job, logs=logs, item=found.item, logs_unavailable=found.logs_unavailable if ask.logs else None)


class Enricher:
    """Fetches the details of events whose messages are held, renders them again and releases them.

    Args:
        store: where the held deliveries are.
        rules: the rule set in force (the sources' connections).
        clock: wall time (the outbox's times).
        transport: an httpx2 transport for tests; None for the network.
        wake: tells the dispatcher that these channels have deliveries due (a hold that ended).
        monotonic: the cache's clock.
        metrics: where ``receiver_enrichments_total`` is counted, or None.
    """

    def __init__(
        self,
        store: HeldStore,
        rules: Callable[[], RuleSet],
        *,
        clock: Callable[[], float] = time.time,
        transport: Any = None,
        wake: Callable[[Iterable[str]], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._rules = rules
        self._clock = clock
        self._transport = transport
        self._wake = wake
        self._monotonic = monotonic
        self._clients: dict[str, tuple[OrchestratorLink, OrchestratorClient]] = {}
        self._cache: collections.OrderedDict[tuple[str, Wanted], tuple[float, Details]] = collections.OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0
        """Details fetched from Orchestrator (cache misses), for tests and logs."""

    @property
    def pending(self) -> int:
        """Enrichments in flight."""
        return len(self._tasks)

    def submit(self, source: str, event: Event, emitted: Sequence[Emitted]) -> None:
        """Start enriching the held messages of one event (committed already); returns at once."""
        held = [e for e in emitted if e.enrich is not None and e.rerender is not None]
        if not held:
            return
        if len(self._tasks) >= _MAX_PENDING:
            log.warning("enrichment_skipped", source=source, reason="too many in flight", pending=len(self._tasks))
            return
        task = asyncio.create_task(self._enrich(source, event, held), name=f"enrich:{held[0].inbox_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self) -> None:
        """Wait for the enrichments in flight (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the enrichments in flight (their messages go out as held) and close the connections."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        clients, self._clients = self._clients, {}
        for _, client in clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _enrich(self, source: str, event: Event, held: Sequence[Emitted]) -> None:
        try:
            await self._enrich_and_release(source, event, held)
        except Exception:  # an enrichment must never lose a message: it goes out as held
            log.exception("enrichment_crashed", source=source, inbox_id=held[0].inbox_id)

    async def _enrich_and_release(self, source: str, event: Event, held: Sequence[Emitted]) -> None:
        budget = max(e.enrich.budget for e in held if e.enrich is not None)
        started = self._monotonic()
        found, outcome = await self._details(source, event, held, budget)
        if self._metrics is not None:
            self._metrics.enrichments.labels(outcome).inc()
        if found is None:  # the budget ended: the messages are due as written
            log.info("enrichment_timed_out", source=source, inbox_id=held[0].inbox_id, budget_s=budget)
            if self._wake is not None:
                self._wake({e.channel for e in held})
            return
        released = 0
        for emitted in held:
            if emitted.rerender is None:
                continue
            try:
                with event_budget(_RENDER_BUDGET):  # on the event loop: a template may not hold it for long
                    note = emitted.rerender(details_for(emitted, found))
            except BudgetExceededError:
                log.warning("enrichment_render_over_budget", inbox_id=emitted.inbox_id, rule=emitted.rule)
                continue  # it goes out as held, at the end of the budget
            target = HeldDelivery(emitted.inbox_id, emitted.rule, emitted.channel)
            try:
                released += await self._store.release_held(target, title=note.title, body=note.body, now=self._clock())
            except StoreError as exc:
                log.warning("enrichment_not_released", inbox_id=emitted.inbox_id, rule=emitted.rule, error=str(exc))
        log.info(
            "enrichment_done",
            source=source,
            inbox_id=held[0].inbox_id,
            unavailable=found.unavailable,
            released=released,
            held=len(held),
            elapsed_s=round(self._monotonic() - started, 3),
        )

    async def _details(
        self, source: str, event: Event, held: Sequence[Emitted], budget: float
    ) -> tuple[Details | None, str]:
        """What Orchestrator says within ``budget`` seconds, or why it says nothing (None: the budget ended).

        With the outcome for the metric: ``details``, ``cached``, ``unavailable`` or ``timeout``.
        """
        link = self._link(source)
        if link is None:
            return Details(unavailable="the source has no orchestrator connection"), "unavailable"
        wanted = wanted_for(event, held)
        if isinstance(wanted, str):
            return Details(unavailable=wanted), "unavailable"
        cached = self._cached(source, wanted)
        if cached is not None:
            return cached, "cached"
        client = self._client(source, link, budget)
        try:
            async with asyncio.timeout(budget):
                self.calls += 1
                found = await fetch_details(client, wanted)
        except TimeoutError:
            return None, "timeout"
        except OrchestratorError as exc:
            log.warning("enrichment_unavailable", source=source, error=str(exc))
            reason = unavailable_reason(exc)
            return Details(unavailable=reason), "timeout" if reason == "timeout" else "unavailable"
        if found.logs_unavailable is None:  # a failure, even of a part, is not kept
            self._remember(source, wanted, found)
        return found, "details"

    def _link(self, source: str) -> OrchestratorLink | None:
        found = self._rules().sources.get(source)
        return None if found is None else found.orchestrator

    def _client(self, source: str, link: OrchestratorLink, budget: float) -> OrchestratorClient:
        """The source's client (its token and circuit kept between events); a new one when the link changed."""
        current = self._clients.get(source)
        if current is not None and current[0] == link:
            return current[1]
        if current is not None:
            task = asyncio.create_task(current[1].aclose())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # Quick retries within most of the budget, so a failure is named (HTTP 500) before the budget ends.
        policy = RetryPolicy(attempts=3, budget=0.9 * budget, backoff=0.1, backoff_cap=1.0)
        client = OrchestratorClient(source, link, transport=self._transport, policy=policy)
        self._clients[source] = (link, client)
        return client

    def _cached(self, source: str, wanted: Wanted) -> Details | None:
        entry = self._cache.get((source, wanted))
        if entry is None:
            return None
        if entry[0] <= self._monotonic():
            del self._cache[(source, wanted)]
            return None
        self._cache.move_to_end((source, wanted))
        return entry[1]

    def _remember(self, source: str, wanted: Wanted, found: Details) -> None:
        self._cache[(source, wanted)] = (self._monotonic() + _CACHE_TTL, found)
        self._cache.move_to_end((source, wanted))
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
