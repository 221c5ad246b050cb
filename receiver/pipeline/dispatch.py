"""The dispatcher: sends due outbox rows through the notifier, records the outcome, retries.

One loop per channel, each with its own concurrency limit and timeout, so a slow or dead
channel never delays the others. A loop claims due rows with a lease, sends each, and records
"sent" only after the notifier reported success. A failure is retried with exponential
backoff and jitter until the channel's attempt or age budget is spent; then the delivery is
dead-lettered until someone re-drives it (``receiver deliveries retry``, the admin API).

The inbox worker hands a loop deliveries already leased by the commit that wrote them (``reserve``,
``adopt``): at a steady rate a delivery costs no claim. It does so only while the channel has no
backlog, so the round-robin claim still orders whatever waits.

The guarantee is at-least-once to the channel: a process killed after the channel accepted a
message but before ``mark_sent`` committed (a window of one SQLite commit, milliseconds) sends
that message again once the lease expired; so is one killed between the commit that leased a
delivery and its send. A delivery recorded as sent is never sent again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from receiver.delivery.notifier import Notifier, SendResult
from receiver.errors import StoreError
from receiver.logconfig import log_summary
from receiver.metrics import Metrics
from receiver.pipeline.activity import EdgeActivity
from receiver.render import Notification
from receiver.rules import Channel, RuleSet
from receiver.store import DeliveryRow, OutboxStore

__all__ = ["Backoff", "Dispatcher"]

log = structlog.get_logger()

_RECORD_RETRY_FIRST = 0.2
_RECORD_RETRY_MAX = 5.0
_RECORD_MARGIN = 1.0
"""Recording an outcome is retried until this long before the row's lease ends (seconds)."""
_RELEASE_SECONDS = 2.0
"""The longest a shutdown waits to give back the rows claimed ahead."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits ``base * 2**(n-1)`` capped, times 0.5-1.0."""

    base: float = 30.0
    cap: float = 1800.0

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds to wait after ``attempts`` failed attempts."""
        raw = min(self.cap, self.base * 2.0 ** max(0, attempts - 1))
        # Jitter spreads the retries of many deliveries that failed together (a channel outage).
        return raw * (0.5 + rng.random() / 2)


class _Sends:
    """The sends of one channel loop in progress; one that ends sets the loop's signal."""

    def __init__(self, signal: asyncio.Event) -> None:
        self.count = 0
        self.failing = False  # the last outcome could not be written: send nothing more until one is
        self._signal = signal

    def started(self) -> None:
        self.count += 1

    def ended(self) -> None:
        self.count -= 1
        self._signal.set()


class _Lane:
    """One channel loop's state: its sends, the rows it holds, whether more may be due in the store."""

    def __init__(self) -> None:
        # Set by wake() (deliveries may be due), adopt() and every send that ends. One event, waited on
        # directly: cheaper than waiter tasks and asyncio.wait per idle turn (docs/performance.md).
        self.signal = asyncio.Event()
        self.sends = _Sends(self.signal)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.ready: collections.deque[tuple[DeliveryRow, float]] = collections.deque()  # claimed, not started
        self.full = False  # the last claim took all it asked for: more may be due
        self.claiming = False  # a claim (or its wait for the edge) is under way
        self.next_look = 0.0  # monotonic time by which a claim looks at the store again (the poll)


class Dispatcher:
    """Delivers the outbox, one supervised loop per configured channel.

    Args:
        store: the outbox.
        rules: returns the rule set in force (its channels and their delivery options).
        notifier: sends one notification to one URL.
        clock: Unix time source.
        lease: minimum seconds a claimed delivery stays with this process.
        poll: seconds between looks at the outbox when nothing woke a loop.
        backoff: retry delays.
        rng: jitter source (tests seed it).
        edge: the edge's activity; while it is busy, a claim waits for it, at most ``max_defer``.
        max_defer: the longest a claim waits for the edge.
    """

    def __init__(
        self,
        store: OutboxStore,
        rules: Callable[[], RuleSet],
        notifier: Notifier,
        *,
        clock: Callable[[], float],
        lease: float,
        poll: float,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        edge: EdgeActivity | None = None,
        max_defer: float = 1.0,
    ) -> None:
        self._store = store
        self._rules = rules
        self._notifier = notifier
        self._clock = clock
        self._lease = lease
        self._poll = poll
        self._backoff = backoff or Backoff()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._metrics = metrics
        self._edge = edge if edge is not None else EdgeActivity()  # none given: never busy
        self._max_defer = max_defer
        self._lanes: dict[str, _Lane] = {}
        # Channels that may have deliveries due that no claim has looked for since (woken, or polled).
        self._maybe_due: set[str] = set()
        self._reserved: dict[str, int] = {}  # slots per channel promised to an inbox commit under way
        self._sending: set[int] = set()  # ids of the deliveries this process is sending right now
        self._unstarted: list[int] = []  # claimed by a loop that stopped before sending them
        self._draining = False  # shutting down: no new sends
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._supervisor_wakeup = asyncio.Event()

    def wake(self, channels: Iterable[str] | None = None) -> None:
        """Tell the loops of ``channels`` (all when None) that deliveries may be due.

        The supervisor (new channels, a loop that ended, orphaned deliveries, one store query) is
        woken too when all channels are meant or a named one has no running loop; otherwise it
        keeps to its poll. The inbox worker's commits wake a channel for every batch with rows it did
        not hand over (``adopt``), and the supervisor's query was one store round trip per batch.
        """
        supervise = channels is None
        for name in self._lanes.keys() if channels is None else channels:
            lane = self._lanes.get(name)
            loop = self._loops.get(name)
            if lane is None or loop is None or loop.done():
                supervise = True
            else:
                self._maybe_due.add(name)
                lane.signal.set()
        if supervise:
            self._supervisor_wakeup.set()

    def reserve(self, wanted: Mapping[str, int]) -> dict[str, tuple[int, float]]:
        """Promise the inbox worker's commit room for deliveries it writes leased to this process.

        Per channel of ``wanted`` (new deliveries due at once), how many its loop takes now and the
        lease they get (seconds), as a claim would set it: the free slots of the two rounds a loop keeps
        (in flight and claimed ahead), and only while the channel has no backlog (nothing claimed and
        waiting, no claim under way, nothing known or suspected due in the store), so the round-robin
        claim is not bypassed. The room is held until ``adopt`` or ``release``.
        """
        granted: dict[str, tuple[int, float]] = {}
        if self._draining:
            return granted
        channels = self._rules().channels
        now = time.monotonic()
        for name, count in wanted.items():
            lane, loop, channel = self._lanes.get(name), self._loops.get(name), channels.get(name)
            if lane is None or loop is None or loop.done() or channel is None:
                continue
            if lane.ready or lane.full or lane.claiming or lane.sends.failing or name in self._maybe_due:
                continue
            if now >= lane.next_look:
                continue  # a poll is due: retries and lapsed leases may be waiting
            take = min(count, 2 * channel.concurrency - lane.sends.count - self._reserved.get(name, 0))
            if take > 0:
                self._reserved[name] = self._reserved.get(name, 0) + take
                granted[name] = (take, self._lease_of(channel))
        return granted

    def release(self, reserved: Mapping[str, tuple[int, float]]) -> None:
        """Give back room ``reserve`` promised (the commit failed, or wrote fewer rows)."""
        for name, (count, _) in reserved.items():
            left = self._reserved.get(name, 0) - count
            if left > 0:
                self._reserved[name] = left
            else:
                self._reserved.pop(name, None)
            lane = self._lanes.get(name)
            if lane is not None:
                lane.signal.set()  # a claim the reservation held back may go now

    def adopt(self, reserved: Mapping[str, tuple[int, float]], rows: Sequence[DeliveryRow]) -> None:
        """Send ``rows``, written leased under ``reserved`` by a commit, exactly as claimed rows.

        The room they did not use is given back. Rows whose loop is gone (shutting down, the channel
        removed) are given back when the dispatcher stops, as claimed rows are; otherwise their lease lapses.
        """
        self.release(reserved)
        for row in rows:
            lane, loop = self._lanes.get(row.channel), self._loops.get(row.channel)
            if self._draining or lane is None or loop is None or loop.done():
                self._unstarted.append(row.id)
                continue
            self._sending.add(row.id)
            lane.ready.append((row, reserved[row.channel][1]))

    async def run(self) -> None:
        """Keep one loop per configured channel running until cancelled."""
        try:
            while True:
                await self._supervise()
                self._supervisor_wakeup.clear()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
                # arrives as the event is set, and the app's shutdown would wait for this loop forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(self._poll, 1.0)):
                        await self._supervisor_wakeup.wait()
        finally:
            for task in self._loops.values():
                task.cancel()
            await asyncio.gather(*self._loops.values(), return_exceptions=True)
            await self._release_unstarted()

    async def _release_unstarted(self) -> None:
        """Give back the rows claimed ahead and never started, so a restart sends them at once.

        Sends cut short keep their leases: the channel may have the message, and a resend after
        the lease is the at-least-once rule. Best effort: otherwise the leases lapse, as after a crash.
        """
        unstarted, self._unstarted = self._unstarted, []
        if not unstarted:
            return
        try:
            async with asyncio.timeout(_RELEASE_SECONDS):  # a store that hangs must not hang the shutdown
                await self._store.release_claims(delivery_ids=unstarted)
        except (StoreError, TimeoutError) as exc:
            log.warning("deliveries_not_released", count=len(unstarted), error=str(exc) or type(exc).__name__)

    async def drain(self, grace: float) -> None:
        """Start no more sends, and wait up to ``grace`` seconds for those in flight to end.

        For a clean shutdown, before ``run`` is cancelled: a send that ends records its outcome,
        so a restart does not send it again. Rows claimed ahead are given back when ``run``
        ends. Sends still running after ``grace`` are cut short and keep their lease.
        """
        self._draining = True
        self.wake()
        loops = [task for task in self._loops.values() if not task.done()]
        if not loops:
            return
        _, running = await asyncio.wait(loops, timeout=grace)
        if running:
            log.warning("deliveries_cut_short", channels=sorted(t.get_name().removeprefix("deliver:") for t in running))

    async def _supervise(self) -> None:
        if self._draining:
            return  # the loops that ended stay ended
        channels = self._rules().channels
        for name in channels:
            task = self._loops.get(name)
            if task is None or task.done():
                lane = self._lanes[name] = _Lane()
                self._loops[name] = asyncio.create_task(self._channel_loop(name, lane), name=f"deliver:{name}")
        for name in [n for n in self._loops if n not in channels]:
            self._loops.pop(name).cancel()
            self._lanes.pop(name, None)
        try:
            orphans = await self._store.due_channels(self._clock()) - set(channels)
        except StoreError as exc:
            log.error("outbox_store_failed", error=str(exc))
            return
        for name in orphans:
            await self._bury_orphans(name)

    async def _bury_orphans(self, channel: str) -> None:
        """Dead-letter deliveries of a channel no longer in rules.yaml (re-drivable once it is back)."""
        now = self._clock()
        rows = await self._store.claim_deliveries(channel, limit=1000, now=now, lease=self._lease)
        for row in rows:
            await self._store.mark_failed(
                row.id,
                now=now,
                reason=f"channel {channel!r} is no longer configured",
                elapsed=0.0,
                next_attempt_at=None,
            )
        if rows:
            log.warning("deliveries_orphaned", channel=channel, count=len(rows))

    async def _channel_loop(self, name: str, lane: _Lane) -> None:
        try:
            await self._channel_loop_body(name, lane)
        finally:
            for task in lane.in_flight:
                task.cancel()
            for row, _ in lane.ready:  # claimed, never started: given back when the dispatcher stops
                self._sending.discard(row.id)
                self._unstarted.append(row.id)
            lane.ready.clear()

    async def _channel_loop_body(self, name: str, lane: _Lane) -> None:
        """Keep ``concurrency`` sends going, with the next round of rows claimed ahead.

        The row for a freed slot is already here: between two sends there is one store round trip
        (the outcome), not two (outcome and claim), closer to apprise called directly.
        """
        signal, sends, ready = lane.signal, lane.sends, lane.ready
        self._maybe_due.add(name)
        while True:
            channel = self._rules().channels.get(name)
            if channel is None:
                return
            signal.clear()  # whatever happened until now is looked at below
            if self._draining:
                # Shutting down: nothing new starts; the sends in flight end and record their outcome.
                if not sends.count:
                    return
                await signal.wait()
                continue
            # Rows in hand start first; the next round is claimed while these sends run, so a slot
            # that frees finds its row here instead of waiting for a claim.
            self._start_sends(channel, lane)
            if time.monotonic() >= lane.next_look:
                # Once per poll whatever the traffic: adopted rows wake nothing, and retries fall due,
                # leases lapse, other replicas write: nothing wakes for those.
                self._maybe_due.add(name)
            # (After a reload that lowered the concurrency, more may be in flight than two rounds: no claim.)
            # A send that ended frees a slot but makes nothing due: unless woken since, or the last claim
            # was full, a claim now finds nothing (it was one empty claim per send at a steady rate).
            if not ready and self._room(channel, lane) > 0 and (lane.full or name in self._maybe_due):
                await self._claim(channel, lane)
                self._start_sends(channel, lane)
            if (ready or lane.full) and sends.count:
                # More is due than the slots take: come back once a send ends.
                await signal.wait()
                continue
            # asyncio.timeout, not wait_for: no task per wait, and a cancellation is never swallowed.
            left = lane.next_look - time.monotonic()
            try:
                async with asyncio.timeout(left if left > 0 else self._poll):
                    await signal.wait()
            except TimeoutError:
                self._maybe_due.add(name)  # retries fall due, leases lapse, other replicas: nothing wakes for those

    def _room(self, channel: Channel, lane: _Lane) -> int:
        """The free slots of the two rounds a loop keeps: in flight, claimed ahead, promised to a commit."""
        return 2 * channel.concurrency - lane.sends.count - len(lane.ready) - self._reserved.get(channel.name, 0)

    def _lease_of(self, channel: Channel) -> float:
        return max(self._lease, channel.timeout_seconds * 2)

    async def _claim(self, channel: Channel, lane: _Lane) -> None:
        """Claim the free slots and the next round: a claimed row waits at most one send here."""
        name = channel.name
        self._maybe_due.discard(name)  # a wake-up from here on is looked at by the next claim
        lane.full = False
        lane.claiming = True
        try:
            await self._edge.wait_quiet(self._max_defer)  # webhooks first, as in InboxWorker
            lane.next_look = time.monotonic() + self._poll
            lease = self._lease_of(channel)
            want = self._room(channel, lane)  # adopted rows may have arrived meanwhile
            if want <= 0:
                self._maybe_due.add(name)  # looked at once there is room
                return
            rows: list[DeliveryRow] = []
            try:
                rows = await self._store.claim_deliveries(name, limit=want, now=self._clock(), lease=lease)
            except StoreError as exc:
                log.error("outbox_store_failed", channel=name, error=str(exc))
                self._maybe_due.add(name)  # looked again after the poll
        finally:
            lane.claiming = False
        lane.full = len(rows) == want
        for row in rows:
            if row.id in self._sending:
                # Still being sent from here: its lease only looks lapsed (the clock jumped, or
                # the send outlived it). Sending it again would be a duplicate of our own making.
                continue
            self._sending.add(row.id)
            lane.ready.append((row, lease))

    def _start_sends(self, channel: Channel, lane: _Lane) -> None:
        """Start sends from the claimed rows while the channel has free slots."""
        sends, ready = lane.sends, lane.ready
        # While outcomes cannot be written, one send at a time probes the store.
        while sends.count < channel.concurrency and ready and not (sends.failing and sends.count):
            row, lease = ready.popleft()
            sends.started()
            task = asyncio.create_task(self._deliver(channel, row, lease, sends))
            lane.in_flight.add(task)
            task.add_done_callback(lane.in_flight.discard)
            task.add_done_callback(functools.partial(self._sent_or_given_up, row.id))

    def _sent_or_given_up(self, delivery_id: int, _: asyncio.Task[None]) -> None:
        self._sending.discard(delivery_id)

    async def _deliver(self, channel: Channel, row: DeliveryRow, lease: float, sends: _Sends) -> None:
        claimed = time.monotonic()
        note = Notification(
            title=row.title,
            body=row.body,
            severity=row.severity,  # type: ignore[arg-type]  # written from a Notification
            body_format=row.body_format,  # type: ignore[arg-type]
        )
        try:
            result = await self._notifier.send(channel.url_value(), note, timeout=channel.timeout_seconds)
            await self._record_within_lease(channel, row, result, claimed + lease, sends)
        finally:
            # The slot is held until the outcome is written: a crash can then resend at most
            # ``concurrency`` messages per channel, the duplicate window the README promises.
            sends.ended()

    async def _record_within_lease(
        self, channel: Channel, row: DeliveryRow, result: SendResult, lease_ends: float, sends: _Sends
    ) -> None:
        """Write the outcome, retrying while the row is still ours.

        It must be written, or the message goes out again once the lease lapses. A store that cannot
        write now (disk full, file locked, database restarting) often can in a moment. Meanwhile the
        loop starts no send from the rows it claimed ahead (``sends.failing``). Past the lease the
        row is claimed again: a duplicate, not a loss.
        """
        delay = _RECORD_RETRY_FIRST
        while True:
            try:
                await self._record(channel, row, result)
                sends.failing = False
                return
            except StoreError as exc:
                sends.failing = True
                left = lease_ends - _RECORD_MARGIN - time.monotonic()
                if left <= 0:
                    log.error("delivery_not_recorded", delivery_id=row.id, channel=channel.name, error=str(exc))
                    return
                log.warning("delivery_record_retrying", delivery_id=row.id, channel=channel.name, error=str(exc))
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, _RECORD_RETRY_MAX)

    async def _record(self, channel: Channel, row: DeliveryRow, result: SendResult) -> None:
        now = self._clock()
        if result.ok:
            await self._store.mark_sent(row.id, now=now, elapsed=result.elapsed)
            if self._metrics is not None:
                self._metrics.delivered(channel.name, "sent").inc()
                self._metrics.latency(channel.name).observe(max(0.0, now - row.created_at))
            log_summary(  # one line per send: without structlog's chain (docs/performance.md)
                "info",
                "notification_sent",
                {
                    "delivery_id": row.id,
                    "channel": channel.name,
                    "rule": row.rule,
                    "attempt": row.attempts + 1,
                    "latency_s": round(now - row.created_at, 3),
                },
            )
            return
        attempts = row.attempts + 1
        reason = result.reason or result.status
        retry_at = now + self._backoff.delay(attempts, self._rng)
        spent = attempts >= channel.max_attempts or retry_at - row.budget_since > channel.max_age_seconds
        next_at = None if spent or not result.recoverable else retry_at
        await self._store.mark_failed(row.id, now=now, reason=reason, elapsed=result.elapsed, next_attempt_at=next_at)
        if self._metrics is not None:
            self._metrics.delivered(channel.name, "dead" if next_at is None else "failed").inc()
        log.warning(
            "notification_dead" if next_at is None else "notification_failed",
            delivery_id=row.id,
            channel=channel.name,
            rule=row.rule,
            attempt=attempts,
            status=result.status,
            reason=reason,
            retry_in_s=None if next_at is None else round(next_at - now, 1),
        )
