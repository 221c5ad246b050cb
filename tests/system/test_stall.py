"""Hostile event text against a real ``receiver serve``: the event loop keeps answering.

A robot log message of 200,000 blank lines through a ``markdown`` rule, and a 1 MB message
against the glob ``*Invoice*Failed*``, used to hold the event loop for minutes to hours
(quadratic markdown escaping and glob matching, on the loop). Now ``/healthz`` answers within
a second throughout and both entries end processed, their stored bodies whole.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import HealthPoller, ServerProcess, Sink

pytestmark = pytest.mark.slow

LOGS_TOKEN = "stall-logs-token"
ADMIN_TOKEN = "stall-admin-token"


@pytest.fixture
def server(tmp_path: Path, sink: Sink) -> Iterator[ServerProcess]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"""
channels:
  hook: {{url: '{sink.url()}'}}
sources:
  uipath: {{insecure: true}}
rules:
  - name: invoice-failed
    match: {{type: robot.log, message: "*Invoice*Failed*"}}
    notify: [hook]
    format: markdown
  - name: robot-log
    match: {{type: robot.log}}
    notify: [hook]
    format: markdown
    body: "{{{{ message }}}}"
"""
    )
    env = {"RECEIVER_LOGS_TOKEN": LOGS_TOKEN, "RECEIVER_ADMIN_TOKEN": ADMIN_TOKEN}
    process = ServerProcess(rules=rules, database=tmp_path / "r.db", env=env).start()
    yield process
    process.stop()


def _log_entry(message: str, level: str = "Error") -> bytes:
    entry = {
        "Level": level,
        "ProcessName": "InvoiceProcessing",
        "RobotName": "FIN-UNATT-01",
        "Message": message,
        "TimeStamp": time.strftime("%Y-%m-%dT%H:%M:%S.123Z", time.gmtime()),
    }
    return json.dumps(entry).encode()


def _api(server: ServerProcess, path: str) -> Any:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{server.base}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback
        return json.loads(reply.read())


BLANK_LINES = "Stack trace follows" + "\n" * 200_000 + "- end of trace"
INVOICES = ("Invoice INV-20931 processed " * 40_000)[:1_000_000]


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(BLANK_LINES, id="200000-blank-lines-through-markdown"),
        pytest.param(INVOICES, id="1MB-against-three-star-glob"),
    ],
)
def test_a_huge_message_neither_stalls_the_loop_nor_stays_unprocessed(
    server: ServerProcess, sink: Sink, message: str
) -> None:
    """The hostile entry and a normal one after it end processed and sent; /healthz answers within 1 s throughout."""
    normal = "Invoice INV-20932: SAP login Failed"
    with HealthPoller(server.base) as poller:
        for text in (message, normal):
            status, answer = server.post("/logs/uipath", _log_entry(text), {"Authorization": f"Bearer {LOGS_TOKEN}"})
            assert 202 == status, answer
        deadline = time.monotonic() + 60
        events: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not poller.stalled:
            try:
                events = _api(server, "/api/events?type=robot.log")["events"]
            except OSError:
                continue  # a stalled server: the poller says so
            if len(events) == 2 and all(e["state"] != "new" for e in events):
                break
            time.sleep(0.2)
        time.sleep(0.5)  # a little longer once they are done
    assert not poller.failures, poller.failures
    assert poller.slowest < 1.0, f"/healthz took {poller.slowest:.2f} s"
    assert poller.polls >= 5
    hostile, after = sorted(events, key=lambda e: e["id"])
    assert ("processed", "processed") == (hostile["state"], after["state"]), events
    assert (["robot-log"], ["invoice-failed"]) == (hostile["matched_rules"], after["matched_rules"])
    # The stored entry stays whole.
    assert len(message) == len(_api(server, f"/api/events/{hostile['id']}")["body"]["Message"])
    # Both were sent; the long one cut for the channel, which the message says.
    received = sink.wait_for(2, timeout=20)
    assert 2 == len(received)
    assert any("truncated" in r["message"] for r in received), [r["message"][-200:] for r in received]


def test_an_event_past_its_budget_is_set_aside_and_the_loop_keeps_answering(tmp_path: Path, sink: Sink) -> None:
    """A template that runs for minutes is stopped at RECEIVER_EVENT_BUDGET_SECONDS; the next event goes through."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"""
channels:
  hook: {{url: '{sink.url()}'}}
sources:
  uipath: {{insecure: true}}
rules:
  - name: runaway
    match: {{type: robot.log, message: "*runaway*"}}
    notify: [hook]
    body: "{{% for i in range(100000) %}}{{% for j in range(1000) %}}{{{{ j }}}}{{% endfor %}}{{% endfor %}}"
  - name: robot-log
    match: {{type: robot.log}}
    notify: [hook]
"""
    )
    env = {
        "RECEIVER_LOGS_TOKEN": LOGS_TOKEN,
        "RECEIVER_ADMIN_TOKEN": ADMIN_TOKEN,
        "RECEIVER_EVENT_BUDGET_SECONDS": "3",
    }
    server = ServerProcess(rules=rules, database=tmp_path / "r.db", env=env).start()
    try:
        with HealthPoller(server.base) as poller:
            for text in ("a runaway template", "an ordinary error"):
                status, answer = server.post(
                    "/logs/uipath", _log_entry(text), {"Authorization": f"Bearer {LOGS_TOKEN}"}
                )
                assert 202 == status, answer
            deadline = time.monotonic() + 30
            events: list[dict[str, Any]] = []
            while time.monotonic() < deadline and not poller.stalled:
                try:
                    events = _api(server, "/api/events?type=robot.log")["events"]
                except OSError:
                    continue
                if len(events) == 2 and all(e["state"] != "new" for e in events):
                    break
                time.sleep(0.2)
        assert not poller.failures, poller.failures
        assert poller.slowest < 1.0, f"/healthz took {poller.slowest:.2f} s"
        runaway, ordinary = sorted(events, key=lambda e: e["id"])
        assert "unparsed" == runaway["state"]
        assert "budget_exceeded" == runaway["outcome"]["error"]
        assert "budget of 3 s" in runaway["outcome"]["detail"]
        assert ("processed", ["robot-log"]) == (ordinary["state"], ordinary["matched_rules"])
        received = sink.wait_for(1, timeout=20)
        assert 1 == len(received)
        assert "an ordinary error" in received[0]["message"]
    finally:
        server.stop()
