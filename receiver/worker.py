"""The inbox worker: turns stored events into outbox rows.

It takes inbox rows in order of arrival, parses each into a typed event, matches the current
rules, renders one notification per (rule, channel), and writes those deliveries in the same
transaction that marks the event processed. A crash before that commit leaves the event
``new`` (its lease expires and it is processed again); after it, the deliveries exist. Nothing
is sent from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from receiver.errors import EventParseError, ReceiverError, StoreError
from receiver.events import Event, UnknownEvent, parse_event, parse_log_entries
from receiver.metrics import Metrics
from receiver.render import render
from receiver.rules import RuleSet
from receiver.store import EventRow, NewDelivery, Processed, Store

__all__ = ["InboxWorker", "evaluate", "parse_row"]

log = structlog.get_logger()

# Event types that are stored and visible but never notify (Orchestrator's connectivity test).
_SILENT_TYPES = frozenset({"ping"})


def parse_row(row: EventRow) -> Event:
    """The typed event of an inbox row.

    Raises:
        EventParseError: the body cannot be read as its event type.
    """
    try:
        raw: Any = json.loads(row.body)
    except (ValueError, RecursionError) as exc:
        raise EventParseError("invalid_json", f"stored body is not JSON: {exc}") from exc
    if row.type == "robot.log":
        entries = parse_log_entries(raw)
        if len(entries) != 1:
            raise EventParseError("invalid_logs", "a stored robot.log row must hold one entry")
        return entries[0]
    if not isinstance(raw, dict):
        raise EventParseError("not_an_object", "stored body is not a JSON object")
    return parse_event(raw)


def evaluate(ruleset: RuleSet, event: Event, source: str) -> tuple[list[str], list[NewDelivery]]:
    """Match ``event`` and render its notifications.

    Returns:
        The names of the rules that matched, and one delivery per (rule, channel).
    """
    if event.type in _SILENT_TYPES:
        return [], []
    matched: list[str] = []
    deliveries: list[NewDelivery] = []
    for route in ruleset.match(event, source):
        matched.append(route.rule.name)
        for channel in route.channels:
            note = render(event, route.rule, channel, ruleset, source=source)
            deliveries.append(
                NewDelivery(
                    rule=route.rule.name,
                    channel=channel.name,
                    title=note.title,
                    body=note.body,
                    severity=note.severity,
                    body_format=note.body_format,
                )
            )
    return matched, deliveries


class InboxWorker:
    """Processes the inbox, one event at a time, in order of arrival.

    Args:
        store: where events come from and deliveries go.
        rules: returns the rule set in force (read once per event, so a reload never splits one).
        clock: Unix time source.
        lease: seconds a claimed event stays with this worker.
        poll: seconds to sleep when idle and not woken (catches work of other processes).
        on_deliveries: called with the channels that got new deliveries.
        batch: events claimed at once.
    """

    def __init__(
        self,
        store: Store,
        rules: Callable[[], RuleSet],
        *,
        clock: Callable[[], float],
        lease: float,
        poll: float,
        on_deliveries: Callable[[Iterable[str]], None] | None = None,
        batch: int = 100,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._rules = rules
        self._clock = clock
        self._lease = lease
        self._poll = poll
        self._on_deliveries = on_deliveries
        self._batch = batch
        self._metrics = metrics
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Tell the worker there is new work (the webhook route calls this after a commit)."""
        self._wakeup.set()

    async def run(self) -> None:
        """Process until cancelled; a store failure is logged and retried after ``poll``."""
        while True:
            try:
                done = await self.run_once()
            except StoreError as exc:
                log.error("inbox_store_failed", error=str(exc))
                done = 0
            if done:
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll)

    async def run_once(self) -> int:
        """Claim one batch, process it and commit it in one transaction; returns its size."""
        rows = await self._store.claim_inbox(limit=self._batch, now=self._clock(), lease=self._lease)
        if not rows:
            return 0
        ruleset = self._rules()  # once per batch: a reload never splits the rules an event sees
        processed = [self.process(row, ruleset) for row in rows]
        await self._store.finish_inbox(processed, now=self._clock())
        channels = {d.channel for p in processed for d in p.deliveries}
        if channels and self._on_deliveries is not None:
            self._on_deliveries(channels)
        return len(rows)

    def process(self, row: EventRow, ruleset: RuleSet) -> Processed:
        """Parse, match and render one event (pure CPU: the caller commits the result)."""
        try:
            processed, label, matched = self._process(row, ruleset)
        except Exception as exc:
            log.exception("event_processing_crashed", inbox_id=row.id, type=row.type)
            outcome = {"parsed": False, "error": "internal_error", "detail": f"{type(exc).__name__}: {exc}"[:1000]}
            processed, label, matched = Processed(row.id, "unparsed", json.dumps(outcome)), "unparsed", []
        if self._metrics is not None:
            self._metrics.events_processed.labels(label).inc()
            for name in matched:
                self._metrics.rules_matched.labels(name).inc()
        return processed

    def _process(self, row: EventRow, ruleset: RuleSet) -> tuple[Processed, str, list[str]]:
        """The processed row, its outcome label for metrics, and the rules that matched."""
        try:
            event = parse_row(row)
        except EventParseError as exc:
            # Kept whole and visible: an event we cannot read is never dropped.
            log.warning("event_unparsed", inbox_id=row.id, type=row.type, error=exc.code)
            outcome = {"parsed": False, "error": exc.code, "detail": str(exc)[:1000]}
            return Processed(row.id, "unparsed", json.dumps(outcome)), "unparsed", []
        try:
            matched, deliveries = evaluate(ruleset, event, row.source)
        except ReceiverError as exc:
            log.error("event_evaluation_failed", inbox_id=row.id, type=row.type, error=str(exc))
            outcome = {"parsed": True, "error": "evaluation_failed", "detail": str(exc)[:1000]}
            return Processed(row.id, "unparsed", json.dumps(outcome)), "unparsed", []
        unknown = isinstance(event, UnknownEvent)
        if unknown:
            log.warning("event_type_unknown", inbox_id=row.id, source=row.source, type=row.type)
        log.info(
            "event_processed",
            inbox_id=row.id,
            source=row.source,
            type=row.type,
            event_id=row.event_id,
            matched_rules=matched,
            deliveries=len(deliveries),
        )
        outcome = {"parsed": True, "matched": matched, "deliveries": len(deliveries), "unknown_type": unknown}
        label = "unknown_type" if unknown else "matched" if matched else "unmatched"
        return Processed(row.id, "processed", json.dumps(outcome), deliveries), label, matched
