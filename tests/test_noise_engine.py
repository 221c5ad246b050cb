"""The noise engine on its own (in-memory state): the corners the end-to-end scenarios do not reach."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from noise_support import payload

from receiver.events import Event, parse_event
from receiver.noise import AdHocSilence, Engine, Row, StateView
from receiver.noise.simulate import Simulation
from receiver.noise.state import UnknownRefError
from receiver.rules import RuleSet, load_rules

T = 1_767_000_000.0
HEAD = 'channels:\n  ops: "log://"\n  mail: "log://"\n'


def rules(tmp_path: Path, text: str) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + text)
    return load_rules(path, environ={})


def event(name: str, **patch: Any) -> Event:
    return parse_event(payload(name, **patch))


def actions(entry: Any) -> list[tuple[str | None, str]]:
    return [(d.rule, d.action) for d in entry.result.decisions]


class TestAbsence:
    RULES = """
rules:
  - name: job-too-long
    match: {type: job.started}
    notify: [ops]
    absence: {expect: {type: [job.completed, job.faulted]}, within: 30m, key: "{{ job_key }}"}
"""

    def test_a_follow_up_that_arrives_first_prevents_the_timer(self, tmp_path: Path) -> None:
        """Orchestrator may deliver job.faulted before job.started: the late start arms nothing."""
        sim = Simulation(rules(tmp_path, self.RULES))
        sim.feed(event("job.faulted.json"), "uipath", T)
        late = sim.feed(event("job.started.json"), "uipath", T + 5)
        assert [("job-too-long", "not_armed")] == actions(late)
        assert "arrived out of order" in late.result.decisions[0].reason
        assert [] == sim.run_until(T + 7200)

    def test_a_later_start_of_the_same_key_arms_again(self, tmp_path: Path) -> None:
        """A follow-up only blocks start events older than itself: a new start after it is timed again."""
        sim = Simulation(rules(tmp_path, self.RULES))
        sim.feed(event("job.started.json"), "uipath", T)
        sim.feed(event("job.faulted.json"), "uipath", T + 60)
        again = sim.feed(event("job.started.json", Timestamp="2019-03-14T10:00:00Z"), "uipath", T + 120)
        assert [("job-too-long", "armed")] == actions(again)
        [fired] = sim.run_until(T + 120 + 1800)
        assert [("job-too-long", "fired"), ("job-too-long", "notified")] == actions(fired)

    def test_a_follow_up_after_the_deadline_fires_the_timer_first(self, tmp_path: Path) -> None:
        """A timer already due when its follow-up is processed fires (it was late), then the follow-up counts."""
        ruleset = rules(tmp_path, self.RULES)
        engine = Engine(ruleset)
        view = StateView()
        started = event("job.started.json")
        plan = engine.plan(started, "uipath", inbox_id=1, at=T, body=json.dumps(payload("job.started.json")))
        engine.process(view, plan)
        done = engine.plan(event("job.completed.json", Job__Key=started.job_key), "uipath", inbox_id=2, at=T + 3600)
        result = engine.process(view, done)
        assert [("job-too-long", "fired"), ("job-too-long", "notified")] == [
            (d.rule, d.action) for d in result.decisions
        ]
        assert [1] == [e.inbox_id for e in result.emitted]
        assert [] == view.due(float("inf"))

    def test_a_timer_whose_rule_is_gone_is_dropped(self, tmp_path: Path) -> None:
        """After a reload without the rule, its armed timer fires nothing and says why."""
        ruleset = rules(tmp_path, self.RULES)
        sim = Simulation(ruleset)
        sim.feed(event("job.started.json"), "uipath", T)
        sim.engine = Engine(rules(tmp_path, "rules: []\n"))
        [entry] = sim.run_until(T + 3600)
        assert [("job-too-long", "dropped")] == actions(entry)
        assert [] == entry.result.emitted


class TestGroup:
    def test_digest_escapes_event_text_for_markdown(self, tmp_path: Path) -> None:
        """Names and error texts from events are escaped in a markdown digest, and mentions are broken."""
        sim = Simulation(
            rules(
                tmp_path,
                """
rules:
  - name: digest
    match: {type: job.faulted}
    notify: [ops]
    format: markdown
    group: {wait: 1m}
""",
            )
        )
        sim.feed(event("job.faulted.json", Job__Info="<!channel> *bold* failure"), "uipath", T)
        sim.feed(event("job.faulted.json", Job__Release__ProcessKey="Pay_Run"), "uipath", T + 10)
        [entry] = sim.run_until(T + 60)
        [note] = [e.notification for e in entry.result.emitted]
        assert "2 job.faulted events (digest)" == note.title
        assert "Pay\\_Run 1" in note.body
        assert "&lt;\u200b!channel&gt; \\*bold\\* failure" in note.body
        assert "<!channel>" not in note.body

    def test_a_group_whose_rule_stops_grouping_is_dropped(self, tmp_path: Path) -> None:
        """After a reload that removes grouping, the pending group is dropped with a decision saying so."""
        sim = Simulation(
            rules(tmp_path, "rules:\n  - {name: g, match: {type: job.faulted}, notify: [ops], group: {}}\n")
        )
        sim.feed(event("job.faulted.json"), "uipath", T)
        sim.engine = Engine(rules(tmp_path, "rules:\n  - {name: g, match: {type: job.faulted}, notify: [ops]}\n"))
        [entry] = sim.run_until(T + 60)
        assert [("g", "dropped")] == actions(entry)


class TestThrottleWithFrequency:
    def test_frequency_fires_then_throttle_holds_the_next_ones(self, tmp_path: Path) -> None:
        """Once the count is reached the rule notifies; the throttle holds the following bursts for its interval."""
        sim = Simulation(
            rules(
                tmp_path,
                """
rules:
  - name: f
    match: {type: job.faulted}
    notify: [ops]
    frequency: {count: 2, within: 5m}
    throttle: {interval: 1h}
""",
            )
        )
        got = [actions(sim.feed(event("job.faulted.json"), "uipath", T + i * 60)) for i in range(5)]
        assert [
            [("f", "counted")],
            [("f", "notified")],
            [("f", "counted")],
            [("f", "throttled")],
            [("f", "counted")],
        ] == got


class TestSilencesAndInhibitions:
    def test_silence_limited_to_rules_by_glob(self, tmp_path: Path) -> None:
        """A maintenance window with `rules:` silences those rules only."""
        ruleset = rules(
            tmp_path,
            """
silences:
  - name: always-on-mondays
    rules: ["invoice-*"]
    weekly: [{days: mon, from: "00:00", to: "24:00"}]
rules:
  - {name: invoice-faults, match: {type: job.faulted}, notify: [ops], continue: true}
  - {name: all-faults, match: {type: job.faulted}, notify: [mail]}
""",
        )
        entry = Simulation(ruleset).feed(event("job.faulted.json"), "uipath", T)  # T is a Monday
        assert [("invoice-faults", "silenced"), ("all-faults", "notified")] == actions(entry)
        assert ["mail"] == [e.channel for e in entry.result.emitted]

    def test_ad_hoc_silence_holds_only_in_its_time_range(self, tmp_path: Path) -> None:
        """An ad-hoc silence mutes matching notifications between its start and end, naming creator and comment."""
        ruleset = rules(tmp_path, "rules:\n  - {name: f, match: {type: job.faulted}, notify: [ops]}\n")
        silence = AdHocSilence(7, ("robot=FIN-*", "rule=f"), "robot rebuild", "bob", T, T + 100, T + 200)
        sim = Simulation(ruleset, [silence])
        got = [actions(sim.feed(event("job.faulted.json"), "uipath", T + dt)) for dt in (50, 150, 250)]
        assert [[("f", "notified")], [("f", "silenced")], [("f", "notified")]] == got
        reason = sim.timeline[1].result.decisions[0].reason
        assert "silenced by silence #7 (robot=FIN-* rule=f) of bob until" in reason
        assert reason.endswith(": robot rebuild")

    def test_source_clause_inhibition_until_and_duration(self, tmp_path: Path) -> None:
        """A source event starts an inhibition, an `until` event clears it, and it ends by itself after `duration`."""
        ruleset = rules(
            tmp_path,
            """
inhibit:
  - name: down
    source: {type: robot.status, robot_down: true}
    until: {type: robot.status, robot_down: false}
    target: {type: job.faulted}
    equal: [machine]
    duration: 10m
    note: "Job faults on {{ machine }} are muted."
rules:
  - {name: robots, match: {type: robot.status}, notify: [ops]}
  - {name: faults, match: {type: job.faulted}, notify: [ops]}
""",
        )
        sim = Simulation(ruleset)
        down = sim.feed(event("robot.status.json"), "uipath", T)
        assert "Job faults on RPAVM01 are muted." in down.result.emitted[0].notification.body
        muted = sim.feed(event("job.faulted.json"), "uipath", T + 60)
        back = sim.feed(event("events/robot.status.available.json"), "uipath", T + 120)
        loud = sim.feed(event("job.faulted.json"), "uipath", T + 180)
        assert [("faults", "inhibited")] == actions(muted)
        assert ("down", "cleared") in actions(back)
        assert "While it lasted, 1 event(s) for machine=RPAVM01 were muted" in back.result.emitted[0].notification.body
        assert [("faults", "notified")] == actions(loud)
        sim.feed(event("robot.status.json"), "uipath", T + 1000)
        assert [("faults", "inhibited")] == actions(sim.feed(event("job.faulted.json"), "uipath", T + 1500))
        assert [("faults", "notified")] == actions(sim.feed(event("job.faulted.json"), "uipath", T + 1601))

    def test_events_without_the_equal_field_are_never_inhibited(self, tmp_path: Path) -> None:
        """A target without a value for an `equal` field cannot match a source: it is not muted."""
        ruleset = rules(
            tmp_path,
            """
inhibit:
  - {name: down, source: {type: robot.status}, target: {type: job.faulted}, equal: [queue]}
rules:
  - {name: faults, match: {type: job.faulted}, notify: [ops]}
""",
        )
        sim = Simulation(ruleset)
        sim.feed(event("robot.status.json"), "uipath", T)
        assert [("faults", "notified")] == actions(sim.feed(event("job.faulted.json"), "uipath", T + 1))


class TestMisc:
    def test_ping_matches_but_never_notifies(self, tmp_path: Path) -> None:
        """Orchestrator's ping is matched (shown) but sends nothing and changes no state."""
        sim = Simulation(rules(tmp_path, "rules:\n  - {name: all, notify: [ops], throttle: {interval: 1h}}\n"))
        entry = sim.feed(event("ping.json"), "uipath", T)
        assert (["all"], [], []) == (entry.result.matched, entry.result.emitted, entry.result.decisions)
        assert [] == sim.view.rows()

    def test_key_templates_that_fail_still_give_a_key(self, tmp_path: Path) -> None:
        """A key template that fails on an event (an attribute it lacks) gives a fixed error key, not a crash."""
        sim = Simulation(
            rules(
                tmp_path,
                """
rules:
  - name: f
    notify: [ops]
    throttle: {interval: 1h, key: "{{ event.queue_item.reference }}"}
""",
            )
        )
        first = sim.feed(event("job.faulted.json"), "uipath", T)
        second = sim.feed(event("job.faulted.json"), "uipath", T + 1)
        assert [("f", "notified")] == actions(first)
        assert [("f", "throttled")] == actions(second)
        assert second.result.decisions[0].key is not None
        assert second.result.decisions[0].key.startswith("!")

    def test_collapse_off(self, tmp_path: Path) -> None:
        """With `collapse: false` copies of a queue event notify each."""
        ruleset = rules(
            tmp_path,
            "collapse: false\nrules:\n  - {name: q, match: {type: queueItem.transactionFailed}, notify: [ops]}\n",
        )
        sim = Simulation(ruleset)
        raw = payload("queueItem.transactionFailed.json")
        got = [actions(sim.feed(parse_event(raw | {"OrganizationUnitId": n}), "uipath", T)) for n in (1, 2)]
        assert [[("q", "notified")], [("q", "notified")]] == got

    def test_a_view_refuses_rows_it_was_not_given(self) -> None:
        """The worker must load every row an event may touch: reading another one is an error, not 'absent'."""
        view = StateView([Row("throttle", "r", "a", {"until": 1})], fetched=[("throttle", "r", "b")])
        assert view.get(("throttle", "r", "a")) is not None
        assert view.get(("throttle", "r", "b")) is None
        with pytest.raises(UnknownRefError):
            view.get(("throttle", "r", "c"))

    def test_rollback_forgets_changes(self) -> None:
        """A checkpoint restores the rows and the change lists (an event that failed half-way changes nothing)."""
        view = StateView([Row("throttle", "r", "a", {"held": 0})])
        token = view.checkpoint()
        row = view.get(("throttle", "r", "a"))
        assert row is not None
        row.data["held"] = 5
        view.put(row)
        view.delete(("throttle", "r", "a"))
        view.rollback(token)
        assert ([], []) == view.changes()
        again = view.get(("throttle", "r", "a"))
        assert again is not None
        assert {"held": 0} == again.data


class TestSources:
    ROBOT_DOWN = """
rules:
  - name: robot-down
    match: {type: robot.status, robot_down: true}
    notify: [ops]
    absence: {expect: {type: robot.status, robot_down: false}, within: 5m}
"""
    THROTTLE = """
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    throttle: {interval: 1h, key: "{{ process }}"}
"""

    def test_decisions_and_timers_show_the_key_as_rendered(self, tmp_path: Path) -> None:
        """The source a row is kept under stays out of decisions and timer labels: they show the rendered key."""
        text = self.THROTTLE + "  - {name: g, match: {type: job.faulted}, notify: [mail], group: {by: [process]}}\n"
        sim = Simulation(rules(tmp_path, text.replace("notify: [ops]\n", "notify: [ops]\n    continue: true\n")))
        sim.feed(event("job.faulted.json"), "robots", T)
        again = sim.feed(event("job.faulted.json"), "robots", T + 1)
        assert [("faults", "throttled", "InvoiceProcessing"), ("g", "grouped", "process=InvoiceProcessing")] == [
            (d.rule, d.action, d.key) for d in again.result.decisions
        ]
        assert ["group g [process=InvoiceProcessing]"] == [label for _, label in sim.pending()]
        [flushed] = sim.run_until(T + 3600)
        assert ("group g [process=InvoiceProcessing]", "process=InvoiceProcessing") == (
            flushed.label,
            flushed.result.decisions[0].key,
        )

    @pytest.mark.parametrize(("source", "cancelled"), [("uipath", True), ("robots", False)])
    def test_a_timer_armed_before_the_upgrade_is_cancelled_only_by_its_own_source(
        self, tmp_path: Path, source: str, cancelled: bool
    ) -> None:
        """A timer stored under a key without source (older versions) is cancelled by the source that armed it only."""
        engine = Engine(rules(tmp_path, self.ROBOT_DOWN))
        back = engine.plan(event("events/robot.status.available.json"), source, inbox_id=2, at=T + 60)
        [(_, key)] = back.cancels
        body = json.dumps(payload("robot.status.json"))
        data = {"state": "armed", "inbox_id": 1, "source": "uipath", "type": "robot.status", "body": body, "at": T}
        view = StateView([Row("absence", "robot-down", key, data, T + 300, None)], fetched=back.refs())
        result = engine.process(view, back)
        assert ([("robot-down", "cancelled")] if cancelled else []) == [(d.rule, d.action) for d in result.decisions]
        assert ([] if cancelled else [T + 300]) == [r.due_at for r in view.due(float("inf"))]

    @pytest.mark.parametrize(("shared", "action"), [(False, "notified"), (True, "throttled")])
    def test_a_window_opened_before_the_upgrade_holds_only_for_a_rule_that_shares(
        self, tmp_path: Path, shared: bool, action: str
    ) -> None:
        """A throttle row without source (older versions) is the shared row; a per-source rule starts afresh."""
        text = self.THROTTLE + ("    share_across_sources: true\n" if shared else "")
        engine = Engine(rules(tmp_path, text))
        plan = engine.plan(event("job.faulted.json"), "uipath", inbox_id=2, at=T + 60)
        old = Row("throttle", "faults", "InvoiceProcessing", {"until": T + 3600, "held": 0}, None, T + 3600)
        result = engine.process(StateView([old], fetched=plan.refs()), plan)
        assert [("faults", action)] == [(d.rule, d.action) for d in result.decisions]
