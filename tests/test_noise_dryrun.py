"""`receiver test` explains noise control: one event on an empty state, and timed sequences in suites."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.admin import dryrun
from receiver.cli import main

DATA = Path(__file__).resolve().parent / "data"

RULES = """
channels:
  ops: "log://"
  mail: "log://"
silences:
  - name: thursday-maintenance
    comment: SAP patching
    match: {process: "Invoice*"}
    weekly: [{days: thu, from: "09:00", to: "10:00"}]
rules:
  - name: robot-down
    match: {type: robot.status, robot_down: true}
    notify: [ops]
    absence: {expect: {type: robot.status, robot_down: false}, within: 5m}
    recover: true
  - name: fault-digest
    match: {type: job.faulted}
    notify: [ops]
    group: {by: [process], wait: 1m}
    continue: true
  - name: faults
    match: {type: job.faulted}
    notify: [mail]
    throttle: {interval: 30m, key: "{{ process }}"}
"""


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def run(
    rules: Path, event: Path | None, *, as_json: bool = False, at: float | None = None, suite: Path | None = None
) -> tuple[int, str]:
    out = io.StringIO()
    code = dryrun.test_command(
        rules,
        event,
        as_json=as_json,
        suite=suite,
        environ={},
        check_url=None,
        mask_url=None,
        at=at,
        out=out,
    )
    return code, out.getvalue()


class TestSingleEvent:
    def test_text_says_what_each_rule_does_now_and_later(self, rules: Path) -> None:
        """A fault: the digest rule groups it (due in 1m), the throttled rule notifies; later the group sends."""
        code, output = run(rules, DATA / "job.faulted.json", at=1_767_000_000.0)
        assert 0 == code
        assert "noise control (empty state, arriving 2025-12-29 09:20:00 UTC):" in output
        assert (
            "grouped   grouped into 'fault-digest' [process=InvoiceProcessing]: digest due at 2025-12-29 09:21:00 UTC"
            in output
        )
        assert "notified  rule 'faults' notified mail" in output
        assert "held back (not sent now):\n  fault-digest -> ops: grouped: Job faulted: InvoiceProcessing" in output
        later = "later, if nothing else arrives:\n  at 2025-12-29 09:21:00 UTC: group fault-digest"
        assert f"{later} [process=InvoiceProcessing]" in output
        assert "flushed  group 'process=InvoiceProcessing' of rule 'fault-digest': its one event sent to ops" in output

    def test_absence_rule_explains_its_timer(self, rules: Path) -> None:
        """A robot down: the timer is armed and, if nothing follows, fires after 5 minutes with the message."""
        code, output = run(rules, DATA / "robot.status.json")
        assert 0 == code
        assert (
            "armed  absence timer of rule 'robot-down' armed for key '112': notifies at 2019-03-14 12:52:05" in output
        )
        assert "unless an event where (type is robot.status and robot_down is False) arrives" in output
        assert "at 2019-03-14 12:52:05 UTC: absence robot-down [112]" in output
        assert "robot-down -> ops <log://…> [failure, text]" in output
        assert "No event where (type is robot.status and robot_down is False) arrived within 5m" in output

    def test_maintenance_window_at_a_given_time(self, rules: Path) -> None:
        """--at inside a maintenance window: every matching rule is silenced, naming the window."""
        thursday_0930 = 1_767_259_800.0  # 2026-01-01 09:30 UTC, a Thursday
        code, output = run(rules, DATA / "job.faulted.json", as_json=True, at=thursday_0930)
        [result] = json.loads(output)["events"]
        assert 0 == code
        assert [] == result["notifications"]
        assert [("fault-digest", "silenced"), ("faults", "silenced")] == [
            (d["rule"], d["action"]) for d in result["noise"]
        ]
        assert all(d["suppressed"] for d in result["noise"])
        assert "maintenance window 'thursday-maintenance'" in result["noise"][0]["reason"]
        assert "SAP patching" in result["noise"][0]["reason"]
        assert {"rule", "channel", "url", "title", "body", "severity", "format", "action", "reason"} == set(
            result["held"][0]
        )
        assert "2026-01-01T09:30:00+00:00" == result["at"]

    def test_cli_at_option(self, rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`receiver test --at` sets the arrival time; a bad time is an error."""
        code = main(["test", str(rules), str(DATA / "job.faulted.json"), "--json", "--at", "2026-01-01T09:30:00Z"])
        assert 0 == code
        assert "silenced" == json.loads(capsys.readouterr().out)["events"][0]["noise"][0]["action"]
        assert 1 == main(["test", str(rules), str(DATA / "job.faulted.json"), "--at", "yesterday"])
        assert "--at: 'yesterday' is not an ISO 8601 date-time" in capsys.readouterr().err


def write_suite(tmp_path: Path, cases: list[dict[str, Any]]) -> Path:
    path = tmp_path / "suite.yaml"
    for case in cases:
        for step in case.get("steps", []):
            step["event"] = str(DATA / step["event"])
    path.write_text(yaml.safe_dump(cases))
    return path


class TestSuiteSteps:
    def test_timed_sequence_passes(self, rules: Path, tmp_path: Path) -> None:
        """A case plays events at offsets; `sent` lists every notification in order with its time."""
        suite = write_suite(
            tmp_path,
            [
                {
                    "name": "two faults, one digest, one mail, then the robot",
                    "start": "2026-01-05T12:00:00Z",
                    "steps": [
                        {"event": "job.faulted.json"},
                        {"event": "job.faulted.json", "at": "30s", "patch": {"Job.Robot.Name": "FIN-UNATT-02"}},
                        {"event": "robot.status.json", "at": "2m"},
                        {"event": "events/robot.status.available.json", "at": "10m"},
                    ],
                    "run_for": "1h",
                    "expect": {
                        "sent": [
                            {"at": 0, "rule": "faults", "channel": "mail"},
                            {"at": "1m", "rule": "fault-digest", "title_contains": "2 job.faulted events"},
                            {"at": "7m", "rule": "robot-down", "body_contains": "No event where"},
                            {"at": "10m", "rule": "robot-down:recovered", "title_contains": "Recovered: Robot"},
                        ],
                        "decisions": [
                            {"step": 2, "rule": "faults", "action": "throttled"},
                            {"step": 2, "rule": "fault-digest", "action": "grouped", "reason_contains": "2 event(s)"},
                            {"rule": "robot-down", "action": "fired"},
                        ],
                    },
                }
            ],
        )
        code, output = run(rules, None, suite=suite, as_json=True)
        document = json.loads(output)
        assert (0, True, 1) == (code, document["ok"], document["passed"]), document["cases"][0]["failures"]
        timeline = document["cases"][0]["timeline"]
        assert ["event", "event", "timer", "event", "timer", "event"] == [e["kind"] for e in timeline]
        assert [0, 30, 60, 120, 420, 600] == [e["offset"] for e in timeline]

    def test_mismatches_are_listed(self, rules: Path, tmp_path: Path) -> None:
        """A wrong count, time, rule or missing decision fails the case with each difference."""
        suite = write_suite(
            tmp_path,
            [
                {
                    "name": "wrong",
                    "start": "2026-01-05T12:00:00Z",
                    "steps": [{"event": "job.faulted.json"}, {"event": "job.faulted.json", "at": "10s"}],
                    "expect": {
                        "sent": [{"at": "5s", "rule": "faults"}],
                        "decisions": [{"step": 1, "action": "throttled"}],
                    },
                },
                {"name": "both", "event": str(DATA / "ping.json"), "steps": [{"event": "ping.json"}]},
            ],
        )
        code, output = run(rules, None, suite=suite)
        assert 1 == code
        assert "FAIL  wrong" in output
        assert "sent: expected 1 notifications, got 2" in output
        assert (
            "sent #1 (+0s faults -> mail: Job faulted: InvoiceProcessing on FIN-UNATT-01): at: expected 5s, got +0s"
            in output
        )
        assert "no decision matches {'step': 1, 'action': 'throttled'}" in output
        assert "FAIL  both" in output
        assert "give either `event:` (one event) or `steps:` (a sequence), not both" in output

    def test_single_event_case_can_expect_later_notifications(self, rules: Path, tmp_path: Path) -> None:
        """A one-event case runs on for `run_for`: what its timers send is in `sent`."""
        suite = tmp_path / "suite.yaml"
        suite.write_text(
            yaml.safe_dump(
                [
                    {
                        "name": "robot down for good",
                        "event": str(DATA / "robot.status.json"),
                        "expect": {"rules": ["robot-down"], "channels": [], "sent": [{"at": "5m", "channel": "ops"}]},
                    }
                ]
            )
        )
        code, output = run(rules, None, suite=suite)
        assert (0, "PASS  robot down for good\n1 passed, 0 failed\n") == (code, output)
