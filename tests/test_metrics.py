"""Prometheus metrics: conventions, what the pipeline counts, and the queue gauges read at scrape time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from support import fresh, wait_until

from receiver import __version__
from receiver.delivery.notifier import SendResult
from receiver.errors import StoreError
from receiver.http.app import create_app
from receiver.metrics import ChannelQueue, Metrics, QueueSnapshot
from receiver.render import Notification
from receiver.settings import Settings
from receiver.signature import sign

SECRET = "metrics-secret"
ADMIN = "metrics-admin"

RULES = """
channels:
  ops: "log://"
  stuck: "log://"
  broken:
    url: "log://"
    max_attempts: 1
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops, broken]
  - name: completed
    match: {type: job.completed}
    notify: [stuck]
"""


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page, by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(page: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return page.get((name, frozenset(labels.items())))


class TestConventions:
    def test_names_units_and_labels(self) -> None:
        """Every metric is receiver_*, counters end in _total, durations in _seconds, no per-event labels."""
        registry = CollectorRegistry(auto_describe=True)
        metrics = Metrics(registry)
        metrics.set_queues(QueueSnapshot(channels={"ops": ChannelQueue(pending=1)}))
        families = list(registry.collect())
        assert families
        for family in families:
            assert all(s.name.startswith("receiver_") for s in family.samples), family.name
            if family.type == "counter":
                assert not family.name.endswith("_total"), "prometheus_client adds _total to the samples"
                assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
            if family.type == "histogram":
                assert family.name.endswith("_seconds"), family.name
        labels = {label for family in families for s in family.samples for label in s.labels}
        assert not labels & {"event_id", "process", "robot", "inbox_id", "delivery_id", "machine", "job"}

    def test_queue_gauges_follow_the_snapshot(self) -> None:
        """A channel missing from the next snapshot disappears; a failed store read drops the gauges."""
        registry = CollectorRegistry(auto_describe=True)
        metrics = Metrics(registry)
        metrics.set_queues(
            QueueSnapshot(
                inbox_depth=3,
                inbox_oldest_age=1.5,
                channels={"a": ChannelQueue(2, 1, 30.0), "b": ChannelQueue(0, 4, 0.0)},
            )
        )
        from prometheus_client import generate_latest

        page = samples(generate_latest(registry).decode())
        assert 3 == value(page, "receiver_inbox_depth")
        assert 1.5 == value(page, "receiver_inbox_oldest_age_seconds")
        assert (2, 1, 30.0) == (
            value(page, "receiver_outbox_depth", channel="a"),
            value(page, "receiver_outbox_dead", channel="a"),
            value(page, "receiver_outbox_oldest_due_age_seconds", channel="a"),
        )
        assert 1 == value(page, "receiver_store_up")
        metrics.set_queues(QueueSnapshot(channels={"b": ChannelQueue(0, 4, 0.0)}))
        page = samples(generate_latest(registry).decode())
        assert value(page, "receiver_outbox_depth", channel="a") is None
        assert 4 == value(page, "receiver_outbox_dead", channel="b")
        metrics.set_queues(None)
        page = samples(generate_latest(registry).decode())
        assert 0 == value(page, "receiver_store_up")
        assert value(page, "receiver_outbox_dead", channel="b") is None


class ChannelNotifier:
    """Answers by channel URL: each channel gets its own log:// URL with a marker query."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.released = False  # set at the end of the test: the stuck send ends, shutdown need not wait it out

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109 - the Notifier protocol
        self.calls.append(url)
        if "stuck" in url:
            for _ in range(36_000):  # bounded: an hour
                if self.released:
                    break
                await asyncio.sleep(0.1)
        if "broken" in url:
            return SendResult(status="failed", reason="error=500", elapsed=0.0, recoverable=True)
        return SendResult(status="sent", reason=None, elapsed=0.0, recoverable=True)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        RULES.replace('ops: "log://"', 'ops: "log://?x=ops"')
        .replace('stuck: "log://"', 'stuck: "log://?x=stuck"')
        .replace('url: "log://"', 'url: "log://?x=broken"')
    )
    settings = Settings(
        rules=rules,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret=SECRET,
        admin_token=ADMIN,
        watch_rules=False,
        poll_seconds=0.05,
    )
    notifier = ChannelNotifier()
    with TestClient(create_app(settings, notifier=notifier), raise_server_exceptions=False) as test_client:
        yield test_client
        notifier.released = True


def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reply = client.get("/metrics")
    assert 200 == reply.status_code
    assert reply.headers["content-type"].startswith("text/plain")
    return samples(reply.text)


def post(client: TestClient, name: str) -> None:
    body = fresh(name)
    assert (
        202
        == client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)}).status_code
    )


class TestScrape:
    def test_pipeline_counters(self, client: TestClient) -> None:
        """Received, refused, processed, matched, sent, dead, and the latency histograms, after one event."""
        post(client, "job.faulted.json")
        client.post("/webhooks/uipath", content=b"{}", headers={"X-UiPath-Signature": "bad"})
        assert wait_until(
            lambda: value(scrape(client), "receiver_deliveries_total", channel="broken", result="dead") == 1
        )
        page = scrape(client)
        assert 1 == value(
            page, "receiver_webhooks_received_total", source="uipath", type="job.faulted", status="accepted"
        )
        assert 1 == value(page, "receiver_webhooks_refused_total", source="uipath", reason="signature_malformed")
        assert 1 == value(page, "receiver_events_processed_total", outcome="matched")
        assert 1 == value(page, "receiver_rules_matched_total", rule="faults")
        assert 1 == value(page, "receiver_deliveries_total", channel="ops", result="sent")
        assert 1 == value(page, "receiver_notification_latency_seconds_count", channel="ops")
        assert 1 == value(page, "receiver_event_processing_delay_seconds_count")
        assert 2 == value(page, "receiver_http_handler_seconds_count", route="webhook")
        assert 1 == value(page, "receiver_info", version=__version__)
        assert 2 == value(page, "receiver_rules_loaded")

    def test_outbox_depth_dead_and_oldest_due_age(self, client: TestClient) -> None:
        """A delivery stuck in flight shows as depth with a growing due age; a dead one as dead, per channel."""
        post(client, "job.completed.json")
        post(client, "job.faulted.json")
        assert wait_until(lambda: value(scrape(client), "receiver_outbox_dead", channel="broken") == 1)
        time.sleep(0.3)
        page = scrape(client)
        assert 1 == value(page, "receiver_outbox_depth", channel="stuck")
        assert (value(page, "receiver_outbox_oldest_due_age_seconds", channel="stuck") or 0) >= 0.3
        assert 0 == value(page, "receiver_outbox_depth", channel="broken")
        assert (0, 0) == (
            value(page, "receiver_outbox_depth", channel="ops"),
            value(page, "receiver_outbox_dead", channel="ops"),
        )
        assert 0 == value(page, "receiver_inbox_depth")
        assert 1 == value(page, "receiver_store_up")

    def test_suppressed_by_reason(self, client: TestClient) -> None:
        """A notification held back by a silence is counted under its reason, not as sent."""
        reply = client.post(
            "/api/silences",
            json={"matchers": "type=job.faulted", "comment": "maintenance", "created_by": "ops", "for": "1h"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert 201 == reply.status_code, reply.text
        post(client, "job.faulted.json")
        assert wait_until(
            lambda: value(scrape(client), "receiver_notifications_suppressed_total", reason="silenced") == 1
        )
        page = scrape(client)
        assert value(page, "receiver_deliveries_total", channel="ops", result="sent") is None
        assert 1 == value(page, "receiver_rules_matched_total", rule="faults")

    def test_store_down_is_reported_not_raised(self, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
        """When the store cannot be read, /metrics still answers, with receiver_store_up 0."""
        store = client.app.state.runtime.store  # type: ignore[attr-defined]

        async def broken(**_: Any) -> None:
            raise StoreError("database is locked")

        monkeypatch.setattr(store, "queue_stats", broken)
        page = scrape(client)
        assert 0 == value(page, "receiver_store_up")
        assert value(page, "receiver_inbox_depth") is None


class Switchable:
    """A channel that fails (recoverably) until told to accept."""

    def __init__(self) -> None:
        self.up = False

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109 - the Notifier protocol
        if self.up:
            return SendResult(status="sent", reason=None, elapsed=0.0, recoverable=True)
        return SendResult(status="failed", reason="error=503", elapsed=0.0, recoverable=True)


def test_a_channel_that_keeps_failing_shows_how_long_it_has_failed(tmp_path: Path) -> None:
    """receiver_channel_failing_seconds grows while a channel fails and is gone once it accepts again.

    The outbox's due age cannot show a channel that is down: a failed delivery waits for its retry,
    not due meanwhile, so the age starts over after every attempt and ReceiverOutboxStale never
    fired; a channel could fail for the whole max_age (24 h) before anything showed but a counter.
    """
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "channels:\n  down: {url: 'log://', max_attempts: 100}\n"
        "rules:\n  - name: faults\n    match: {type: job.faulted}\n    notify: [down]\n"
    )
    settings = Settings(
        rules=rules,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret=SECRET,
        watch_rules=False,
        poll_seconds=0.05,
        retry_initial_seconds=0.4,
        retry_max_seconds=0.4,
    )
    channel = Switchable()
    with TestClient(create_app(settings, notifier=channel)) as client:
        post(client, "job.faulted.json")
        failing = lambda: value(scrape(client), "receiver_channel_failing_seconds", channel="down") or 0  # noqa: E731
        assert wait_until(lambda: failing() > 1.0)
        page = scrape(client)
        assert 1 == value(page, "receiver_outbox_depth", channel="down")
        assert (value(page, "receiver_outbox_oldest_due_age_seconds", channel="down") or 0) < 1.0  # the gap
        channel.up = True
        assert wait_until(lambda: value(scrape(client), "receiver_outbox_depth", channel="down") == 0)
        assert value(scrape(client), "receiver_channel_failing_seconds", channel="down") is None


def test_a_failure_is_over_once_nothing_waits_for_the_channel() -> None:
    """A replica whose failed delivery another replica then sent stops reporting the channel as failing."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.delivered("hook", "failed").inc()
    metrics.set_queues(QueueSnapshot(inbox_depth=0, inbox_oldest_age=0.0, channels={"hook": ChannelQueue(pending=1)}))
    assert failing_seconds(registry) is not None
    metrics.set_queues(QueueSnapshot(inbox_depth=0, inbox_oldest_age=0.0, channels={"hook": ChannelQueue(pending=0)}))
    assert failing_seconds(registry) is None


def failing_seconds(registry: CollectorRegistry) -> float | None:
    from prometheus_client import generate_latest

    return value(samples(generate_latest(registry).decode()), "receiver_channel_failing_seconds", channel="hook")
