"""What the metrics say about alerts, budgets and quiet sources, read from the real worker on a real
store (SQLite, and PostgreSQL when RECEIVER_TEST_DATABASE_URL is set): open alerts by state,
reminders and escalations sent (not those an acknowledgement stopped), notifications held by a
channel budget, quiet-source alerts; and a notification whose alert was resolved by hand while its
batch was processed opens a new alert instead of vanishing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from noise_support import Harness, payload
from prometheus_client import CollectorRegistry

from receiver.admin import alerting, audit
from receiver.metrics import Metrics
from receiver.store import AlertRow, Store

pytestmark = pytest.mark.anyio

MIN = 60.0
HOUR = 3600.0

RULES = """
channels:
  ops: "log://"
  oncall-sms: "log://"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    recover: {match: {type: job.completed}, key: "{{ process }}"}
    repeat: 1h
    escalate:
      - {after: 15m, notify: [oncall-sms]}
"""


def _store(h: Harness) -> Store:
    assert h.store is not None
    return h.store


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


class TestOpenAlertsByState:
    async def test_the_snapshot_counts_firing_and_acknowledged_and_the_oldest_firing_age(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """Three processes fault; one is acknowledged, one resolved: 1 firing, 1 acknowledged, aged from its opening."""
        h = await Harness(tmp_path, RULES, store_url).open()
        try:
            empty = await audit.queue_snapshot(_store(h), now=h.now)
            assert {"firing": 0, "acknowledged": 0} == dict(empty.alerts)
            assert 0.0 == empty.oldest_firing_age
            for n, process in enumerate(("Invoices", "Payroll", "Orders")):
                await h.post_at(n * MIN, payload("job.faulted.json", Job__Release__ProcessKey=process))
            by_process = {a.process: a for a in await _store(h).list_alerts()}
            await _store(h).acknowledge_alert(by_process["Invoices"].id, actor="ana", via="api", now=h.now)
            await _store(h).resolve_alert(by_process["Payroll"].id, actor="ana", via="api", now=h.now)
            await h.advance(10 * MIN)
            snap = await audit.queue_snapshot(_store(h), now=h.now)
            assert {"firing": 1, "acknowledged": 1} == dict(snap.alerts)
            assert 8 * MIN == snap.oldest_firing_age  # Orders opened at 2 min

            metrics = Metrics(CollectorRegistry())
            metrics.set_queues(snap)
            assert 1 == _value(metrics, "receiver_alerts", state="firing")
            assert 1 == _value(metrics, "receiver_alerts", state="acknowledged")
            assert 8 * MIN == _value(metrics, "receiver_alert_oldest_firing_age_seconds")
        finally:
            await h.close()


class TestTimersCounted:
    async def test_reminders_and_escalations_are_counted_only_when_sent(self, tmp_path: Path, store_url: str) -> None:
        """Invoices: escalated at 15 min, reminded at 1 h and 2 h. Payroll, acknowledged at once: nothing counted."""
        metrics = Metrics(CollectorRegistry())
        h = await Harness(tmp_path, RULES, store_url, metrics=metrics).open()
        try:
            await h.post(payload("job.faulted.json"))
            await h.post(payload("job.faulted.json", Job__Release__ProcessKey="Payroll"))
            payroll = next(a for a in await _store(h).list_alerts() if a.process == "Payroll")
            await _store(h).acknowledge_alert(payroll.id, actor="ana", via="api", now=h.now)
            await h.advance(2 * HOUR + MIN)
            sent = [s.rule for s in await h.sent()]
            assert 2 == sent.count("faults:reminder 1") + sent.count("faults:reminder 2")
            assert 1 == _value(metrics, "receiver_alert_escalations_total", rule="faults")
            assert 2 == _value(metrics, "receiver_alert_reminders_total", rule="faults")
        finally:
            await h.close()


BUDGET_AND_QUIET = """
channels:
  ops: {url: "log://", budget: {max: 1, per: 1h}}
  mail: "log://"
sources:
  uipath:
    insecure: true
    expect: {every: 30m, notify: [mail]}
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
"""


class TestHeldAndQuiet:
    async def test_held_notifications_and_quiet_sources_are_counted_and_held_ones_shown_until_the_digest(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """Budget of 1: two faults of three are held (counted, and held now); the digest empties it; quiet once."""
        metrics = Metrics(CollectorRegistry())
        h = await Harness(tmp_path, BUDGET_AND_QUIET, store_url, metrics=metrics).open()
        try:
            for n, process in enumerate(("Invoices", "Payroll", "Orders")):
                await h.post_at(n * MIN, payload("job.faulted.json", Job__Release__ProcessKey=process))
            assert 2 == _value(metrics, "receiver_notifications_held_total", channel="ops")
            assert {"ops": 2} == await alerting.held_by_channel(_store(h), h.ruleset)
            await h.advance(HOUR + MIN)  # the digest went out; the source is quiet since 2 min
            assert ["faults", "expect:uipath", "budget:ops"] == [s.rule for s in await h.sent()]
            assert {} == await alerting.held_by_channel(_store(h), h.ruleset)
            assert 1 == _value(metrics, "receiver_quiet_source_alerts_total", source="uipath")
            assert 2 == _value(metrics, "receiver_notifications_held_total", channel="ops")
        finally:
            await h.close()


class TestResolvedWhileProcessing:
    async def test_a_notification_for_an_alert_resolved_meanwhile_opens_a_new_one(
        self, tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Resolved by hand between the batch's read and its commit: a new firing alert, with its reminders."""
        h = await Harness(tmp_path, RULES, store_url).open()
        try:
            await h.post(payload("job.faulted.json"))
            (first,) = await _store(h).list_alerts()
            store = _store(h)
            read = store.open_alerts

            async def resolved_meanwhile(keys: object) -> list[AlertRow]:
                found = await read(keys)  # type: ignore[arg-type]
                for alert in found:
                    await store.resolve_alert(alert.id, actor="ana", via="ui", now=h.now)
                return found

            monkeypatch.setattr(store, "open_alerts", resolved_meanwhile)
            second_event = await h.post_at(5 * MIN, payload("job.faulted.json"))
            monkeypatch.undo()

            alerts = await _store(h).list_alerts()
            assert ["firing", "resolved"] == [a.state for a in alerts]
            new, old = alerts
            assert (first.id, "by_hand") == (old.id, old.resolution)
            assert (second_event, 1, h.at(5 * MIN)) == (new.inbox_id, new.count, new.opened_at)
            assert h.at(5 * MIN + 15 * MIN) == new.due_at  # its escalation runs
            trail = await _store(h).alert_trail(new.id)
            assert ["opened"] == [e.event.action for e in trail]
            assert f"while alert {first.id} was being resolved" in trail[0].event.detail
            await h.advance(20 * MIN)
            assert "faults:escalation 1" in [s.rule for s in await h.sent()]
        finally:
            await h.close()

    async def test_without_the_race_a_notification_counts_on_the_open_alert(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """The control: the same two faults with nothing resolved in between make one alert of count 2."""
        h = await Harness(tmp_path, RULES, store_url).open()
        try:
            await h.post(payload("job.faulted.json"))
            await h.post_at(5 * MIN, payload("job.faulted.json"))
            (alert,) = await _store(h).list_alerts()
            assert ("firing", 2) == (alert.state, alert.count)
        finally:
            await h.close()
