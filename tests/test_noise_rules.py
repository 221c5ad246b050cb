"""The noise-control syntax of rules.yaml: what loads into what, maintenance schedules, silence matchers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from receiver.cli import main
from receiver.errors import RulesError
from receiver.noise import MatcherError, compile_matchers, parse_matchers
from receiver.rules import RuleSet, load_rules
from receiver.rules.schedule import parse_clock, parse_days, parse_moment

FULL = """
channels:
  ops: "log://"
timezone: Europe/Berlin
collapse:
  window: 1m
  types: ["queueItem.*"]
silences:
  - name: weekend
    comment: nobody works
    rules: ["fault*"]
    match: {folder: 12}
    weekly:
      - days: [sat, sun]
        from: "00:00"
        to: "24:00"
  - name: release
    timezone: America/New_York
    dates:
      - {from: 2026-12-24, to: 2026-12-26}
      - {from: "2026-11-02T20:00", to: "2026-11-03T04:00"}
inhibit:
  - name: robot-down-mutes-faults
    source_rule: robot-down
    target: {type: job.faulted}
    equal: [machine]
    duration: 2h
    note: "Faults on {{ machine }} are muted while it is down."
  - name: by-clause
    source: {type: robot.status, robot_down: true}
    until: {type: robot.status, robot_down: false}
    target: {type: job.faulted}
    equal: [machine, Job.Robot.Name]
    share_across_sources: true
rules:
  - name: robot-down
    match: {type: robot.status, robot_down: true}
    notify: ops
    absence: {expect: {robot_down: false}, within: 5m}
    recover: true
  - name: faults
    match: {type: job.faulted}
    notify: ops
    throttle: {interval: 30m, key: "{{ process }}"}
    frequency: {count: 3, within: 10m, key: "{{ process }}"}
    share_across_sources: true
    recover:
      match: {type: job.completed}
      key: "{{ process }}"
      title: "{{ process }} is healthy again after {{ count }} faults since {{ since | localtime }}"
  - name: digest
    match: {type: queueItem.transactionFailed}
    notify: ops
    group: {by: [queue, QueueItem.ProcessingException.Type], wait: 1m, interval: 15m}
"""


def load(tmp_path: Path, text: str) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_rules(path, environ={})


class TestLoad:
    def test_every_option_is_compiled(self, tmp_path: Path) -> None:
        """Throttle, frequency, group, absence, recover, silences, inhibitions and collapse load as written."""
        ruleset = load(tmp_path, FULL)
        down, faults, digest = ruleset.rules
        assert down.absence is not None
        assert (300.0, "{{ entity_key }}") == (down.absence.within, down.absence.key.source)
        assert down.recover is not None
        assert down.recover.clause is down.absence.expect
        assert down.recover.key is down.absence.key
        assert faults.throttle is not None
        assert (1800.0, "{{ process }}") == (
            faults.throttle.interval,
            faults.throttle.key and faults.throttle.key.source,
        )
        assert faults.frequency is not None
        assert (3, 600.0) == (faults.frequency.count, faults.frequency.within)
        assert faults.recover is not None
        assert faults.recover.title_source is not None
        assert digest.group is not None
        assert (["queue", "QueueItem.ProcessingException.Type"], 60.0, 900.0) == (
            [r.label for r in digest.group.by],
            digest.group.wait,
            digest.group.interval,
        )
        assert ["weekend", "release"] == [s.name for s in ruleset.silences]
        assert ("fault*",) == ruleset.silences[0].rules
        assert "America/New_York" == ruleset.silences[1].schedule.zone.key
        first, second = ruleset.inhibits
        assert ("robot-down", None, 7200.0) == (first.source_rule, first.source, first.duration)
        assert second.until is not None
        assert ["machine", "Job.Robot.Name"] == [r.label for r in second.equal]
        assert ruleset.collapse is not None
        assert (60.0, ("queueitem.*",)) == (ruleset.collapse.window, ruleset.collapse.types)
        assert [False, True, False] == [r.share_across_sources for r in ruleset.rules]
        assert [False, True] == [i.share_across_sources for i in ruleset.inhibits]

    def test_receiver_check_accepts_every_option(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`receiver check` passes the file with every noise option, share_across_sources included."""
        path = tmp_path / "rules.yaml"
        path.write_text(FULL)
        assert 0 == main(["check", str(path)])
        assert ": OK: 3 rules" in capsys.readouterr().out

    def test_defaults(self, tmp_path: Path) -> None:
        """Collapse is on for queue events by default; group waits 30s then 5m; inhibitions last 1h at most."""
        ruleset = load(
            tmp_path,
            """
channels: {ops: "log://"}
inhibit:
  - {name: i, source: {type: robot.status}, target: {type: job.faulted}, equal: [machine]}
rules:
  - {name: g, match: {type: job.faulted}, notify: ops, group: {}}
""",
        )
        assert ruleset.collapse is not None
        assert (30.0, ("queue.*", "queueitem.*")) == (ruleset.collapse.window, ruleset.collapse.types)
        group = ruleset.rules[0].group
        assert group is not None
        assert ((), 30.0, 300.0) == (group.by, group.wait, group.interval)
        assert 3600.0 == ruleset.inhibits[0].duration

    @pytest.mark.parametrize("value", ["false", "{window: 5s, types: [job.*]}"])
    def test_collapse_can_be_turned_off_or_changed(self, tmp_path: Path, value: str) -> None:
        """`collapse: false` turns the fan-out collapse off."""
        ruleset = load(tmp_path, f'channels: {{ops: "log://"}}\ncollapse: {value}\nrules: []\n')
        assert (ruleset.collapse is None) == (value == "false")

    def test_recover_templates_see_since_and_count(self, tmp_path: Path) -> None:
        """A recover template may use since, count, alert_title and key; a rule template may not."""
        bad = FULL.replace('title: "{{ process }} is healthy', 'body: "{{ proces }}"\n      title: "{{ count }}')
        with pytest.raises(RulesError, match="unknown name 'proces'"):
            load(tmp_path, bad)
        with pytest.raises(RulesError, match="unknown name 'count'"):
            load(
                tmp_path,
                FULL.replace("notify: ops\n    throttle", 'notify: ops\n    title: "{{ count }}"\n    throttle'),
            )

    def test_problems_of_noise_options_are_all_reported(self, tmp_path: Path) -> None:
        """Several mistakes in noise options come out together, located."""
        with pytest.raises(RulesError) as info:
            load(
                tmp_path,
                """
channels: {ops: "log://"}
rules:
  - name: a
    notify: ops
    absence: {expect: {}, within: 5m}
  - name: b
    notify: ops
    recover: {key: "{{ process }}"}
  - name: c
    notify: ops
    frequency: {count: 3, within: 1m}
    absence: {expect: {type: job.completed}, within: 1m}
""",
            )
        messages = [p.message for p in info.value.problems]
        assert any("give a match block here" in m for m in messages)
        assert any("recover needs `match:`" in m for m in messages)
        assert any("frequency cannot be combined with absence" in m for m in messages)


class TestSchedule:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param("mon", {0}, id="one"),
            pytest.param("mon-fri", {0, 1, 2, 3, 4}, id="range"),
            pytest.param("fri-mon", {4, 5, 6, 0}, id="range-over-the-weekend"),
            pytest.param(["sat", "Sunday"], {5, 6}, id="list-and-long-names"),
            pytest.param("tue,thu", {1, 3}, id="comma"),
        ],
    )
    def test_days(self, value: object, expected: set[int]) -> None:
        """Day names, ranges (wrapping over the weekend) and lists are read into weekdays."""
        assert frozenset(expected) == parse_days(value)

    @pytest.mark.parametrize("value", ["24:30", "7", "12:60", 1200])
    def test_bad_clock(self, value: object) -> None:
        """Times of day are HH:MM between 00:00 and 24:00."""
        with pytest.raises(ValueError, match="time of day"):
            parse_clock(value)

    def test_weekly_window_wraps_past_midnight_in_its_zone(self, tmp_path: Path) -> None:
        """mon-fri 22:00-02:00 Berlin time holds Friday 23:00 and Saturday 01:00 local, not Saturday 22:00."""
        ruleset = load(
            tmp_path,
            """
channels: {ops: "log://"}
timezone: Europe/Berlin
silences:
  - name: nightly
    weekly: [{days: mon-fri, from: "22:00", to: "02:00"}]
rules: []
""",
        )
        schedule = ruleset.silences[0].schedule
        berlin = ZoneInfo("Europe/Berlin")

        def at(day: int, hour: int, minute: int = 0) -> float:
            return datetime(2026, 3, day, hour, minute, tzinfo=berlin).timestamp()

        # March 2026: the 6th is a Friday, the 7th a Saturday, the 9th a Monday.
        assert schedule.active(at(6, 23))
        assert schedule.active(at(7, 1, 59))
        assert not schedule.active(at(7, 2))
        assert not schedule.active(at(7, 22))
        assert not schedule.active(at(9, 1))  # Sunday night is not in mon-fri
        assert schedule.active(at(9, 22))
        assert "weekly mon,tue,wed,thu,fri 22:00-02:00 (Europe/Berlin)" == schedule.describe()

    def test_daylight_saving_time_follows_the_zone(self, tmp_path: Path) -> None:
        """A window at 01:00-02:00 local holds at 01:30 local in winter and in summer alike (UTC shifts)."""
        ruleset = load(
            tmp_path,
            """
channels: {ops: "log://"}
silences:
  - name: backup
    timezone: Europe/Berlin
    weekly: [{from: "01:00", to: "02:00"}]
rules: []
""",
        )
        schedule = ruleset.silences[0].schedule
        winter = datetime(2026, 1, 15, 0, 30, tzinfo=UTC).timestamp()  # 01:30 CET
        summer = datetime(2026, 7, 15, 23, 30, tzinfo=UTC).timestamp()  # 01:30 CEST on the 16th
        summer_utc_same = datetime(2026, 7, 16, 0, 30, tzinfo=UTC).timestamp()  # 02:30 CEST
        assert schedule.active(winter)
        assert schedule.active(summer)
        assert not schedule.active(summer_utc_same)

    def test_date_ranges_include_their_last_day(self) -> None:
        """A date range runs from the start of its first day to the end of its last, in the zone."""
        zone = ZoneInfo("America/New_York")
        assert datetime(2026, 12, 27, tzinfo=zone) == parse_moment("2026-12-26", zone, end=True)
        assert datetime(2026, 12, 24, 18, 0, tzinfo=zone) == parse_moment("2026-12-24T18:00", zone, end=False)
        with pytest.raises(ValueError, match="not a date"):
            parse_moment("Christmas", zone, end=False)


class TestMatchers:
    def test_operators_and_quoting(self) -> None:
        """FIELD=VALUE, !=, =~ and !~, several per string, values with spaces quoted."""
        matchers = parse_matchers(['process=Invoice* robot!=TEST-01 message=~"disk (full|error)"', "folder!~^9"])
        assert [("process", "=", "Invoice*"), ("robot", "!=", "TEST-01"), ("message", "=~", "disk (full|error)"),
                ("folder", "!~", "^9")] == [(m.field, m.op, m.value) for m in matchers]  # fmt: skip
        assert "message=~'disk (full|error)'" == str(matchers[2])

    @pytest.mark.parametrize(
        ("texts", "fragment"),
        [
            pytest.param(["proces=Invoice*"], "unknown field 'proces'", id="unknown-field"),
            pytest.param(["job.state=Faulty"], "'Faulty' is not a valid JobState", id="bad-enum"),
            pytest.param(["message=~(unclosed"], "bad regex", id="bad-regex"),
            pytest.param(["Invoice"], "is not a matcher", id="not-a-matcher"),
            pytest.param([""], "give at least one matcher", id="nothing"),
            pytest.param(["rule=~(x"], "rule: bad pattern", id="bad-rule-regex"),
        ],
    )
    def test_bad_matchers_are_refused(self, texts: list[str], fragment: str) -> None:
        """Matchers are checked like rules.yaml clauses, every problem named."""
        with pytest.raises(MatcherError, match=fragment.replace("(", r"\(")):
            compile_matchers(parse_matchers(texts))

    def test_rule_matchers(self) -> None:
        """``rule`` matches the name of the rule that would notify: globs, negation, regexes."""
        compiled = compile_matchers(parse_matchers(["rule=invoice-* rule!=invoice-test", "rule!~debug"]))
        tests = compiled.rule_tests
        assert [True, False, False, False] == [
            all(t(name) for t in tests) for name in ("invoice-faults", "invoice-test", "robot-down", "invoice-debug")
        ]
        assert compiled.clause is None
