"""Enrichment with a real ``receiver serve`` and the fake Orchestrator, over loopback.

A signed ``job.faulted`` webhook: the sink's message carries the job's Error and Fatal log lines
read from the fake. With the fake stalled, the message still arrives within the budget (plus
one send), saying the details are unavailable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_orchestrator import FakeOrchestrator
from support import ServerProcess, Sink

CLIENT_ID, CLIENT_SECRET = "receiver-app", "cl1ent-s3cret-value"
SECRET = "enrich-secret"
SCOPES = "OR.Jobs.Read OR.Monitoring.Read OR.Queues.Read"

RULES = """\
channels:
  ops: "{sink}"
sources:
  uipath:
    secrets: ["{secret}"]
    orchestrator:
      url: "{url}"
      client_id: "{client_id}"
      client_secret: "{client_secret}"
      public_url: "http://127.0.0.1:9/webhooks/uipath"
      scopes: "{scopes}"
enrich: {{with: [job, logs], budget: 2s}}
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: ops
"""


@pytest.fixture
def orch() -> Iterator[FakeOrchestrator]:
    fake = FakeOrchestrator(org="acme", tenant="DefaultTenant")
    fake.add_client(CLIENT_ID, CLIENT_SECRET, SCOPES)
    with fake:
        yield fake


@pytest.fixture
def server(tmp_path: Path, orch: FakeOrchestrator, sink: Sink) -> Iterator[ServerProcess]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        RULES.format(
            sink=sink.url(),
            secret=SECRET,
            url=orch.orchestrator_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            scopes=SCOPES,
        )
    )
    process = ServerProcess(rules=rules, database=tmp_path / "db", env={})
    process.start()
    yield process
    process.stop()


def _faulted(orch: FakeOrchestrator, name: str) -> tuple[dict[str, Any], bytes]:
    folder = orch.add_folder(f"Folder-{name}")
    job = orch.add_job(folder["Id"], State="Faulted", ReleaseName=name, Info="Job faulted: see the logs")
    for n, (level, message) in enumerate(
        [("Error", f"{name}: selector not found"), ("Info", "retrying"), ("Fatal", f"{name}: gave up")]
    ):
        orch.add_robot_log(
            folder["Id"], JobKey=job["Key"], Level=level, Message=message, TimeStamp=f"2026-12-06T06:00:0{n}Z"
        )
    slim = {k: job[k] for k in ("Id", "Key", "State", "StartTime", "EndTime", "Info", "Release")}
    body = {"Type": "job.faulted", "EventId": f"e-{name}", "OrganizationUnitId": folder["Id"], "Job": slim}
    return job, json.dumps(body).encode()


def test_a_faulted_job_alert_carries_its_error_lines(server: ServerProcess, orch: FakeOrchestrator, sink: Sink) -> None:
    _, body = _faulted(orch, "Invoices")
    status, _ = server.post_signed(body, SECRET)
    assert 202 == status
    [alert] = sink.wait_for(1, timeout=20)
    message = alert["message"]
    assert "Last 2 error log lines:" in message, server.log()[-2000:]
    assert "Error: Invoices: selector not found" in message
    assert "Fatal: Invoices: gave up" in message
    assert "retrying" not in message
    assert "Host machine: ROBOT-01" in message
    assert any("/odata/RobotLogs" in r.path for r in orch.request_log)


def test_with_the_fake_stalled_the_alert_arrives_within_the_budget(
    server: ServerProcess, orch: FakeOrchestrator, sink: Sink
) -> None:
    _, body = _faulted(orch, "Payroll")
    orch.slow_down(20.0)
    try:
        started = time.monotonic()
        status, _ = server.post_signed(body, SECRET)
        answered = time.monotonic() - started
        assert 202 == status
        [alert] = sink.wait_for(1, timeout=20)
        arrived = time.monotonic() - started
    finally:
        orch.clear_faults()
    assert answered < 1.0  # the 202 does not wait for Orchestrator
    assert arrived < 2.0 + 2.0  # the budget, plus one send and the dispatcher's poll
    assert "Orchestrator details unavailable: timeout" in alert["message"]
