"""Gap recovery with real ``receiver serve`` processes and the fake Orchestrator, over loopback.

The receiver is stopped; five jobs fault in the fake meanwhile; after the restart exactly five
alerts arrive, each saying it was recovered after a gap, and two of the jobs then posted late
by webhook are duplicates: nothing is sent twice. On PostgreSQL the same with two replicas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fake_orchestrator import FakeOrchestrator
from support import ServerProcess, Sink, wait_until

CLIENT_ID, CLIENT_SECRET = "receiver-app", "cl1ent-s3cret-value"
SECRET = "gap-secret"
SCOPES = "OR.Jobs.Read OR.Folders.Read"

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
      recovery: {{every: 2s, lookback: 1h}}
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


@pytest.fixture(params=["sqlite", "postgres"])
def database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> list[str | None]:
    """One SQLite server, or two replicas on one PostgreSQL schema."""
    if request.param == "sqlite":
        return [None]
    url = str(request.getfixturevalue("pg_url"))
    return [url, url]


def _late_webhook(job: dict[str, Any], event_id: str) -> bytes:
    slim = {k: job[k] for k in ("Id", "Key", "State", "StartTime", "EndTime", "Info", "Release")}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps({"Type": "job.faulted", "EventId": event_id, "Timestamp": now, "Job": slim}).encode()


def test_five_jobs_faulted_while_stopped_arrive_once_each_saying_recovered(
    tmp_path: Path, orch: FakeOrchestrator, sink: Sink, database_urls: list[str | None]
) -> None:
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
    servers = [
        ServerProcess(rules=rules, database=tmp_path / f"replica{i}", env={}, database_url=url)
        for i, url in enumerate(database_urls)
    ]
    try:
        servers[0].start()
        servers[0].stop()  # the receiver is down...
        folders = [orch.add_folder("Finance"), orch.add_folder("HR")]
        jobs = [
            orch.add_job(folders[i % 2]["Id"], State="Faulted", ReleaseName=f"Process{i}", Info=f"fault number {i}")
            for i in range(5)
        ]  # ...while five jobs fault
        for server in servers:
            server.start()
        alerts = sink.wait_for(5, timeout=30)
        assert 5 == len(alerts), [server.log()[-2000:] for server in servers]
        # Two of them now arrive late by webhook (to the last replica): duplicates, not new alerts.
        for i, job in enumerate(jobs[:2]):
            status, answer = servers[-1].post_signed(_late_webhook(job, f"7893622{i}"), SECRET)
            assert (202, "duplicate") == (status, answer["status"])
        runs = sum(r.path.endswith("/odata/Jobs") for r in orch.request_log)
        assert wait_until(lambda: sum(r.path.endswith("/odata/Jobs") for r in orch.request_log) >= runs + 4)
        assert wait_until(lambda: len(sink.received) > 5, timeout=2.0) is False
    finally:
        for server in servers:
            server.stop()
    messages = [a["message"] for a in sink.received]
    assert 5 == len(messages)
    for i in range(5):
        (message,) = [m for m in messages if f"fault number {i}" in m]
        assert "after a gap: this happened at" in message
        assert "receiver learned of it at" in message
