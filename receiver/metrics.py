"""Prometheus metrics on a registry of the app's own (alertmanager's NewMetrics pattern).

Labels stay low-cardinality: sources, rule and channel names come from the operator's own
files; event types are the known Orchestrator types or ``unknown``; never event ids or
process names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


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
        self.rules_loaded = Gauge("receiver_rules_loaded", "Rules in force.", registry=registry)
        self.rules_reload_failures = Counter(
            "receiver_rules_reload_failures_total", "Reloads refused because the file had problems.", registry=registry
        )
