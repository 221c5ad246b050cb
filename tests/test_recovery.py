"""Gap recovery (``receiver orchestrator reconcile``) against the fake Orchestrator, over loopback.

The CLI runs in-process (``receiver.cli.main``); recovered events are processed by an
in-process app on the same database. Exactly once: a job end recovered from the API and the
same end arriving by webhook (either order) make one inbox row and one notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from fake_orchestrator import FakeOrchestrator
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from starlette.testclient import TestClient
from support import Sink, wait_until

import receiver.orchestrator.client as orchestrator_client
from receiver.cli import main
from receiver.http.app import create_app
from receiver.orchestrator import OrchestratorClient
from receiver.orchestrator.path import Notice, PathSignals, PathState
from receiver.orchestrator.recovery import find_ended_jobs
from receiver.pipeline.gaps import GapRecoveries
from receiver.pipeline.heartbeat import Heartbeats
from receiver.rules import Heartbeat, OrchestratorLink, RuleSet, load_rules
from receiver.settings import Settings
from receiver.signature import sign
from receiver.store import open_store

CLIENT_ID, CLIENT_SECRET = "receiver-app", "cl1ent-s3cret-value"
WEBHOOK_SECRET = "webhook-s3cret"
SCOPES = "OR.Jobs.Read OR.Folders.Read"

RULES = """\
channels:
  ops: "json://127.0.0.1:{sink_port}/alerts"
sources:
  uipath:
    secrets: ["{secret}"]
    orchestrator:
      url: "{url}"
      client_id: "${{UIPATH_CLIENT_ID}}"
      client_secret: "${{UIPATH_CLIENT_SECRET}}"
      public_url: "http://127.0.0.1:9/webhooks/uipath"
      scopes: "{scopes}"
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: ops
"""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(autouse=True)
def _uncache_client_logger() -> Iterator[None]:
    """The CLI configures logging with cache_logger_on_first_use: give later tests an uncached logger back."""
    yield
    orchestrator_client.log = structlog.get_logger()


@pytest.fixture
def orch() -> Iterator[FakeOrchestrator]:
    fake = FakeOrchestrator(org="acme", tenant="DefaultTenant")
    fake.add_client(CLIENT_ID, CLIENT_SECRET, SCOPES)
    with fake:
        yield fake


@pytest.fixture
def sink() -> Iterator[Sink]:
    sink = Sink().start()
    yield sink
    sink.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'r.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def rules(tmp_path: Path, orch: FakeOrchestrator, sink: Sink, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UIPATH_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("UIPATH_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("RECEIVER_LOG_FORMAT", "json")
    monkeypatch.delenv("RECEIVER_WEBHOOK_SECRET", raising=False)
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.format(sink_port=sink.port, secret=WEBHOOK_SECRET, url=orch.orchestrator_url, scopes=SCOPES))
    return path


@pytest.fixture
def gap(orch: FakeOrchestrator) -> dict[str, Any]:
    """Two faulted jobs in two folders within the last 2 h, and jobs that must not be recovered."""
    now = datetime.now(UTC)
    finance = orch.add_folder("Finance")
    hr = orch.add_folder("HR")
    one = orch.add_job(
        finance["Id"],
        State="Faulted",
        ReleaseName="Invoices",
        Info="Invoice 7 failed",
        EndTime=_iso(now - timedelta(minutes=30)),
    )
    two = orch.add_job(
        hr["Id"],
        State="Faulted",
        ReleaseName="Payroll",
        Info="Payroll crashed",
        EndTime=_iso(now - timedelta(minutes=5)),
    )
    old = orch.add_job(finance["Id"], State="Faulted", ReleaseName="Old", EndTime=_iso(now - timedelta(hours=3)))
    fine = orch.add_job(hr["Id"], State="Successful", ReleaseName="Fine", EndTime=_iso(now - timedelta(minutes=1)))
    return {"folders": [finance, hr], "faulted": [one, two], "old": old, "fine": fine}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def _events(database: str) -> list[Any]:
    store = open_store(database)
    await store.open()
    try:
        return await store.list_events(limit=100)
    finally:
        await store.close()


def _settings(rules: Path, database: str) -> Settings:
    return Settings(rules=rules, database_url=database, watch_rules=False, poll_seconds=0.05)


def _webhook(job: dict[str, Any], event_id: str) -> bytes:
    """The job.faulted Orchestrator sends for ``job`` (its own EventId, a current Timestamp)."""
    slim = {k: job[k] for k in ("Id", "Key", "State", "StartTime", "EndTime", "Info", "Release")}
    body = {"Type": "job.faulted", "EventId": event_id, "Timestamp": _iso(datetime.now(UTC)), "Job": slim}
    return json.dumps(body).encode()


def _post(client: TestClient, body: bytes) -> dict[str, Any]:
    reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, WEBHOOK_SECRET)})
    assert 202 == reply.status_code, reply.text
    result: dict[str, Any] = reply.json()
    return result


class TestReconcile:
    def test_dry_run_lists_the_faulted_jobs_and_stores_nothing(
        self, rules: Path, gap: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--dry-run prints each faulted job of the window with 'would send'; the inbox stays empty."""
        database = f"sqlite:///{tmp_path / 'r.db'}"
        asyncio.run(_events(database))  # the database exists, empty
        code, out, err = run(
            capsys,
            "orchestrator",
            "reconcile",
            "--since",
            "2h",
            "--dry-run",
            "--rules",
            str(rules),
            "--database",
            database,
        )
        assert 0 == code, err
        for job in gap["faulted"]:
            assert f"job {job['Key']}: would send" in out
        assert gap["old"]["Key"] not in out  # ended before the window
        assert gap["fine"]["Key"] not in out  # Successful: no rule uses job.completed
        assert "found 2 job ends" in out
        assert "dry run: nothing stored" in out
        assert [] == asyncio.run(_events(database))

    def test_each_folder_is_asked_with_its_folder_header(
        self, rules: Path, gap: dict[str, Any], orch: FakeOrchestrator, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Jobs is folder-scoped: one call per folder with X-UIPATH-OrganizationUnitId, filtered by state and end."""
        code, _, err = run(capsys, "orchestrator", "reconcile", "--since", "2h", "--dry-run", "--rules", str(rules))
        assert 0 == code, err
        jobs = [r for r in orch.request_log if r.path.endswith("/odata/Jobs")]
        assert sorted(str(f["Id"]) for f in gap["folders"]) == sorted(
            str(r.header("X-UIPATH-OrganizationUnitId")) for r in jobs
        )
        for request in jobs:
            text = json.dumps(request.query)
            assert "State eq 'Faulted'" in text
            assert "EndTime ge" in text

    def test_reconcile_stores_them_and_they_become_alerts_saying_recovered(
        self, rules: Path, gap: dict[str, Any], database: str, sink: Sink, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Stored events are processed like webhooks; each alert says it was recovered after a gap, and when."""
        code, out, err = run(
            capsys, "orchestrator", "reconcile", "--since", "2h", "--rules", str(rules), "--database", database
        )
        assert 0 == code, err
        assert 2 == out.count(": stored (event ")
        with TestClient(create_app(_settings(rules, database))):
            alerts = sink.wait_for(2)
        assert 2 == len(alerts)
        text = "\n".join(a["message"] for a in alerts)
        assert 2 == text.count("after a gap: this happened at")
        assert "receiver learned of it at" in text
        assert "Invoice 7 failed" in text
        assert "Payroll crashed" in text
        # Run again: the same job ends are already there.
        code, out, _ = run(
            capsys, "orchestrator", "reconcile", "--since", "2h", "--rules", str(rules), "--database", database
        )
        assert 0 == code
        assert 2 == out.count(": already received")

    def test_a_job_that_ended_20_hours_ago_still_alerts(
        self, rules: Path, orch: FakeOrchestrator, tmp_path: Path, sink: Sink, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The edge refuses webhooks older than max_event_age; a recovered event is as old as its job's end."""
        database = f"sqlite:///{tmp_path / 'r.db'}"
        folder = orch.add_folder("Shared")
        ended = datetime.now(UTC) - timedelta(hours=20)
        orch.add_job(folder["Id"], State="Faulted", Info="long ago", EndTime=_iso(ended))
        code, out, err = run(
            capsys, "orchestrator", "reconcile", "--since", "24h", "--rules", str(rules), "--database", database
        )
        assert 0 == code, err
        assert 1 == out.count(": stored (event ")
        with TestClient(create_app(_settings(rules, database))):
            (alert,) = sink.wait_for(1)
        assert "long ago" in alert["message"]
        assert f"this happened at {ended:%Y-%m-%d %H:%M}" in alert["message"]

    def test_recovered_then_late_webhook_notifies_once(
        self, rules: Path, gap: dict[str, Any], database: str, sink: Sink, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A job end recovered first and then delivered late by Orchestrator (own EventId) is one event."""
        code, _, err = run(
            capsys, "orchestrator", "reconcile", "--since", "2h", "--rules", str(rules), "--database", database
        )
        assert 0 == code, err
        job = gap["faulted"][0]
        with TestClient(create_app(_settings(rules, database))) as client:
            assert "duplicate" == _post(client, _webhook(job, "78936220"))["status"]
            # A fresh fault after it: once its alert is out, the worker is past the late webhook.
            other = {**job, "Key": "0f3c9a7e-2d41-4b8e-9c55-000000000001", "Info": "sentinel"}
            assert "accepted" == _post(client, _webhook(other, "78936221"))["status"]
            assert wait_until(lambda: any("sentinel" in a["message"] for a in sink.received))
        assert 1 == sum(job["Info"] in a["message"] for a in sink.received)
        events = asyncio.run(_events(database))
        assert 1 == sum(e.event_id == f"job:{job['Key']}:Faulted" for e in events)

    def test_webhook_then_reconcile_notifies_once(
        self, rules: Path, gap: dict[str, Any], database: str, sink: Sink, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A job end that came by webhook is 'already received' for reconcile: no second alert."""
        job = gap["faulted"][0]
        with TestClient(create_app(_settings(rules, database))) as client:
            assert "accepted" == _post(client, _webhook(job, "78936220"))["status"]
            assert wait_until(lambda: len(sink.received) >= 1)
            code, out, err = run(
                capsys, "orchestrator", "reconcile", "--since", "2h", "--rules", str(rules), "--database", database
            )
            assert 0 == code, err
            assert f"job {job['Key']}: already received" in out
            assert f"job {gap['faulted'][1]['Key']}: stored" in out
            assert wait_until(lambda: len(sink.received) >= 2)
        assert 1 == sum(job["Info"] in a["message"] for a in sink.received)
        assert 1 == sum("after a gap" in a["message"] for a in sink.received)  # only the other job was recovered


class TestFailedQueueItems:
    """With a rule on queueItem.transactionFailed, failed queue items are recovered too, once each."""

    @pytest.fixture
    def item_rules(self, rules: Path, orch: FakeOrchestrator) -> Path:
        orch.add_client(CLIENT_ID, CLIENT_SECRET, SCOPES + " OR.Queues.Read")
        text = rules.read_text().replace(SCOPES, SCOPES + " OR.Queues.Read")
        rules.write_text(text + "  - name: items\n    match: {type: queueItem.transactionFailed}\n    notify: ops\n")
        return rules

    @pytest.fixture
    def failed(self, orch: FakeOrchestrator) -> dict[str, Any]:
        now = datetime.now(UTC)
        folder = orch.add_folder("Finance")
        exception = {"Reason": "Portal down", "Details": "at step 4", "Type": "ApplicationException"}
        item = orch.add_queue_item(
            folder["Id"],
            Status="Failed",
            Reference="INV-7",
            ProcessingExceptionType="ApplicationException",
            ProcessingException=exception,
            EndProcessing=_iso(now - timedelta(minutes=10)),
            RetryNumber=1,
        )
        orch.add_queue_item(folder["Id"], Status="Successful", EndProcessing=_iso(now - timedelta(minutes=5)))
        orch.add_queue_item(folder["Id"], Status="Failed", EndProcessing=_iso(now - timedelta(hours=5)))
        return {"folder": folder, "item": item}

    def test_reconcile_finds_a_failed_item_and_a_late_webhook_is_a_duplicate(
        self,
        item_rules: Path,
        failed: dict[str, Any],
        orch: FakeOrchestrator,
        tmp_path: Path,
        sink: Sink,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        database = f"sqlite:///{tmp_path / 'r.db'}"
        item = failed["item"]
        code, out, err = run(
            capsys, "orchestrator", "reconcile", "--since", "2h", "--rules", str(item_rules), "--database", database
        )
        assert 0 == code, err
        assert f"item {item['Key']}: stored (event " in out
        assert 1 == out.count(": stored (event ")  # not the successful one, nor the one failed 5 h ago
        items = [r for r in orch.request_log if r.path.endswith("/odata/QueueItems")]
        assert [str(failed["folder"]["Id"])] == [r.header("X-UIPATH-OrganizationUnitId") for r in items]
        assert "Status eq 'Failed'" in items[0].query["$filter"][0]
        late = {
            "Type": "queueItem.transactionFailed",
            "EventId": "q-late",
            "Timestamp": _iso(datetime.now(UTC)),
            "QueueItem": {k: item[k] for k in ("Id", "Key", "Status", "RetryNumber", "ProcessingException")},
            "Queue": {"Id": 1, "Name": "Invoices"},
        }
        with TestClient(create_app(_settings(item_rules, database))) as client:
            (alert,) = sink.wait_for(1)
            assert "duplicate" == _post(client, json.dumps(late).encode())["status"]
        assert "after a gap: this happened at" in alert["message"]
        assert "Portal down" in alert["message"]
        events = asyncio.run(_events(database))
        assert [f"queueitem:{item['Key']}:1:Failed"] == [e.event_id for e in events if e.source == "uipath"]


class TestFindEndedJobs:
    @pytest.mark.anyio
    async def test_pages_over_more_than_one_page(self, orch: FakeOrchestrator) -> None:
        """$top/$skip until a short page: 5 faulted jobs read 2 at a time, oldest first."""
        folder = orch.add_folder("Shared")
        now = datetime.now(UTC)
        keys = [
            orch.add_job(folder["Id"], State="Faulted", EndTime=_iso(now - timedelta(minutes=10 - i)))["Key"]
            for i in range(5)
        ]
        link = OrchestratorLink(
            url=orch.orchestrator_url,
            client_id=CLIENT_ID,
            client_secret=SecretStr(CLIENT_SECRET),
            scopes=tuple(SCOPES.split()),
            public_url="http://127.0.0.1:9/webhooks/uipath",
        )
        async with OrchestratorClient("uipath", link) as client:
            run = await find_ended_jobs(client, ("Faulted",), since=now - timedelta(hours=1), page_size=2)
        assert keys == [r.job_key for r in run.found]
        assert run.complete
        skips = [r.query.get("$skip") for r in orch.request_log if r.path.endswith("/odata/Jobs")]
        assert [["0"], ["2"], ["4"]] == skips

    @pytest.mark.anyio
    @pytest.mark.parametrize("next_link", [False, True], ids=["count", "next-link"])
    async def test_every_job_when_the_server_sends_shorter_pages(self, orch: FakeOrchestrator, next_link: bool) -> None:
        """A server whose $top maximum is below ours (QueueItems fell 1000 → 100, §4) clamps; the rest is read too."""
        folder = orch.add_folder("Shared")
        now = datetime.now(UTC)
        keys = [
            orch.add_job(folder["Id"], State="Faulted", EndTime=_iso(now - timedelta(minutes=30 - i)))["Key"]
            for i in range(25)
        ]
        orch.top_over_max, orch.top_max, orch.next_link = "clamp", {"Jobs": 10}, next_link
        link = OrchestratorLink(
            url=orch.orchestrator_url,
            client_id=CLIENT_ID,
            client_secret=SecretStr(CLIENT_SECRET),
            scopes=tuple(SCOPES.split()),
            public_url="http://127.0.0.1:9/webhooks/uipath",
        )
        async with OrchestratorClient("uipath", link) as client:
            run = await find_ended_jobs(client, ("Faulted",), since=now - timedelta(hours=1))
        assert keys == [r.job_key for r in run.found]
        skips = [r.query.get("$skip") for r in orch.request_log if r.path.endswith("/odata/Jobs")]
        assert [["0"], ["10"], ["20"]] == skips

    @pytest.mark.anyio
    async def test_jobs_with_long_info_are_read_in_smaller_pages(self, orch: FakeOrchestrator) -> None:
        """Faulted jobs carry stack traces: a page of them past the client's 8 MiB answer cap is asked again smaller."""
        folder = orch.add_folder("Shared")
        now = datetime.now(UTC)
        trace = "System.Exception: the portal refused the login\n" + "   at Frame.Method() in C:\\src\\Main.cs\n" * 9000
        keys = [
            orch.add_job(folder["Id"], State="Faulted", Info=trace, EndTime=_iso(now - timedelta(minutes=30 - i)))[
                "Key"
            ]
            for i in range(25)
        ]  # ~400 KB of Info each: 10 MB in one page of 1000
        link = OrchestratorLink(
            url=orch.orchestrator_url,
            client_id=CLIENT_ID,
            client_secret=SecretStr(CLIENT_SECRET),
            scopes=tuple(SCOPES.split()),
            public_url="http://127.0.0.1:9/webhooks/uipath",
        )
        async with OrchestratorClient("uipath", link) as client:
            run = await find_ended_jobs(client, ("Faulted",), since=now - timedelta(hours=1))
        assert [] == run.failures
        assert keys == [r.job_key for r in run.found]


@pytest.fixture
def hourly(rules: Path) -> RuleSet:
    """The rules with gap recovery every hour."""
    hourly = "      recovery: {every: 1h, lookback: 2h}\n"
    rules.write_text(rules.read_text().replace('      scopes: "', hourly + '      scopes: "'))
    return load_rules(rules, environ=dict(os.environ))


class TestInTheBackground:
    def test_runs_after_start_and_every_interval_once_across_two_replicas(
        self,
        rules: Path,
        gap: dict[str, Any],
        orch: FakeOrchestrator,
        database: str,
        sink: Sink,
    ) -> None:
        """orchestrator.recovery: two apps on one database recover each job end once, and new ones at the next run."""
        text = rules.read_text().replace(
            '      scopes: "', '      recovery: {every: 250ms, lookback: 2h}\n      scopes: "'
        )
        rules.write_text(text)
        settings = _settings(rules, database)

        def job_rounds() -> int:
            return sum(r.path.endswith("/odata/Jobs") for r in orch.request_log) // len(gap["folders"])

        with TestClient(create_app(settings)), TestClient(create_app(settings)) as second:
            assert 2 == len(sink.wait_for(2))
            rounds = job_rounds()
            assert wait_until(lambda: job_rounds() >= rounds + 2)  # later runs find the same two again
            late = orch.add_job(gap["folders"][1]["Id"], State="Faulted", ReleaseName="Late", Info="late fault")
            assert wait_until(lambda: any("late fault" in a["message"] for a in sink.received))
            assert "duplicate" == _post(second, _webhook(late, "99999999"))["status"]
        assert 3 == len(sink.received)
        assert 3 == sum("after a gap" in a["message"] for a in sink.received)

    @pytest.mark.anyio
    async def test_one_replica_at_a_time(self, tmp_path: Path) -> None:
        """The gap-recovery lease: of two replicas on one database, one runs; the other waits."""
        store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
        await store.open()
        try:
            rules = lambda: None  # noqa: E731  # never read by _leader
            first, second = GapRecoveries(store, rules), GapRecoveries(store, rules)  # type: ignore[arg-type]
            assert [True, False, True] == [
                await first._leader(600.0),
                await second._leader(600.0),
                await first._leader(600.0),
            ]
        finally:
            await store.close()

    @pytest.mark.anyio
    async def test_a_kick_runs_at_once_and_the_heartbeats_restored_path_kicks(
        self, hourly: RuleSet, gap: dict[str, Any], orch: FakeOrchestrator, tmp_path: Path
    ) -> None:
        """A period of 1 h: the first run comes at start, the next at once when kicked (the path came back)."""
        ruleset = hourly
        store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
        await store.open()
        gaps = GapRecoveries(store, lambda: ruleset)
        heartbeats = Heartbeats(store, lambda: ruleset, PathSignals(), CollectorRegistry())
        heartbeats.on_restored = gaps.kick
        task = asyncio.create_task(gaps.run())

        async def rows(count: int) -> bool:
            for _ in range(200):  # 10 s at most
                # Only the source's rows: the heartbeat's notice is a row of its own (source heartbeat:uipath).
                if sum(e.source == "uipath" for e in await store.list_events(limit=100)) >= count:
                    return True
                await asyncio.sleep(0.05)
            return False

        try:
            assert await rows(2)
            orch.add_job(gap["folders"][0]["Id"], State="Faulted", ReleaseName="Late")
            beat = Heartbeat(every=60.0, within=10.0, notify=("ops",))
            notice = Notice("restored", "restored:1", "Webhook path restored", "back", "success")
            await heartbeats._finish("uipath", beat, PathState("uipath", orch.orchestrator_url, "x"), notice)
            assert await rows(3)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await store.close()

    @pytest.mark.anyio
    @pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
    async def test_the_watermark_survives_a_restart(
        self,
        hourly: RuleSet,
        gap: dict[str, Any],
        orch: FakeOrchestrator,
        tmp_path: Path,
        backend: str,
        request: pytest.FixtureRequest,
    ) -> None:
        """A run's watermark is stored: the next process asks from it (minus 5 min), not `lookback` back."""
        url = f"sqlite:///{tmp_path / 'r.db'}" if backend == "sqlite" else str(request.getfixturevalue("pg_url"))
        source = hourly.sources["uipath"]
        link = source.orchestrator
        assert link is not None
        assert link.recovery is not None
        store = open_store(url)
        await store.open()
        try:
            now = datetime.now(UTC)
            first = GapRecoveries(store, lambda: hourly, clock=now.timestamp)
            await first.once(source, link, link.recovery, hourly)
            assert 2 == sum(e.source == "uipath" for e in await store.list_events(limit=100))
            orch.clear_request_log()
            later = now + timedelta(minutes=30)
            restarted = GapRecoveries(store, lambda: hourly, clock=later.timestamp)  # a new process
            await restarted.once(source, link, link.recovery, hourly)
        finally:
            await store.close()
        [jobs] = {r.query["$filter"][0] for r in orch.request_log if r.path.endswith("/odata/Jobs")}
        since = (datetime.fromtimestamp(int(now.timestamp()), UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
        assert jobs.startswith(f"EndTime ge {since}"), jobs  # not 2 h (the lookback) before `later`


def test_a_source_without_orchestrator_block_keeps_eventid_as_the_key(
    tmp_path: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No reconcile is possible there: two webhooks reusing one job key with new EventIds stay two events."""
    rules = tmp_path / "rules.yaml"
    rule = "  - {name: f, match: {type: job.faulted}, notify: ops}\n"
    rules.write_text(f'channels:\n  ops: "{sink.url()}"\nrules:\n{rule}')
    monkeypatch.setenv("RECEIVER_WEBHOOK_SECRET", WEBHOOK_SECRET)
    job = {"Id": 1, "Key": "0f3c9a7e-2d41-4b8e-9c55-7a1e6d2b4f10", "State": "Faulted", "Info": "again"}
    job.update(StartTime=None, EndTime=None, Release=None)
    with TestClient(create_app(_settings(rules, f"sqlite:///{tmp_path / 'r.db'}"))) as client:
        assert "accepted" == _post(client, _webhook(job, "1"))["status"]
        assert "accepted" == _post(client, _webhook(job, "2"))["status"]
        assert 2 == len(sink.wait_for(2))


def test_each_failed_attempt_of_a_queue_item_has_its_own_key() -> None:
    """The retries of an item share its Key: each attempt's failure is keyed by its RetryNumber too."""
    from receiver.events import queue_item_end_key

    def failed(retry: object, key: object = "AB-1") -> dict[str, Any]:
        return {"type": "queueItem.transactionFailed", "queueitem": {"key": key, "RetryNumber": retry}}

    assert "queueitem:ab-1:0:Failed" == queue_item_end_key(failed(None))
    assert "queueitem:ab-1:2:Failed" == queue_item_end_key(failed(2))
    assert queue_item_end_key(failed(None, key="")) is None
    assert queue_item_end_key({"Type": "queueItem.transactionCompleted", "QueueItem": {"Key": "x"}}) is None
