"""The inbox worker: turns stored events into outbox rows, and runs noise control.

It takes inbox rows in order of arrival, parses each into a typed event, lets the noise engine
(``receiver.noise``) match the current rules and decide what each matched rule sends now, and
writes those deliveries, the noise state the event changed (windows, counters, groups, timers,
flags) and the decisions, in the same transaction that marks the event processed. A crash
before that commit leaves the event ``new`` and the state as it was (the event is processed
again, to the same result); after it, all of it exists. Nothing is sent from here; deliveries due
at once go to the dispatcher leased by that commit where its channel has room (``Handoff``), the
rest it claims.

The same loop fires noise timers (a group's digest, an absence deadline) once they are due,
committing each timer's deliveries with the state change that says it fired, so a restart
neither loses nor repeats one. Every time is logical: an event is handled at its arrival time
(``received_at``) and a timer at its due time, whatever the worker's lag; timers due before an
event fire before it, so a backlog is replayed in the order things happened. Only one inbox
worker may run per database (it is the only writer of noise state).

Alerts (``receiver.pipeline.alerts``) ride along: the alerts an event opens, notifies again or
recovers are written in its transaction (their messages get the alert's action links), and the
reminders and escalations of firing alerts are fired after the noise timers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import structlog

from receiver.errors import EventParseError, ReceiverError, StoreError
from receiver.events import Event, UnknownEvent
from receiver.jsonfmt import dumps_text
from receiver.logconfig import log_summary
from receiver.metrics import Metrics
from receiver.noise import (
    QUIET_RULE_PREFIX,
    SILENT_TYPES,
    AdHocSilence,
    AlertSignal,
    Decision,
    Emitted,
    Engine,
    Plan,
    Row,
    StateView,
    parse_stored,
)
from receiver.pipeline.activity import EdgeActivity
from receiver.pipeline.alerts import AlertBook, Links, fire_alert_timers
from receiver.rules import BudgetExceededError, RuleSet, event_budget
from receiver.store import (
    AlertStore,
    DeliveryRow,
    EventRow,
    InboxStore,
    LateDelivery,
    NewDelivery,
    NoiseLogEntry,
    NoiseRow,
    NoiseStateStore,
    NoiseWrite,
    Processed,
    SilenceRow,
    SilenceStore,
)

__all__ = ["MAX_CLAIMS", "Handoff", "InboxWorker", "parse_row"]

log = structlog.get_logger()

MAX_CLAIMS = 3
"""Claims an event may take without being finished (a crash, a lost lease) before it is set aside."""

_STEP_DOWN_SECONDS = 2.0
"""The longest a shutdown waits to give the inbox lease and unfinished claims back."""

_SLICE = 0.001
"""The longest the worker holds the event loop between two looks at the edge (seconds)."""

_R = TypeVar("_R")

_ON_LOOP = 0.05
"""The longest one event runs on the event loop before it moves to the worker's thread (seconds)."""

# Noise rows past their expiry are forgotten this long after, so that an event of a backlog
# (arrived before the expiry, processed after it) still finds them.
_PURGE_MARGIN = 3600.0


def parse_row(row: EventRow) -> Event:
    """The typed event of an inbox row.

    Raises:
        EventParseError: the body cannot be read as its event type.
    """
    return parse_stored(row.type, row.body)


def to_row(stored: NoiseRow) -> Row:
    """A stored noise row as the engine reads it."""
    return Row(stored.kind, stored.name, stored.key, json.loads(stored.data), stored.due_at, stored.expires_at)


def from_row(row: Row) -> NoiseRow:
    """An engine row as the store keeps it."""
    data = json.dumps(row.data, separators=(",", ":"), ensure_ascii=False)
    return NoiseRow(row.kind, row.name, row.key, data, row.due_at, row.expires_at)


def adhoc(rows: Iterable[SilenceRow]) -> list[AdHocSilence]:
    """Stored silences as the engine reads them."""
    return [AdHocSilence(r.id, r.matchers, r.comment, r.created_by, r.created_at, r.starts_at, r.ends_at) for r in rows]


def _delivery(emitted: Emitted, *, held: bool = True) -> NewDelivery:
    """The outbox row of a message; ``held=False`` for one no enrichment follows (a timer's): sent at once."""
    note = emitted.notification
    hold = 0.0
    if emitted.enrich is not None:
        if held:  # waiting for Orchestrator's details: due at the end of the budget unless released sooner
            hold = emitted.enrich.budget
        elif emitted.rerender is not None:  # nothing will fetch them: the message without a word about them
            note = emitted.rerender(None)
    return NewDelivery(
        rule=emitted.rule,
        channel=emitted.channel,
        title=note.title,
        body=note.body,
        severity=note.severity,
        body_format=note.body_format,
        hold=hold,
    )


def _log_entry(decision: Decision) -> NoiseLogEntry:
    return NoiseLogEntry(
        at=decision.at,
        inbox_id=decision.inbox_id,
        rule=decision.rule,
        key=decision.key,
        action=decision.action,
        reason=decision.reason,
        suppressed=decision.suppressed,
    )


@dataclass
class _Batch:
    """What one transaction will commit: processed events, and the noise engine's output."""

    processed: list[Processed] = field(default_factory=list)
    late: list[LateDelivery] = field(default_factory=list)
    log: list[NoiseLogEntry] = field(default_factory=list)
    held: dict[int, tuple[str, Event, list[Emitted]]] = field(default_factory=dict)
    """Per inbox id: the source, the event and its messages waiting for enrichment, handed over after the commit."""
    alerts: list[AlertSignal] = field(default_factory=list)


class WorkerStore(InboxStore, NoiseStateStore, SilenceStore, AlertStore, Protocol):
    """What the inbox worker needs of the store: the inbox, the noise state, the silences and the alerts."""


Reserved = Mapping[str, tuple[int, float]]
"""Per channel: how many deliveries its loop takes leased from a commit, and their lease (seconds)."""


class Handoff(Protocol):
    """Where a commit's deliveries go already leased: the dispatcher of this process (same event loop).

    At a steady rate a delivery then costs no claim, a write transaction to lease the row this
    process wrote a moment before (docs/performance.md, "Deliveries leased by their commit").
    """

    def reserve(self, wanted: Mapping[str, int]) -> dict[str, tuple[int, float]]:
        """Of ``wanted`` new deliveries due at once per channel, how many its loop takes now, and their lease."""

    def adopt(self, reserved: Reserved, rows: Sequence[DeliveryRow]) -> None:
        """Send the rows written leased under ``reserved``; the room they did not use is given back."""

    def release(self, reserved: Reserved) -> None:
        """Give back the room of ``reserved``: its commit failed."""


class InboxWorker:
    """Processes the inbox in order of arrival, and fires noise timers when they are due.

    Args:
        store: where events come from, and deliveries and noise state go.
        rules: returns the rule set in force (read once per batch, so a reload never splits one).
        clock: Unix time source.
        lease: seconds a claimed event stays with this worker.
        poll: seconds to sleep when idle and not woken (catches work of other processes, due timers).
        batch: events claimed at once.
        edge: the edge's activity. While it is busy, the worker waits, at most
            ``max_defer`` seconds per batch: a burst is answered first and processed right after
            (it is safe in the inbox meanwhile).
        max_defer: the longest a batch waits for the edge; it bounds the extra delay of alerts in a burst.
        event_budget: seconds of matching, keys and templates one event may take (None: no
            limit); past them the event is set aside as ``budget_exceeded`` (see ``receiver.rules.budget``).
        enrich: called after the commit with an event's messages held for ``enrich:`` (source, event,
            messages); it must return at once (``Enricher.submit``). None: they go out when their hold ends.
        links: the action links alert messages carry, or None for none.
        handoff: the dispatcher that takes deliveries leased by the commit that wrote them, or None:
            every delivery is written unleased and claimed.
    """

    def __init__(
        self,
        store: WorkerStore,
        rules: Callable[[], RuleSet],
        *,
        clock: Callable[[], float],
        lease: float,
        poll: float,
        batch: int = 100,
        metrics: Metrics | None = None,
        edge: EdgeActivity | None = None,
        max_defer: float = 1.0,
        event_budget: float | None = None,
        enrich: Callable[[str, Event, Sequence[Emitted]], None] | None = None,
        links: Links | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        self._store = store
        self._handoff = handoff
        self._enrich = enrich
        self._links = links
        self._rules = rules
        self._clock = clock
        self._lease = lease
        self._poll = poll
        self._batch = batch
        self._metrics = metrics
        self._edge = edge if edge is not None else EdgeActivity()  # none given: never busy
        self._max_defer = max_defer
        self._budget = event_budget
        self._spent: dict[int, float] = {}  # inbox id -> seconds its planning took
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._deadline = 0.0
        self._next_yield = 0.0
        self._wakeup = asyncio.Event()
        # Who holds the inbox lease: unique per process, readable in the database.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._leader = False
        self._renewed_at = 0.0  # the clock when the lease was last renewed
        self._claimed: list[int] = []  # ids of the claimed batch not yet committed as processed
        self._watched: RuleSet | None = None  # the rule set whose quiet-source watches were looked at
        self._adopted: list[EventRow] = []  # events the edge stored claimed for this worker (adopt())
        self._claim_due = True  # a claim may find events: a wake-up, a poll, a full batch
        self._backlog = False  # events wait unclaimed in the store: the edge hands none over until a claim drains them
        self._suspect_taken = False  # a pass took one suspect alone: the rest of its batch is claimed at once

    def wake(self) -> None:
        """Tell the worker there is new work (the store's ``listen`` bus calls this after a commit)."""
        self._claim_due = True
        self._wakeup.set()

    def adoption_lease(self, now: float) -> float | None:
        """The lease an arriving event may be stored with, claimed for this worker; None: store it unclaimed.

        Claimed by the commit that stores it and handed over with ``adopt``, an event costs no claim (a
        write transaction per event at a steady rate). Only while this worker leads the inbox and nothing
        waits unclaimed, so the events are still processed in order of arrival.
        """
        if not self._leader or self._backlog:
            return None
        if len(self._adopted) >= self._batch:
            self._backlog = True  # the rest of this burst goes through the store, in order
            return None
        return now + self._lease

    def adopt(self, row: EventRow) -> None:
        """Take an event the edge stored claimed with ``adoption_lease``'s lease: processed without a claim."""
        self._adopted.append(row)
        self._wakeup.set()

    async def run(self) -> None:
        """Process until cancelled; a store failure is logged and retried after ``poll``.

        Only the holder of the store's ``inbox`` lease processes: with N replicas on one
        database, one of them runs the inbox and the noise engine (whose state must see events
        one at a time, in order); the others stand by and take over when the lease lapses.
        """
        try:
            while True:
                # Cleared before the claim, not after it: an event stored while this batch is
                # processed sets it again, and the wait below returns at once instead of a poll later.
                self._wakeup.clear()
                try:
                    if await self._lead():
                        done = await self.run_once()
                    else:
                        done = 0
                        await self._give_back_adopted()
                except StoreError as exc:
                    log.error("inbox_store_failed", error=str(exc))
                    done = 0
                if done >= self._batch or self._adopted or self._suspect_taken:
                    self._claim_due = self._claim_due or done >= self._batch or self._suspect_taken
                    self._suspect_taken = False
                    continue  # a whole batch (more may be waiting), events handed over, or a suspect's batch
                # Less than a batch: whatever arrives next wakes us. Claiming again at once found
                # nothing and cost a lease renewal, a claim and a timer query, about a third of a
                # pass's store round trips at a steady rate.
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
                # arrives as the event is set, and the app's shutdown would wait for this loop forever.
                try:
                    async with asyncio.timeout(self._poll):
                        await self._wakeup.wait()
                except TimeoutError:
                    self._claim_due = True  # other processes' events, leases run out: nothing wakes for those
        finally:
            await self._step_down()
            if self._thread is not None:
                self._thread.shutdown(wait=False)  # an event still running there ends within its budget
                self._thread = None

    async def _step_down(self) -> None:
        """On the way out, free what the lease and the claims would hold for ``lease`` seconds.

        Without it a restarted server (or a standby replica) accepts events but processes none
        until this process's lease runs out, and the events of an unfinished batch wait for
        their own leases, to be processed out of order. Best effort: a store that cannot be
        written now leaves them to lapse, as after a crash.
        """
        unfinished, self._claimed = self._claimed + [row.id for row in self._adopted], []
        self._adopted = []
        if not self._leader:
            return
        try:
            async with asyncio.timeout(_STEP_DOWN_SECONDS):  # a store that hangs must not hang the shutdown
                await self._store.release_claims(inbox_ids=unfinished)
                await self._store.release_lease("inbox", self.owner)
        except (StoreError, TimeoutError) as exc:
            log.warning("inbox_lease_not_released", owner=self.owner, error=str(exc) or type(exc).__name__)
            return
        self._leader = False
        log.info("inbox_leadership_released", owner=self.owner)

    async def _give_back_adopted(self) -> None:
        """Release the events handed over after this worker lost the inbox lease: the new leader claims them."""
        adopted, self._adopted = self._adopted, []
        await self._release([row.id for row in adopted])

    async def _give_back(self) -> None:
        """Release the claims of a batch whose store call failed: a failure seen is no crash, so they do not count.

        Best effort: a store still failing leaves them to lapse (``MAX_CLAIMS`` counts them then).
        """
        unfinished, self._claimed = self._claimed, []
        await self._release(unfinished)

    async def _release(self, inbox_ids: list[int]) -> None:
        if inbox_ids:
            with contextlib.suppress(StoreError, TimeoutError):
                async with asyncio.timeout(_STEP_DOWN_SECONDS):
                    await self._store.release_claims(inbox_ids=inbox_ids)

    async def _lead(self) -> bool:
        now = self._clock()
        # Renewed once half its time is gone, not every pass: at a steady rate a pass is one event,
        # and the renewal was a write per event (docs/performance.md, "Eleventh session").
        if self._leader and self._renewed_at <= now < self._renewed_at + self._lease / 2:
            return True
        leader = await self._store.acquire_lease("inbox", self.owner, now=now, ttl=self._lease)
        if leader:
            self._renewed_at = now
        if leader != self._leader:
            log.info("inbox_leadership_" + ("taken" if leader else "lost"), owner=self.owner)
            self._leader = leader
        return leader

    async def run_once(self) -> int:
        """Claim one batch and process it (firing the timers due before its events); fire due timers.

        Returns:
            How many events were processed and timers fired (0: nothing to do).

        Raises:
            StoreError: the store failed; the batch's claims are given back first (best effort).
        """
        try:
            return await self._pass()
        except StoreError:
            await self._give_back()
            raise

    async def _pass(self) -> int:
        self._deadline = time.monotonic() + self._max_defer
        await self._yield_to_edge()
        now = self._clock()
        adopted, self._adopted = self._adopted[: self._batch], self._adopted[self._batch :]
        self._claimed = [row.id for row in adopted]  # given back if the claim fails
        room = self._batch - len(adopted)
        claimed: list[EventRow] = []
        if room and (self._claim_due or not adopted):
            self._claim_due = False
            claimed = await self._claim(room, now)
            if len(claimed) < room:
                self._backlog = False
            else:
                self._claim_due = True
        taken = await self._isolate_suspects(claimed)
        if taken is None or (taken and taken[0].claims > 1):
            self._adopted[:0] = adopted  # a suspect goes alone: these in a pass of their own after it
            adopted = []
        if taken is None:
            return 1
        rows = sorted([*adopted, *taken], key=lambda row: row.id)
        self._claimed = [row.id for row in rows]
        ruleset = self._rules()  # once per batch: a reload never splits the rules an event sees
        if ruleset is not self._watched:
            await self._start_watches(ruleset)
        if not rows:
            return await self.fire_due(ruleset, until=now)
        times = _arrival_times(rows)
        done = 0
        start = 0
        while start < len(rows):
            done += await self.fire_due(ruleset, until=times[start])
            next_due = await self._store.next_noise_due()
            end = start + 1
            while end < len(rows) and (next_due is None or times[end] < next_due):
                end += 1
            await self._process_segment(rows[start:end], times[start:end], ruleset)
            self._claimed = self._claimed[end - start :]
            start = end
        return done + len(rows)

    async def _claim(self, limit: int, now: float) -> list[EventRow]:
        """Claim up to ``limit`` events; claimed rows are in ``_claimed`` (given back) even if we are cancelled.

        The store finishes a call once started, whatever happens to its caller: a stop (the app's
        shutdown cancels this task) that lands during the claim would otherwise leave its rows leased
        to no one. The restarted server waited a lease for them, then took them as claimed twice, and
        a few such stops set an event aside as ``claimed_too_often``: its notification never sent.
        """
        claim = asyncio.ensure_future(self._store.claim_inbox(limit=limit, now=now, lease=self._lease))
        try:
            rows = await asyncio.shield(claim)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(_STEP_DOWN_SECONDS):
                    self._claimed += [row.id for row in await asyncio.shield(claim)]
            raise
        self._claimed += [row.id for row in rows]
        return rows

    async def _isolate_suspects(self, rows: list[EventRow]) -> list[EventRow] | None:
        """Take an event claimed before without being finished alone, and set it aside past ``MAX_CLAIMS``.

        A claim that ended unfinished means the process died on the batch (or lost its lease): an
        event that kills the process would otherwise be claimed again after every restart and keep
        the receiver deaf. Processed alone, it cannot take a batch of innocent events down with it.
        Returns the rows to process now, or None when the suspect was set aside.
        """
        suspect = next((row for row in rows if row.claims > 1), None)
        if suspect is None:
            return rows
        self._suspect_taken = True  # the others of a batch a crash left are taken one after another, no poll between
        others = [row.id for row in rows if row is not suspect]
        if others:
            await self._store.release_claims(inbox_ids=others)
            released = set(others)
            self._claimed = [i for i in self._claimed if i not in released]  # never given back twice
        if suspect.claims <= MAX_CLAIMS:
            log.warning("event_claimed_again", inbox_id=suspect.id, type=suspect.type[:100], claims=suspect.claims)
            return [suspect]
        log.error("event_claimed_too_often", inbox_id=suspect.id, type=suspect.type[:100], claims=suspect.claims)
        detail = f"claimed {suspect.claims} times without being finished: processing it may end the process"
        outcome = {"error": "claimed_too_often", "detail": detail}
        await self._store.finish_inbox([Processed(suspect.id, "unparsed", json.dumps(outcome))], now=self._clock())
        return None

    async def _start_watches(self, ruleset: RuleSet) -> None:
        """Start the watch of each source with ``expect`` that has none, from its latest stored event.

        Without it, a source already quiet when ``expect`` was added (or the receiver upgraded)
        would never be noticed: the watch otherwise starts with the source's next event.
        """
        refs = {Engine.watch_ref(name) for name, source in ruleset.sources.items() if source.expect is not None}
        present = {(r.kind, r.name, r.key) for r in await self._store.load_noise(refs)}
        puts = []
        for ref in sorted(refs - present):
            source = ruleset.sources[ref[1]]
            last = await self._store.last_event(source.name)
            if last is not None and source.expect is not None:
                puts.append(from_row(Engine.watch_from(source.name, last[1], last[0], source.expect)))
        if puts:
            await self._store.finish_inbox([], now=self._clock(), noise=NoiseWrite(put=puts))
            log.info("source_watches_started", sources=[p.name for p in puts])
        self._watched = ruleset

    # --- events ---------------------------------------------------------------------------

    async def _process_segment(self, rows: Sequence[EventRow], times: Sequence[float], ruleset: RuleSet) -> None:
        """Process events no timer falls between, and commit them with their noise changes at once."""
        silences = adhoc(await self._store.list_silences(active_at=times[0], limit=10_000))
        engine = Engine(ruleset, silences)
        plans: list[Plan | ReceiverError | None] = []
        refs: set[tuple[str, str, str]] = set()
        for row, at in zip(rows, times, strict=True):
            await self._yield_to_edge()
            plans.append(await self._planned(engine, row, at))
            item = plans[-1]
            if isinstance(item, Plan):
                refs |= item.refs()
        view = StateView([to_row(r) for r in await self._store.load_noise(refs)], fetched=refs)
        batch = _Batch()
        for row, item in zip(rows, plans, strict=True):
            await self._yield_to_edge()
            batch.processed.append(await self._decided(row, item, engine, view, batch))
        try:
            await self._commit(batch, view, ruleset, purge_before=times[0] - _PURGE_MARGIN)
        except StoreError as exc:
            if exc.recoverable:
                raise  # the batch stays claimed and is processed again once its lease lapses
            await self._split(rows, times, ruleset, exc)
            return
        if self._enrich is not None:
            for source, event, held in batch.held.values():
                self._enrich(source, event, held)
        if self._metrics is not None:
            done = self._clock()
            for row in rows:
                self._metrics.processing_delay.observe(max(0.0, done - row.received_at))

    async def _yield_to_edge(self) -> None:
        """Every ``_SLICE`` seconds, let the event loop run; while the edge is busy, wait for it.

        A whole batch run in one go would delay every webhook answer behind it, and in a burst take
        the CPU the edge needs. The wait ends at the batch's deadline, so processing never stops.
        Not after every event: each turn of the loop is a system call (docs/performance.md, "Fast paths").
        """
        now = time.monotonic()
        if now < self._next_yield:
            return
        await asyncio.sleep(0)
        await self._edge.wait_quiet(self._deadline - time.monotonic())
        self._next_yield = time.monotonic() + _SLICE

    # An event runs on the event loop for up to _ON_LOOP seconds; one that needs longer is rolled
    # back and run again in the worker's own thread, where the loop keeps answering meanwhile
    # (the GIL is handed over every few ms even to a thread that never blocks). Not every event
    # in the thread: a hand-over costs more CPU than a normal event (docs/performance.md).

    def _loop_share(self, spent: float) -> float:
        """The budget of an attempt on the loop, after ``spent`` seconds on the event so far."""
        left = math.inf if self._budget is None else self._budget - spent
        return min(left, _ON_LOOP)

    def _moves(self, spent: float) -> bool:
        """Whether an event out of its time on the loop has budget left for the thread."""
        return self._budget is None or self._budget - spent > _ON_LOOP

    async def _in_thread(self, work: Callable[..., _R], *args: Any) -> _R:
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox-worker")
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    async def _planned(self, engine: Engine, row: EventRow, at: float) -> Plan | ReceiverError | None:
        """The event's plan: on the loop, or in the worker's thread when it takes longer than ``_ON_LOOP``."""
        start = time.monotonic()
        plan = self._plan(engine, row, at, self._loop_share(0.0))
        if isinstance(plan, BudgetExceededError) and self._moves(0.0):
            log.info("event_moved_off_loop", inbox_id=row.id, type=row.type[:100], stage="plan")
            left = None if self._budget is None else self._budget - (time.monotonic() - start)
            plan = await self._in_thread(self._plan, engine, row, at, left)
        self._spent[row.id] = time.monotonic() - start
        return plan

    def _plan(self, engine: Engine, row: EventRow, at: float, budget: float | None) -> Plan | ReceiverError | None:
        """The event's plan; its parse error or spent budget instead; None when planning crashed."""
        try:
            with event_budget(budget):
                event = parse_row(row)
                return engine.plan(event, row.source, inbox_id=row.id, at=at, body=row.body.decode("utf-8", "replace"))
        except (EventParseError, BudgetExceededError) as exc:
            return exc
        except Exception:
            log.exception("event_planning_crashed", inbox_id=row.id, type=row.type[:100])
            return None

    async def _decided(
        self, row: EventRow, plan: Plan | ReceiverError | None, engine: Engine, view: StateView, batch: _Batch
    ) -> Processed:
        """:meth:`process` on the loop, or in the worker's thread when it takes longer than ``_ON_LOOP``."""
        spent = self._spent.pop(row.id, 0.0)
        start = time.monotonic()
        result = self._attempt(row, plan, engine, view, batch, self._loop_share(spent))
        if result is None and self._moves(spent):
            log.info("event_moved_off_loop", inbox_id=row.id, type=row.type[:100], stage="process")
            left = None if self._budget is None else self._budget - spent - (time.monotonic() - start)
            result = await self._in_thread(self._attempt, row, plan, engine, view, batch, left)
        return self._over_budget(row) if result is None else result

    def _attempt(
        self,
        row: EventRow,
        plan: Plan | ReceiverError | None,
        engine: Engine,
        view: StateView,
        batch: _Batch,
        budget: float | None,
    ) -> Processed | None:
        """Decide about one event within ``budget`` seconds; None (and nothing changed) when they run out."""
        token = view.checkpoint()
        mark = (len(batch.late), len(batch.log), len(batch.alerts))
        try:
            with event_budget(budget):
                processed, label, matched = self._process(row, plan, engine, view, batch)
        except BudgetExceededError:
            view.rollback(token)
            del batch.late[mark[0] :], batch.log[mark[1] :], batch.alerts[mark[2] :]
            batch.held.pop(row.id, None)
            return None
        except Exception as exc:
            view.rollback(token)
            del batch.late[mark[0] :], batch.log[mark[1] :], batch.alerts[mark[2] :]
            batch.held.pop(row.id, None)
            log.exception("event_processing_crashed", inbox_id=row.id, type=row.type[:100])
            outcome = {"parsed": False, "error": "internal_error", "detail": f"{type(exc).__name__}: {exc}"[:1000]}
            processed, label, matched = Processed(row.id, "unparsed", json.dumps(outcome)), "unparsed", []
        if self._metrics is not None:
            self._metrics.processed(label).inc()
            for name in matched:
                self._metrics.matched(name).inc()
        return processed

    def _over_budget(self, row: EventRow) -> Processed:
        """The outcome of an event whose matching or rendering ran past the budget: set aside, never retried."""
        exc = BudgetExceededError(self._budget or 0.0)
        log.error("event_budget_exceeded", inbox_id=row.id, type=row.type[:100], budget_s=exc.seconds)
        if self._metrics is not None:
            self._metrics.processed("unparsed").inc()
        outcome = {"parsed": True, "error": "budget_exceeded", "detail": str(exc)}
        return Processed(row.id, "unparsed", json.dumps(outcome))

    def _process(
        self, row: EventRow, plan: Plan | ReceiverError | None, engine: Engine, view: StateView, batch: _Batch
    ) -> tuple[Processed, str, list[str]]:
        """The processed row, its outcome label for metrics, and the rules that matched."""
        if isinstance(plan, BudgetExceededError):
            raise plan  # planning ran out of budget: so does the event
        if isinstance(plan, EventParseError):
            # Kept whole and visible: an event we cannot read is never dropped.
            log.warning("event_unparsed", inbox_id=row.id, type=row.type[:100], error=plan.code)
            outcome = {"parsed": False, "error": plan.code, "detail": str(plan)[:1000]}
            return Processed(row.id, "unparsed", json.dumps(outcome)), "unparsed", []
        if not isinstance(plan, Plan):
            raise ReceiverError("the event could not be matched (see event_planning_crashed)")
        try:
            result = engine.process(view, plan)
        except BudgetExceededError:
            raise
        except ReceiverError as exc:
            log.error("event_evaluation_failed", inbox_id=row.id, type=row.type[:100], error=str(exc))
            outcome = {"parsed": True, "error": "evaluation_failed", "detail": str(exc)[:1000]}
            return Processed(row.id, "unparsed", json.dumps(outcome)), "unparsed", []
        # A ping (Orchestrator's connectivity test) never notifies; as before, it matches nothing here.
        matched = [] if plan.event.type in SILENT_TYPES else result.matched
        own = [_delivery(e) for e in result.emitted if e.inbox_id == row.id]
        held = [e for e in result.emitted if e.inbox_id == row.id and e.enrich is not None]
        batch.late.extend(
            LateDelivery(e.inbox_id, _delivery(e, held=False)) for e in result.emitted if e.inbox_id != row.id
        )
        batch.log.extend(_log_entry(d) for d in result.decisions)
        batch.alerts.extend(result.alerts)
        unknown = isinstance(plan.event, UnknownEvent)
        if unknown:
            log.warning("event_type_unknown", inbox_id=row.id, source=row.source, type=row.type[:100])
        suppressed = [d for d in result.decisions if d.suppressed]
        log_summary(  # one line per event: without structlog's chain (docs/performance.md)
            "info",
            "event_processed",
            {
                "inbox_id": row.id,
                "source": row.source,
                "type": row.type[:100],
                "event_id": row.event_id,
                "matched_rules": matched,
                "deliveries": len(own),
                "suppressed": [f"{d.rule}: {d.action}" for d in suppressed],
                "latency_s": round(max(0.0, self._clock() - row.received_at), 3),
            },
        )
        summary: dict[str, Any] = {
            "parsed": True,
            "matched": matched,
            "deliveries": len(own),
            "unknown_type": unknown,
            "noise": [d.to_json() for d in result.decisions],
        }
        label = "unknown_type" if unknown else "matched" if matched else "unmatched"
        event = plan.event
        processed = Processed(
            row.id, "processed", _outcome_json(summary), own, process=_text(event.process), robot=_text(event.robot)
        )
        if held:
            batch.held[row.id] = (row.source, event, held)
        return processed, label, matched

    # --- timers ---------------------------------------------------------------------------

    async def fire_due(self, ruleset: RuleSet, *, until: float) -> int:
        """Fire every noise timer due at or before ``until``, each at its due time; returns how many.

        A batch of timers is committed in one transaction with their deliveries and decisions.
        """
        total = 0
        while True:
            rows = [to_row(r) for r in await self._store.due_noise(until=until, limit=self._batch)]
            if rows:
                await self._fire_rows(rows, ruleset, until)
                total += len(rows)
            if len(rows) < self._batch:
                break
        # Reminders and escalations after the noise timers: an absence that fired just now opens its alert first.
        return total + await fire_alert_timers(
            self._store, ruleset, until=until, now=self._clock(), links=self._links, metrics=self._metrics
        )

    async def _fire_rows(self, rows: Sequence[Row], ruleset: RuleSet, until: float) -> None:
        """Fire these timers and commit them at once."""
        first = min(float(r.due_at or until) for r in rows)
        engine = Engine(ruleset, adhoc(await self._store.list_silences(active_at=first, limit=10_000)))
        refs = {r.ref for r in rows}
        for row in rows:
            refs |= engine.timer_refs(row)
            plan = engine.timer_plan(row)
            if plan is not None:
                refs |= plan.refs()
        stored = await self._store.load_noise(refs - {r.ref for r in rows})
        view = StateView([*rows, *(to_row(r) for r in stored)], fetched=refs)
        batch = _Batch()
        for row in rows:
            self._fire(engine, view, row, until, batch)
        try:
            await self._commit(batch, view, ruleset, purge_before=until - _PURGE_MARGIN)
        except StoreError as exc:
            if exc.recoverable:
                raise
            await self._split_timers(rows, ruleset, until, exc)

    def _fire(self, engine: Engine, view: StateView, row: Row, until: float, batch: _Batch) -> None:
        current = view.get(row.ref)
        if current is None or current.due_at is None or current.due_at > until:
            return
        token = view.checkpoint()
        try:
            result = engine.fire(view, current)
        except Exception as exc:
            # A timer that cannot fire must not block the others, nor fire again and again.
            view.rollback(token)
            view.delete(current.ref)
            log.exception("noise_timer_crashed", kind=row.kind, rule=row.name, key=row.key)
            reason = f"timer dropped: firing it failed ({type(exc).__name__}: {exc})"[:1000]
            decision = Decision("dropped", reason, rule=row.name, key=current.shown_key, at=float(current.due_at))
            batch.log.append(_log_entry(decision))
            return
        batch.late.extend(LateDelivery(e.inbox_id, _delivery(e, held=False)) for e in result.emitted)
        batch.log.extend(_log_entry(d) for d in result.decisions)
        batch.alerts.extend(result.alerts)
        log.info(
            "noise_timer_fired",
            kind=row.kind,
            rule=row.name,
            key=row.key,
            due_at=current.due_at,
            deliveries=len(result.emitted),
            decisions=[d.action for d in result.decisions],
        )

    # --- commit ---------------------------------------------------------------------------

    async def _split(
        self, rows: Sequence[EventRow], times: Sequence[float], ruleset: RuleSet, error: StoreError
    ) -> None:
        """Process a batch the database refused in two halves, down to the one event it refuses.

        Nothing of the refused transaction was stored, so each half is planned again from the
        noise state as stored, in order (the first half's changes are committed before the second
        is planned): nothing is applied twice. A single refused event is set aside.
        """
        if len(rows) == 1:
            await self._set_aside(rows[0], error)
            return
        log.warning("inbox_batch_refused", events=len(rows), first_id=rows[0].id, error=str(error))
        middle = len(rows) // 2
        await self._process_segment(rows[:middle], times[:middle], ruleset)
        await self._process_segment(rows[middle:], times[middle:], ruleset)

    async def _set_aside(self, row: EventRow, error: StoreError) -> None:
        """Mark an event the database refuses as unparsed, kept whole with the error, never claimed again."""
        log.error("event_store_rejected", inbox_id=row.id, type=row.type[:100], error=str(error))
        outcome = {"error": "store_rejected", "detail": str(error)[:1000]}
        await self._store.finish_inbox([Processed(row.id, "unparsed", json.dumps(outcome))], now=self._clock())

    async def _split_timers(self, rows: Sequence[Row], ruleset: RuleSet, until: float, error: StoreError) -> None:
        """Fire timers the database refused in two halves, down to the one timer it refuses, which is dropped.

        The second half is read again once the first is committed: firing one timer may change another.
        """
        if len(rows) == 1:
            row = rows[0]
            log.error("noise_timer_store_rejected", kind=row.kind, rule=row.name, key=row.key, error=str(error))
            reason = f"timer dropped: the store refused what firing it wrote ({error})"[:1000]
            decision = Decision("dropped", reason, rule=row.name, key=row.key, at=float(row.due_at or until))
            await self._store.finish_inbox(
                [], now=self._clock(), noise=NoiseWrite(delete=[row.ref], log=[_log_entry(decision)])
            )
            return
        log.warning("noise_timers_refused", timers=len(rows), error=str(error))
        middle = len(rows) // 2
        await self._fire_rows(rows[:middle], ruleset, until)
        rest = {r.ref for r in rows[middle:]}
        fresh = [to_row(r) for r in await self._store.load_noise(rest)]
        due = sorted((r for r in fresh if r.due_at is not None and r.due_at <= until), key=lambda r: (r.due_at, r.ref))
        if due:
            await self._fire_rows(due, ruleset, until)

    async def _commit(self, batch: _Batch, view: StateView, ruleset: RuleSet, *, purge_before: float) -> None:
        puts, deletes = view.changes()
        alerts = AlertBook(await self._store.open_alerts(AlertBook.keys(batch.alerts)), ruleset, self._links)
        alerts.apply(batch.alerts)
        processed, late = batch.processed, batch.late
        if alerts.links:  # the messages carry their alert's action links
            processed = [
                replace(p, deliveries=[alerts.decorate(p.inbox_id, d) for d in p.deliveries]) if p.deliveries else p
                for p in processed
            ]
            late = [LateDelivery(x.inbox_id, alerts.decorate(x.inbox_id, x.delivery)) for x in late]
            for inbox_id, (source, event, held) in batch.held.items():
                batch.held[inbox_id] = (source, event, [alerts.decorate_held(e) for e in held])
        noise = NoiseWrite(
            put=[from_row(r) for r in puts],
            delete=deletes,
            deliveries=late,
            log=batch.log,
            purge_before=purge_before,
            alerts=alerts.changes(),
        )
        reserved = self._reserve(processed)
        if reserved:
            processed = _leased(processed, reserved)
        try:
            rows = await self._store.finish_inbox(processed, now=self._clock(), noise=noise)
        except BaseException:
            if reserved and self._handoff is not None:
                self._handoff.release(reserved)  # nothing was written (or, cancelled, it is not known): no rows
            raise
        if reserved and self._handoff is not None:
            self._handoff.adopt(reserved, rows)
        if self._metrics is not None:
            for entry in batch.log:
                if entry.suppressed:
                    self._metrics.notifications_suppressed.labels(entry.action).inc()
                if entry.action == "held" and entry.key is not None:  # a channel budget's: its key is the channel
                    self._metrics.notifications_held.labels(entry.key).inc()
                elif entry.action == "quiet" and entry.rule is not None:
                    self._metrics.quiet_source_alerts.labels(entry.rule.removeprefix(QUIET_RULE_PREFIX)).inc()

    def _reserve(self, processed: Sequence[Processed]) -> dict[str, tuple[int, float]]:
        """Room for this commit's deliveries due at once with the dispatcher (none held; late ones are claimed)."""
        if self._handoff is None:
            return {}
        wanted: dict[str, int] = {}
        for p in processed:
            for d in p.deliveries:
                if d.hold == 0:
                    wanted[d.channel] = wanted.get(d.channel, 0) + 1
        return self._handoff.reserve(wanted) if wanted else {}


def _leased(processed: Sequence[Processed], reserved: Reserved) -> list[Processed]:
    """The batch with ``reserved``'s leases on deliveries due at once, each channel's taken round-robin across rules.

    In the claim's order (``fair_order``): every rule's first delivery, oldest event first, then every rule's second.
    """
    turns: dict[tuple[str, str], int] = {}
    candidates: list[tuple[int, int, int, int, str]] = []  # (turn, inbox id, position in batch, in event, channel)
    for n, p in sorted(enumerate(processed), key=lambda item: item[1].inbox_id):
        for k, d in enumerate(p.deliveries):
            if d.hold == 0 and d.channel in reserved:
                turn = turns[d.channel, d.rule] = turns.get((d.channel, d.rule), -1) + 1
                candidates.append((turn, p.inbox_id, n, k, d.channel))
    left = {channel: count for channel, (count, _) in reserved.items()}
    chosen: dict[int, set[int]] = {}
    for *_, n, k, channel in sorted(candidates):
        if left[channel] > 0:
            left[channel] -= 1
            chosen.setdefault(n, set()).add(k)
    return [
        replace(
            p,
            deliveries=[
                replace(d, lease=reserved[d.channel][1]) if k in chosen[n] else d for k, d in enumerate(p.deliveries)
            ],
        )
        if n in chosen
        else p
        for n, p in enumerate(processed)
    ]


def _arrival_times(rows: Sequence[EventRow]) -> list[float]:
    """Each event's logical time: its arrival, never before the event claimed before it."""
    times: list[float] = []
    last = float("-inf")
    for row in rows:
        last = max(last, row.received_at)
        times.append(last)
    return times


def _outcome_json(summary: dict[str, Any]) -> str:
    """An event's outcome as JSON text (a lone surrogate from event text included)."""
    return dumps_text(summary)


def _text(value: object) -> str | None:
    """A handle (process, robot) as text for the inbox row's filters."""
    return None if value is None else str(value)
