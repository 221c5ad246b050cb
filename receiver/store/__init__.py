"""The durable store: the inbox of accepted events and the outbox of deliveries.

The only package that talks to a database, used through this module. Each consumer codes
against the role it uses: ``InboxStore`` (accept, claim, finish), ``NoiseStateStore``,
``OutboxStore`` (claim deliveries, record attempts), ``SilenceStore``, ``ReadStore`` (the admin
read models and the overview's charts), ``CounterStore`` and ``RetentionStore``; ``Store`` is their union, which the app
factory holds. ``SQLiteStore`` (``receiver.store.sqlite``) is the embedded default, and
``PostgresStore`` (``receiver.store.postgres``, the ``orchestrator-alert-receiver[postgres]`` extra) lets several
replicas share one database. ``open_store`` picks one from a database URL. Both apply the
versioned migrations of ``receiver.store.schema`` when opened.

Inside, each statement is written once (``sql`` renders it for both dialects; ``_plans`` and
``_retention`` hold what each method does, as a generator of statements), the row mappers are
shared (``_rows``), and so is the group commit (``_batch``); a back end holds only its executor:
connections, transactions, error mapping and wake-ups.

What must survive a crash is a row here before anyone is told "done":

* ``accept`` commits the inbox row before the webhook gets its 202. Concurrent accepts are
  committed together (group commit): one commit for every request that arrived meanwhile,
  which is what lets one database keep up with a busy estate.
* ``finish_inbox`` writes the outbox rows and marks the event processed in one transaction,
  together with the noise state the event changed (windows, counters, groups, timers, flags),
  the deliveries noise control produced and its decisions (``NoiseWrite``). A due timer (a
  group's digest, an absence deadline) is fired the same way: ``finish_inbox([], noise=...)``
  commits its deliveries with the state that says it fired, so a crash can neither lose nor
  repeat it.
* ``mark_sent`` runs only after apprise reported success.

Work is claimed with leases (``lease_until``): a worker that dies leaves rows that another
claim picks up once the lease expired; while a lease runs, no other claim (in this process or
in another replica) returns the row. Times are Unix seconds (float, UTC) passed in by the
caller, so tests drive the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from receiver.errors import ConfigError
from receiver.store._text import storable

__all__ = [
    "ALERT_STATES",
    "CHART_RESULTS",
    "FAULT_TYPES",
    "LATENCY_SAMPLE",
    "STORE_TABLES",
    "Accepted",
    "AlertChange",
    "AlertEventRow",
    "AlertRow",
    "AlertStore",
    "AlertTimer",
    "AttemptRow",
    "ChannelLatency",
    "ChannelStats",
    "CounterStore",
    "DeliveryRow",
    "DeliveryState",
    "EventQuery",
    "EventRow",
    "HeldDelivery",
    "InboxItem",
    "InboxState",
    "InboxStore",
    "LateDelivery",
    "LeaseStore",
    "NameCount",
    "NewAlertEvent",
    "NewDelivery",
    "NewSilence",
    "NoiseLogEntry",
    "NoiseLogRow",
    "NoiseRef",
    "NoiseRow",
    "NoiseStateStore",
    "NoiseWrite",
    "OutboxStore",
    "Processed",
    "PruneCutoffs",
    "PruneStep",
    "QueueStats",
    "ReadStore",
    "ResultCount",
    "RetentionStore",
    "SQLiteStore",
    "SilenceRow",
    "SilenceStore",
    "Store",
    "StoreStats",
    "adopted_row",
    "open_store",
]

InboxState = Literal["new", "processed", "unparsed"]
DeliveryState = Literal["pending", "sent", "dead"]


@dataclass(frozen=True, slots=True)
class InboxItem:
    """An event to accept: the raw body exactly as received, and what the edge read of it."""

    source: str
    event_id: str
    type: str
    body: bytes
    received_at: float
    event_time: float | None = None
    lease_until: float | None = None
    """Set: the row is stored claimed by the worker the edge hands it to (``InboxWorker.adopt``), until then."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to ``accept``: the inbox row, and whether it was already there."""

    inbox_id: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class EventRow:
    """One inbox row."""

    id: int
    source: str
    event_id: str
    type: str
    body: bytes
    received_at: float
    event_time: float | None
    state: str
    processed_at: float | None
    outcome: str | None
    process: str | None = None
    robot: str | None = None
    claims: int = 0
    """How often a worker claimed the event; more than one: a claim before this one ended unfinished."""


def adopted_row(item: InboxItem, inbox_id: int) -> EventRow:
    """The row ``accept`` stored for ``item`` claimed (``lease_until`` set), as a claim would have read it."""
    return EventRow(
        id=inbox_id,
        source=storable(item.source),
        event_id=storable(item.event_id),
        type=storable(item.type),
        body=item.body,
        received_at=item.received_at,
        event_time=item.event_time,
        state="new",
        processed_at=None,
        outcome=None,
        claims=1,
    )


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A filter of ``list_events`` (every field optional; all given ones must hold).

    Attributes:
        source: the source name.
        types: event types, any of them; ``*`` and ``?`` are wildcards, any casing.
        process: the process name (``*``/``?`` wildcards, any casing).
        robot: the robot name (likewise).
        state: ``new``, ``processed`` or ``unparsed``.
        since: received at or after (Unix seconds).
        until: received before.
        before: only rows with a smaller id (paging).
    """

    source: str | None = None
    types: tuple[str, ...] = ()
    process: str | None = None
    robot: str | None = None
    state: str | None = None
    since: float | None = None
    until: float | None = None
    before: int | None = None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A rendered notification due to one channel, written with the event it came from.

    ``hold``: seconds after the commit before it is due (0: at once); a message waiting for
    Orchestrator's details (``enrich:``) is held for the enrichment's budget, and sent as
    written once that ends unless :meth:`OutboxStore.release_held` replaced it first.

    ``lease``: seconds the delivery is written leased to this process (0: not leased), as a claim
    would lease it, for a delivery due at once that the writer hands to its dispatcher itself
    (``InboxStore.finish_inbox`` returns its row). No claim returns it before the lease ends.
    """

    rule: str
    channel: str
    title: str
    body: str
    severity: str
    body_format: str
    hold: float = 0.0
    lease: float = 0.0


@dataclass(frozen=True, slots=True)
class HeldDelivery:
    """Which delivery :meth:`OutboxStore.release_held` means: one event's message of one rule to one channel."""

    inbox_id: int
    rule: str
    channel: str


@dataclass(frozen=True, slots=True)
class Processed:
    """The outcome of processing one inbox event: its new state and the deliveries it produced.

    ``process`` and ``robot`` are the event's handles, kept on the inbox row for the admin API's filters.
    """

    inbox_id: int
    state: InboxState
    outcome: str
    deliveries: Sequence[NewDelivery] = ()
    process: str | None = None
    robot: str | None = None


NoiseRef = tuple[str, str, str]
"""(kind, name, key) of a noise state row."""


@dataclass(frozen=True, slots=True)
class NoiseRow:
    """One row of noise state (see ``receiver.noise.state``): ``data`` is JSON text.

    ``due_at`` makes it a timer the inbox worker fires (``due_noise``); a row without one is
    forgotten once ``expires_at`` has passed (``NoiseWrite.purge_before``).
    """

    kind: str
    name: str
    key: str
    data: str
    due_at: float | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class LateDelivery:
    """A delivery noise control produced about an event other than the one being finished.

    A group's digest (it refers to the group's first event), an absence timer that ran out (the
    event that armed it). ``(inbox_id, rule, channel)`` is unique, as for every delivery.
    """

    inbox_id: int
    delivery: NewDelivery


@dataclass(frozen=True, slots=True)
class NoiseLogEntry:
    """One noise decision, kept for the admin API (``/api/suppressions``) and audits.

    Attributes:
        at: when it applies (the event's arrival, a timer's due time), Unix seconds.
        inbox_id: the event it is about, or None.
        rule: the rule, inhibition or ``NAME:recovered`` it is about, or None.
        key: the key inside it, or None.
        action: throttled, grouped, silenced, inhibited, collapsed, notified, fired... (see ``receiver.noise``).
        reason: one sentence naming the rule, silence or inhibition.
        suppressed: True when the rule sent nothing for the event because of it.
    """

    at: float
    inbox_id: int | None
    rule: str | None
    key: str | None
    action: str
    reason: str
    suppressed: bool


@dataclass(frozen=True, slots=True)
class NoiseLogRow:
    """A stored noise decision, with its number and when it was recorded."""

    id: int
    recorded_at: float
    entry: NoiseLogEntry


ALERT_STATES = ("firing", "acknowledged", "resolved")
"""An alert's lifecycle, in order."""


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One alert: a rule's key that is firing (see docs/alerts.md).

    Attributes:
        id: its public id (random text, chosen by the worker that opened it).
        rule: the rule.
        source: the source of the events (empty when the rule shares its state across sources).
        key: the alert key as stored (``source|key``, as the rule's noise state).
        shown_key: the key as the rule rendered it.
        state: firing, acknowledged or resolved.
        title: the title of the notification that opened it.
        inbox_id: the event that opened it; last_inbox_id: the latest event that notified for it.
        process, robot: the handles of the opening event (for "silence this process or robot").
        count: notifications (sent or held back) since it opened.
        opened_at, last_at: its first and latest notification.
        expires_at: resolved by expiry when nothing notified for it until then.
        due_at: its next reminder or escalation (None: no timer; never for a non-firing alert).
        next_repeat_at: its next reminder (``repeat:``), or None.
        reminders, escalations: reminders sent, escalation steps taken.
        acked_at, acked_by, resolved_at, resolved_by: who did it, when.
        resolution: recovered, by_hand or expired.
        event_type: the type of the event that opened it (``job.faulted``...).
    """

    id: str
    rule: str
    source: str
    key: str
    shown_key: str
    state: str
    title: str
    inbox_id: int
    last_inbox_id: int
    process: str | None
    robot: str | None
    count: int
    opened_at: float
    last_at: float
    expires_at: float
    due_at: float | None = None
    next_repeat_at: float | None = None
    reminders: int = 0
    escalations: int = 0
    acked_at: float | None = None
    acked_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    event_type: str = ""

    @property
    def open(self) -> bool:
        """Firing or acknowledged."""
        return self.state != "resolved"


@dataclass(frozen=True, slots=True)
class NewAlertEvent:
    """An entry of an alert's trail: what was done, by whom, through what (rule, link, api, ui, cli, timer)."""

    alert_id: str
    at: float
    action: str
    actor: str
    via: str
    detail: str = ""
    inbox_id: int | None = None


@dataclass(frozen=True, slots=True)
class AlertEventRow:
    """A stored entry of an alert's trail, with its number."""

    id: int
    event: NewAlertEvent


@dataclass(frozen=True, slots=True)
class AlertChange:
    """What the inbox worker changes about an alert, with the event it processed.

    ``open`` inserts ``alert``; ``touch`` records one more notification (``last_*``, ``count``,
    ``expires_at``, ``next_repeat_at``; ``due_at`` only while the alert is still firing); ``resolve``
    resolves it (``resolved_*``, ``resolution``). ``trail`` is written with it. ``reopen`` (with a
    ``touch`` that notified) is the new alert opened instead when the stored one was resolved
    between the batch's read and its commit.
    """

    kind: Literal["open", "touch", "resolve"]
    alert: AlertRow
    trail: tuple[NewAlertEvent, ...] = ()
    reopen: AlertChange | None = None


@dataclass(frozen=True, slots=True)
class AlertTimer:
    """A fired reminder or escalation: the alert's new timer fields, written only if its timer is still ``was_due``.

    ``deliveries`` are written only then, so an acknowledgement that came first stops them.
    """

    alert: AlertRow
    was_due: float
    deliveries: Sequence[LateDelivery] = ()
    trail: tuple[NewAlertEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class NoiseWrite:
    """What noise control changed, committed in the same transaction as ``finish_inbox``'s events.

    Attributes:
        put: rows written (inserted or replaced).
        delete: rows removed.
        deliveries: deliveries about other events than the ones finished (digests, timers).
        log: decisions to keep.
        purge_before: also forget rows without a timer whose ``expires_at`` is at or before this.
        alerts: alerts opened, notified again or resolved by these events (in order).
    """

    put: Sequence[NoiseRow] = ()
    delete: Sequence[NoiseRef] = ()
    deliveries: Sequence[LateDelivery] = ()
    log: Sequence[NoiseLogEntry] = ()
    purge_before: float | None = None
    alerts: Sequence[AlertChange] = ()


@dataclass(frozen=True, slots=True)
class NewSilence:
    """An ad-hoc silence to create: matchers (``process=Invoice*``...), who and why, from when until when."""

    matchers: tuple[str, ...]
    comment: str
    created_by: str
    starts_at: float
    ends_at: float


@dataclass(frozen=True, slots=True)
class SilenceRow:
    """A stored ad-hoc silence. Expiring it moves ``ends_at`` to the time of expiry."""

    id: int
    matchers: tuple[str, ...]
    comment: str
    created_by: str
    created_at: float
    starts_at: float
    ends_at: float


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One outbox row and its delivery state."""

    id: int
    inbox_id: int
    rule: str
    channel: str
    title: str
    body: str
    severity: str
    body_format: str
    state: str
    attempts: int
    created_at: float
    budget_since: float
    next_attempt_at: float
    last_error: str | None
    sent_at: float | None


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One attempt to send a delivery: ``status`` is sent, failed (retried later) or dead."""

    id: int
    delivery_id: int
    at: float
    status: str
    reason: str | None
    elapsed: float


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """The outbox of one channel: not-yet-sent deliveries, dead ones, the earliest due time among the due."""

    pending: int = 0
    dead: int = 0
    oldest_due_at: float | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What waits: unprocessed events (and the oldest's arrival), the outbox per channel, and open alerts.

    ``open_alerts`` counts the alerts not resolved by state (``firing``, ``acknowledged``);
    ``oldest_firing_at`` is when the longest-firing unacknowledged one opened (None: none fires).
    """

    inbox_depth: int
    inbox_oldest_at: float | None
    channels: dict[str, ChannelStats]
    open_alerts: dict[str, int] = field(default_factory=dict)
    oldest_firing_at: float | None = None


# -- charts -------------------------------------------------------------------------------

LATENCY_SAMPLE = 10_000
"""Sent deliveries per channel whose latencies give the overview's p50 and p95: the range's most recent ones."""

CHART_RESULTS: tuple[str, ...] = ("failed", "notified", "suppressed", "other")
"""What became of an event, as the overview's chart stacks it (``ReadStore.event_counts``):

* ``failed``: unparsed, or a delivery of it is dead or failing (pending after a failed attempt);
* ``notified``: it has deliveries and none is dead or failing (sent, or on its way);
* ``suppressed``: no delivery, and noise control suppressed one for it (a ``noise_log`` row);
* ``other``: nothing to send (no rule matched, or its rule notifies nobody) or not processed yet.

The first that holds wins, in that order, as ``receiver.admin.audit``'s one-word result does."""

FAULT_TYPES: tuple[str, ...] = ("job.faulted", "queueItem.transactionFailed", "schedule.failed")
"""The event types the overview counts as a fault of a process or robot (``ReadStore.top_names``); the
partial index ``inbox_faults`` (schema migration 6) names the same ones."""


@dataclass(frozen=True, slots=True)
class ResultCount:
    """Events of one result (``CHART_RESULTS``) received in one time slot."""

    slot: int
    result: str
    count: int


@dataclass(frozen=True, slots=True)
class NameCount:
    """How many events one process or robot had."""

    name: str
    count: int


@dataclass(frozen=True, slots=True)
class ChannelLatency:
    """How long a channel's deliveries took from creation to sent (seconds, nearest-rank percentiles)."""

    channel: str
    count: int
    p50: float
    p95: float
    max: float


# -- retention ----------------------------------------------------------------------------

STORE_TABLES: tuple[str, ...] = (
    "inbox",
    "deliveries",
    "attempts",
    "noise_log",
    "noise_state",
    "silences",
    "alerts",
    "alert_events",
)
"""The tables whose rows ``table_stats`` reports (the ones that grow with traffic)."""


@dataclass(frozen=True, slots=True)
class PruneCutoffs:
    """What retention lets go, as Unix-second bounds; an event goes only when every bound allows it.

    Attributes:
        events_before: a processed (or unparsed) event received and finished before this goes, with
            its deliveries and their attempts, once each delivery is final: sent before this, or
            dead (``dead_before``). An event still ``new`` or with a pending delivery never goes.
        dead_before: a dead delivery whose last attempt budget began before this counts as final;
            None keeps dead deliveries, and so their events, for ever.
        dedup_before: an inbox row stays until its arrival and its ``Timestamp`` are both before
            this, so a replay of its EventId is still answered ``duplicate`` (the replay window).
        keep: inbox ids that must stay whatever their age (events a noise timer will deliver about).
    """

    events_before: float
    dead_before: float | None
    dedup_before: float
    keep: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class PruneStep:
    """One batch of pruning.

    Attributes:
        counts: rows deleted per table (in a dry run: rows that would be).
        after: where the next batch starts; None when nothing older is left to look at.
    """

    counts: dict[str, int]
    after: tuple[float, int] | None


@dataclass(frozen=True, slots=True)
class StoreStats:
    """How big the store is: rows per table (exact up to ``exact_limit``, estimated beyond) and bytes."""

    rows: dict[str, int]
    size_bytes: int
    exact_limit: int


class LeaseStore(Protocol):
    """Leases: a named one (of N replicas one works the inbox, one prunes), and those of claimed rows."""

    async def acquire_lease(self, name: str, owner: str, *, now: float, ttl: float) -> bool:
        """Take or renew the named lease for ``owner`` until ``now + ttl``; False while another owner holds it.

        The inbox worker holds the lease ``inbox``, so of N replicas one processes events (in
        order of arrival) and runs the noise engine; the others take over when it lapses.
        """

    async def release_lease(self, name: str, owner: str) -> None:
        """Give up the named lease if ``owner`` holds it (a clean shutdown: the next owner need not wait)."""

    async def release_claims(self, *, inbox_ids: Collection[int] = (), delivery_ids: Collection[int] = ()) -> None:
        """Make claimed rows that this process will not finish claimable again at once.

        For a clean shutdown: events claimed and not processed, deliveries claimed and not yet
        started. Rows already processed or sent are left as they are. A delivery whose send was
        cut short must not be released: the channel may have it, and its lease lapsing (a resend)
        is the at-least-once rule.
        """


class InboxStore(LeaseStore, Protocol):
    """The inbox: accept events, claim them in order of arrival, finish them with their deliveries."""

    async def accept(self, item: InboxItem) -> Accepted:
        """Commit ``item`` to the inbox, or find the row with its (source, event_id)."""

    def hand_claimed_to(self, adopt: Callable[[EventRow], None]) -> None:
        """Give each event accepted claimed (``InboxItem.lease_until``) to ``adopt``, on the loop, once committed."""

    async def claim_inbox(self, *, limit: int, now: float, lease: float) -> list[EventRow]:
        """Lease up to ``limit`` unprocessed events in order of arrival."""

    async def finish_inbox(
        self, processed: Sequence[Processed], *, now: float, noise: NoiseWrite | None = None
    ) -> list[DeliveryRow]:
        """Write the events' deliveries and mark them done, with ``noise``'s changes, in one transaction.

        ``finish_inbox([], now=..., noise=...)`` commits fired timers alone. Deliveries already
        written (same event, rule and channel) are left as they are.

        Returns:
            The rows of the deliveries written with a ``lease`` (``NewDelivery.lease``), as
            ``OutboxStore.claim_deliveries`` would return them; those already written are not among them.
        """

    async def last_event(self, source: str) -> tuple[int, float] | None:
        """The id and arrival time of the source's latest event, or None when it sent none."""


class NoiseStateStore(Protocol):
    """Noise control's state rows and timers (written by ``InboxStore.finish_inbox``)."""

    async def load_noise(self, refs: Collection[NoiseRef]) -> list[NoiseRow]:
        """The noise state rows of these refs that exist (in no particular order)."""

    async def due_noise(self, *, until: float, limit: int) -> list[NoiseRow]:
        """Up to ``limit`` timers due at or before ``until``, earliest first."""

    async def next_noise_due(self) -> float | None:
        """When the earliest timer is due, or None when there is none."""


class OutboxStore(LeaseStore, Protocol):
    """The outbox: claim due deliveries, record each attempt's outcome, re-drive failed ones."""

    async def claim_deliveries(self, channel: str, *, limit: int, now: float, lease: float) -> list[DeliveryRow]:
        """Lease up to ``limit`` due deliveries of ``channel``, oldest due first."""

    async def due_channels(self, now: float) -> set[str]:
        """Channels that have deliveries due (for deliveries of channels no longer configured)."""

    async def mark_sent(self, delivery_id: int, *, now: float, elapsed: float) -> None:
        """Record a successful delivery; it will never be sent again."""

    async def mark_failed(
        self, delivery_id: int, *, now: float, reason: str, elapsed: float, next_attempt_at: float | None
    ) -> None:
        """Record a failed attempt; ``next_attempt_at`` None moves the delivery to the dead letters."""

    async def retry_delivery(self, delivery_id: int, *, now: float) -> bool:
        """Make a failed or dead delivery due now; False when there is no such unsent delivery."""

    async def retry_dead(self, *, now: float) -> int:
        """Make every dead delivery due now; returns how many."""

    async def release_held(self, held: HeldDelivery, *, title: str, body: str, now: float) -> bool:
        """Give a held delivery its final text and make it due now, if it is still held and unclaimed.

        False when its hold ended first (it is due, or sent, as first written): nothing changes.
        """


class SilenceStore(Protocol):
    """Ad-hoc silences."""

    async def add_silence(self, silence: NewSilence, *, now: float) -> SilenceRow:
        """Store an ad-hoc silence; returns it with its id."""

    async def list_silences(self, *, active_at: float | None = None, limit: int = 100) -> list[SilenceRow]:
        """Newest silences first; with ``active_at`` only those not ended by then (pending ones included)."""

    async def expire_silence(self, silence_id: int, *, now: float) -> SilenceRow | None:
        """End a silence now (if it has not ended yet); None when there is no such silence."""


class ReadStore(Protocol):
    """The admin read models: events, deliveries and their attempts, noise decisions, what waits."""

    async def list_events(self, *, limit: int = 100, query: EventQuery | None = None) -> list[EventRow]:
        """Newest events first, those ``query`` admits."""

    async def get_event(self, inbox_id: int) -> EventRow | None:
        """One event, or None."""

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
        """Newest deliveries first, filtered.

        Filters: a state; ``failing`` (pending with a failed attempt); a channel; a rule; the
        deliveries of some events; ids below ``before`` (paging).
        """

    async def get_delivery(self, delivery_id: int) -> DeliveryRow | None:
        """One delivery, or None."""

    async def deliveries_of(self, inbox_id: int) -> list[DeliveryRow]:
        """The deliveries an event produced."""

    async def list_attempts(self, delivery_ids: Collection[int]) -> list[AttemptRow]:
        """The attempt log of these deliveries, in the order of the attempts."""

    async def list_noise_log(
        self, *, limit: int = 100, suppressed_only: bool = False, inbox_id: int | None = None
    ) -> list[NoiseLogRow]:
        """Newest noise decisions first, optionally only suppressions, or only those about one event."""

    async def queue_stats(self, *, now: float) -> QueueStats:
        """What waits: unprocessed events; per channel, pending deliveries (the earliest due time among
        those due at ``now``) and dead ones."""

    # The overview's charts: one aggregate query each, over a time range of Unix seconds.

    async def event_counts(self, *, since: float, width: float, slots: int) -> list[ResultCount]:
        """Events received in ``[since, since + width * slots)`` per slot (``(received_at - since) // width``)
        and result (``CHART_RESULTS``); combinations without events are left out."""

    async def top_names(
        self, column: Literal["process", "robot"], *, since: float, until: float, limit: int
    ) -> list[NameCount]:
        """The processes (or robots) with the most events of ``FAULT_TYPES`` received in ``[since, until)``,
        most first (ties by name)."""

    async def delivery_latency(
        self, *, since: float, until: float, sample: int = LATENCY_SAMPLE
    ) -> list[ChannelLatency]:
        """Per channel, ``sent_at - created_at`` of the deliveries sent in ``[since, until)``, by channel name:
        the count and the maximum of all of them, p50 and p95 of the ``sample`` most recent ones."""


class AlertStore(Protocol):
    """Alerts: their lifecycle, timers and trail (opened and notified by ``InboxStore.finish_inbox``)."""

    async def open_alerts(self, keys: Collection[tuple[str, str]]) -> list[AlertRow]:
        """The open (firing or acknowledged) alerts of these (rule, stored key) pairs."""

    async def list_alerts(self, *, limit: int = 100, open_only: bool = False) -> list[AlertRow]:
        """Open alerts first (the oldest first), then resolved ones (the latest first)."""

    async def get_alert(self, alert_id: str) -> AlertRow | None:
        """One alert, or None."""

    async def alert_trail(self, alert_id: str) -> list[AlertEventRow]:
        """Its trail, in order."""

    async def alert_trail_of_event(self, inbox_id: int) -> list[AlertEventRow]:
        """The trail entries about one event, in order."""

    async def acknowledge_alert(self, alert_id: str, *, actor: str, via: str, now: float) -> AlertRow | None:
        """Acknowledge a firing alert (its timer stops); None when it is not firing (or does not exist)."""

    async def resolve_alert(self, alert_id: str, *, actor: str, via: str, now: float) -> AlertRow | None:
        """Resolve an open alert by hand (its timer stops); None when it is not open."""

    async def record_alert_event(self, entry: NewAlertEvent, *, once: bool = False) -> bool:
        """Add an entry to an alert's trail; with ``once``, False (and nothing written) if it has one of that action."""

    async def due_alerts(self, *, until: float, limit: int) -> list[AlertRow]:
        """Firing alerts whose reminder or escalation is due at or before ``until``, earliest first."""

    async def fire_alert_timers(self, timers: Sequence[AlertTimer], *, now: float) -> list[AlertTimer]:
        """Write each fired timer whose alert is still firing and due as it was, with its deliveries; those written."""

    async def expire_alerts(self, *, now: float, limit: int) -> list[AlertRow]:
        """Resolve open alerts whose ``expires_at`` has passed (resolution ``expired``); those resolved."""

    async def next_alert_time(self) -> float | None:
        """The earliest reminder, escalation or expiry of an open alert, or None (one cheap read)."""


class CounterStore(Protocol):
    """Named counters every replica shares (e.g. the web page's session generation)."""

    async def read_counter(self, name: str) -> int:
        """The named counter's value (0 before its first bump); every replica reads the same."""

    async def bump_counter(self, name: str) -> int:
        """Add one to the named counter and return the new value."""

    async def raise_counter(self, name: str, value: int) -> int:
        """Set the named counter to ``value`` unless it is higher already (a watermark that only moves on).

        Returns the counter's value afterwards; every replica reads the same.
        """


class RetentionStore(LeaseStore, Protocol):
    """Retention and maintenance: pruning in short batches, and the store's size (see receiver.admin.retention)."""

    async def prune_events(
        self, cutoffs: PruneCutoffs, *, after: tuple[float, int] | None, limit: int, dry_run: bool = False
    ) -> PruneStep:
        """Look at up to ``limit`` events old enough for ``cutoffs``, arrived after ``after``; delete those
        that may go, with their deliveries and attempts, in one short transaction (``dry_run``: count them)."""

    async def prune_noise_log(
        self, before: float, *, after: tuple[float, int] | None, limit: int, dry_run: bool = False
    ) -> PruneStep:
        """Delete (``dry_run``: count) up to ``limit`` of the oldest noise decisions recorded before ``before``."""

    async def prune_silences(self, before: float, *, limit: int, dry_run: bool = False) -> int:
        """Delete (``dry_run``: count) up to ``limit`` ad-hoc silences that ended before ``before``."""

    async def prune_alerts(self, before: float, *, limit: int, dry_run: bool = False) -> dict[str, int]:
        """Delete (``dry_run``: count) up to ``limit`` alerts resolved before ``before``, with their trails;
        rows per table (``alerts``, ``alert_events``)."""

    async def timer_inbox_ids(self) -> set[int]:
        """The events noise timers and open alerts refer to (a group's first event, an absence's arming event)."""

    async def table_stats(self, *, exact_limit: int = 1_000_000) -> StoreStats:
        """Rows per table of ``STORE_TABLES`` and the store's size (no full count of a table past ``exact_limit``)."""


class Store(
    InboxStore,
    NoiseStateStore,
    OutboxStore,
    SilenceStore,
    ReadStore,
    CounterStore,
    RetentionStore,
    AlertStore,
    Protocol,
):
    """What the server needs from a database. Every method is safe to call concurrently.

    Every method raises ``StoreError`` when the database cannot be reached or written; the
    message names the database (path, or host and database name) and never a password.

    Wake-ups (``listen``): a worker that found no work sleeps until a notification or its poll
    interval, whichever comes first. The topics are

    * ``"inbox"``: new inbox rows were committed (``accept``);
    * ``"deliveries:<channel>"``: deliveries of ``<channel>`` became due (``finish_inbox``,
      ``retry_delivery``, ``retry_dead``); not for deliveries ``finish_inbox`` wrote leased, which
      no claim would find.

    On PostgreSQL they come from every store on the same database schema (every replica, and the
    CLI re-driving deliveries), this one included, and are sent in the transaction that wrote the
    rows, so they arrive only once it committed. On SQLite they come from this store object only.
    They are hints: one can be lost (while a listener reconnects), repeated, or name work another
    replica already claimed, so workers still poll, just less often.
    """

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None:
        """Finish pending writes, stop listening and release the connections."""

    async def ping(self) -> None:
        """Raise StoreError when the store cannot be read."""

    async def listen(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(topic)`` whenever work became available (topics: see the class docstring).

        Returns once listening, so a commit made after the return is heard. The callback runs on
        the event loop (scheduled with ``loop.call_soon``) and must not block; an exception it raises
        is reported by the loop and does not stop later calls. Each call adds one more callback;
        ``close`` stops them all.
        """


def open_store(database_url: str) -> Store:
    """Build the store a database URL names (not yet opened).

    Args:
        database_url: ``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``sqlite:///:memory:``,
            or ``postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DB[?schema=NAME&...]`` (also ``postgres://``;
            see ``PostgresStore``).

    Raises:
        ConfigError: an unknown scheme, a malformed PostgreSQL URL, or PostgreSQL without its extra.
    """
    if database_url.startswith("sqlite:///"):
        return SQLiteStore(database_url.removeprefix("sqlite:///"))
    if database_url.startswith(("postgresql://", "postgres://")):
        try:
            # Imported here so that SQLite users need no PostgreSQL driver installed.
            from receiver.store.postgres import PostgresStore
        except ImportError as exc:
            if not (exc.name or "").startswith(("psycopg", "psycopg_pool")):
                raise
            raise ConfigError(
                f"database URL uses PostgreSQL but its driver is not installed ({exc.name!r} is missing); "
                "install it with: pip install 'orchestrator-alert-receiver[postgres]'"
            ) from exc
        return PostgresStore(database_url)
    raise ConfigError(f"database URL {database_url.split(':', 1)[0]!r}: expected sqlite:///PATH or postgresql://...")


# At the end, not the top: receiver.store.sqlite imports the row types defined above, and
# ``from receiver.store import SQLiteStore`` must keep working for existing callers.
from receiver.store.sqlite import SQLiteStore  # noqa: E402
