"""The command line as a user runs it: exit codes and what it prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import DATA

from receiver.cli import main

PING = (
    b'{"Type":"ping","EventId":"3f2a9c1e5b7d4e8fa0c1d2e3f4a5b6c7","Timestamp":"2024-05-06T08:15:30.1234567Z",'
    b'"TenantId":1,"UserId":42}'
)


def test_sign_prints_the_header_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver sign --secret S FILE` prints the reference vector's signature."""
    body = tmp_path / "ping.json"
    body.write_bytes(PING)
    assert 0 == main(["sign", "--secret", "my-webhook-secret", str(body)])
    assert "ct0MZsQvUZSoSGK+fBS/cvvMZ/nkYE7qngo9ZIBb1zg=\n" == capsys.readouterr().out


def test_sign_without_secret_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret anywhere: exit 2 and a message, not a traceback."""
    monkeypatch.delenv("RECEIVER_WEBHOOK_SECRET", raising=False)
    body = tmp_path / "b.json"
    body.write_bytes(b"{}")
    assert 2 == main(["sign", str(body)])


def test_sign_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    """A file that cannot be read: exit 1 naming it."""
    assert 1 == main(["sign", "--secret", "s", "/nonexistent/body.json"])
    assert "/nonexistent/body.json" in capsys.readouterr().err


def test_check_example_rules_file(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped rules.yaml passes `receiver check`."""
    assert 0 == main(["check", str(Path(__file__).parent.parent / "rules.yaml")])


def test_check_reports_msteams_as_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An Office 365 connector URL is reported at check with a pointer to workflows://."""
    rules = tmp_path / "rules.yaml"
    rules.write_text('channels:\n  teams: "msteams://AAA/BBB/CCC"\nrules:\n  - name: r\n    notify: [teams]\n')
    assert 1 == main(["check", str(rules)])
    out = capsys.readouterr().out
    assert f"{rules}:2:" in out
    assert "workflows://" in out
    assert "AAA/BBB/CCC" not in out


def test_test_command_dry_runs_a_sample(capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver test rules.yaml EVENT.json` explains the rules and sends nothing."""
    rules = Path(__file__).parent.parent / "rules.yaml"
    assert 0 == main(["test", str(rules), str(DATA / "job.faulted.json")])
    assert "invoice-faults" in capsys.readouterr().out


@pytest.mark.parametrize("as_json", [False, True])
def test_test_command_on_an_event_with_a_lone_surrogate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    """A job's Info cut inside a UTF-16 pair (``\\ud83d``, as Orchestrator sent it): a dry run, not a traceback."""
    event = tmp_path / "event.json"
    event.write_bytes(
        b'{"Type": "job.faulted", "EventId": "cut", "Job": {"State": "Faulted", "Info": "Cannot find \\ud83d",'
        b' "Release": {"ProcessKey": "InvoiceProcessing"}}}'
    )
    rules = Path(__file__).parent.parent / "rules.yaml"
    assert 0 == main(["test", str(rules), str(event), *(["--json"] if as_json else [])])
    out = capsys.readouterr().out
    assert "invoice-faults" in out
    assert "Cannot find" in out
    if as_json:
        json.loads(out)


def test_test_command_says_why_a_matched_ping_sends_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A catch-all rule matches Orchestrator's ping, which never notifies: the dry run says so, not a bare "none"."""
    rules = tmp_path / "rules.yaml"
    rules.write_text('channels:\n  ops: "log://"\nrules:\n  - {name: all, match: {type: "*"}, notify: [ops]}\n')
    event = tmp_path / "ping.json"
    event.write_bytes(b'{"Type": "ping", "EventId": "p1"}')
    assert 0 == main(["test", str(rules), str(event)])
    assert "ping never notifies" in capsys.readouterr().out


def test_send_test_through_log_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver send-test CHANNEL` sends through the channel and reports success."""
    rules = tmp_path / "rules.yaml"
    rules.write_text('channels:\n  ops: "log://"\nrules: []\n')
    assert 0 == main(["send-test", "ops", "--rules", str(rules)])
    assert "sent to ops" in capsys.readouterr().out


def test_send_test_reports_failure_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A channel that cannot be reached: exit 1 with apprise's reason."""
    from support import free_port

    rules = tmp_path / "rules.yaml"
    rules.write_text(f'channels:\n  down: "json://127.0.0.1:{free_port()}/x"\nrules: []\n')
    assert 1 == main(["send-test", "down", "--rules", str(rules)])
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "down" in out


def test_send_test_unknown_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown channel name lists the channels there are."""
    rules = tmp_path / "rules.yaml"
    rules.write_text('channels:\n  ops: "log://"\nrules: []\n')
    assert 1 == main(["send-test", "nope", "--rules", str(rules)])
    assert "ops" in capsys.readouterr().err


def test_deliveries_on_an_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Listing and re-driving on a store with nothing to show says so."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert 0 == main(["deliveries", "--database", url, "list"])
    assert "no deliveries" in capsys.readouterr().out
    assert 1 == main(["deliveries", "--database", url, "retry", "42"])
    assert 0 == main(["deliveries", "--database", url, "retry", "--dead"])
    assert 2 == main(["deliveries", "--database", url, "retry"])


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Bare `receiver` prints usage and exits 2."""
    assert 2 == main([])
    assert "serve" in capsys.readouterr().out


def test_alerts_list_ack_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver alerts` lists open alerts, acknowledges and resolves them by id, and says when nothing is left."""
    import asyncio

    from noise_support import Harness, payload

    rules = 'channels:\n  ops: "log://"\nrules:\n  - name: faults\n    match: {type: job.faulted}\n    notify: [ops]\n'
    url = f"sqlite:///{tmp_path / 'r.db'}"

    async def open_one() -> str:
        h = await Harness(tmp_path, rules, url).open()
        try:
            await h.post(payload("job.faulted.json"))
            assert h.store is not None
            return (await h.store.list_alerts())[0].id
        finally:
            await h.close()

    alert_id = asyncio.run(open_one())
    assert 0 == main(["alerts", "--database", url, "list"])
    listing = capsys.readouterr().out
    assert alert_id in listing
    assert "firing" in listing
    assert 0 == main(["alerts", "--database", url, "ack", alert_id, "--by", "ana"])
    assert f"alert {alert_id} acknowledged" in capsys.readouterr().out
    assert 1 == main(["alerts", "--database", url, "ack", alert_id])
    assert "nothing to do (it is acknowledged)" in capsys.readouterr().err
    assert 0 == main(["alerts", "--database", url, "resolve", alert_id, "--by", "ana"])
    capsys.readouterr()
    assert 0 == main(["alerts", "--database", url, "list"])
    assert "no open alerts" in capsys.readouterr().out
    assert 0 == main(["alerts", "--database", url, "list", "--all", "--json"])
    assert "by_hand" in capsys.readouterr().out
    assert 1 == main(["alerts", "--database", url, "resolve", "not-an-id"])
