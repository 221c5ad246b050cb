"""Enrichment (``enrich:``): a job's details and error log lines from the fake Orchestrator, in the message.

The inbox worker, the enricher and a SQLite outbox run in process; the fake Orchestrator
(tests/fake_orchestrator.py) answers over loopback. Whether a message is due is asked of the
outbox at a clock the test sets (``claim_deliveries(now=...)``): a held message is not due
before its budget ends and is due when it ends, whatever the enrichment is doing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_orchestrator import FakeOrchestrator
from prometheus_client import CollectorRegistry

from receiver.actionlink import LinkSigner
from receiver.delivery.notifier import SendResult
from receiver.metrics import Metrics
from receiver.pipeline.alerts import Links
from receiver.pipeline.dispatch import Dispatcher
from receiver.pipeline.enrich import Enricher
from receiver.pipeline.worker import InboxWorker
from receiver.render import Notification
from receiver.rules import RuleSet, load_rules
from receiver.store import DeliveryRow, InboxItem, SQLiteStore

pytestmark = pytest.mark.anyio

CLIENT_ID, CLIENT_SECRET = "receiver-app", "cl1ent-s3cret-value"
SCOPES = "OR.Jobs.Read OR.Monitoring.Read OR.Queues.Read OR.Folders.Read"

RULES = """\
channels:
  ops: "json://127.0.0.1:9/alerts"
  plain: "json://127.0.0.1:9/plain"
sources:
  uipath:
    secrets: ["s"]
    orchestrator:
      url: "{url}"
      client_id: "{client_id}"
      client_secret: "{client_secret}"
      public_url: "http://127.0.0.1:9/webhooks/uipath"
      scopes: "{scopes}"
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: ops
    enrich: {{with: [job, logs], log_lines: 3, budget: {budget}}}
  - name: items
    match: {{type: queueItem.transactionFailed}}
    notify: ops
    enrich: {{with: [job], budget: {budget}}}
  - name: stops
    match: {{type: job.stopped}}
    notify: plain
"""


@pytest.fixture
def orch() -> Iterator[FakeOrchestrator]:
    fake = FakeOrchestrator(org="acme", tenant="DefaultTenant")
    fake.add_client(CLIENT_ID, CLIENT_SECRET, SCOPES)
    with fake:
        yield fake


class Clock:
    """Wall time the test sets (the outbox's times); it starts at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Pipeline:
    """Worker, enricher and outbox on one SQLite file, driven step by step."""

    def __init__(self, store: SQLiteStore, ruleset: RuleSet, clock: Clock) -> None:
        self.store = store
        self.ruleset = ruleset
        self.clock = clock
        self.woken: list[str] = []
        self.metrics = Metrics(CollectorRegistry())
        self.enricher = Enricher(store, lambda: ruleset, clock=clock, wake=self.woken.extend, metrics=self.metrics)
        self.worker = InboxWorker(store, lambda: ruleset, clock=clock, lease=60, poll=0.05, enrich=self.enricher.submit)
        self._ids = 0

    async def post(self, body: dict[str, Any]) -> int:
        """Store an event as the edge would and let the worker process it (it returns without waiting)."""
        self._ids += 1
        item = InboxItem("uipath", f"e{self._ids}", body["Type"], json.dumps(body).encode(), received_at=self.clock())
        accepted = await self.store.accept(item)
        await self.worker.run_once()
        return accepted.inbox_id

    async def due(self, channel: str = "ops", *, at: float | None = None) -> list[DeliveryRow]:
        """The deliveries of ``channel`` due at ``at`` (claimed, so each is seen once)."""
        now = self.clock() if at is None else at
        return await self.store.claim_deliveries(channel, limit=100, now=now, lease=60)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(str(tmp_path / "r.db"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def ruleset(tmp_path: Path, orch: FakeOrchestrator, budget: str = "3s") -> RuleSet:
    path = tmp_path / "rules.yaml"
    text = RULES.format(
        url=orch.orchestrator_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scopes=SCOPES, budget=budget
    )
    path.write_text(text)
    return load_rules(path, environ={})


@pytest.fixture
async def pipeline(store: SQLiteStore, tmp_path: Path, orch: FakeOrchestrator) -> AsyncIterator[Pipeline]:
    line = Pipeline(store, ruleset(tmp_path, orch), Clock())
    try:
        yield line
    finally:
        await line.enricher.aclose()


def faulted_job(orch: FakeOrchestrator, folder_id: int, **fields: Any) -> dict[str, Any]:
    """A faulted job with a long Info, two Error lines, one Fatal, and an Info line that must not show."""
    defaults: dict[str, Any] = {
        "State": "Faulted",
        "ReleaseName": "Invoices",
        "Info": "Invoice 7 failed: System.Exception: the vendor portal refused the login\n   at Main.xaml",
        "HostMachineName": "VM-PAY-03",
        "Robot": {"Name": "payrobot", "Username": "CORP\\payrobot", "MachineName": "VM-PAY-03", "Type": "Unattended"},
        "InputArguments": json.dumps({"Vendor": "ACME"}),
    }
    job = orch.add_job(folder_id, **{**defaults, **fields})
    for n, (level, message) in enumerate(
        [
            ("Error", "Login page did not load"),
            ("Info", "Retrying the login"),
            ("Error", "Vendor portal answered 403"),
            ("Fatal", "Job stopped: unrecoverable"),
        ]
    ):
        orch.add_robot_log(
            folder_id, JobKey=job["Key"], Level=level, Message=message, TimeStamp=f"2026-12-06T06:00:0{n}Z"
        )
    return job


def job_webhook(job: dict[str, Any], folder_id: int, kind: str = "job.faulted") -> dict[str, Any]:
    """What Orchestrator posts for the job: one line of Info, the folder, the Id and Key."""
    slim = {"Id": job["Id"], "Key": job["Key"], "State": job["State"], "Info": "Job faulted", "Release": job["Release"]}
    return {"Type": kind, "EventId": f"{kind}:{job['Key']}", "OrganizationUnitId": folder_id, "Job": slim}


async def test_details_and_error_lines_are_in_the_message(pipeline: Pipeline, orch: FakeOrchestrator) -> None:
    """The message shows the full Info, host machine, robot and the last Error/Fatal lines, oldest first."""
    folder = orch.add_folder("Finance")
    job = faulted_job(orch, folder["Id"])
    await pipeline.post(job_webhook(job, folder["Id"]))
    assert [] == await pipeline.due()  # held while the details are asked for
    await pipeline.enricher.wait_idle()
    [row] = await pipeline.due()
    body = row.body
    assert "the vendor portal refused the login" in body  # the full Info, not the webhook's one line
    assert "Host machine: VM-PAY-03" in body
    assert "Job robot: payrobot" in body
    assert "Last 3 error log lines:" in body
    lines = body.split("Last 3 error log lines:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [
        "Error: Login page did not load",
        "Error: Vendor portal answered 403",
        "Fatal: Job stopped: unrecoverable",
    ] == [line.split(" ", 1)[1] for line in lines]
    assert "Retrying the login" not in body  # an Info line
    assert "ACME" not in body  # input arguments only when asked
    assert "unavailable" not in body
    calls = [r for r in orch.request_log if "/odata/" in r.path]
    assert all(r.header("X-UIPATH-OrganizationUnitId") == str(folder["Id"]) for r in calls)


async def test_an_alert_message_keeps_its_action_links_when_the_details_arrive(
    store: SQLiteStore, tmp_path: Path, orch: FakeOrchestrator
) -> None:
    """The text rendered again with the details still carries the alert's acknowledge and silence links."""
    signer = LinkSigner("k" * 32, ttl=24 * 3600)
    clock = Clock()
    rules = ruleset(tmp_path, orch)
    enricher = Enricher(store, lambda: rules, clock=clock)
    worker = InboxWorker(
        store,
        lambda: rules,
        clock=clock,
        lease=60,
        poll=0.05,
        enrich=enricher.submit,
        links=Links("https://rx.example.com", signer),
    )
    folder = orch.add_folder("Finance")
    job = faulted_job(orch, folder["Id"])
    body = job_webhook(job, folder["Id"])
    try:
        await store.accept(InboxItem("uipath", "e1", body["Type"], json.dumps(body).encode(), received_at=clock()))
        await worker.run_once()
        await enricher.wait_idle()
    finally:
        await enricher.aclose()
    [row] = await store.claim_deliveries("ops", limit=10, now=clock(), lease=60)
    assert "Host machine: VM-PAY-03" in row.body  # released with the details
    assert "Acknowledge: https://rx.example.com/act/" in row.body
    token = row.body.split("Acknowledge: https://rx.example.com/act/")[1].split()[0]
    assert "ack" == signer.verify(token, now=clock())[1]


async def test_arguments_only_when_asked(store: SQLiteStore, tmp_path: Path, orch: FakeOrchestrator) -> None:
    """`enrich: [job, arguments]` adds the job's input arguments (JSON text from Jobs({Id}))."""
    ruleset(tmp_path, orch)  # writes rules.yaml
    path = tmp_path / "rules.yaml"
    path.write_text(path.read_text().replace("with: [job, logs]", "with: [job, arguments]"))
    line = Pipeline(store, load_rules(path, environ={}), Clock())
    try:
        folder = orch.add_folder("Finance")
        job = faulted_job(orch, folder["Id"])
        await line.post(job_webhook(job, folder["Id"]))
        await line.enricher.wait_idle()
        [row] = await line.due()
        assert 'Input arguments:\n{"Vendor": "ACME"}' in row.body
        assert "error log line" not in row.body  # logs not asked for
    finally:
        await line.enricher.aclose()


async def test_queue_item_shows_its_exception_and_its_job(pipeline: Pipeline, orch: FakeOrchestrator) -> None:
    """A failed queue item: ProcessingException reason and details from QueueItems({Id}), and its job's Info."""
    folder = orch.add_folder("Finance")
    job = faulted_job(orch, folder["Id"])
    item = orch.add_queue_item(
        folder["Id"],
        Status="Failed",
        ProcessingExceptionType="ApplicationException",
        ProcessingException={
            "Reason": "Portal timeout",
            "Details": "TimeoutException at Step 4",
            "Type": "Application",
        },
        ExecutorJobKey=job["Key"],
        Reference="INV-7",
    )
    body = {
        "Type": "queueItem.transactionFailed",
        "EventId": "q1",
        "OrganizationUnitId": folder["Id"],
        "QueueItems": [{"Id": item["Id"], "Key": item["Key"], "Status": "Failed", "Reference": "INV-7"}],
        "Queue": {"Id": 1, "Name": "Invoices"},
    }
    await pipeline.post(body)
    await pipeline.enricher.wait_idle()
    [row] = await pipeline.due()
    assert "Exception reason: Portal timeout" in row.body
    assert "TimeoutException at Step 4" in row.body
    assert "Job info:\nInvoice 7 failed" in row.body  # its job, found by ExecutorJobKey (GetByKey)
    assert any("GetByKey" in r.path for r in orch.request_log)


async def test_slow_orchestrator_sends_at_the_budget_saying_timeout(
    store: SQLiteStore, tmp_path: Path, orch: FakeOrchestrator
) -> None:
    """Orchestrator slower than the budget: due exactly when the budget ends, saying details unavailable: timeout."""
    clock = Clock()
    line = Pipeline(store, ruleset(tmp_path, orch, budget="400ms"), clock)
    try:
        folder = orch.add_folder("Finance")
        job = faulted_job(orch, folder["Id"])
        orch.slow_down(5.0)
        committed = clock()
        await line.post(job_webhook(job, folder["Id"]))
        assert [] == await line.due(at=committed + 0.39)  # held for the budget
        started = time.monotonic()
        await line.enricher.wait_idle()
        assert time.monotonic() - started < 2.0  # the enrichment gave up at its budget, not at the fake's 5 s
        [row] = await line.due(at=committed + 0.4)  # due when the budget ends at the latest
        assert "Orchestrator details unavailable: timeout" in row.body
        assert "Job faulted" in row.body  # the webhook's own text is there
    finally:
        orch.clear_faults()
        await line.enricher.aclose()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"status": 500}, "HTTP 500"),
        ({"status": 401}, "unauthorized (HTTP 401)"),
        ({"status": 404}, "not found (HTTP 404)"),
    ],
)
async def test_a_failing_orchestrator_is_named_and_the_message_goes_at_once(
    pipeline: Pipeline, orch: FakeOrchestrator, fault: dict[str, int], reason: str
) -> None:
    """5xx, a refused token, a job that does not exist: the message is released at once with the reason."""
    folder = orch.add_folder("Finance")
    job = faulted_job(orch, folder["Id"])
    orch.fail_next(20, **fault, path_contains="/odata/")
    await pipeline.post(job_webhook(job, folder["Id"]))
    await pipeline.enricher.wait_idle()
    [row] = await pipeline.due()  # due now, not at the end of the budget
    assert f"Orchestrator details unavailable: {reason}" in row.body


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"status": 403}, "forbidden (HTTP 403): check the connection's scopes"),  # no OR.Monitoring
        ({"status": 503}, "HTTP 503"),
    ],
)
async def test_the_job_is_shown_when_only_its_log_lines_fail(
    pipeline: Pipeline, orch: FakeOrchestrator, fault: dict[str, int], reason: str
) -> None:
    """Robot logs refused or failing while the job was read: its full Info and host shown, the lines' absence named."""
    folder = orch.add_folder("Finance")
    job = faulted_job(orch, folder["Id"])
    orch.fail_next(20, **fault, path_contains="/odata/RobotLogs")
    await pipeline.post(job_webhook(job, folder["Id"]))
    await pipeline.enricher.wait_idle()
    [row] = await pipeline.due()  # due now, not at the end of the budget
    assert "the vendor portal refused the login" in row.body
    assert "Host machine: VM-PAY-03" in row.body
    assert f"Error log lines unavailable: {reason}" in row.body
    assert "Orchestrator details unavailable" not in row.body
    orch.clear_faults()
    await pipeline.post({**job_webhook(job, folder["Id"]), "EventId": "again"})  # a partial answer is not cached
    await pipeline.enricher.wait_idle()
    [again] = await pipeline.due()
    assert "Last 3 error log lines:" in again.body


async def test_a_folder_orchestrator_refuses_is_named(pipeline: Pipeline, orch: FakeOrchestrator) -> None:
    """The event's folder is one the connection cannot use (400, errorCode 1100, §3): the message says so."""
    folder = orch.add_folder("Finance")
    job = faulted_job(orch, folder["Id"])
    await pipeline.post(job_webhook(job, folder["Id"] + 1000))  # a folder Orchestrator does not know for this app
    await pipeline.enricher.wait_idle()
    [row] = await pipeline.due()
    reason = "the event's folder is not usable with this connection (HTTP 400, errorCode 1100)"
    assert f"Orchestrator details unavailable: {reason}" in row.body


async def test_an_open_circuit_is_named(pipeline: Pipeline, orch: FakeOrchestrator) -> None:
    """After repeated 5xx the connection's circuit opens: the next message says so without calling."""
    folder = orch.add_folder("Finance")
    jobs = [faulted_job(orch, folder["Id"]) for _ in range(3)]
    orch.fail_for(60, status=503, path_contains="/odata/")
    for job in jobs[:2]:
        await pipeline.post(job_webhook(job, folder["Id"]))
        await pipeline.enricher.wait_idle()
    before = len(orch.request_log)
    await pipeline.post(job_webhook(jobs[2], folder["Id"]))
    await pipeline.enricher.wait_idle()
    rows = await pipeline.due()
    assert 3 == len(rows)
    assert "Orchestrator details unavailable: HTTP 503" in rows[0].body
    assert "Orchestrator details unavailable: circuit open" in rows[2].body
    assert before == len(orch.request_log)  # not called
    orch.clear_faults()


async def test_other_events_flow_while_an_enrichment_hangs(
    store: SQLiteStore, tmp_path: Path, orch: FakeOrchestrator
) -> None:
    """While one event waits for Orchestrator, the worker goes on and another event's message is sent."""
    clock = Clock()
    line = Pipeline(store, ruleset(tmp_path, orch, budget="10s"), clock)
    sent: list[str] = []
    got = asyncio.Event()

    class Recording:
        async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109
            sent.append(notification.title)
            got.set()
            return SendResult(status="sent", reason=None, elapsed=0.0, recoverable=False)

    dispatcher = Dispatcher(store, lambda: line.ruleset, Recording(), clock=clock, lease=30, poll=0.05)
    task = asyncio.create_task(dispatcher.run())
    try:
        folder = orch.add_folder("Finance")
        hanging = faulted_job(orch, folder["Id"], ReleaseName="Hanging")
        other = orch.add_job(folder["Id"], State="Stopped", ReleaseName="Other")
        orch.slow_down(30.0)
        await line.post(job_webhook(hanging, folder["Id"]))
        await line.post(job_webhook(other, folder["Id"], kind="job.stopped"))
        await asyncio.wait_for(got.wait(), 10)
        assert ["Job stopped: Process"] == sent  # the second event's; the first (Job faulted) still waits
        assert 1 == line.enricher.pending  # the first is still waiting for Orchestrator, unsent
    finally:
        orch.clear_faults()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await line.enricher.aclose()


async def test_a_second_event_of_the_job_is_served_from_the_cache(pipeline: Pipeline, orch: FakeOrchestrator) -> None:
    """Two events about one job within the cache's life: Orchestrator is asked once."""
    folder = orch.add_folder("Finance")
    job = faulted_job(orch, folder["Id"])
    first = job_webhook(job, folder["Id"])
    await pipeline.post(first)
    await pipeline.enricher.wait_idle()
    job_calls = [r for r in orch.request_log if f"/odata/Jobs({job['Id']})" in r.path]
    await pipeline.post({**first, "EventId": "again"})  # a copy (another webhook of the folder fan-out)
    await pipeline.enricher.wait_idle()
    rows = await pipeline.due()
    assert 2 == len(rows)
    assert all("VM-PAY-03" in row.body for row in rows)
    assert 1 == len(job_calls)
    assert job_calls == [r for r in orch.request_log if f"/odata/Jobs({job['Id']})" in r.path]
    assert 1 == pipeline.enricher.calls
    outcomes = {o: pipeline.metrics.enrichments.labels(o)._value.get() for o in ("details", "cached", "timeout")}
    assert {"details": 1, "cached": 1, "timeout": 0} == outcomes


async def test_a_restart_mid_enrichment_still_sends(store: SQLiteStore, tmp_path: Path, orch: FakeOrchestrator) -> None:
    """The process stops while Orchestrator is slow: after the restart the held message goes out at its budget."""
    clock = Clock()
    rules = ruleset(tmp_path, orch, budget="5s")
    line = Pipeline(store, rules, clock)
    folder = orch.add_folder("Finance")
    job = faulted_job(orch, folder["Id"])
    orch.slow_down(30.0)
    committed = clock()
    await line.post(job_webhook(job, folder["Id"]))
    assert 1 == line.enricher.pending
    await line.enricher.aclose()  # the process stops: the enrichment is gone, the held row stays
    orch.clear_faults()
    sent: list[str] = []
    got = asyncio.Event()

    class Recording:
        async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109
            sent.append(notification.body)
            got.set()
            return SendResult(status="sent", reason=None, elapsed=0.0, recoverable=False)

    # The next process: a dispatcher on the same outbox, its clock past the budget.
    clock.now = committed + 5.0
    dispatcher = Dispatcher(store, lambda: rules, Recording(), clock=clock, lease=30, poll=0.05)
    task = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.wait_for(got.wait(), 10)
        assert 1 == len(sent)
        assert "Orchestrator details unavailable: timeout" in sent[0]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_template_reads_the_details_by_name(store: SQLiteStore, tmp_path: Path, orch: FakeOrchestrator) -> None:
    """`job_detail`, `job_logs` and `details_unavailable` are template names."""
    ruleset(tmp_path, orch)
    path = tmp_path / "rules.yaml"
    template = (
        '    body: "{{ job_detail.host_machine }}|{% for l in job_logs %}{{ l.level }}={{ l.message }};{% endfor %}'
        '|{{ details_unavailable }}"\n'
    )
    text = path.read_text().replace(
        "    enrich: {with: [job, logs], log_lines: 3", template + "    enrich: {with: [job, logs], log_lines: 3"
    )
    path.write_text(text)
    line = Pipeline(store, load_rules(path, environ={}), Clock())
    try:
        folder = orch.add_folder("Finance")
        job = faulted_job(orch, folder["Id"])
        await line.post(job_webhook(job, folder["Id"]))
        await line.enricher.wait_idle()
        [row] = await line.due()
        expected = (
            "VM-PAY-03|Error=Login page did not load;Error=Vendor portal answered 403;"
            "Fatal=Job stopped: unrecoverable;|"
        )
        assert expected == row.body
    finally:
        await line.enricher.aclose()


def test_untrusted_log_text_is_bounded() -> None:
    """A 1 MB log message and a thousand lines become at most LOG_LINE_LIMIT characters times the asked lines."""
    from receiver.events import LOG_LINE_LIMIT, log_lines

    entries = [{"Level": "Error", "Message": "x" * 1_000_000, "TimeStamp": "2026-12-06T06:00:00Z"}] * 1000
    lines = log_lines(entries, 5)
    assert 5 == len(lines)
    assert all(len(line.message) <= LOG_LINE_LIMIT + 60 for line in lines)
    assert lines[0].message.endswith("characters shown]")


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_every_body_format_shows_the_details_escaped(tmp_path: Path, fmt: str) -> None:
    """The default message of each format shows Info, log lines and the reason; untrusted text is escaped."""
    from datetime import UTC, datetime

    from receiver.events import Details, JobDetail, LogLine, parse_event
    from receiver.render import render

    path = tmp_path / "rules.yaml"
    path.write_text(f'channels: {{ops: "json://127.0.0.1:9/x"}}\nrules:\n  - {{name: r, notify: ops, format: {fmt}}}\n')
    rules = load_rules(path, environ={})
    event = parse_event({"Type": "job.faulted", "OrganizationUnitId": 1, "Job": {"Id": 5, "Info": "short"}})
    hostile = "<!channel> <b>bold</b> *stars*"
    details = Details(
        job=JobDetail(id=5, info=f"Info {hostile}", host_machine="VM-1"),
        logs=(LogLine(datetime(2026, 12, 6, 6, 0, tzinfo=UTC), "Error", f"log {hostile}"),),
    )
    rule, channel = rules.rules[0], rules.channels["ops"]
    body = render(event, rule, channel, rules, details=details).body
    assert "VM-1" in body
    assert "Last 1 error log line" in body
    assert "<!channel>" not in body  # mentions broken in every format
    if fmt == "html":
        assert "<b>bold</b>" not in body
        assert "&lt;b&gt;bold&lt;/b&gt;" in body
    if fmt == "markdown":
        assert r"\*stars\*" in body
    gone = render(event, rule, channel, rules, details=Details(unavailable="HTTP 500")).body
    assert "Orchestrator details unavailable: HTTP 500" in gone


async def test_enriched_text_is_redacted(store: SQLiteStore, tmp_path: Path, orch: FakeOrchestrator) -> None:
    """An e-mail address in the job's Info and in a log line reaches the message redacted (`redact:`)."""
    ruleset(tmp_path, orch)
    path = tmp_path / "rules.yaml"
    path.write_text(path.read_text().replace("rules:\n", "redact: [email, iban]\nrules:\n", 1))
    line = Pipeline(store, load_rules(path, environ={}), Clock())
    try:
        folder = orch.add_folder("Finance")
        job = faulted_job(orch, folder["Id"], Info="Payment to DE89370400440532013000 failed for jane.doe@example.com")
        orch.add_robot_log(
            folder["Id"],
            JobKey=job["Key"],
            Level="Error",
            Message="mail to bob@example.org bounced",
            TimeStamp="2026-12-06T06:00:09Z",
        )
        await line.post(job_webhook(job, folder["Id"]))
        await line.enricher.wait_idle()
        [row] = await line.due()
        assert "Payment to [redacted:iban] failed for [redacted:email]" in row.body
        assert "mail to [redacted:email] bounced" in row.body
        assert "example.com" not in row.body
        assert "example.org" not in row.body
    finally:
        await line.enricher.aclose()
