"""SQLite's calls run on the event loop: only while the store thread is idle, never held by a lock or a long call.

The pipeline's reads and relaxed writes skip the hand-off to the store thread when it is idle
(``receiver.store.sqlite._INLINE_PLANS``). These tests hold the connection on the thread, lock
the file from another connection, and run a call past its time on the loop: each call must still
do its work exactly once, and the event loop must keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.store import InboxItem, NewDelivery, Processed, SQLiteStore
from receiver.store import sqlite as sqlite_store
from receiver.store.sql import sql

pytestmark = pytest.mark.anyio


def item(event_id: str) -> InboxItem:
    return InboxItem(source="uipath", event_id=event_id, type="job.faulted", body=b"{}", received_at=1000.0)


def _delivery() -> NewDelivery:
    return NewDelivery(rule="r", channel="ops", title="t", body="b", severity="error", body_format="text")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    instance = SQLiteStore(str(tmp_path / "receiver.db"))
    await instance.open()
    yield instance
    await instance.close()


class _Submits:
    """Counts the calls handed to the store thread."""

    def __init__(self, store: SQLiteStore) -> None:
        executor = store._executor
        assert executor is not None
        self.count = 0
        submit = executor.submit

        def counted(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return submit(fn, *args, **kwargs)

        executor.submit = counted  # type: ignore[method-assign]


class _LoopLag:
    """The longest the event loop was late for a 5 ms timer while it ran."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.monotonic() - start - 0.005)

    async def __aenter__(self) -> _LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._probe())
        await asyncio.sleep(0)  # its first timer is set before the call under test
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        await asyncio.sleep(0.02)  # the probe's timer, late or not, fires and is measured
        self._task.cancel()


def _held_open(release: threading.Event, inside: threading.Event) -> Iterator[Any]:
    """A plan that writes a row, then holds its transaction (on the store thread) until ``release``."""
    yield (
        sql("INSERT INTO counters (name, value) VALUES (:name, 1)"),
        {"name": "held"},
    )
    inside.set()
    release.wait(10)
    return None


async def test_an_idle_store_answers_the_pipelines_calls_without_its_thread(store: SQLiteStore) -> None:
    accepted = await store.accept(item("e1"))
    submits = _Submits(store)
    assert await store.acquire_lease("inbox", "me", now=1000.0, ttl=30)
    rows = await store.claim_inbox(limit=10, now=1000.0, lease=30)
    assert [accepted.inbox_id] == [r.id for r in rows]
    assert [] == await store.due_noise(until=1000.0, limit=10)
    assert [] == await store.list_silences(active_at=1000.0, limit=10)
    await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}", [_delivery()])], now=1000.0)
    (delivery,) = await store.claim_deliveries("ops", limit=4, now=1000.0, lease=30)
    await store.mark_sent(delivery.id, now=1001.0, elapsed=0.01)
    assert "sent" == (await store.deliveries_of(accepted.inbox_id))[0].state
    assert 1 == submits.count  # the read model's deliveries_of: an admin read, on the thread
    await store.accept(item("e2"))  # waits for the disk: always the thread
    assert 2 == submits.count


async def test_a_call_waits_for_the_thread_that_holds_the_connection(store: SQLiteStore) -> None:
    """While the thread is inside a transaction, a call that could run inline goes to its queue."""
    accepted = await store.accept(item("e1"))
    release, inside = threading.Event(), threading.Event()
    held = store._run(_held_open, release, inside, write=True)  # type: ignore[arg-type]
    assert await asyncio.to_thread(inside.wait, 10)
    claim = asyncio.ensure_future(store.claim_inbox(limit=10, now=1000.0, lease=30))
    await asyncio.sleep(0.05)
    assert not claim.done(), "the claim ran on the loop inside the thread's transaction"
    release.set()
    await held
    assert [accepted.inbox_id] == [r.id for r in await claim]
    assert 1 == await store.read_counter("held")
    assert [] == await store.claim_inbox(limit=10, now=1000.0, lease=30)  # claimed once


async def test_another_process_holding_the_write_lock_does_not_block_the_loop(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """An inline write that meets a lock goes to the thread, which waits for it; the loop keeps running."""
    accepted = await store.accept(item("e1"))
    other = sqlite3.connect(tmp_path / "receiver.db", timeout=0, check_same_thread=False, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.5, other.execute, ("COMMIT",))
    timer.start()
    try:
        async with _LoopLag() as lag:
            start = time.monotonic()
            rows = await store.claim_inbox(limit=10, now=1000.0, lease=30)
            waited = time.monotonic() - start
    finally:
        timer.join()
        other.close()
    assert [accepted.inbox_id] == [r.id for r in rows]
    assert waited >= 0.4, "the claim did not meet the lock: the test shows nothing"
    assert lag.worst < 0.2, f"the event loop was held {lag.worst * 1e3:.0f} ms"


async def test_a_call_past_its_time_on_the_loop_is_run_again_on_the_thread_once(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of time on the loop, a write is rolled back and done on the thread: exactly once."""
    ids = [(await store.accept(item(f"e{n}"))).inbox_id for n in range(50)]
    monkeypatch.setattr(sqlite_store, "_INLINE_SECONDS", -1.0)  # every inline call is out of time at once
    monkeypatch.setattr(sqlite_store, "_INLINE_CHECK_STEPS", 1)
    submits = _Submits(store)
    rows = await store.claim_inbox(limit=100, now=1000.0, lease=30)
    assert ids == [r.id for r in rows]
    assert 1 == submits.count
    assert [] == await store.claim_inbox(limit=100, now=1000.0, lease=30)


def test_the_inline_plans_exclude_what_waits_for_the_disk_or_has_no_bound() -> None:
    from receiver.store import _plans, _retention

    kept_off = {_plans.accept, _plans.list_events, _plans.list_deliveries, _retention.prune_events}
    assert not kept_off & sqlite_store._INLINE_PLANS
