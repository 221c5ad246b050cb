"""The store methods of both back ends: each runs one plan (``receiver.store._plans``) in one transaction.

A back end supplies ``_run`` (its executor: connection, transaction, error mapping) and its
dialect; what the methods do is written here and in the plans, once.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, ClassVar, Literal, TypeVar

from receiver.errors import StoreError
from receiver.store import (
    LATENCY_SAMPLE,
    Accepted,
    AlertEventRow,
    AlertRow,
    AlertTimer,
    AttemptRow,
    ChannelLatency,
    DeliveryRow,
    EventQuery,
    EventRow,
    HeldDelivery,
    InboxItem,
    NameCount,
    NewAlertEvent,
    NewSilence,
    NoiseLogRow,
    NoiseRef,
    NoiseRow,
    NoiseWrite,
    Processed,
    PruneCutoffs,
    PruneStep,
    QueueStats,
    ResultCount,
    SilenceRow,
    adopted_row,
)
from receiver.store import _alerts as alerts
from receiver.store import _charts as charts
from receiver.store import _plans as plans
from receiver.store import _retention as retention
from receiver.store._batch import GroupCommit
from receiver.store._queries import delivery_where
from receiver.store.sql import Dialect

__all__ = ["SQLStore"]

_T = TypeVar("_T")


class SQLStore:
    """What both stores do, over the executor a subclass supplies (see ``Store`` for each method).

    ``write``: the plan writes (SQLite takes the write lock first). ``relaxed``: a write whose loss
    in a power cut is made good by redoing it (see ``SQLiteStore._run``); PostgreSQL ignores it.
    """

    dialect: ClassVar[Dialect]
    _FLUSHERS: ClassVar[int] = 1
    """Batches under way at once, per group commit."""

    def __init__(self) -> None:
        self._accepts: GroupCommit[InboxItem, Accepted] = GroupCommit(
            lambda take: self._write_batch(plans.accept, take, relaxed=False),
            error=self._unexpected,
            flushers=self._FLUSHERS,
            size=lambda item: len(item.body),
            committed=self._committed,
        )
        self._adopt: Callable[[EventRow], None] | None = None
        self._sent: GroupCommit[tuple[int, float, float], None] = GroupCommit(
            lambda take: self._write_batch(plans.mark_sent, take, relaxed=True),
            error=self._unexpected,
            flushers=self._FLUSHERS,
        )

    def _run(
        self, plan: Callable[..., plans.Plan[_T]], *args: Any, write: bool = False, relaxed: bool = False
    ) -> Awaitable[_T]:
        """Run ``plan(*args)`` in one transaction; driver errors become StoreError."""
        raise NotImplementedError

    def _report(self, plan: Callable[..., plans.Plan[_T]], *args: Any) -> Awaitable[_T]:
        """Run a long read-only ``plan`` (a chart's aggregate) where it holds up no other store call."""
        return self._run(plan, *args)

    def _write_batch(
        self, plan: Callable[..., plans.Plan[list[_T]]], take: Callable[[], Any], *, relaxed: bool
    ) -> Awaitable[list[_T]] | concurrent.futures.Future[list[_T]]:
        """Start a group commit's write of the batch ``take`` gives (see ``GroupCommit``)."""
        return self._run(plan, take, write=True, relaxed=relaxed)

    def _unexpected(self, exc: BaseException) -> StoreError:
        """A StoreError for an error that is not the driver's (a group commit's whole batch fails with it)."""
        raise NotImplementedError

    async def ping(self) -> None:
        """Raise StoreError when the store cannot be read."""
        await self._run(plans.ping)

    # -- inbox ----------------------------------------------------------------------------

    async def accept(self, item: InboxItem) -> Accepted:
        """Commit ``item``; requests that arrive while a commit runs share the next one."""
        return await self._accepts.submit(item)

    def hand_claimed_to(self, adopt: Callable[[EventRow], None]) -> None:
        """Give each event accepted claimed (``InboxItem.lease_until``) to ``adopt`` once it is committed."""
        self._adopt = adopt

    def _committed(self, item: InboxItem, accepted: Accepted) -> None:
        # Here and not in the request: a request cancelled while its commit ran would leave the event to its lease.
        if item.lease_until is not None and not accepted.duplicate and self._adopt is not None:
            self._adopt(adopted_row(item, accepted.inbox_id))

    async def acquire_lease(self, name: str, owner: str, *, now: float, ttl: float) -> bool:
        """Take or renew the named lease for ``owner``; False while another owner's lease runs."""
        # Lost in a power cut, the lease is simply older: it lapses and is taken again.
        return await self._run(plans.acquire_lease, name, owner, now, ttl, write=True, relaxed=True)

    async def release_lease(self, name: str, owner: str) -> None:
        """Give up the named lease if ``owner`` holds it."""
        await self._run(plans.release_lease, name, owner, write=True, relaxed=True)  # lost: it runs out

    async def release_claims(self, *, inbox_ids: Collection[int] = (), delivery_ids: Collection[int] = ()) -> None:
        """Clear the leases of unprocessed events and of deliveries still pending among these ids."""
        if inbox_ids or delivery_ids:
            await self._run(plans.release_claims, self.dialect, inbox_ids, delivery_ids, write=True, relaxed=True)

    async def claim_inbox(self, *, limit: int, now: float, lease: float) -> list[EventRow]:
        """Lease up to ``limit`` events still ``new`` whose lease is free, oldest first.

        Rows locked by another replica's claim in progress are skipped, not waited for.
        """
        return await self._run(plans.claim_inbox, limit, now, lease, write=True, relaxed=True)  # lost: free again

    async def finish_inbox(
        self, processed: Sequence[Processed], *, now: float, noise: NoiseWrite | None = None
    ) -> list[DeliveryRow]:
        """Write the deliveries (ignoring ones already written), the noise changes, and mark the events done.

        All in one transaction: a crash leaves either all of it or none. Returns the rows written leased.
        """
        # Lost in a power cut, the events are still `new` with the noise state they were seen
        # with: processed again, they give the same deliveries (a notification may go twice).
        return await self._run(plans.finish_inbox, processed, now, noise, write=True, relaxed=True)

    async def last_event(self, source: str) -> tuple[int, float] | None:
        """The id and arrival of the source's latest event, or None when it sent none (index ``inbox_source``)."""
        return await self._run(plans.last_event, source)

    # -- noise state ----------------------------------------------------------------------

    async def load_noise(self, refs: Collection[NoiseRef]) -> list[NoiseRow]:
        """The rows of these refs that exist."""
        if not refs:
            return []
        return await self._run(plans.load_noise, refs)

    async def due_noise(self, *, until: float, limit: int) -> list[NoiseRow]:
        """Timers due at or before ``until``, earliest first."""
        return await self._run(plans.due_noise, until, limit)

    async def next_noise_due(self) -> float | None:
        """The earliest timer."""
        return await self._run(plans.next_noise_due)

    # -- silences -------------------------------------------------------------------------

    async def add_silence(self, silence: NewSilence, *, now: float) -> SilenceRow:
        """Store an ad-hoc silence."""
        return await self._run(plans.add_silence, silence, now, write=True)

    async def list_silences(self, *, active_at: float | None = None, limit: int = 100) -> list[SilenceRow]:
        """Newest first; with ``active_at`` only those not ended by then."""
        return await self._run(plans.list_silences, active_at, limit)

    async def expire_silence(self, silence_id: int, *, now: float) -> SilenceRow | None:
        """End a silence now, unless it has ended already."""
        return await self._run(plans.expire_silence, silence_id, now, write=True)

    # -- outbox ---------------------------------------------------------------------------

    async def claim_deliveries(self, channel: str, *, limit: int, now: float, lease: float) -> list[DeliveryRow]:
        """Lease due, unleased deliveries of one channel, the longest due first.

        Rows locked by another replica's claim in progress are skipped, not waited for.
        """
        return await self._run(plans.claim_deliveries, channel, limit, now, lease, write=True, relaxed=True)

    async def due_channels(self, now: float) -> set[str]:
        """Channels with at least one delivery due and not leased."""
        return await self._run(plans.due_channels, now)

    async def mark_sent(self, delivery_id: int, *, now: float, elapsed: float) -> None:
        """Record success; the row leaves the due set for good. Outcomes share transactions, as accepts do."""
        await self._sent.submit((delivery_id, now, elapsed))

    async def mark_failed(
        self, delivery_id: int, *, now: float, reason: str, elapsed: float, next_attempt_at: float | None
    ) -> None:
        """Record a failed attempt and when to try again, or move it to the dead letters."""
        await self._run(plans.mark_failed, delivery_id, now, reason, elapsed, next_attempt_at, write=True, relaxed=True)

    async def retry_delivery(self, delivery_id: int, *, now: float) -> bool:
        """Make one unsent delivery due now, with a fresh attempt budget, and wake its channel's workers."""
        return await self._run(plans.retry_delivery, delivery_id, now, write=True)

    async def retry_dead(self, *, now: float) -> int:
        """Make every dead delivery due now, with a fresh attempt budget, and wake their channels' workers."""
        return await self._run(plans.retry_dead, now, write=True)

    async def release_held(self, held: HeldDelivery, *, title: str, body: str, now: float) -> bool:
        """Give a held delivery its final text and make it due now, if it is still held and unclaimed."""
        return await self._run(plans.release_held, held, title, body, now, write=True)

    # -- reads ----------------------------------------------------------------------------

    async def list_noise_log(
        self, *, limit: int = 100, suppressed_only: bool = False, inbox_id: int | None = None
    ) -> list[NoiseLogRow]:
        """Newest decisions first."""
        return await self._run(plans.list_noise_log, limit, suppressed_only, inbox_id)

    async def list_events(self, *, limit: int = 100, query: EventQuery | None = None) -> list[EventRow]:
        """Newest events first, those ``query`` admits."""
        return await self._run(plans.list_events, self.dialect, limit, query)

    async def get_event(self, inbox_id: int) -> EventRow | None:
        """One event, or None."""
        return await self._run(plans.get_event, inbox_id)

    async def queue_stats(self, *, now: float) -> QueueStats:
        """Unprocessed events, and per channel the pending (with the earliest due time among the due) and dead."""
        return await self._run(plans.queue_stats, now)

    async def list_deliveries(
        self,
        *,
        state: str | None = None,
        limit: int = 100,
        failing: bool = False,
        channel: str | None = None,
        rule: str | None = None,
        inbox_ids: Collection[int] | None = None,
        before: int | None = None,
    ) -> list[DeliveryRow]:
        """Newest deliveries first, filtered (see ``Store.list_deliveries``)."""
        where, params = delivery_where(
            self.dialect, state=state, failing=failing, channel=channel, rule=rule, inbox_ids=inbox_ids, before=before
        )
        return await self._run(plans.list_deliveries, self.dialect, limit, where, params)

    async def get_delivery(self, delivery_id: int) -> DeliveryRow | None:
        """One delivery, or None."""
        return await self._run(plans.get_delivery, delivery_id)

    async def list_attempts(self, delivery_ids: Collection[int]) -> list[AttemptRow]:
        """The attempt log of these deliveries, in the order of the attempts."""
        if not delivery_ids:
            return []
        return await self._run(plans.list_attempts, self.dialect, delivery_ids)

    async def deliveries_of(self, inbox_id: int) -> list[DeliveryRow]:
        """The deliveries an event produced, in creation order."""
        return await self._run(plans.deliveries_of, inbox_id)

    async def event_counts(self, *, since: float, width: float, slots: int) -> list[ResultCount]:
        """Events per time slot and result (see ``ReadStore.event_counts``)."""
        return await self._report(charts.event_counts, since, width, slots)

    async def top_names(
        self, column: Literal["process", "robot"], *, since: float, until: float, limit: int
    ) -> list[NameCount]:
        """The processes or robots with the most faults (see ``ReadStore.top_names``)."""
        return await self._report(charts.top_names, column, since, until, limit)

    async def delivery_latency(
        self, *, since: float, until: float, sample: int = LATENCY_SAMPLE
    ) -> list[ChannelLatency]:
        """Per channel, the time from creation to sent of the deliveries sent in the range."""
        return await self._report(charts.delivery_latency, since, until, sample)

    async def read_counter(self, name: str) -> int:
        """The named counter's value (0 before its first bump)."""
        return await self._run(plans.read_counter, name)

    async def bump_counter(self, name: str) -> int:
        """Add one to the named counter and return the new value."""
        return await self._run(plans.bump_counter, name, write=True)

    async def raise_counter(self, name: str, value: int) -> int:
        """Set the named counter to ``value`` unless it is higher already; returns its value."""
        return await self._run(plans.raise_counter, name, value, write=True)

    # -- alerts ---------------------------------------------------------------------------

    async def open_alerts(self, keys: Collection[tuple[str, str]]) -> list[AlertRow]:
        """The open alerts of these (rule, key) pairs."""
        if not keys:
            return []
        return await self._run(alerts.open_alerts, keys)

    async def list_alerts(self, *, limit: int = 100, open_only: bool = False) -> list[AlertRow]:
        """Open alerts first (oldest first), then resolved ones (latest first)."""
        return await self._run(alerts.list_alerts, limit, open_only)

    async def get_alert(self, alert_id: str) -> AlertRow | None:
        """One alert, or None."""
        return await self._run(alerts.get_alert, alert_id)

    async def alert_trail(self, alert_id: str) -> list[AlertEventRow]:
        """One alert's trail, in order."""
        return await self._run(alerts.alert_trail, alert_id)

    async def alert_trail_of_event(self, inbox_id: int) -> list[AlertEventRow]:
        """The trail entries about one event."""
        return await self._run(alerts.alert_trail_of_event, inbox_id)

    async def acknowledge_alert(self, alert_id: str, *, actor: str, via: str, now: float) -> AlertRow | None:
        """Acknowledge a firing alert; None when it is not firing."""
        return await self._run(alerts.acknowledge_alert, alert_id, actor, via, now, write=True)

    async def resolve_alert(self, alert_id: str, *, actor: str, via: str, now: float) -> AlertRow | None:
        """Resolve an open alert by hand; None when it is not open."""
        return await self._run(alerts.resolve_alert, alert_id, actor, via, now, write=True)

    async def record_alert_event(self, entry: NewAlertEvent, *, once: bool = False) -> bool:
        """Add a trail entry (with ``once``: only the first of its action)."""
        return await self._run(alerts.record_alert_event, entry, once, write=True)

    async def due_alerts(self, *, until: float, limit: int) -> list[AlertRow]:
        """Firing alerts whose timer is due, earliest first."""
        return await self._run(alerts.due_alerts, until, limit)

    async def fire_alert_timers(self, timers: Sequence[AlertTimer], *, now: float) -> list[AlertTimer]:
        """Write the fired timers still due as read, with their deliveries; those written."""
        if not timers:
            return []
        # Lost in a power cut, a timer fires again to the same deliveries (unique per event, rule, channel).
        return await self._run(plans.fire_alert_timers, timers, now, write=True, relaxed=True)

    async def expire_alerts(self, *, now: float, limit: int) -> list[AlertRow]:
        """Resolve open alerts past their expiry."""
        # Lost in a power cut, they are past their expiry still: resolved again at the next pass.
        return await self._run(alerts.expire_alerts, now, limit, write=True, relaxed=True)

    async def next_alert_time(self) -> float | None:
        """The earliest reminder, escalation or expiry of an open alert."""
        return await self._run(alerts.next_alert_time)

    # -- retention ------------------------------------------------------------------------

    async def prune_events(
        self, cutoffs: PruneCutoffs, *, after: tuple[float, int] | None, limit: int, dry_run: bool = False
    ) -> PruneStep:
        """Delete (or count) the events of one batch that may go; one short write transaction."""
        # Lost in a power cut, the rows are simply deleted again at the next run; an fsync per
        # batch would hold the store thread (and the webhooks behind it) for nothing. A dry run
        # writes too: its eligibility and counts see one state of the deliveries.
        return await self._run(
            retention.prune_events, self.dialect, cutoffs, after, limit, dry_run, write=True, relaxed=True
        )

    async def prune_noise_log(
        self, before: float, *, after: tuple[float, int] | None, limit: int, dry_run: bool = False
    ) -> PruneStep:
        """Delete (or count) the oldest noise decisions recorded before ``before``, up to ``limit``."""
        return await self._run(
            retention.prune_noise_log, self.dialect, before, after, limit, dry_run, write=True, relaxed=True
        )

    async def prune_silences(self, before: float, *, limit: int, dry_run: bool = False) -> int:
        """Delete (or count) up to ``limit`` silences that ended before ``before``."""
        return await self._run(retention.prune_silences, before, limit, dry_run, write=True)

    async def prune_alerts(self, before: float, *, limit: int, dry_run: bool = False) -> dict[str, int]:
        """Delete (or count) up to ``limit`` alerts resolved before ``before``, with their trails."""
        return await self._run(retention.prune_alerts, self.dialect, before, limit, dry_run, write=True, relaxed=True)

    async def timer_inbox_ids(self) -> set[int]:
        """The events noise timers refer to."""
        return await self._run(retention.timer_inbox_ids)
