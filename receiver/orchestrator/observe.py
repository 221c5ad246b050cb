"""What a connection reports to metrics: one count per request by outcome, and the circuit's state."""

from __future__ import annotations

from typing import Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["NullObserver", "Observer", "Outcome", "PrometheusObserver"]

Outcome = Literal[
    "ok", "client_error", "unauthorized", "rate_limited", "server_error", "timeout", "network_error", "circuit_open"
]


class Observer(Protocol):
    """The seam between the client and the metrics."""

    def request(self, source: str, outcome: Outcome) -> None:
        """Count one request (or one refused by the open circuit)."""

    def circuit(self, source: str, is_open: bool) -> None:
        """Record that the circuit of ``source`` opened or closed."""


class NullObserver:
    """Reports nothing (the CLI)."""

    def request(self, source: str, outcome: Outcome) -> None:
        """Ignore the request."""

    def circuit(self, source: str, is_open: bool) -> None:
        """Ignore the state."""


class PrometheusObserver:
    """``receiver_orchestrator_requests_total{source,outcome}`` and ``receiver_orchestrator_circuit_open{source}``.

    Args:
        registry: the app's registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "receiver_orchestrator_requests_total",
            "Requests to Orchestrator (API and token endpoint) by outcome; circuit_open: refused without calling.",
            ["source", "outcome"],
            registry=registry,
        )
        self.circuit_open = Gauge(
            "receiver_orchestrator_circuit_open",
            "1 while the circuit of the source's Orchestrator connection is open (no calls are made).",
            ["source"],
            registry=registry,
        )

    def request(self, source: str, outcome: Outcome) -> None:
        """Count one request."""
        self.requests.labels(source, outcome).inc()

    def circuit(self, source: str, is_open: bool) -> None:
        """Set the circuit gauge."""
        self.circuit_open.labels(source).set(1 if is_open else 0)
