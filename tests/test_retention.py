"""Retention: what ``prune`` deletes and what it must keep, on both stores; the CLI, metrics, page and server.

The store suite drives times by hand (rows written "days ago" through the store's own methods).
The PostgreSQL runs are marked ``postgres``, need ``RECEIVER_TEST_DATABASE_URL`` and get a
schema of their own each. The last tests use the CLI, the app in-process and a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from support import fault, fresh, sample, wait_until

from receiver.admin.retention import DEDUP_MARGIN, Pruner, Retention, prune
from receiver.cli import main
from receiver.http.app import create_app
from receiver.settings import Settings
from receiver.signature import sign
from receiver.store import (
    InboxItem,
    NewDelivery,
    NewSilence,
    NoiseLogEntry,
    NoiseRow,
    NoiseWrite,
    Processed,
    Store,
    open_store,
)

DAY = 86400.0
NOW = 1_900_000_000.0  # the store suite's "now"; rows are written days before it
SECRET = "retention-secret"
ADMIN = "retention-admin-token-0123456789"

RULES = """
channels:
  ops: "log://"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
"""


def delivery(channel: str = "ops") -> NewDelivery:
    return NewDelivery(rule="faults", channel=channel, title="t", body="b", severity="failure", body_format="text")


async def event(
    store: Store,
    event_id: str,
    *,
    days_ago: float,
    deliveries: tuple[str, ...] = (),
    process: bool = True,
    event_time: float | None = None,
    now: float = NOW,
) -> int:
    """An event received ``days_ago``, processed then (unless ``process`` is False), with deliveries in these
    states (``sent``, ``dead``, ``pending``), each with its attempt."""
    at = now - days_ago * DAY
    accepted = await store.accept(
        InboxItem(
            source="uipath", event_id=event_id, type="job.faulted", body=b"{}", received_at=at, event_time=event_time
        )
    )
    inbox_id = accepted.inbox_id
    if not process:
        return inbox_id
    await store.claim_inbox(limit=1000, now=at, lease=60)
    channels = [f"c{n}" for n in range(len(deliveries))]
    await store.finish_inbox(
        [Processed(inbox_id, "processed", "{}", [delivery(c) for c in channels])], now=at, noise=None
    )
    for channel, state in zip(channels, deliveries, strict=True):
        (row,) = await store.claim_deliveries(channel, limit=1, now=at, lease=60)
        if state == "sent":
            await store.mark_sent(row.id, now=at, elapsed=0.1)
        elif state == "dead":
            await store.mark_failed(row.id, now=at, reason="HTTP 500", elapsed=0.1, next_attempt_at=None)
        else:
            await store.mark_failed(row.id, now=at, reason="HTTP 500", elapsed=0.1, next_attempt_at=now + 60)
    return inbox_id


async def event_ids(store: Store) -> set[str]:
    return {e.event_id for e in await store.list_events(limit=1000)}


async def noise_log(store: Store, *, days_ago: float, count: int = 1) -> None:
    entries = [NoiseLogEntry(NOW, None, "faults", "k", "throttled", "held back", True) for _ in range(count)]
    await store.finish_inbox([], now=NOW - days_ago * DAY, noise=NoiseWrite(log=entries))


RETENTION = Retention(events_days=30, dead_days=90, noise_log_days=30, max_event_age=DAY)


@pytest.mark.anyio
class TestPrune:
    async def test_old_processed_events_go_with_their_deliveries_and_attempts(self, store: Store) -> None:
        """Events older than the retention go with their sent deliveries and attempts; recent ones stay."""
        await event(store, "old", days_ago=31, deliveries=("sent", "sent"))
        await event(store, "old-quiet", days_ago=40)
        recent = await event(store, "recent", days_ago=29, deliveries=("sent",))
        counts = await prune(store, RETENTION, now=NOW, pause=0)
        assert {
            "inbox": 2,
            "deliveries": 2,
            "attempts": 2,
            "noise_log": 0,
            "silences": 0,
            "alerts": 0,
            "alert_events": 0,
        } == counts
        assert {"recent"} == await event_ids(store)
        assert ["sent"] == [d.state for d in await store.deliveries_of(recent)]
        assert 1 == len(await store.list_attempts([d.id for d in await store.deliveries_of(recent)]))

    async def test_unprocessed_and_pending_stay_whatever_their_age(self, store: Store) -> None:
        """An event not processed yet, or with a delivery still pending, stays however old."""
        await event(store, "never-processed", days_ago=400, process=False)
        pending = await event(store, "still-retrying", days_ago=400, deliveries=("sent", "pending"))
        await prune(store, RETENTION, now=NOW, pause=0)
        assert {"never-processed", "still-retrying"} == await event_ids(store)
        assert ["sent", "pending"] == [d.state for d in await store.deliveries_of(pending)]

    async def test_dead_deliveries_have_their_own_retention(self, store: Store) -> None:
        """A dead delivery keeps its event for the dead retention (90 days), not the events' 30."""
        await event(store, "dead-60", days_ago=60, deliveries=("dead",))
        await event(store, "dead-91", days_ago=91, deliveries=("sent", "dead"))
        counts = await prune(store, RETENTION, now=NOW, pause=0)
        assert {"dead-60"} == await event_ids(store)
        assert (1, 2, 2) == (counts["inbox"], counts["deliveries"], counts["attempts"])

    async def test_dead_retention_zero_keeps_dead_letters_for_ever(self, store: Store) -> None:
        """RECEIVER_RETAIN_DEAD_DAYS=0: dead deliveries, and their events, are never pruned."""
        await event(store, "dead-old", days_ago=900, deliveries=("dead",))
        await prune(store, Retention(events_days=30, dead_days=0), now=NOW, pause=0)
        assert {"dead-old"} == await event_ids(store)

    async def test_events_retention_zero_keeps_everything(self, store: Store) -> None:
        """RECEIVER_RETAIN_EVENTS_DAYS=0: no event goes."""
        await event(store, "ancient", days_ago=900, deliveries=("sent",))
        counts = await prune(store, Retention(events_days=0), now=NOW, pause=0)
        assert {"ancient"} == await event_ids(store)
        assert 0 == counts["inbox"]

    async def test_event_ids_stay_through_the_replay_window(self, store: Store) -> None:
        """Whatever the retention, an event stays while a replay of its EventId could still pass the age check."""
        short = Retention(events_days=0.01, dead_days=0.01, noise_log_days=0.01, max_event_age=DAY)
        await event(store, "within-window", days_ago=0.5, deliveries=("sent",))
        await event(store, "future-timestamp", days_ago=3, event_time=NOW + 5 * DAY)
        await event(store, "past-window", days_ago=1 + 2 * DEDUP_MARGIN / DAY)
        await prune(store, short, now=NOW, pause=0)
        assert {"within-window", "future-timestamp"} == await event_ids(store)
        replay = await store.accept(
            InboxItem(source="uipath", event_id="within-window", type="job.faulted", body=b"{}", received_at=NOW)
        )
        assert replay.duplicate

    async def test_an_event_a_noise_timer_refers_to_stays(self, store: Store) -> None:
        """A group's first event (its digest will be a delivery of that event) is kept until the timer fired."""
        first = await event(store, "group-first", days_ago=60)
        group = NoiseRow("group", "faults", "process=P", json.dumps({"first_inbox_id": first}), due_at=NOW + 60)
        await store.finish_inbox([], now=NOW, noise=NoiseWrite(put=[group]))
        await prune(store, RETENTION, now=NOW, pause=0)
        assert {"group-first"} == await event_ids(store)

    async def test_small_batches_get_past_rows_that_stay(self, store: Store) -> None:
        """Batch by batch, rows that must stay do not stop the run: every old event after them goes too."""
        for n in range(7):
            await event(store, f"keep-{n}", days_ago=50 - n, deliveries=("pending",))
            await event(store, f"go-{n}", days_ago=50 - n, deliveries=("sent",))
        counts = await prune(store, RETENTION, now=NOW, pause=0, events_batch=3, noise_log_batch=2)
        assert 7 == counts["inbox"]
        assert {f"keep-{n}" for n in range(7)} == await event_ids(store)

    async def test_noise_log_and_ended_silences(self, store: Store) -> None:
        """Noise decisions older than their retention go, batch by batch; silences that ended long ago go."""
        await noise_log(store, days_ago=45, count=5)
        await noise_log(store, days_ago=2, count=2)
        old = NewSilence(("process=A",), "maintenance", "ops", starts_at=NOW - 60 * DAY, ends_at=NOW - 59 * DAY)
        await store.add_silence(old, now=NOW - 60 * DAY)
        await store.add_silence(
            NewSilence(("process=B",), "now", "ops", starts_at=NOW - DAY, ends_at=NOW + DAY), now=NOW - DAY
        )
        counts = await prune(store, RETENTION, now=NOW, pause=0, noise_log_batch=2)
        assert (5, 1) == (counts["noise_log"], counts["silences"])
        assert 2 == len(await store.list_noise_log(limit=100))
        assert ["now"] == [s.comment for s in await store.list_silences(limit=100)]

    async def test_dry_run_deletes_nothing_and_counts_what_would_go(self, store: Store) -> None:
        """A dry run reports per table exactly what the real run then deletes, and deletes nothing."""
        await event(store, "old", days_ago=31, deliveries=("sent", "dead"))
        await event(store, "older", days_ago=100, deliveries=("sent", "dead"))
        await event(store, "recent", days_ago=1, deliveries=("sent",))
        await noise_log(store, days_ago=45, count=3)
        before = await store.table_stats()
        would = await prune(store, RETENTION, now=NOW, dry_run=True, pause=0, events_batch=1, noise_log_batch=2)
        assert before.rows == (await store.table_stats()).rows
        assert {
            "inbox": 1,
            "deliveries": 2,
            "attempts": 2,
            "noise_log": 3,
            "silences": 0,
            "alerts": 0,
            "alert_events": 0,
        } == would
        assert would == await prune(store, RETENTION, now=NOW, pause=0)
        assert {"old", "recent"} == await event_ids(store)

    async def test_table_stats_counts_rows(self, store: Store) -> None:
        """Rows per table, exact below the bound, and a size."""
        await event(store, "a", days_ago=1, deliveries=("sent",))
        await event(store, "b", days_ago=1)
        await noise_log(store, days_ago=1, count=3)
        stats = await store.table_stats(exact_limit=2)
        assert 2 == stats.rows["inbox"]
        assert (1, 1, 3) == (stats.rows["deliveries"], stats.rows["attempts"], stats.rows["noise_log"])
        assert 0 < stats.size_bytes


@pytest.mark.anyio
async def test_one_replica_prunes_at_a_time(store: Store) -> None:
    """Two pruners on one store: the one holding the ``prune`` lease runs, the other stands by."""
    await event(store, "old", days_ago=40)
    first = Pruner(store, RETENTION, clock=lambda: NOW, interval=60, pause=0)
    second = Pruner(store, RETENTION, clock=lambda: NOW, interval=60, pause=0)
    assert {
        "inbox": 1,
        "deliveries": 0,
        "attempts": 0,
        "noise_log": 0,
        "silences": 0,
        "alerts": 0,
        "alert_events": 0,
    } == (await first.run_once())
    assert await second.run_once() is None


@pytest.mark.anyio
async def test_a_stopped_pruner_hands_its_lease_over(store: Store) -> None:
    """A pruner that stops gives the lease back, so a restarted server prunes without waiting for it to lapse."""
    await event(store, "old", days_ago=40)
    first = Pruner(store, RETENTION, clock=lambda: NOW, interval=0.01, pause=0)
    task = asyncio.create_task(first.run())
    for _ in range(500):
        if not await event_ids(store):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await event(store, "old-too", days_ago=40)
    second = Pruner(store, RETENTION, clock=lambda: NOW, interval=60, pause=0)
    assert 1 == (await second.run_once() or {}).get("inbox")


# -- the CLI ----------------------------------------------------------------------------------


def test_prune_command_dry_run_then_for_real(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``receiver prune --dry-run`` lists what would go and deletes nothing; ``receiver prune`` deletes it."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    now = time.time()

    async def fill() -> None:
        store = open_store(url)
        await store.open()
        try:
            for name, days in (("old", 40), ("old-too", 35), ("new", 1)):
                await event(store, name, days_ago=days, deliveries=("sent",), now=now)
        finally:
            await store.close()

    asyncio.run(fill())
    monkeypatch.setenv("RECEIVER_RETAIN_EVENTS_DAYS", "30")
    monkeypatch.setenv("RECEIVER_PRUNE_PAUSE_SECONDS", "0")
    assert 0 == main(["prune", "--dry-run", "--database", url])
    out = capsys.readouterr().out
    assert "events 30 d" in out
    assert ["2 would delete", "2 would delete", "2 would delete"] == [
        " ".join(line.split()[1:])
        for line in out.splitlines()
        if line.split()[0] in ("inbox", "deliveries", "attempts")
    ]
    assert 3 == _count(tmp_path / "r.db", "inbox")
    assert 0 == main(["prune", "--database", url])
    assert "inbox" in capsys.readouterr().out
    assert (1, 1, 1) == tuple(_count(tmp_path / "r.db", t) for t in ("inbox", "deliveries", "attempts"))


def _count(path: Path, table: str, where: str = "1 = 1") -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0])  # noqa: S608 - test constants


# -- in-process app: metrics, page, the background task, dedup after a prune --------------------


class Clock:
    """Real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def app_settings(tmp_path: Path, **changes: Any) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    values: dict[str, Any] = {
        "rules": rules,
        "database_url": f"sqlite:///{tmp_path / 'app.db'}",
        "webhook_secret": SECRET,
        "admin_token": ADMIN,
        "watch_rules": False,
        "poll_seconds": 0.05,
        **changes,
    }
    return Settings(**values)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(tmp_path: Path, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings(tmp_path), clock=clock), follow_redirects=False) as test_client:
        yield test_client


def post(client: TestClient, body: bytes) -> dict[str, Any]:
    reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)})
    assert 202 == reply.status_code, reply.text
    return dict(reply.json())


def processed(client: TestClient, count: int) -> bool:
    reply = client.get("/api/events?state=processed", headers={"Authorization": f"Bearer {ADMIN}"})
    return len(reply.json()["events"]) >= count


def test_metrics_show_rows_per_table_and_size(client: TestClient) -> None:
    """/metrics has receiver_store_rows per table and receiver_store_size_bytes."""
    for n in range(3):
        post(client, fault(f"metrics-{n}"))
    assert wait_until(lambda: processed(client, 3))
    page = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for s in family.samples
    }
    assert 3 == page[("receiver_store_rows", (("table", "inbox"),))]
    assert 3 == page[("receiver_store_rows", (("table", "deliveries"),))]
    assert 0 == page[("receiver_store_rows", (("table", "silences"),))]
    assert 0 < page[("receiver_store_size_bytes", ())]


def test_overview_shows_the_store(client: TestClient) -> None:
    """The overview page lists the store's tables with their rows, its size and the retention."""
    post(client, fault("page-1"))
    assert wait_until(lambda: processed(client, 1))
    login = client.post("/ui/login", data={"token": ADMIN, "next": "/ui"}, headers={"Origin": "http://testserver"})
    assert 303 == login.status_code
    page = client.get("/ui").text
    assert "<h2>Store" in page
    assert "<td>inbox</td><td>1</td>" in page
    assert "events 30 days, dead deliveries 90 days, noise log 30 days" in page


def test_an_event_id_in_the_replay_window_stays_a_duplicate_after_pruning(client: TestClient, clock: Clock) -> None:
    """After a prune, an event within RECEIVER_MAX_EVENT_AGE_SECONDS is still answered "duplicate"."""
    body = fresh("job.faulted.json", EventId="replayed-1")
    assert "accepted" == post(client, body)["status"]
    assert wait_until(lambda: processed(client, 1))
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    clock.offset = 6 * 3600  # within the day the edge lets a Timestamp be old
    tiny = Retention(events_days=0.001, dead_days=0.001, noise_log_days=0.001, max_event_age=DAY)
    counts = client.portal.call(functools.partial(prune, rt.store, tiny, now=clock(), pause=0))
    assert 0 == counts["inbox"]
    assert "duplicate" == post(client, body)["status"]


def test_the_server_prunes_in_the_background(tmp_path: Path, clock: Clock) -> None:
    """With a short interval the app's own task removes old rows, and leaves recent ones."""
    settings = app_settings(tmp_path, prune_interval_seconds=0.2)

    async def fill() -> None:
        store = open_store(settings.database_url)
        await store.open()
        try:
            await event(store, "old", days_ago=40, deliveries=("sent",), now=time.time())
            await event(store, "recent", days_ago=2, deliveries=("sent",), now=time.time())
        finally:
            await store.close()

    asyncio.run(fill())
    with TestClient(create_app(settings, clock=clock)):
        assert wait_until(lambda: 1 == _count(tmp_path / "app.db", "inbox"), timeout=10)
    assert (1, 1) == (_count(tmp_path / "app.db", "deliveries"), _count(tmp_path / "app.db", "attempts"))


def _fill_old(path: Path, *, events: int, days_ago: float) -> None:
    """``events`` processed events ``days_ago``, each with a sent delivery and its attempt (SQL, for speed)."""

    async def schema() -> None:
        store = open_store(f"sqlite:///{path}")
        await store.open()
        await store.close()

    asyncio.run(schema())
    at = time.time() - days_ago * DAY
    body = sample("job.faulted.json")
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO inbox (id, source, event_id, type, body, received_at, state, processed_at, outcome) "
            "VALUES (?, 'uipath', ?, 'job.faulted', ?, ?, 'processed', ?, '{}')",
            [(n, f"old-{n}", body, at + n * 0.001, at + n * 0.001) for n in range(1, events + 1)],
        )
        conn.executemany(
            "INSERT INTO deliveries (id, inbox_id, rule, channel, title, body, severity, body_format, state, "
            "attempts, created_at, budget_since, next_attempt_at, sent_at) "
            "VALUES (?, ?, 'faults', 'ops', 't', 'b', 'failure', 'text', 'sent', 1, ?, ?, ?, ?)",
            [(n, n, at, at, at, at) for n in range(1, events + 1)],
        )
        conn.executemany(
            "INSERT INTO attempts (delivery_id, at, status, elapsed) VALUES (?, ?, 'sent', 0.1)",
            [(n, at) for n in range(1, events + 1)],
        )
