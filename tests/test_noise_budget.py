"""Channel budgets and quiet sources, end to end: the real worker on a real store with a fake clock, a restart in
the middle of each window or watch. Every scenario runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from noise_support import T0, Harness, payload

from receiver.errors import RulesError
from receiver.noise.channel_budget import COUNTED, SHOWN, BudgetState, render_budget_digest
from receiver.noise.decision import Emitted
from receiver.pipeline.worker import InboxWorker
from receiver.render import Notification
from receiver.rules import load_rules
from receiver.store import Store, open_store

pytestmark = pytest.mark.anyio


def store_of(h: Harness) -> Store:
    assert h.store is not None
    return h.store


BUDGET = """
channels:
  ops: {url: "log://", budget: {max: 3, per: 1h}}
  mail: "log://"
rules:
  - name: robot-errors
    match: {type: robot.log, level: {gte: Error}}
    notify: [ops]
  - name: faults
    match: {type: job.faulted}
    notify: [ops, mail]
"""


def robot_error(robot: str) -> dict[str, object]:
    return payload("robot-log-error.json", RobotName=robot)


class TestChannelBudget:
    async def test_past_the_budget_alerts_are_held_and_sent_as_one_digest_at_the_windows_end(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """3 per hour go out; the 6 after are held (each with its reason), then one digest with their counts."""
        h = await Harness(tmp_path, BUDGET, store_url).open()
        try:
            for n in range(4):
                await h.post_at(60 * n, robot_error("BOT07"), type_="robot.log")
            held_fault = await h.post_at(300, payload("job.faulted.json"))
            await h.restart()  # in the middle of the window: the held ones and the timer are in the store
            for n in range(3):
                await h.post_at(600 + 60 * n, robot_error("BOT07"), type_="robot.log")
            await h.post_at(900, robot_error("BOT09"), type_="robot.log")
            sent = await h.sent()
            assert [(0, "robot-errors"), (60, "robot-errors"), (120, "robot-errors"), (300, "faults")] == [
                (s.at, s.rule) for s in sent
            ]
            assert "mail" == sent[3].channel  # the channel without a budget still got the fault at once
            held = [a for a in await h.actions(held_fault) if a[1] == "held"]
            assert [("faults", "held")] == held
            reason = next(d["reason"] for d in (await h.outcome(held_fault))["noise"] if d["action"] == "held")
            assert reason.startswith("held by channel budget: 'ops' sent its 3 notification(s) of the 1h window")

            await h.advance(3599)
            assert 4 == len(await h.sent()), "the digest came before the window's end"
            await h.advance(3600)
            digest = (await h.sent())[4:]
            assert [(3600, "budget:ops", "ops")] == [(s.at, s.rule, s.channel) for s in digest]
            title, body = digest[0].title, digest[0].body
            assert title.startswith("6 more alerts: 4 robot-errors on BOT07, 1 "), title
            assert "- 4 robot-errors on BOT07" in body
            assert "- 1 faults on FIN-UNATT-01" in body, body
            assert "- 1 robot-errors on BOT09" in body

            # A new window starts with the next alert: it goes out at once.
            await h.post_at(4000, robot_error("BOT07"), type_="robot.log")
            assert (4000 - 0, "robot-errors") == ((await h.sent())[-1].at, (await h.sent())[-1].rule)
            log = await store_of(h).list_noise_log(limit=100)
            assert 6 == sum(1 for row in log if row.entry.action == "held")
        finally:
            await h.close()

    async def test_the_digest_is_sent_at_the_windows_end_even_when_the_restart_came_after_it(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """Down over the window's end: the digest goes out once the worker runs again, and only once."""
        h = await Harness(tmp_path, BUDGET.replace("max: 3", "max: 1"), store_url).open()
        try:
            await h.post_at(0, robot_error("BOT07"), type_="robot.log")
            await h.post_at(10, robot_error("BOT07"), type_="robot.log")
            await h.close()
            h.now = T0 + 7200  # the process was down from 10 s to 2 h
            await h.open()
            await h.work()
            await h.restart()
            await h.work()
            sent = await h.sent()
            assert [(0, "robot-errors"), (7200, "budget:ops")] == [(s.at, s.rule) for s in sent]
            assert sent[1].title.startswith("1 more alert: 1 robot-errors on")
        finally:
            await h.close()


QUIET = """
timezone: UTC
channels:
  ops: "log://"
sources:
  uipath:
    insecure: true
    expect: {every: 30m, during: "mon-fri 07:00-19:00", timezone: Europe/Berlin, notify: [ops]}
rules: []
"""
# T0 is Monday 2025-12-29 09:20 UTC, 10:20 in Berlin.


class TestQuietSource:
    async def test_one_alert_when_quiet_within_the_hours_and_one_when_events_flow_again(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """30 minutes of working hours without an event: one alert, no more; the next event says it is back."""
        h = await Harness(tmp_path, QUIET, store_url).open()
        try:
            first = await h.post_at(0, payload("job.started.json"))
            await h.post_at(1500, payload("job.started.json"))  # 25 min later: the watch moves
            await h.restart()
            await h.advance(1500 + 1799)
            assert [] == await h.sent()
            await h.advance(1500 + 1800)
            await h.advance(5 * 3600)  # still nothing: no second alert
            sent = await h.sent()
            assert [(3300, "expect:uipath", "ops")] == [(s.at, s.rule, s.channel) for s in sent]
            assert sent[0].title.startswith("Source uipath is quiet: no event since")
            assert first != sent[0].inbox_id  # about the last event before the silence
            back = await h.post_at(5 * 3600 + 60, payload("job.started.json"))
            sent = await h.sent()
            assert [("expect:uipath", None), ("expect:uipath:back", back)] == [
                (s.rule, s.inbox_id if s.rule.endswith("back") else None) for s in sent
            ]
            assert "Source uipath sends events again" == sent[1].title
            assert ("expect:uipath:back", "back") in await h.actions(back)
        finally:
            await h.close()

    async def test_time_outside_the_hours_does_not_count(self, tmp_path: Path, store_url: str) -> None:
        """An event at 18:50 Berlin on Friday: the alert comes Monday 07:20, after 30 minutes of working hours."""
        h = await Harness(tmp_path, QUIET, store_url).open()
        friday_1850 = 4 * 86400 + 8.5 * 3600  # T0 (Mon 10:20 Berlin) + 4 days 8h30 = Fri 18:50
        monday_0720 = 7 * 86400 - 3 * 3600  # T0 + 7 days is Mon 10:20; 3 hours earlier
        try:
            await h.post_at(friday_1850 - 600, payload("job.started.json"))  # 18:40: the watch starts here
            await h.post_at(friday_1850, payload("job.started.json"))
            await h.restart()
            await h.advance(monday_0720 - 1)
            assert [] == await h.sent()
            await h.advance(monday_0720 + 60)
            assert [monday_0720] == [s.at for s in await h.sent()]
        finally:
            await h.close()

    async def test_a_source_quiet_before_expect_was_added_is_watched_from_its_last_stored_event(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """Events stored before the watch existed: it starts from the inbox's latest event of the source."""
        without = QUIET.replace(
            '    expect: {every: 30m, during: "mon-fri 07:00-19:00", timezone: Europe/Berlin, notify: [ops]}\n', ""
        )
        assert "expect" not in without
        h = await Harness(tmp_path, without, store_url).open()
        try:
            await h.post_at(0, payload("job.started.json"))
            last = await h.post_at(60, payload("job.started.json"))
            await h.advance(600)
            (tmp_path / "rules.yaml").write_text(QUIET)
            h.ruleset = load_rules(tmp_path / "rules.yaml", environ={})  # expect: added by a reload
            await h.advance(1860)
            sent = await h.sent()
            assert [(1860, "expect:uipath", last)] == [(s.at, s.rule, s.inbox_id) for s in sent]
        finally:
            await h.close()


async def test_two_replicas_alert_once_for_a_quiet_source(tmp_path: Path, store_url: str) -> None:
    """Both replicas run their inbox worker; the one holding the inbox lease fires the watch, once."""
    h = await Harness(tmp_path, QUIET, store_url).open()
    other = open_store(h.url)
    await other.open()
    try:
        await h.post_at(0, payload("job.started.json"))
        await h.work()
        h.now = T0 + 3600
        workers = [
            InboxWorker(store, lambda: h.ruleset, clock=lambda: h.now, lease=60, poll=0.01)
            for store in (store_of(h), other)
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        await asyncio.sleep(0.5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sent = await h.sent()
        assert [(3600, "expect:uipath")] == [(s.at, s.rule) for s in sent]
        log = await store_of(h).list_noise_log(limit=100)
        assert 1 == sum(1 for row in log if row.entry.action == "quiet")
    finally:
        await other.close()
        await h.close()


def test_a_digest_of_a_wide_flood_stays_short_and_counts_everything(tmp_path: Path) -> None:
    """200 distinct robots held: the digest lists the largest groups, sums the rest, and loses no count."""
    path = tmp_path / "rules.yaml"
    path.write_text(BUDGET)
    ruleset = load_rules(path, environ={})
    state = BudgetState(since=T0, sent=3)
    for n in range(200):
        for _ in range(1 + (n == 7) * 40):
            note = Notification("t", "b", "failure", "text")
            state = state.holding(Emitted(n + 1, "robot-errors", "ops", note, T0 + n), f"on BOT{n:03d}")
    assert 240 == state.held == sum(count for *_, count in state.counts)
    assert COUNTED == len(state.counts)  # the last pair is "other"
    digest = render_budget_digest(state, ruleset.channels["ops"], ruleset, T0 + 3600)
    assert digest.title.startswith("240 more alerts: 151 other, 41 robot-errors on BOT007, 1 "), digest.title
    assert "- 151 other" in digest.body  # pairs past the 49th are counted together
    assert "... and " in digest.body
    assert len(digest.body.splitlines()) <= SHOWN + 4


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("budget: {max: 0, per: 1h}", "budget.max: Input should be greater than or equal to 1"),
        ("budget: {max: 5}", "missing required key 'budget.per'"),
        ("budget: {max: 5, per: 1h, window: 2h}", "unknown key 'window'"),
    ],
)
def test_a_broken_budget_is_rejected(tmp_path: Path, block: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(f"channels:\n  ops: {{url: 'log://', {block}}}\nrules: []\n")
    with pytest.raises(RulesError) as info:
        load_rules(path, environ={})
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{every: 30m, notify: [nope]}", "source 'uipath': expect: unknown channel 'nope'"),
        ("{every: 30m, during: 'mon-fri 7-19', notify: [ops]}", "expect.during:"),
        ("{every: 30m, during: 'someday 07:00-19:00', notify: [ops]}", "'someday' is not a day"),
        ("{every: 30m, timezone: Mars/Base, notify: [ops]}", "expect.timezone: unknown time zone 'Mars/Base'"),
        ("{notify: [ops]}", "missing required key 'expect.every'"),
    ],
)
def test_a_broken_expect_is_rejected(tmp_path: Path, block: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(f"channels:\n  ops: log://\nsources:\n  uipath:\n    expect: {block}\nrules: []\n")
    with pytest.raises(RulesError) as info:
        load_rules(path, environ={})
    assert message in str(info.value)
