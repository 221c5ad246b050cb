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


def test_alerts_list_and_ack_show_event_text_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A process name carrying terminal escapes (set the window title) is shown as ``\\x1b``, never sent raw."""
    import asyncio

    from noise_support import Harness

    rules = (
        'channels:\n  ops: "json://127.0.0.1:9/hook"\n'
        "rules:\n  - name: faults\n    match: {type: job.faulted}\n    notify: [ops]\n"
    )
    url = f"sqlite:///{tmp_path / 'r.db'}"
    event = json.loads((DATA / "job.faulted.json").read_text(encoding="utf-8"))
    event["Job"]["Release"]["ProcessKey"] = "Invoice\x1b]0;pwned\x07Processing"

    async def open_one() -> None:
        h = await Harness(tmp_path, rules, url).open()
        try:
            await h.post(event)
        finally:
            await h.close()

    asyncio.run(open_one())
    assert 0 == main(["alerts", "--database", url, "list"])
    listing = capsys.readouterr().out
    assert "\x1b" not in listing
    assert "Invoice\\x1b]0;pwned\\x07Processing" in listing
    assert 0 == main(["alerts", "--database", url, "ack", listing.splitlines()[1].split()[0]])
    acked = capsys.readouterr().out
    assert ("\x1b" not in acked, "\\x1b" in acked) == (True, True)


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("RECEIVER_PORT", "abc", "RECEIVER_PORT='abc'"),
        ("RECEIVER_LOG_FORMAT", "xml", "RECEIVER_LOG_FORMAT='xml'"),
        ("RECEIVER_MAX_BODY_BYTES", "-1", "RECEIVER_MAX_BODY_BYTES='-1'"),
        ("RECEIVER_TRUSTED_PROXIES", "proxy.local", "RECEIVER_TRUSTED_PROXIES='proxy.local'"),
    ],
)
def test_a_bad_setting_is_one_clear_line(
    variable: str, value: str, shown: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A RECEIVER_* value that cannot be used: exit 1 naming the variable and the value, no traceback."""
    monkeypatch.setenv(variable, value)
    assert 1 == main(["prune", "--dry-run", "--database", "sqlite:///:memory:"])
    err = capsys.readouterr().err
    assert err.startswith(f"receiver: invalid setting: {shown}: ")
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_a_bad_flag_value_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`serve --port 70000` names the flag, not the variable, and does not start."""
    rules = tmp_path / "rules.yaml"
    rules.write_text('channels:\n  ops: "log://"\nrules: []\n')
    assert 1 == main(["serve", "--rules", str(rules), "--port", "70000"])
    assert "receiver: invalid setting: --port=70000: Input should be less than or equal to 65535" in (
        capsys.readouterr().err
    )


def _keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` configures the process's logging: in a test it would bind the handlers to this test's
    captured stderr, closed for the tests after it (whose log lines would then fail to print)."""
    import receiver.logconfig

    monkeypatch.setattr(receiver.logconfig, "configure_logging", lambda settings: None)


def test_bare_alerts_lists_the_open_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver alerts` without an action is `receiver alerts list` (DESIGN: `alerts [list|ack ID|resolve ID]`)."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert 0 == main(["alerts", "--database", url])
    assert "no open alerts" in capsys.readouterr().out


def test_init_into_a_missing_directory_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver init` where the file cannot be written: exit 1 naming the path, no traceback."""
    target = tmp_path / "no-such-dir" / "rules.yaml"
    assert 1 == main(["init", str(target)])
    err = capsys.readouterr().err
    assert f"receiver: cannot write {str(target)!r}: No such file or directory" in err
    assert not target.exists()


def test_serve_with_an_unknown_database_scheme_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve --database mysql://...`: one line saying which URLs work, exit 1, before binding the port."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRET", "s")
    _keep_logging(monkeypatch)
    rules = tmp_path / "rules.yaml"
    rules.write_text('channels:\n  ops: "log://"\nrules: []\n')
    assert 1 == main(["serve", "--rules", str(rules), "--database", "mysql://db/x", "--port", "1"])
    assert "receiver: database URL 'mysql': expected sqlite:///PATH or postgresql://..." in capsys.readouterr().err


def test_admin_commands_take_the_database_after_the_action(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver deliveries list --database URL` works as `receiver deliveries --database URL list` does."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert 0 == main(["deliveries", "list", "--database", url])
    assert 0 == main(["alerts", "list", "--database", url])
    assert 0 == main(["silence", "list", "--database", url])
    assert ["no deliveries", "no open alerts", "no silences"] == capsys.readouterr().out.splitlines()
    assert (tmp_path / "r.db").exists()


def test_deliveries_list_failing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--state failing` (pending after a failed attempt) is a state the CLI takes, as GET /api/deliveries does."""
    import asyncio

    from noise_support import Harness, payload

    rules = 'channels:\n  ops: "log://"\nrules:\n  - name: faults\n    match: {type: job.faulted}\n    notify: [ops]\n'
    url = f"sqlite:///{tmp_path / 'r.db'}"

    async def one_failing() -> int:
        h = await Harness(tmp_path, rules, url).open()
        try:
            await h.post(payload("job.faulted.json"))
            assert h.store is not None
            delivery = (await h.store.list_deliveries())[0]
            claimed = await h.store.claim_deliveries("ops", now=h.now, lease=60.0, limit=1)
            assert [delivery.id] == [d.id for d in claimed]
            await h.store.mark_failed(
                delivery.id, now=h.now, reason="HTTP 503", elapsed=0.1, next_attempt_at=h.now + 60
            )
            return delivery.id
        finally:
            await h.close()

    failing = asyncio.run(one_failing())
    assert 0 == main(["deliveries", "--database", url, "list", "--state", "failing"])
    out = capsys.readouterr().out
    assert f"{failing:>6}  pending" in out
    assert "HTTP 503" in out


def test_a_first_retry_longer_than_the_longest_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """RECEIVER_RETRY_INITIAL_SECONDS over RECEIVER_RETRY_MAX_SECONDS would be cut to it silently: refused."""
    monkeypatch.setenv("RECEIVER_RETRY_INITIAL_SECONDS", "3600")
    monkeypatch.setenv("RECEIVER_RETRY_MAX_SECONDS", "60")
    assert 1 == main(["prune", "--dry-run", "--database", "sqlite:///:memory:"])
    assert (
        "receiver: invalid setting: RECEIVER_RETRY_INITIAL_SECONDS (3600) is over RECEIVER_RETRY_MAX_SECONDS (60)"
        in capsys.readouterr().err
    )


def test_bare_orchestrator_names_every_action(capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver orchestrator` alone: a usage error naming status, sync and reconcile."""
    assert 2 == main(["orchestrator"])
    assert "receiver orchestrator: give status, sync or reconcile\n" == capsys.readouterr().err


def test_log_settings_take_any_casing(monkeypatch: pytest.MonkeyPatch) -> None:
    """RECEIVER_LOG_LEVEL=DEBUG and RECEIVER_LOG_FORMAT=JSON, as such values are usually written, are taken."""
    from receiver.settings import load_settings

    monkeypatch.setenv("RECEIVER_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("RECEIVER_LOG_FORMAT", " Json ")
    settings = load_settings()
    assert ("debug", "json") == (settings.log_level, settings.log_format)


@pytest.mark.parametrize("argv", [["deliveries", "retry"], ["silence", "expire"]])
def test_an_id_past_any_row_is_a_usage_error(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An id no row can have (past 64 bits) is a usage error naming it, not an OverflowError traceback."""
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "9" * 23, "--database", f"sqlite:///{tmp_path / 'r.db'}"])
    assert 2 == exit_.value.code
    assert f"'{'9' * 23}' is not a row id (a whole number from 0 to 2**63-1)" in capsys.readouterr().err


def test_serve_with_a_store_it_cannot_open_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store that cannot be opened (a path under a file, PostgreSQL down): one line and exit 1, before
    binding the port, not a traceback of the app's start-up and uvicorn's exit 3."""
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRET", "s")
    _keep_logging(monkeypatch)
    rules = tmp_path / "rules.yaml"
    rules.write_text('channels:\n  ops: "log://"\nrules: []\n')
    (tmp_path / "file").write_text("")
    database = f"sqlite:///{tmp_path / 'file' / 'r.db'}"
    assert 1 == main(["serve", "--rules", str(rules), "--database", database, "--port", "1"])
    err = capsys.readouterr().err
    assert err.startswith(f"receiver: cannot open SQLite store '{tmp_path / 'file' / 'r.db'}'")
    assert "Traceback" not in err
