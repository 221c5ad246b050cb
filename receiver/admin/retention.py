"""Retention: old events, deliveries, attempts, noise decisions and silences leave the store.

What goes (``Retention``; docs/operations.md, "Retention"):

* a processed event with its deliveries and their attempts, ``events_days`` after it was received,
  once every delivery is final: sent before that, or dead for ``dead_days``;
* noise decisions ``noise_log_days`` after they were recorded; ad-hoc silences ``events_days``
  after they ended; resolved alerts, with their trails, ``events_days`` after they were resolved.

What never goes: an event not processed yet, an event with a pending delivery, an event a noise
timer will still deliver about, and any event while its EventId must stay a duplicate: until its
arrival and its ``Timestamp`` are both older than ``RECEIVER_MAX_EVENT_AGE_SECONDS`` plus a
margin, so that a replay is refused as stale or answered ``duplicate``, never processed again.

Pruning runs in batches, each its own short transaction, with a pause between them so that
webhooks are answered meanwhile (the SQLite store has one writer). In the server one replica at
a time prunes (the store's ``prune`` lease); ``receiver prune`` runs the same code once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from receiver.errors import StoreError
from receiver.metrics import Metrics
from receiver.store import PruneCutoffs, RetentionStore, StoreStats

__all__ = ["DEDUP_MARGIN", "PRUNED_TABLES", "Pruner", "Retention", "StoreStatsCache", "prune"]

log = structlog.get_logger()

_DAY = 86400.0
DEDUP_MARGIN = 3600.0
"""Seconds an EventId is remembered past the replay window (clock skew between Orchestrator and us)."""

EVENTS_BATCH = 200
"""Events looked at per transaction (each with its deliveries and attempts: ~600 rows, a few ms)."""

NOISE_LOG_BATCH = 500
"""Noise decisions deleted per transaction."""

PAUSE = 0.25
"""Seconds between two batches (``RECEIVER_PRUNE_PAUSE_SECONDS``): the store is free for webhooks meanwhile."""

PRUNED_TABLES = ("inbox", "deliveries", "attempts", "noise_log", "silences", "alerts", "alert_events")
"""The tables retention deletes from, in the order ``prune`` reports them."""

_LEASE = "prune"
_FIRST_RUN_MAX = 30.0
_BACKOFF = 3.0  # pause >= 3 x the last batch: pruning takes at most a quarter of the store's time
_BUSY_POLL = 0.002
_BUSY_WAIT_MAX = 1.0
_RELEASE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Retention:
    """How long rows stay; 0 days keeps that kind for ever.

    Attributes:
        events_days: processed events with their deliveries and attempts.
        dead_days: dead deliveries (and so the events they belong to).
        noise_log_days: noise decisions.
        max_event_age: the replay window in seconds (``RECEIVER_MAX_EVENT_AGE_SECONDS``).
    """

    events_days: float = 30.0
    dead_days: float = 90.0
    noise_log_days: float = 30.0
    max_event_age: float = _DAY

    def cutoffs(self, now: float, keep: frozenset[int] = frozenset()) -> PruneCutoffs | None:
        """The bounds of ``Store.prune_events`` at ``now``; None when events are kept for ever."""
        if self.events_days <= 0:
            return None
        return PruneCutoffs(
            events_before=now - self.events_days * _DAY,
            dead_before=None if self.dead_days <= 0 else now - self.dead_days * _DAY,
            dedup_before=now - self.max_event_age - DEDUP_MARGIN,
            keep=keep,
        )

    def noise_log_before(self, now: float) -> float | None:
        """Noise decisions recorded before this go; None: kept for ever."""
        return None if self.noise_log_days <= 0 else now - self.noise_log_days * _DAY

    def silences_before(self, now: float) -> float | None:
        """Silences that ended before this go (with the events they could have applied to)."""
        return None if self.events_days <= 0 else now - self.events_days * _DAY


async def _always() -> bool:
    return True


class _Pacer:
    """Between two batches: a pause that grows with the batch's duration, a quiet edge, the lease."""

    def __init__(
        self, pause: float, keep_going: Callable[[], Awaitable[bool]], busy: Callable[[], bool] | None
    ) -> None:
        self._pause = pause
        self._keep_going = keep_going
        self._busy = busy
        self._started: float | None = None
        self.slowest = 0.0

    async def next(self) -> bool:
        """Wait before the next batch; False when the run must stop."""
        if self._started is not None:
            took = time.monotonic() - self._started
            self.slowest = max(self.slowest, took)
            if self._pause > 0:
                # A store slowed down by other work makes batches take longer: prune backs off with it.
                await asyncio.sleep(max(self._pause, _BACKOFF * took))
                waited = 0.0
                while self._busy is not None and self._busy() and waited < _BUSY_WAIT_MAX:
                    await asyncio.sleep(_BUSY_POLL)  # a webhook in hand: let its accept go first
                    waited += _BUSY_POLL
        if not await self._keep_going():
            return False
        self._started = time.monotonic()
        return True


async def prune(
    store: RetentionStore,
    retention: Retention,
    *,
    now: float,
    dry_run: bool = False,
    pause: float = PAUSE,
    events_batch: int = EVENTS_BATCH,
    noise_log_batch: int = NOISE_LOG_BATCH,
    keep_going: Callable[[], Awaitable[bool]] = _always,
    on_step: Callable[[str, int], None] | None = None,
    busy: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Apply ``retention`` at ``now``: delete what may go, batch by batch (``dry_run``: only count it).

    Args:
        store: the store.
        retention: how long rows stay.
        now: the time the cutoffs are computed from (Unix seconds).
        dry_run: count what would go, delete nothing.
        pause: least seconds between two batches (0: none, and no waiting for ``busy``).
        events_batch: events looked at per transaction.
        noise_log_batch: noise decisions per transaction.
        keep_going: awaited before each batch; False stops the run (another replica took over).
        on_step: called with (table, rows) after each batch that deleted (or counted) rows.
        busy: True while the server has a request in hand; the next batch waits (up to 1 s) for it.

    Returns:
        Rows deleted (or that would be) per table of ``PRUNED_TABLES``.

    Raises:
        StoreError: the store failed; what was deleted before stays deleted.
    """
    totals = dict.fromkeys(PRUNED_TABLES, 0)
    pacer = _Pacer(pause, keep_going, busy)

    def add(table: str, count: int) -> None:
        totals[table] += count
        if count and on_step is not None:
            on_step(table, count)

    cutoffs = retention.cutoffs(now, keep=frozenset(await store.timer_inbox_ids()))
    after: tuple[float, int] | None = None
    while cutoffs is not None and await pacer.next():
        step = await store.prune_events(cutoffs, after=after, limit=events_batch, dry_run=dry_run)
        for table, count in step.counts.items():
            add(table, count)
        if step.after is None:
            break
        after = step.after
    before = retention.noise_log_before(now)
    after = None
    while before is not None and await pacer.next():
        step = await store.prune_noise_log(before, after=after, limit=noise_log_batch, dry_run=dry_run)
        add("noise_log", step.counts["noise_log"])
        if step.after is None:
            break
        after = step.after
    ended = retention.silences_before(now)
    if ended is not None:
        await _prune_ended(store, ended, pacer, add, limit=noise_log_batch, dry_run=dry_run)
    if any(totals.values()):
        log.debug("store_prune_batches", slowest_ms=round(pacer.slowest * 1000, 1))
    return totals


async def _prune_ended(
    store: RetentionStore,
    before: float,
    pacer: _Pacer,
    add: Callable[[str, int], None],
    *,
    limit: int,
    dry_run: bool,
) -> None:
    """Silences that ended, and alerts resolved, before ``before`` (with their trails)."""
    while await pacer.next():
        count = await store.prune_silences(before, limit=limit, dry_run=dry_run)
        add("silences", count)
        if dry_run or count < limit:
            break
    while await pacer.next():
        counts = await store.prune_alerts(before, limit=limit, dry_run=dry_run)
        for table, rows in counts.items():
            add(table, rows)
        if dry_run or counts["alerts"] < limit:
            break


class Pruner:
    """Applies retention in the background: every ``interval`` seconds, on one replica at a time.

    Args:
        store: the store.
        retention: how long rows stay.
        clock: Unix time (tests drive it).
        interval: seconds between two runs (the first comes sooner: at most 30 s after start).
        metrics: where deleted rows are counted.
        pause: least seconds between two batches.
        busy: True while the server has a request in hand (``prune``'s ``busy``).
    """

    def __init__(
        self,
        store: RetentionStore,
        retention: Retention,
        *,
        clock: Callable[[], float] = time.time,
        interval: float = 300.0,
        metrics: Metrics | None = None,
        pause: float = PAUSE,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self._store = store
        self._retention = retention
        self._clock = clock
        self._interval = interval
        self._metrics = metrics
        self._pause = pause
        self._busy = busy
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Held past the next run's start, so the replica that prunes keeps doing it.
        self._ttl = interval + 60.0
        self._renewed = 0.0

    async def run(self) -> None:
        """Prune until cancelled; a store failure is logged and the next run tries again."""
        try:
            await asyncio.sleep(min(self._interval, _FIRST_RUN_MAX))
            while True:
                try:
                    await self.run_once()
                except StoreError as exc:
                    log.warning("store_prune_failed", error=str(exc))
                await asyncio.sleep(self._interval)
        finally:
            # Else a restarted server (a new owner) waits for this lease to lapse before it prunes.
            with contextlib.suppress(StoreError, TimeoutError):
                async with asyncio.timeout(_RELEASE_SECONDS):
                    await self._store.release_lease(_LEASE, self.owner)

    async def run_once(self) -> dict[str, int] | None:
        """One run, if this replica holds the ``prune`` lease; returns the rows deleted, or None."""
        if not await self._renew():
            return None
        started = time.monotonic()
        counts = await prune(
            self._store,
            self._retention,
            now=self._clock(),
            pause=self._pause,
            keep_going=self._still_mine,
            on_step=self._count,
            busy=self._busy,
        )
        if any(counts.values()):
            log.info("store_pruned", seconds=round(time.monotonic() - started, 3), **counts)
        return counts

    def _count(self, table: str, rows: int) -> None:
        if self._metrics is not None:  # per batch: a long run shows its progress
            self._metrics.store_pruned.labels(table).inc(rows)

    async def _renew(self) -> bool:
        self._renewed = time.monotonic()
        return await self._store.acquire_lease(_LEASE, self.owner, now=self._clock(), ttl=self._ttl)

    async def _still_mine(self) -> bool:
        if time.monotonic() - self._renewed < self._ttl / 3:
            return True
        return await self._renew()


class StoreStatsCache:
    """The store's row counts and size, read at most once per ``max_age`` seconds.

    ``/metrics`` and the web page ask on every view; counting a table of millions of rows each
    time would load the database for nothing. Concurrent callers share one read.
    """

    def __init__(self, store: RetentionStore, *, max_age: float = 60.0) -> None:
        self._store = store
        self._max_age = max_age
        self._stats: StoreStats | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> StoreStats:
        """The counts, read again when older than ``max_age``.

        Raises:
            StoreError: the store could not be read.
        """
        async with self._lock:
            if self._stats is None or time.monotonic() - self._read_at >= self._max_age:
                self._stats = await self._store.table_stats()
                self._read_at = time.monotonic()
            return self._stats
