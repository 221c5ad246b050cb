"""Logging: one pipeline for our lines, uvicorn's and apprise's; summary lines; no secret, no body at info."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from starlette.testclient import TestClient
from support import Sink, free_port, fresh, sample, wait_until

from receiver import logconfig
from receiver.http.app import create_app
from receiver.logconfig import configure_logging, log_summary
from receiver.settings import Settings
from receiver.signature import sign

CANARY_SECRET = "CanarySecret-7f3a9Q"
CANARY_ADMIN = "CanaryAdmin-2b8eW"
CANARY_LOGS = "CanaryLogs-5c1dZ"
CANARY_URL_PASSWORD = "CanaryUrlPass-9d4eX"
CANARY_URL_TOKEN = "CanaryUrlTok-3e6fY"
CANARY_BODY = "CanaryBodyField-8a2bV"
CANARIES = (CANARY_SECRET, CANARY_ADMIN, CANARY_LOGS, CANARY_URL_PASSWORD, CANARY_URL_TOKEN, CANARY_BODY)


@pytest.fixture(autouse=True)
def _restore_stdlib_logging() -> Iterator[None]:
    """configure_logging changes the root logger and named loggers: put them back afterwards."""
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "apprise", "urllib3")
    saved = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate) for n in names
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def configure(settings: Settings) -> None:
    """configure_logging, without structlog's logger cache.

    The cache would freeze every module-level logger used during the test to this configuration
    (and its captured stream) for the rest of the session, hiding them from later capture_logs.
    """
    configure_logging(settings)
    structlog.configure(cache_logger_on_first_use=False)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text``, each of which must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class TestPipeline:
    def test_summary_lines_look_like_every_other_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The per-webhook line, rendered without structlog's chain, has the same keys and level filter."""
        configure(Settings(log_format="json", log_level="info"))
        log_summary("info", "webhook_received", {"source": "uipath", "event_id": "e-1"})
        structlog.get_logger().info("webhook_received", source="uipath", event_id="e-1")
        log_summary("warning", "webhook_refused", {"reason": "signature_mismatch"})
        configure(Settings(log_format="json", log_level="warning"))
        log_summary("info", "webhook_received", {"event_id": "dropped"})
        fast, slow, refused = json_lines(capsys.readouterr().err)
        assert set(slow) == set(fast)
        assert {k: v for k, v in slow.items() if k != "timestamp"} == {
            k: v for k, v in fast.items() if k != "timestamp"
        }
        assert fast["timestamp"].endswith("Z")
        assert ("webhook_refused", "warning") == (refused["event"], refused["level"])

    def test_summary_lines_are_stamped_with_the_time_they_are_written(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """UTC to the microsecond, right on both sides of a second (the date and time are formatted once a second)."""
        configure(Settings(log_format="json", log_level="info"))
        moments = iter([1_796_300_012.999_998, 1_796_300_013.000_001, 1_796_300_013.25, 1_796_300_013.999_999_8])
        monkeypatch.setattr(logconfig.time, "time", lambda: next(moments))
        for n in range(4):
            log_summary("info", "webhook_received", {"n": n})
        stamps = [line["timestamp"] for line in json_lines(capsys.readouterr().err)]
        assert [
            "2026-12-03T12:13:32.999998Z",
            "2026-12-03T12:13:33.000001Z",
            "2026-12-03T12:13:33.250000Z",
            "2026-12-03T12:13:34.000000Z",  # rounded up into the next second
        ] == stamps
        monkeypatch.undo()
        before = datetime.now(UTC)
        log_summary("info", "webhook_received", {})
        after = datetime.now(UTC)
        (line,) = json_lines(capsys.readouterr().err)
        assert before <= datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")) <= after

    def test_stdlib_loggers_come_out_as_our_json_lines(self, capsys: pytest.CaptureFixture[str]) -> None:
        """uvicorn's and apprise's records are rendered by the same JSON renderer as structlog's."""
        configure(Settings(log_format="json", log_level="info"))
        structlog.get_logger().info("ours_logged", answer=42)
        logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://127.0.0.1:8000")
        logging.getLogger("apprise").warning("Failed to send to %s", "somewhere")
        lines = json_lines(capsys.readouterr().err)
        by_logger = {line.get("logger"): line for line in lines}
        assert {"ours_logged", "Uvicorn running on http://127.0.0.1:8000", "Failed to send to somewhere"} == {
            line["event"] for line in lines
        }
        assert "info" == by_logger["uvicorn.error"]["level"]
        assert "warning" == by_logger["apprise"]["level"]
        assert all("timestamp" in line for line in lines)

    def test_apprise_and_urllib3_stay_above_debug(self, capsys: pytest.CaptureFixture[str]) -> None:
        """At log level debug, apprise's and urllib3's debug lines (which carry URL tokens) are still dropped."""
        configure(Settings(log_format="json", log_level="debug"))
        logging.getLogger("apprise").debug("POST to https://hooks.example/T0/B0/%s", "tok")
        logging.getLogger("urllib3.connectionpool").debug("GET /services/T0/B0/tok")
        structlog.get_logger().debug("ours_debug")
        assert ["ours_debug"] == [line["event"] for line in json_lines(capsys.readouterr().err)]

    def test_apprise_info_lines_only_at_debug(self, capsys: pytest.CaptureFixture[str]) -> None:
        """apprise's per-send info lines repeat notification_sent: dropped unless the level is debug."""
        configure(Settings(log_format="json", log_level="info"))
        logging.getLogger("apprise").info("Sent Slack notification.")
        logging.getLogger("apprise").warning("Failed to send Slack notification: error=500.")
        assert ["Failed to send Slack notification: error=500."] == [
            line["event"] for line in json_lines(capsys.readouterr().err)
        ]
        configure(Settings(log_format="json", log_level="debug"))
        logging.getLogger("apprise").info("Sent Slack notification.")
        assert ["Sent Slack notification."] == [line["event"] for line in json_lines(capsys.readouterr().err)]

    def test_uvicorn_access_log_is_quiet(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The access log would repeat our summary lines: it is raised to warning."""
        configure(Settings(log_format="json", log_level="info"))
        logging.getLogger("uvicorn.access").info('127.0.0.1 - "POST /webhooks/uipath" 202')
        assert "" == capsys.readouterr().err

    def test_console_format_is_one_readable_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The console format prints the event name and its fields on one line, not JSON."""
        configure(Settings(log_format="console", log_level="info"))
        structlog.get_logger().info("webhook_received", source="uipath", status="accepted")
        (line,) = capsys.readouterr().err.splitlines()
        assert "webhook_received" in line
        assert "source=uipath" in line
        assert not line.startswith("{")


RULES = """
channels:
  sink:
    url: "json://receiver:{password}@127.0.0.1:{sink_port}/hook?token={token}"
  broken:
    url: "json://receiver:{password}@127.0.0.1:{closed_port}/hook?token={token}"
    max_attempts: 1
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: [sink, broken]
  - name: robot-errors
    match: {{type: robot.log, level: {{gte: Error}}}}
    notify: [sink]
"""


@pytest.fixture
def sink() -> Iterator[Sink]:
    sink = Sink().start()
    yield sink
    sink.stop()


class TestNoSecretsAtInfo:
    def test_full_path_logs_no_secret_and_no_body(
        self, tmp_path: Path, sink: Sink, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
    ) -> None:
        """Accept, refuse, deliver, fail and dead-letter with canary secrets: none reaches the log at info."""
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            RULES.format(
                password=CANARY_URL_PASSWORD, token=CANARY_URL_TOKEN, sink_port=sink.port, closed_port=free_port()
            )
        )
        settings = Settings(
            rules=rules,
            database_url=f"sqlite:///{tmp_path / 'r.db'}",
            webhook_secret=CANARY_SECRET,
            admin_token=CANARY_ADMIN,
            logs_token=CANARY_LOGS,
            watch_rules=False,
            poll_seconds=0.05,
            log_format="json",
            log_level="info",
        )
        configure(settings)
        caplog.set_level(logging.INFO)
        body = fresh("job.faulted.json", InputArguments=json.dumps({"iban": CANARY_BODY}))
        with TestClient(create_app(settings)) as client:
            accepted = client.post(
                "/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, CANARY_SECRET)}
            )
            refused = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, "nope")})
            logs = client.post(
                "/logs/uipath",
                content=sample("robot-log-error.json"),
                headers={"Authorization": f"Bearer {CANARY_LOGS}"},
            )
            wrong = client.get("/api/events", headers={"Authorization": f"Bearer {CANARY_ADMIN}x"})
            admin = {"Authorization": f"Bearer {CANARY_ADMIN}"}
            assert wait_until(lambda: len(sink.received) >= 2)
            assert wait_until(
                lambda: len(client.get("/api/deliveries?state=dead", headers=admin).json()["deliveries"]) == 1
            )
            dead = client.get("/api/deliveries?state=dead", headers=admin).json()["deliveries"][0]
            assert 1 == dead["attempts"]
            assert 200 == client.post(f"/api/deliveries/{dead['id']}/retry", headers=admin).status_code

            def failed_again() -> bool:
                again = client.get(f"/api/deliveries/{dead['id']}", headers=admin).json()
                return bool(again["state"] == "dead" and len(again["attempt_log"]) == 2)

            # The retry was tried and failed again (a second attempt), not merely still dead from the first.
            assert wait_until(failed_again), client.get(f"/api/deliveries/{dead['id']}", headers=admin).json()
            client.get("/metrics")
            stored = client.get("/api/events?type=job.faulted", headers=admin).json()["events"][0]
            # The canaries were in play: the body is stored whole and shown to the admin.
            assert CANARY_BODY in json.dumps(client.get(f"/api/events/{stored['id']}", headers=admin).json()["body"])
        assert (202, 401, 202, 401) == (accepted.status_code, refused.status_code, logs.status_code, wrong.status_code)
        output = capsys.readouterr().err
        lines = json_lines(output)
        records = caplog.text + "".join(str(r.msg) + str(r.args) for r in caplog.records)
        for canary in CANARIES:
            assert canary not in output, f"{canary} in the log output"
            assert canary not in records, f"{canary} in a log record"
        events = {line["event"] for line in lines}
        assert {
            "webhook_received",
            "webhook_refused",
            "logs_received",
            "event_processed",
            "notification_sent",
        } <= events
        assert 2 == [line["event"] for line in lines].count("notification_dead"), "the first attempt and the retry"

    def test_summary_line_and_processed_line_share_the_event_id(self, tmp_path: Path, sink: Sink) -> None:
        """One webhook_received line (source, type, event id, status, duration) and one event_processed
        line with the same event id, the matched rules and the time from receipt to processing."""
        rules = tmp_path / "rules.yaml"
        rules.write_text(RULES.format(password="p", token="t", sink_port=sink.port, closed_port=free_port()))
        settings = Settings(
            rules=rules,
            database_url=f"sqlite:///{tmp_path / 'r.db'}",
            webhook_secret="s",
            watch_rules=False,
            poll_seconds=0.05,
        )
        body = fresh("job.faulted.json")
        with structlog.testing.capture_logs() as captured, TestClient(create_app(settings)) as client:
            client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, "s")})
            assert wait_until(lambda: any(e["event"] == "event_processed" for e in captured))
        (received,) = [e for e in captured if e["event"] == "webhook_received"]
        (processed,) = [e for e in captured if e["event"] == "event_processed"]
        event_id = json.loads(body)["EventId"]
        assert {"source": "uipath", "type": "job.faulted", "event_id": event_id, "status": "accepted"}.items() <= (
            received.items()
        )
        assert received["duration_ms"] >= 0
        assert "info" == received["log_level"]
        assert event_id == processed["event_id"]
        assert ["faults"] == processed["matched_rules"]
        assert 0 <= processed["latency_s"] < 15
