"""The inbox worker's shutdown, in process on a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from support import DATA

from receiver.delivery.notifier import SendResult
from receiver.errors import StoreError
from receiver.pipeline.dispatch import Dispatcher
from receiver.pipeline.worker import InboxWorker
from receiver.render import Notification
from receiver.rules import RuleSet, load_rules
from receiver.store import DeliveryRow, EventRow, InboxItem, NoiseWrite, Processed, SQLiteStore

pytestmark = pytest.mark.anyio


class StuckCommit(SQLiteStore):
    """A store whose commit of processed events never returns (the process is stopped meanwhile)."""

    committing: asyncio.Event | None = None

    async def finish_inbox(
        self, processed: Sequence[Processed], *, now: float, noise: NoiseWrite | None = None
    ) -> list[DeliveryRow]:
        if self.committing is not None:
            self.committing.set()
        await asyncio.Event().wait()
        return []


def no_rules(tmp_path: Path) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text("channels: {}\nrules: []\n")
    return load_rules(path, environ={})


async def test_stopping_gives_back_the_lease_and_the_unfinished_batch(tmp_path: Path) -> None:
    """A worker stopped mid-batch frees its lease and its claimed events: the next worker takes both at once."""
    store = StuckCommit(str(tmp_path / "r.db"))
    await store.open()
    try:
        ids = [
            (await store.accept(InboxItem("uipath", f"e{n}", "job.faulted", b"{}", received_at=time.time()))).inbox_id
            for n in range(3)
        ]
        ruleset = no_rules(tmp_path)
        store.committing = asyncio.Event()
        worker = InboxWorker(store, lambda: ruleset, clock=time.time, lease=60, poll=0.05)
        task = asyncio.create_task(worker.run())
        with anyio.fail_after(20):
            await store.committing.wait()  # the worker claimed the batch and is stuck committing it
        # While it runs, it holds both: nobody else gets the lease or the events.
        assert not await store.acquire_lease("inbox", "next", now=time.time(), ttl=60)
        assert [] == await store.claim_inbox(limit=10, now=time.time(), lease=60)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await store.acquire_lease("inbox", "next", now=time.time(), ttl=60)
        assert ids == [r.id for r in await store.claim_inbox(limit=10, now=time.time(), lease=60)]
    finally:
        await store.close()


def test_an_outcome_with_text_orjson_refuses_is_still_stored_as_json() -> None:
    """A lone surrogate (from event text in a noise reason) or an integer past 64 bits: json writes it."""
    from receiver.pipeline.worker import _outcome_json

    summary = {"parsed": True, "noise": [{"reason": "key \ud800 muted"}], "count": 2**70}
    assert summary == json.loads(_outcome_json(summary))
    assert {"matched": ["faults"]} == json.loads(_outcome_json({"matched": ["faults"]}))


class ArrivesAfterAnEmptyClaim(SQLiteStore):
    """Stores an event (and wakes the worker, as the edge does) just after a claim that found nothing.

    The worker was then still in its pass (the due timers come after the claim); the wake-up it
    got there was cleared when the pass ended, and the event waited a whole poll interval.
    """

    worker: InboxWorker | None = None
    arrive: InboxItem | None = None

    async def claim_inbox(self, *, limit: int, now: float, lease: float) -> list[EventRow]:
        rows = await super().claim_inbox(limit=limit, now=now, lease=lease)
        if not rows and self.arrive is not None and self.worker is not None:
            item, self.arrive = self.arrive, None
            await self.accept(item)
            self.worker.wake()
        return rows


async def test_an_event_stored_while_the_worker_ends_a_pass_is_processed_at_once(tmp_path: Path) -> None:
    """The wake-up is not lost between the worker's claim and its wait: no poll interval's delay."""
    store = ArrivesAfterAnEmptyClaim(str(tmp_path / "r.db"))
    await store.open()
    try:
        ruleset = no_rules(tmp_path)
        worker = InboxWorker(store, lambda: ruleset, clock=time.time, lease=60, poll=30)
        store.worker = worker
        store.arrive = InboxItem("uipath", "late", "job.faulted", b"{}", received_at=time.time())
        task = asyncio.create_task(worker.run())
        try:
            for _ in range(300):  # 3 s, against the 30 s poll the event used to wait for
                if store.arrive is None and (await store.queue_stats(now=time.time())).inbox_depth == 0:
                    break
                await asyncio.sleep(0.01)
            assert store.arrive is None, "the event was never stored"
            assert 0 == (await store.queue_stats(now=time.time())).inbox_depth
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await store.close()


def _slow_rules(tmp_path: Path) -> RuleSet:
    """One rule for robot logs whose body template takes ~0.5 s or more: longer than an event may hold the loop."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        "channels: {ops: 'log://'}\n"
        "rules:\n"
        "  - name: slow\n"
        "    match: {type: robot.log}\n"
        "    notify: [ops]\n"
        "    body: \"{% for i in range(12) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}done\"\n"
    )
    return load_rules(path, environ={})


async def _ticks_while(work: asyncio.Task[int]) -> float:
    """The longest gap between two turns of the event loop while ``work`` runs (seconds)."""
    longest, last = 0.0, time.monotonic()
    while not work.done():
        await asyncio.sleep(0.005)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest


@pytest.mark.parametrize(
    ("budget", "state", "deliveries"),
    [pytest.param(None, "processed", 1, id="no-budget"), pytest.param(0.1, "unparsed", 0, id="budget-0.1s")],
)
async def test_a_slow_event_moves_off_the_loop(
    tmp_path: Path, budget: float | None, state: str, deliveries: int
) -> None:
    """An event that takes longer than 50 ms finishes in the worker's thread (or is set aside past its budget)."""
    store = SQLiteStore(str(tmp_path / "r.db"))
    await store.open()
    try:
        body = json.dumps({"Level": "Error", "ProcessName": "P", "Message": "m"}).encode()
        inbox_id = (await store.accept(InboxItem("uipath", "slow", "robot.log", body, time.time()))).inbox_id
        ruleset = _slow_rules(tmp_path)
        worker = InboxWorker(store, lambda: ruleset, clock=time.time, lease=60, poll=30, event_budget=budget)
        assert await store.acquire_lease("inbox", worker.owner, now=time.time(), ttl=60)
        task = asyncio.create_task(worker.run_once())
        longest = await _ticks_while(task)
        assert 1 == await task
        row = await store.get_event(inbox_id)
        assert row is not None
        assert state == row.state
        assert deliveries == len(await store.deliveries_of(inbox_id))
        if budget is not None:
            assert "budget_exceeded" == json.loads(row.outcome or "{}")["error"]
        assert longest < 0.15, f"the loop was held {longest:.3f} s"
    finally:
        await store.close()


async def test_the_lease_is_renewed_before_it_lapses_not_on_every_pass(tmp_path: Path) -> None:
    """A running worker keeps the inbox lease (no other replica takes over) with one renewal per half lease."""
    store = SQLiteStore(str(tmp_path / "r.db"))
    await store.open()
    try:
        now = [1000.0]
        worker = InboxWorker(store, lambda: no_rules(tmp_path), clock=lambda: now[0], lease=10, poll=0.05)
        renewals: list[float] = []
        acquire = store.acquire_lease

        async def counted(name: str, owner: str, *, now: float, ttl: float) -> bool:
            renewals.append(now)
            return await acquire(name, owner, now=now, ttl=ttl)

        store.acquire_lease = counted  # type: ignore[method-assign]
        for at in (1000.0, 1001.0, 1004.9, 1005.0, 1008.0, 1012.0, 1014.9):
            now[0] = at
            assert await worker._lead()
        # Taken at 1000, renewed at 1005 and 1012 (half of the 10 s lease gone each time), not per pass.
        assert renewals == [1000.0, 1005.0, 1012.0]
        # Held until 1022 (1012 + 10): another replica gets it only then.
        assert not await acquire("inbox", "other", now=1021.9, ttl=10)
        assert await acquire("inbox", "other", now=1022.0, ttl=10)
        # A clock that jumps back renews at once rather than trusting an expiry it cannot place.
        now[0] = 900.0
        assert not await worker._lead()
        assert renewals[-1] == 900.0
    finally:
        await store.close()


class FailsToCommit(SQLiteStore):
    """A store whose commits of events with deliveries fail ``failures`` times (a full disk, a lock held)."""

    failures = 2
    leased = 0  # deliveries the failed commits were to write leased
    claims = 0

    async def finish_inbox(
        self, processed: Sequence[Processed], *, now: float, noise: NoiseWrite | None = None
    ) -> list[DeliveryRow]:
        if self.failures and any(p.deliveries for p in processed):
            self.failures -= 1
            self.leased += sum(d.lease > 0 for p in processed for d in p.deliveries)
            raise StoreError("disk I/O error")
        return await super().finish_inbox(processed, now=now, noise=noise)

    async def claim_deliveries(self, channel: str, *, limit: int, now: float, lease: float) -> list[DeliveryRow]:
        self.claims += 1
        return await super().claim_deliveries(channel, limit=limit, now=now, lease=lease)


class Sent:
    """A notifier that records the titles it sent."""

    def __init__(self) -> None:
        self.titles: list[str] = []

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109 - the Notifier protocol
        self.titles.append(notification.title)
        return SendResult(status="sent", reason=None, elapsed=0.0, recoverable=False)


async def test_a_failed_commit_gives_back_the_room_it_reserved(tmp_path: Path) -> None:
    """Commits that failed leave the channel's room as it was: the event's delivery still goes out once committed."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        "channels:\n  ops: {url: 'json://127.0.0.1:9/x', concurrency: 1}\n"
        "rules:\n  - name: faults\n    match: {type: job.faulted}\n    notify: [ops]\n    title: fault\n"
    )
    ruleset = load_rules(path, environ={})
    store = FailsToCommit(str(tmp_path / "r.db"))
    await store.open()
    notifier = Sent()
    try:
        # Concurrency 1: room for two deliveries (one sending, one claimed ahead), which two lost reservations fill.
        dispatcher = Dispatcher(store, lambda: ruleset, notifier, clock=time.time, lease=30, poll=600)
        worker = InboxWorker(store, lambda: ruleset, clock=time.time, lease=60, poll=600, handoff=dispatcher)
        await store.listen(lambda topic: dispatcher.wake([topic.removeprefix("deliveries:")]))
        task = asyncio.create_task(dispatcher.run())
        try:
            for _ in range(2000):  # the channel loop's first look at the outbox, within 20 s
                if store.claims:
                    break
                await asyncio.sleep(0.01)
            body = (DATA / "job.faulted.json").read_bytes()
            await store.accept(InboxItem("uipath", "e1", "job.faulted", body, received_at=time.time()))
            for _ in range(2):
                with pytest.raises(StoreError):
                    await worker.run_once()
            assert 2 == store.leased  # each failed commit had room reserved
            assert 1 == await worker.run_once()
            for _ in range(2000):
                if notifier.titles:
                    break
                await asyncio.sleep(0.01)
            assert ["fault"] == notifier.titles
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await store.close()
