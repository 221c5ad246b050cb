"""Prometheus metrics on a registry of the app's own (alertmanager's NewMetrics pattern).

Labels stay low-cardinality: sources, rule and channel names come from the operator's own
files; event types are the known Orchestrator types or ``unknown``; never event ids or
process names.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ChannelQueue", "Children", "Metrics", "QueueSnapshot"]

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


@dataclass(frozen=True, slots=True)
class ChannelQueue:
    """The outbox of one channel at one moment.

    Attributes:
        pending: deliveries not sent yet and not dead (due now or waiting for a retry).
        dead: dead letters, waiting for a re-drive.
        oldest_due_age: seconds the longest-waiting due delivery has been due; 0 when none is due.
    """

    pending: int = 0
    dead: int = 0
    oldest_due_age: float = 0.0


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """The inbox and the outbox at one moment, read from the store when ``/metrics`` is scraped.

    Attributes:
        inbox_depth: events accepted and not processed yet.
        inbox_oldest_age: seconds the oldest of them has waited; 0 when there is none.
        channels: channel name -> its outbox.
        alerts: open alerts by state (``firing``, ``acknowledged``).
        oldest_firing_age: seconds the longest-firing unacknowledged alert has been open; 0 when none fires.
    """

    inbox_depth: int = 0
    inbox_oldest_age: float = 0.0
    channels: Mapping[str, ChannelQueue] = field(default_factory=dict)
    alerts: Mapping[str, int] = field(default_factory=dict)
    oldest_firing_age: float = 0.0


class _QueueCollector(Collector):
    """Gauges of the last snapshot, built at collection time.

    Built per scrape rather than kept as labelled ``Gauge`` children, so a channel removed from
    rules.yaml (and left with no rows) disappears instead of reporting its last value forever.
    """

    def __init__(self) -> None:
        self.snapshot: QueueSnapshot | None = None
        self.store_up = 1.0
        self.writable = True

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "receiver_store_up",
            "1 when the last scrape could read the store and it takes writes, else 0 (webhooks get 503).",
            value=self.store_up if self.writable else 0.0,
        )
        snap = self.snapshot
        if snap is None:
            return
        yield GaugeMetricFamily(
            "receiver_inbox_depth", "Events accepted and not processed yet.", value=snap.inbox_depth
        )
        yield GaugeMetricFamily(
            "receiver_inbox_oldest_age_seconds",
            "How long the oldest unprocessed event has waited (0 when there is none).",
            value=snap.inbox_oldest_age,
        )
        depth = GaugeMetricFamily(
            "receiver_outbox_depth", "Deliveries not sent yet and not dead, by channel.", labels=["channel"]
        )
        dead = GaugeMetricFamily("receiver_outbox_dead", "Dead-lettered deliveries, by channel.", labels=["channel"])
        age = GaugeMetricFamily(
            "receiver_outbox_oldest_due_age_seconds",
            "How long the longest-waiting due delivery has been due, by channel (0 when none is due).",
            labels=["channel"],
        )
        for name in sorted(snap.channels):
            queue = snap.channels[name]
            depth.add_metric([name], queue.pending)
            dead.add_metric([name], queue.dead)
            age.add_metric([name], queue.oldest_due_age)
        yield from (depth, dead, age)
        alerts = GaugeMetricFamily("receiver_alerts", "Open alerts by state (firing, acknowledged).", labels=["state"])
        for state in sorted(snap.alerts):
            alerts.add_metric([state], snap.alerts[state])
        yield alerts
        yield GaugeMetricFamily(
            "receiver_alert_oldest_firing_age_seconds",
            "How long the longest-firing unacknowledged alert has been open (0 when none fires).",
            value=snap.oldest_firing_age,
        )


class _StoreCollector(Collector):
    """The store's rows per table and its size, as last read (``receiver.admin.retention.StoreStatsCache``)."""

    def __init__(self) -> None:
        self.rows: Mapping[str, int] | None = None
        self.size_bytes = 0

    def collect(self) -> Iterator[Metric]:
        if self.rows is None:
            return
        rows = GaugeMetricFamily(
            "receiver_store_rows",
            "Rows per table (exact up to a million, estimated beyond; read at most once a minute).",
            labels=["table"],
        )
        for table in sorted(self.rows):
            rows.add_metric([table], self.rows[table])
        yield rows
        yield GaugeMetricFamily(
            "receiver_store_size_bytes",
            "Bytes the store takes: the SQLite file and its WAL, or the PostgreSQL tables with their indexes.",
            value=self.size_bytes,
        )


_M = TypeVar("_M", Counter, Histogram)


class Children(Generic[_M]):
    """A labelled metric's children by label values, each looked up once.

    ``labels()`` takes a lock and checks its arguments on every call, once per webhook, event and
    send (docs/performance.md, "Fast paths"). Label values come
    from configuration and fixed vocabularies (sources, channels, rules, outcomes), so the
    cache stays as small as the metric's own table of children.
    """

    def __init__(self, metric: _M) -> None:
        self._metric: _M = metric
        self._children: dict[tuple[str, ...], _M] = {}

    def __call__(self, *values: str) -> _M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class _ChannelFailures(Collector):
    """Per channel, since when its sends fail: the first failure after its last success (monotonic).

    The outbox's due age cannot show a channel that is down: a failed delivery waits for its retry
    and is not due meanwhile, so that age starts over after every attempt. This one does not.
    """

    def __init__(self) -> None:
        self.since: dict[str, float] = {}

    def outcome(self, channel: str, sent: bool) -> None:
        if sent:
            self.since.pop(channel, None)
        elif channel not in self.since:
            self.since[channel] = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        failing = GaugeMetricFamily(
            "receiver_channel_failing_seconds",
            "How long a channel's sends from this replica have failed, since the first failure after its last "
            "success, by channel (no series while it works, or once nothing waits for it).",
            labels=["channel"],
        )
        now = time.monotonic()
        for name, since in sorted(self.since.items()):
            failing.add_metric([name], now - since)
        yield failing


class _Outcome:
    """A ``receiver_deliveries_total`` child that also tells the channel's failure clock."""

    __slots__ = ("_channel", "_counter", "_failures", "_sent")

    def __init__(self, counter: Counter, failures: _ChannelFailures, channel: str, result: str) -> None:
        self._counter = counter
        self._failures = failures
        self._channel = channel
        self._sent = result == "sent"

    def inc(self, amount: float = 1) -> None:
        self._counter.inc(amount)
        self._failures.outcome(self._channel, self._sent)


class _Outcomes:
    """``delivered(channel, result)``: the outcome's counter child, looked up once (see Children)."""

    def __init__(self, metric: Counter, failures: _ChannelFailures) -> None:
        self._children = Children(metric)
        self._failures = failures
        self._outcomes: dict[tuple[str, str], _Outcome] = {}

    def __call__(self, channel: str, result: str) -> _Outcome:
        outcome = self._outcomes.get((channel, result))
        if outcome is None:
            outcome = self._outcomes[channel, result] = _Outcome(
                self._children(channel, result), self._failures, channel, result
            )
        return outcome


class Metrics:
    """Every metric receiver exports.

    Args:
        registry: where the metrics are registered (one per app, so tests need no reset).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.webhooks_received = Counter(
            "receiver_webhooks_received_total",
            "Webhooks and robot-log entries accepted, by source, event type and status (accepted/duplicate).",
            ["source", "type", "status"],
            registry=registry,
        )
        self.webhooks_refused = Counter(
            "receiver_webhooks_refused_total",
            "Requests refused, by source and reason (signature_mismatch, invalid_json, body_too_large...).",
            ["source", "reason"],
            registry=registry,
        )
        self.events_processed = Counter(
            "receiver_events_processed_total",
            "Stored events processed, by outcome (matched, unmatched, unparsed, unknown_type, silent).",
            ["outcome"],
            registry=registry,
        )
        self.rules_matched = Counter(
            "receiver_rules_matched_total", "Events matched, by rule.", ["rule"], registry=registry
        )
        self.deliveries = Counter(
            "receiver_deliveries_total",
            "Delivery attempts, by channel and result (sent, failed, dead).",
            ["channel", "result"],
            registry=registry,
        )
        self.delivery_latency = Histogram(
            "receiver_notification_latency_seconds",
            "Time from the webhook's receipt to the channel accepting its notification.",
            ["channel"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.handler_duration = Histogram(
            "receiver_http_handler_seconds",
            "Time the webhook and log handlers took, by route.",
            ["route"],
            buckets=_HANDLER_BUCKETS,
            registry=registry,
        )
        # The children of the hot paths, looked up once (see Children).
        self.webhook_duration = self.handler_duration.labels("webhook")
        self.received = Children(self.webhooks_received)
        self._failing = _ChannelFailures()
        registry.register(self._failing)
        self.delivered = _Outcomes(self.deliveries, self._failing)
        self.latency = Children(self.delivery_latency)
        self.processed = Children(self.events_processed)
        self.matched = Children(self.rules_matched)
        self.rules_loaded = Gauge("receiver_rules_loaded", "Rules in force.", registry=registry)
        self.rules_reload_failures = Counter(
            "receiver_rules_reload_failures_total", "Reloads refused because the file had problems.", registry=registry
        )
        self.enrichments = Counter(
            "receiver_enrichments_total",
            "Events whose held messages asked Orchestrator for details (enrich:), by outcome: "
            "details, cached, unavailable (an error named in the message), timeout.",
            ["outcome"],
            registry=registry,
        )
        self.notifications_suppressed = Counter(
            "receiver_notifications_suppressed_total",
            "Notifications a matched rule did not send, by noise-control reason (silenced, throttled...).",
            ["reason"],
            registry=registry,
        )
        self.processing_delay = Histogram(
            "receiver_event_processing_delay_seconds",
            "Time from an event's receipt to the commit of its processing (its deliveries written).",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.info = Info("receiver", "The running receiver.", registry=registry)
        self._queues = _QueueCollector()
        registry.register(self._queues)
        self.store_pruned = Counter(
            "receiver_store_pruned_rows_total",
            "Rows retention deleted, by table (inbox, deliveries, attempts, noise_log, silences).",
            ["table"],
            registry=registry,
        )
        self._store = _StoreCollector()
        registry.register(self._store)
        self.alert_actions = Counter(
            "receiver_alert_actions_total",
            "Actions people took on alerts in this process, by action (acknowledged, resolved, silenced, "
            "retried) and where (link, api, ui).",
            ["action", "via"],
            registry=registry,
        )
        self.alert_reminders = Counter(
            "receiver_alert_reminders_total",
            "Reminders sent for firing alerts (repeat:), by rule.",
            ["rule"],
            registry=registry,
        )
        self.alert_escalations = Counter(
            "receiver_alert_escalations_total",
            "Escalation steps sent for firing alerts (escalate:), by rule.",
            ["rule"],
            registry=registry,
        )
        self.notifications_held = Counter(
            "receiver_notifications_held_total",
            "Notifications a channel budget held for its digest, by channel.",
            ["channel"],
            registry=registry,
        )
        self.quiet_source_alerts = Counter(
            "receiver_quiet_source_alerts_total",
            "Alerts that a source went quiet (sources.<name>.expect), by source.",
            ["source"],
            registry=registry,
        )

    def set_queues(self, snapshot: QueueSnapshot | None) -> None:
        """Publish the inbox and outbox as read from the store; None when the store could not be read."""
        # A stale snapshot would look healthy while the store is down: report none instead.
        self._queues.store_up = 0.0 if snapshot is None else 1.0
        self._queues.snapshot = snapshot
        if snapshot is not None:
            # Nothing waits for the channel (sent by another replica, or dead): this one's failures are over.
            for name, queue in snapshot.channels.items():
                if not queue.pending:
                    self._failing.since.pop(name, None)

    def set_store_writable(self, writable: bool) -> None:
        """Publish whether the store takes writes (a store read but not written refuses every webhook)."""
        self._queues.writable = writable

    def set_store_size(self, rows: Mapping[str, int] | None, size_bytes: int = 0) -> None:
        """Publish the store's rows per table and its size; ``rows`` None leaves both out (store unreadable)."""
        self._store.rows = rows
        self._store.size_bytes = size_bytes
