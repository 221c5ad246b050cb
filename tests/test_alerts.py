"""Alerts end to end: opened by a notification, reminded (``repeat``) and escalated (``escalate``)
on time while unacknowledged, stopped by an acknowledgement or a recovery, resolved by expiry.
The real worker on a real store (SQLite, and PostgreSQL when RECEIVER_TEST_DATABASE_URL is set),
a fake clock, and a restart (store and worker closed and opened again) in the middle.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from noise_support import Harness, payload

from receiver.actionlink import LinkSigner
from receiver.pipeline.alerts import Links
from receiver.store import Store

pytestmark = pytest.mark.anyio


RULES = """
channels:
  ops: "log://"
  oncall-sms: "log://"
  head-of-rpa: "log://"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    recover: {match: {type: job.completed}, key: "{{ process }}"}
    repeat: 1h
    escalate:
      - {after: 15m, notify: [oncall-sms]}
      - {after: 1h, notify: [head-of-rpa]}
"""

MIN = 60.0
HOUR = 3600.0


async def _open(tmp_path: Path, url: str, links: Links | None = None) -> Harness:
    return await Harness(tmp_path, RULES, url, links=links).open()


def _store(h: Harness) -> Store:
    assert h.store is not None
    return h.store


async def _only_alert(h: Harness) -> str:
    alerts = await _store(h).list_alerts()
    assert 1 == len(alerts)
    return alerts[0].id


class TestReminderAndEscalation:
    async def test_an_unacknowledged_alert_escalates_and_reminds_on_time_across_a_restart(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """15 min: the on-call SMS; 1 h: a reminder to ops and the head of RPA; 2 h: another reminder."""
        h = await _open(tmp_path, store_url)
        try:
            await h.post(payload("job.faulted.json"))
            await h.advance(20 * MIN)
            await h.restart()
            await h.advance(2 * HOUR + 10 * MIN)
            sent = [(s.at, s.rule, s.channel) for s in await h.sent()]
            assert [
                (0.0, "faults", "ops"),
                (15 * MIN, "faults:escalation 1", "oncall-sms"),
                (HOUR, "faults:reminder 1", "ops"),
                (HOUR, "faults:escalation 2", "head-of-rpa"),
                (2 * HOUR, "faults:reminder 2", "ops"),
            ] == sent
            alert = (await _store(h).list_alerts())[0]
            assert ("firing", 2, 2) == (alert.state, alert.reminders, alert.escalations)
            trail = [e.event.action for e in await _store(h).alert_trail(alert.id)]
            assert ["opened", "escalated", "reminded", "escalated", "reminded"] == trail
            reminder = (await h.sent())[2]
            assert reminder.title.startswith("Reminder: ")
            assert "not acknowledged" in reminder.body
        finally:
            await h.close()

    async def test_a_new_notification_restarts_the_reminder_interval(self, tmp_path: Path, store_url: str) -> None:
        """A fault notified again at 40 min moves the next reminder to 1 h 40 min."""
        h = await _open(tmp_path, store_url)
        try:
            await h.post(payload("job.faulted.json"))
            await h.post_at(40 * MIN, payload("job.faulted.json"))
            await h.advance(HOUR + 50 * MIN)
            reminders = [s.at for s in await h.sent() if "reminder" in s.rule]
            assert [HOUR + 40 * MIN] == reminders
            assert 2 == (await _store(h).list_alerts())[0].count
        finally:
            await h.close()


class TestStops:
    async def test_an_acknowledgement_stops_reminders_and_escalations(self, tmp_path: Path, store_url: str) -> None:
        """Acknowledged at 10 min (before any timer), across a restart: nothing more is sent."""
        h = await _open(tmp_path, store_url)
        try:
            await h.post(payload("job.faulted.json"))
            await h.advance(10 * MIN)
            alert_id = await _only_alert(h)
            acked = await _store(h).acknowledge_alert(alert_id, actor="ana", via="api", now=h.now)
            assert acked is not None
            assert ("acknowledged", "ana") == (acked.state, acked.acked_by)
            await h.restart()
            await h.advance(5 * HOUR)
            assert [("faults", "ops")] == [(s.rule, s.channel) for s in await h.sent()]
            again = await _store(h).acknowledge_alert(alert_id, actor="bob", via="api", now=h.now)
            assert again is None
        finally:
            await h.close()

    async def test_an_acknowledgement_after_the_first_escalation_stops_the_rest(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """The SMS at 15 min went; acknowledged at 30 min, the 1 h reminder and escalation never go."""
        h = await _open(tmp_path, store_url)
        try:
            await h.post(payload("job.faulted.json"))
            await h.advance(30 * MIN)
            await _store(h).acknowledge_alert(await _only_alert(h), actor="ana", via="ui", now=h.now)
            await h.advance(3 * HOUR)
            assert ["faults", "faults:escalation 1"] == [s.rule for s in await h.sent()]
        finally:
            await h.close()

    async def test_a_recovery_resolves_the_alert_and_stops_its_timers(self, tmp_path: Path, store_url: str) -> None:
        """The job completes at 20 min: recovered message, alert resolved (by recovery), no reminder."""
        h = await _open(tmp_path, store_url)
        try:
            await h.post(payload("job.faulted.json"))
            await h.advance(20 * MIN)
            await h.restart()
            await h.post_at(25 * MIN, payload("job.completed.json"))
            await h.advance(4 * HOUR)
            assert ["faults", "faults:escalation 1", "faults:recovered"] == [s.rule for s in await h.sent()]
            alert = (await _store(h).list_alerts())[0]
            assert ("resolved", "recovered") == (alert.state, alert.resolution)
            assert h.at(25 * MIN) == alert.resolved_at
        finally:
            await h.close()

    async def test_a_fault_after_the_recovery_opens_a_new_alert(self, tmp_path: Path, store_url: str) -> None:
        """Resolved alerts stay resolved; the next fault is a new alert, listed first as it is open."""
        h = await _open(tmp_path, store_url)
        try:
            await h.post(payload("job.faulted.json"))
            await h.post_at(MIN, payload("job.completed.json"))
            await h.post_at(2 * MIN, payload("job.faulted.json"))
            alerts = await _store(h).list_alerts()
            assert ["firing", "resolved"] == [a.state for a in alerts]
            assert alerts[0].id != alerts[1].id
        finally:
            await h.close()

    async def test_resolved_by_hand_it_stops_and_an_unnotified_alert_expires(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """By hand: resolved at once. Another process's alert, untouched for 24 h: resolved by expiry."""
        h = await _open(tmp_path, store_url)
        try:
            await h.post(payload("job.faulted.json"))
            first = await _only_alert(h)
            await _store(h).resolve_alert(first, actor="ana", via="cli", now=h.now)
            await h.post_at(MIN, payload("job.faulted.json", Job__Release__ProcessKey="Payroll"))
            await h.advance(25 * HOUR)
            by_id = {a.id: a for a in await _store(h).list_alerts()}
            assert "by_hand" == by_id[first].resolution
            other = next(a for a in by_id.values() if a.id != first)
            assert ("resolved", "expired") == (other.state, other.resolution)
            assert [e.event.action for e in await _store(h).alert_trail(other.id)][-1] == "expired"
        finally:
            await h.close()


class TestLinks:
    async def test_messages_carry_signed_links_that_name_their_alert(self, tmp_path: Path, store_url: str) -> None:
        """With a public URL and a key, the message and its reminders end with acknowledge and silence links."""
        signer = LinkSigner("k" * 32, ttl=24 * HOUR)
        h = await _open(tmp_path, store_url, Links("https://rx.example.com", signer))
        try:
            await h.post(payload("job.faulted.json"))
            await h.advance(16 * MIN)
            alert_id = await _only_alert(h)
            for sent in await h.sent():
                assert "Acknowledge: https://rx.example.com/act/" in sent.body
                assert "Silence this process for 1 h: https://rx.example.com/act/" in sent.body
                token = sent.body.split("Acknowledge: https://rx.example.com/act/")[1].split()[0]
                assert (alert_id, "ack") == signer.verify(token, now=h.now)[:2]
                assert "Retry the job" not in sent.body  # the rule has no `actions: [retry]`
        finally:
            await h.close()


class TestRetention:
    async def test_resolved_alerts_go_with_their_trail_open_ones_stay(self, tmp_path: Path, store_url: str) -> None:
        """Pruning deletes an alert resolved before the cutoff and its trail; an open alert stays."""
        h = await _open(tmp_path, store_url)
        try:
            await h.post(payload("job.faulted.json"))
            resolved = await _only_alert(h)
            await _store(h).resolve_alert(resolved, actor="ana", via="cli", now=h.now)
            await h.post_at(MIN, payload("job.faulted.json", Job__Release__ProcessKey="Payroll"))
            assert {"alerts": 1, "alert_events": 0} == await _store(h).prune_alerts(h.now, limit=10, dry_run=True)
            assert {"alerts": 1, "alert_events": 2} == await _store(h).prune_alerts(h.now, limit=10)
            left = await _store(h).list_alerts()
            assert ["firing"] == [a.state for a in left]
            assert [] == await _store(h).alert_trail(resolved)
            assert ["opened"] == [e.event.action for e in await _store(h).alert_trail(left[0].id)]
        finally:
            await h.close()


class TestWhatOpensAnAlert:
    async def test_a_rule_that_notifies_nobody_opens_no_alert(self, tmp_path: Path, store_url: str) -> None:
        """`notify: []` stops events without a message: no alert either; a throttled rule keeps one alert per key."""
        rules = """
channels:
  ops: "log://"
rules:
  - name: ignore-tests
    match: {type: job.faulted, process: "Test*"}
    notify: []
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    throttle: {interval: 10m, key: "{{ process }}"}
"""
        h = await Harness(tmp_path, rules, store_url).open()
        try:
            await h.post(payload("job.faulted.json", Job__Release__ProcessKey="TestRun"))
            assert [] == await _store(h).list_alerts()
            await h.post(payload("job.faulted.json"))
            await h.post_at(MIN, payload("job.faulted.json"))
            (alert,) = await _store(h).list_alerts()
            assert ("faults", "InvoiceProcessing", 2) == (alert.rule, alert.shown_key, alert.count)
            assert 1 == len(await h.sent())  # the second one was throttled, and kept the alert alive
            assert h.at(MIN) == alert.last_at
        finally:
            await h.close()
