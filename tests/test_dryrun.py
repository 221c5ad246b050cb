"""Tests of `receiver check` and `receiver test` (single events, --json, suites)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from receiver.admin import dryrun

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
EXAMPLE = ROOT / "rules.yaml"
SECRET = "xoxb-very-secret-token"


def _mask(url: str) -> str:
    return url.split("://")[0] + "://***"


def _test(
    rules: Path,
    event: Path | None,
    *,
    as_json: bool = False,
    suite: Path | None = None,
    environ: dict[str, str] | None = None,
    source: str = "uipath",
) -> tuple[int, str]:
    out = io.StringIO()
    code = dryrun.test_command(
        rules,
        event,
        as_json=as_json,
        suite=suite,
        environ=environ or {},
        check_url=None,
        mask_url=_mask,
        source=source,
        out=out,
    )
    return code, out.getvalue()


def _check(rules: Path) -> tuple[int, str]:
    out = io.StringIO()
    return dryrun.check_command(rules, environ={}, check_url=None, out=out), out.getvalue()


class TestCheck:
    """receiver check."""

    def test_valid_file(self) -> None:
        """A valid file exits 0 with a one-line summary."""
        code, output = _check(EXAMPLE)
        assert (0, f"{EXAMPLE}: OK: 9 rules, 4 channels, 0 sources\n") == (code, output)

    def test_invalid_file(self) -> None:
        """An invalid file exits 1 and prints every problem as PATH:LINE:COL: message."""
        path = DATA / "rules" / "invalid_env_unset.yaml"
        code, output = _check(path)
        lines = output.splitlines()
        assert 1 == code
        assert 3 == len(lines)
        assert all(line.startswith(f"{path}:2:9: channel 'team': environment variable ") for line in lines)


class TestSingleEvent:
    """receiver test RULES EVENT.json."""

    def test_text_output(self) -> None:
        """Each rule's decision, then the rendered notifications per channel; nothing is sent."""
        code, output = _test(EXAMPLE, DATA / "job.faulted.json")
        assert 0 == code
        assert "MATCH  invoice-faults" in output
        assert "-> finance, ops (continue)" in output
        assert "miss   robot-down              type: job.faulted is not robot.status" in output
        assert "skip   robot-errors            not evaluated: stopped by rule 'stopped-or-faulted'" in output
        assert "invoice-faults -> finance <log://***> [failure, text]" in output
        assert "title: Job faulted: InvoiceProcessing on FIN-UNATT-01" in output

    def test_terminal_control_sequences_from_the_event_are_shown_not_obeyed(self, tmp_path: Path) -> None:
        """An event copied from Orchestrator can carry ESC sequences (clear the screen, set the title, write
        the clipboard) or a carriage return that overwrites the line: printed as escapes, never raw."""
        raw = json.loads((DATA / "job.faulted.json").read_text(encoding="utf-8"))
        raw["Job"]["Info"] = "bad \x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07 \x9b31m end\rMATCH  forged"
        raw["Job"]["Release"]["ProcessKey"] = "P\x1b[41mX"
        event = tmp_path / "event.json"
        event.write_text(json.dumps(raw), encoding="utf-8")
        code, output = _test(EXAMPLE, event)
        assert 0 == code
        for control in ("\x1b", "\x07", "\x9b", "\r"):
            assert control not in output
        assert "title: Job faulted: P\\x1b[41mX on FIN-UNATT-01" in output
        assert "| bad \\x1b[2J\\x1b]52;c;cm0gLXJmIH4=\\x07 \\x9b31m end\n" in output
        assert "\n  MATCH  forged" not in output  # the message's own line, under its "|"
        code, document = _test(EXAMPLE, event, as_json=True)
        assert "P\x1b[41mX" == json.loads(document)["events"][0]["event"]["handles"]["process"]

    def test_no_match(self) -> None:
        """An event no rule matches says so."""
        code, output = _test(EXAMPLE, DATA / "job.completed.json")
        assert 0 == code
        assert "notifications (dry run, nothing sent):\n  none" in output

    def test_secrets_are_masked(self, tmp_path: Path) -> None:
        """Channel URLs are shown masked in text and JSON, never with their secret."""
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            'channels:\n  team: "slack://${TOKEN}/B/C"\nrules:\n  - name: all\n    notify: [team]\n', encoding="utf-8"
        )
        for as_json in (False, True):
            code, output = _test(rules, DATA / "job.faulted.json", as_json=as_json, environ={"TOKEN": SECRET})
            assert 0 == code
            assert SECRET not in output
            assert "slack://***" in output

    def test_json_document(self) -> None:
        """--json prints one document with the documented, stable keys."""
        code, output = _test(EXAMPLE, DATA / "job.faulted.json", as_json=True, source="tenant-b")
        document = json.loads(output)
        assert 0 == code
        assert {"schema", "ok", "rules_file", "event_file", "problems", "error", "events"} == set(document)
        assert ("receiver.test/2", True, []) == (document["schema"], document["ok"], document["problems"])
        (result,) = document["events"]
        assert {
            "source",
            "at",
            "event",
            "decisions",
            "matched",
            "noise",
            "notifications",
            "held",
            "later",
            "alerts",
        } == set(result)
        assert "tenant-b" == result["source"]
        assert {"type", "event_id", "timestamp", "handles"} == set(result["event"])
        assert "Faulted" == result["event"]["handles"]["job_state"]
        assert ["invoice-faults", "stopped-or-faulted"] == result["matched"]
        assert result["noise"]
        for noise in result["noise"]:  # the form the admin API shows (Unix seconds)
            assert {"action", "rule", "key", "reason", "suppressed", "event", "at", "due_at"} == set(noise)
            assert isinstance(noise["at"], float)
        decision = result["decisions"][2]
        assert {"rule", "line", "matched", "evaluated", "reason", "continue", "channels"} == set(decision)
        assert ("robot-down", False, True, "type: job.faulted is not robot.status") == (
            decision["rule"],
            decision["matched"],
            decision["evaluated"],
            decision["reason"],
        )
        note = result["notifications"][0]
        assert {"rule", "channel", "url", "title", "body", "severity", "format"} == set(note)
        assert ("invoice-faults", "finance", "log://***", "failure", "text") == (
            note["rule"],
            note["channel"],
            note["url"],
            note["severity"],
            note["format"],
        )

    def test_log_entries(self, tmp_path: Path) -> None:
        """A robot-log array is read with parse_log_entries: one result per entry."""
        entries = [
            json.loads((DATA / "robot-log-error.json").read_text()),
            json.loads((DATA / "events" / "robot-log-warn.json").read_text()),
        ]
        event = tmp_path / "logs.json"
        event.write_text(json.dumps(entries), encoding="utf-8")
        code, output = _test(EXAMPLE, event, as_json=True)
        results = json.loads(output)["events"]
        assert 0 == code
        assert [["robot-errors"], []] == [r["matched"] for r in results]

    def test_single_log_entry(self) -> None:
        """A single log entry object (no Type) is a robot log too."""
        code, output = _test(EXAMPLE, DATA / "robot-log-error.json", as_json=True)
        assert (0, ["robot-errors"]) == (code, json.loads(output)["events"][0]["matched"])

    @pytest.mark.parametrize(
        ("content", "fragment"),
        [
            pytest.param("{not json", "is not JSON", id="not-json"),
            pytest.param('{"Type": 5}', "no event Type", id="bad-type"),
            pytest.param(None, "cannot read", id="missing-file"),
            pytest.param('{"Type": "ping", "a": ' + "[" * 100_000 + "]" * 100_000 + "}", "is not JSON", id="deep"),
        ],
    )
    def test_bad_event_file(self, tmp_path: Path, content: str | None, fragment: str) -> None:
        """An unreadable event file exits 1 with the reason."""
        event = tmp_path / "event.json"
        if content is not None:
            event.write_text(content, encoding="utf-8")
        code, output = _test(EXAMPLE, event)
        assert 1 == code
        assert fragment in output
        code, output = _test(EXAMPLE, event, as_json=True)
        assert (1, False) == (code, json.loads(output)["ok"])
        assert fragment in json.loads(output)["error"]

    def test_rules_problems(self) -> None:
        """A broken rules file exits 1 with its problems, as JSON too."""
        code, output = _test(DATA / "rules" / "invalid_unknown_channel.yaml", DATA / "job.faulted.json", as_json=True)
        document = json.loads(output)
        assert (1, False) == (code, document["ok"])
        assert {"path", "line", "column", "message"} == set(document["problems"][0])
        assert 6 == document["problems"][0]["line"]

    def test_neither_event_nor_suite(self) -> None:
        """Without an event or a suite the command is a usage error (exit 2)."""
        assert 2 == _test(EXAMPLE, None)[0]


ALERTING = """
timezone: UTC
channels:
  ops: "log://"
  oncall-sms: "log://"
  head-of-rpa: "log://"
rules:
  - name: ignore-tests
    match: {type: job.faulted, process: "Test*"}
    notify: []
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    repeat: 1h
    resolve_after: 12h
    escalate:
      - {after: 15m, notify: [oncall-sms]}
      - {after: 2h, notify: [head-of-rpa]}
  - name: robots
    match: {type: robot.status}
    notify: [ops]
"""


class TestAlertsInDryRun:
    """receiver test says which alert a notification opens, and when it reminds and escalates."""

    def test_text_names_the_alert_its_escalations_and_reminders(self, tmp_path: Path) -> None:
        """The fault arrives at 09:24:52: SMS at 09:39:52, head of RPA at 11:24:52, reminders hourly from 10:24:52."""
        rules = tmp_path / "rules.yaml"
        rules.write_text(ALERTING, encoding="utf-8")
        code, output = _test(rules, DATA / "job.faulted.json")
        assert 0 == code
        section = output.split("alerts (would open; unless acknowledged, recovered or resolved first):\n")[1]
        assert section.splitlines()[:5] == [
            "  faults: opens at 2019-03-14 09:24:52 UTC",
            "    escalation 1 at 2019-03-14 09:39:52 UTC -> oncall-sms",
            "    escalation 2 at 2019-03-14 11:24:52 UTC -> head-of-rpa",
            "    reminder every 1h, the first at 2019-03-14 10:24:52 UTC -> ops",
            "    resolved by expiry at 2019-03-14 21:24:52 UTC if nothing notifies for it again",
        ]

    def test_json_lists_the_alert_with_its_times(self, tmp_path: Path) -> None:
        rules = tmp_path / "rules.yaml"
        rules.write_text(ALERTING, encoding="utf-8")
        code, output = _test(rules, DATA / "job.faulted.json", as_json=True)
        (alert,) = json.loads(output)["events"][0]["alerts"]
        assert 0 == code
        assert {
            "rule": "faults",
            "key": "",
            "opens_at": "2019-03-14T09:24:52.660981+00:00",
            "title": alert["title"],
            "repeat_seconds": 3600.0,
            "first_reminder_at": "2019-03-14T10:24:52.660981+00:00",
            "reminder_channels": ["ops"],
            "escalations": [
                {"step": 1, "at": "2019-03-14T09:39:52.660981+00:00", "channels": ["oncall-sms"]},
                {"step": 2, "at": "2019-03-14T11:24:52.660981+00:00", "channels": ["head-of-rpa"]},
            ],
            "expires_at": "2019-03-14T21:24:52.660981+00:00",
        } == alert
        assert alert["title"].startswith("Job faulted")

    def test_a_rule_without_repeat_or_escalate_says_so_and_notify_nobody_opens_none(self, tmp_path: Path) -> None:
        rules = tmp_path / "rules.yaml"
        rules.write_text(ALERTING, encoding="utf-8")
        _, output = _test(rules, DATA / "robot.status.json")
        assert "no reminder or escalation (the rule has no repeat: or escalate:)" in output
        fault = json.loads((DATA / "job.faulted.json").read_text())
        fault["Job"]["Release"]["ProcessKey"] = "TestRun"
        test_fault = tmp_path / "test-fault.json"
        test_fault.write_text(json.dumps(fault), encoding="utf-8")
        code, output = _test(rules, test_fault, as_json=True)
        assert (0, []) == (code, json.loads(output)["events"][0]["alerts"])
        assert "alerts (would open" not in _test(rules, test_fault)[1]


class TestSuite:
    """receiver test RULES --suite FILE."""

    def test_example_suite_passes(self) -> None:
        """The shipped rules.yaml passes its routing suite."""
        code, output = _test(EXAMPLE, None, suite=TESTS / "rules_suite.yaml")
        assert "FAIL" not in output, output
        assert 0 == code
        assert output.endswith(" passed, 0 failed\n")

    def test_example_suite_json(self) -> None:
        """--json with a suite prints the documented document."""
        code, output = _test(EXAMPLE, None, suite=TESTS / "rules_suite.yaml", as_json=True)
        document = json.loads(output)
        assert 0 == code
        assert {"schema", "ok", "rules_file", "suite", "problems", "error", "passed", "failed", "cases"} == set(
            document
        )
        assert ("receiver.suite/2", True, 0) == (document["schema"], document["ok"], document["failed"])
        assert {"name", "event", "source", "passed", "failures", "rules", "channels", "titles", "timeline"} == set(
            document["cases"][0]
        )

    def _suite(self, tmp_path: Path, cases: list[dict[str, Any]]) -> Path:
        suite = tmp_path / "suite.yaml"
        suite.write_text(json.dumps(cases), encoding="utf-8")  # JSON is YAML
        return suite

    def test_mismatch_fails(self, tmp_path: Path) -> None:
        """A case whose expectation does not hold prints FAIL with the difference and exits 1."""
        event = str(DATA / "job.faulted.json")
        suite = self._suite(
            tmp_path,
            [
                {"name": "good", "event": event, "expect": {"rules": ["invoice-faults", "stopped-or-faulted"]}},
                {
                    "name": "bad",
                    "event": event,
                    "expect": {
                        "rules": ["robot-down"],
                        "channels": ["ops"],
                        "title_contains": "Nope",
                        "severity": "info",
                    },
                },
            ],
        )
        code, output = _test(EXAMPLE, None, suite=suite)
        assert 1 == code
        assert "PASS  good" in output
        assert "FAIL  bad" in output
        assert "rules: expected ['robot-down'], got ['invoice-faults', 'stopped-or-faulted']" in output
        assert "channels: expected ['ops'], got ['finance', 'ops', 'ops-urgent']" in output
        assert "no notification title contains 'Nope'" in output
        assert "severity: expected 'info', got ['failure']" in output
        assert output.endswith("1 passed, 1 failed\n")

    @pytest.mark.parametrize(
        ("case", "fragment"),
        [
            pytest.param({"name": "x", "event": "missing.json"}, "cannot read", id="missing-fixture"),
            pytest.param(
                {"name": "x", "event": str(DATA / "ping.json"), "expect": {"rules": ["nope"]}},
                "names rules the file does not have: ['nope']",
                id="unknown-rule",
            ),
            pytest.param(
                {"name": "x", "event": str(DATA / "ping.json"), "expect": {"rulez": []}},
                "expect.rulez: Extra inputs are not permitted",
                id="unknown-key",
            ),
            pytest.param({"event": str(DATA / "ping.json")}, "name: Field required", id="no-name"),
        ],
    )
    def test_broken_case(self, tmp_path: Path, case: dict[str, Any], fragment: str) -> None:
        """A broken case fails with the reason instead of stopping the suite."""
        code, output = _test(EXAMPLE, None, suite=self._suite(tmp_path, [case]))
        assert 1 == code
        assert fragment in output

    def test_source_per_case(self, tmp_path: Path) -> None:
        """A case can set the source the event comes from."""
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            'channels: {a: "log://"}\nrules:\n  - name: b-only\n    match: {source: b}\n    notify: [a]\n',
            encoding="utf-8",
        )
        event = str(DATA / "ping.json")
        suite = self._suite(
            tmp_path,
            [
                {"name": "from b", "event": event, "source": "b", "expect": {"rules": ["b-only"]}},
                {"name": "from default", "event": event, "expect": {"rules": []}},
            ],
        )
        assert 0 == _test(rules, None, suite=suite)[0]

    def test_suite_must_be_a_list(self, tmp_path: Path) -> None:
        """A suite that is not a list of cases is an error."""
        suite = tmp_path / "suite.yaml"
        suite.write_text("cases: 3\n", encoding="utf-8")
        code, output = _test(EXAMPLE, None, suite=suite)
        assert 1 == code
        assert "non-empty YAML list of cases" in output

    def test_an_impossible_date_in_a_suite_is_an_error_not_a_traceback(self, tmp_path: Path) -> None:
        """`start: 2026-13-01` (YAML reads a date, month 13 does not exist): the suite cannot be read, exit 1."""
        suite = tmp_path / "suite.yaml"
        suite.write_text(f"- name: x\n  start: 2026-13-01\n  event: {DATA / 'ping.json'}\n", encoding="utf-8")
        code, output = _test(EXAMPLE, None, suite=suite)
        assert 1 == code
        assert f"{suite}: cannot read the suite: month must be in 1..12" in output


def test_test_command_is_not_collected_by_pytest() -> None:
    """dryrun.test_command is the CLI's `receiver test`, not a test for pytest."""
    assert dryrun.test_command.__test__ is False  # type: ignore[attr-defined]
