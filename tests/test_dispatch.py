"""The dispatcher's channel loop, in process on a real SQLite store with a scripted notifier.

Below, the hand-off of deliveries leased by the inbox worker's commit, with the worker, on both stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import pytest

from receiver.delivery.notifier import SendResult
from receiver.pipeline.dispatch import Dispatcher
from receiver.pipeline.worker import InboxWorker
from receiver.render import Notification
from receiver.rules import RuleSet, load_rules
from receiver.store import DeliveryRow, InboxItem, NewDelivery, Processed, SQLiteStore, Store

pytestmark = pytest.mark.anyio


class SlowNotifier:
    """Each send takes ``seconds``; records the order of sends and the most at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.running = 0
        self.peak = 0
        self.events: list[str] = []

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109 - the Notifier protocol
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.events.append(f"send {notification.title}")
        await asyncio.sleep(self.seconds)
        self.running -= 1
        return SendResult(status="sent", reason=None, elapsed=self.seconds, recoverable=False)


class CountedClaims(SQLiteStore):
    """A store that notes each claim of deliveries among the sends."""

    def __init__(self, path: str, notifier: SlowNotifier) -> None:
        super().__init__(path)
        self.notifier = notifier
        self.busy_at_claims: list[int] = []  # sends in flight when each claim that found rows returned

    async def claim_deliveries(self, channel: str, *, limit: int, now: float, lease: float) -> list[DeliveryRow]:
        rows = await super().claim_deliveries(channel, limit=limit, now=now, lease=lease)
        if rows:
            self.notifier.events.append(f"claimed {len(rows)}")
            # One turn of the loop: sends started before the claim have begun by now (an inline claim
            # answers without one); a send started only after the claim has not.
            await asyncio.sleep(0)
            self.busy_at_claims.append(self.notifier.running)
        return rows


def rules(tmp_path: Path, concurrency: int) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(f"channels:\n  ops: {{url: 'json://127.0.0.1:9/x', concurrency: {concurrency}}}\nrules: []\n")
    return load_rules(path, environ={})


async def outbox(store: SQLiteStore, count: int, *, first: int = 0) -> None:
    for n in range(first, first + count):
        accepted = await store.accept(
            InboxItem(source="uipath", event_id=f"e{n}", type="job.faulted", body=b"{}", received_at=time.time())
        )
        delivery = NewDelivery(
            rule="r", channel="ops", title=str(accepted.inbox_id), body="b", severity="failure", body_format="text"
        )
        await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}", [delivery])], now=time.time())


async def run_until_sent(dispatcher: Dispatcher, store: Store, count: int) -> None:
    task = asyncio.create_task(dispatcher.run())
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if await _all_sent(store, count):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("not everything was sent within 20 s")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _all_sent(store: Store, count: int) -> bool:
    rows = await store.list_deliveries(limit=count + 10)
    return len(rows) == count and all(r.state == "sent" for r in rows)


async def test_never_more_sends_at_once_than_the_channel_allows(tmp_path: Path) -> None:
    notifier = SlowNotifier(0.02)
    store = SQLiteStore(str(tmp_path / "r.db"))
    await store.open()
    try:
        await outbox(store, 20)
        ruleset = rules(tmp_path, concurrency=3)
        dispatcher = Dispatcher(store, lambda: ruleset, notifier, clock=time.time, lease=30, poll=0.05)
        await run_until_sent(dispatcher, store, 20)
    finally:
        await store.close()
    sends = [e for e in notifier.events if e.startswith("send")]
    assert 20 == len(sends) == len(set(sends)), "a delivery was sent twice or not at all"
    assert 3 == notifier.peak


async def sent_with_claims_counted(tmp_path: Path, notifier: SlowNotifier, *, deliveries: int) -> CountedClaims:
    """Send ``deliveries`` rows through a channel of concurrency 2; the store noted each claim."""
    store = CountedClaims(str(tmp_path / "r.db"), notifier)
    await store.open()
    try:
        await outbox(store, deliveries)
        ruleset = rules(tmp_path, concurrency=2)
        dispatcher = Dispatcher(store, lambda: ruleset, notifier, clock=time.time, lease=30, poll=0.05)
        await run_until_sent(dispatcher, store, deliveries)
    finally:
        await store.close()
    return store


async def test_the_next_rows_are_claimed_ahead_of_the_sends(tmp_path: Path) -> None:
    """Between two sends of a channel there is no claim: the next round was claimed with the last."""
    notifier = SlowNotifier(0.01)
    await sent_with_claims_counted(tmp_path, notifier, deliveries=4)
    assert ["claimed 4", "send 1", "send 2", "send 3", "send 4"] == notifier.events


async def test_a_freed_slot_never_waits_for_a_claim(tmp_path: Path) -> None:
    """The next round is claimed while every slot is sending, not when one has freed and has no row."""
    notifier = SlowNotifier(0.01)
    store = await sent_with_claims_counted(tmp_path, notifier, deliveries=12)
    assert 12 == len({e for e in notifier.events if e.startswith("send")})
    first, *later = store.busy_at_claims
    assert 0 == first
    assert later, "everything was claimed at once: the test shows nothing"
    assert all(busy == 2 for busy in later), store.busy_at_claims


async def test_lowering_the_concurrency_claims_nothing_until_the_sends_drain(tmp_path: Path) -> None:
    """A reload that lowers a busy channel's concurrency starts no send and claims no row over it."""
    limits: list[int] = []
    started_after: list[int] = []  # sends in flight when each send after the reload started

    class Limits(SQLiteStore):
        async def claim_deliveries(self, channel: str, *, limit: int, now: float, lease: float) -> list[DeliveryRow]:
            limits.append(limit)
            return await super().claim_deliveries(channel, limit=limit, now=now, lease=lease)

    class Noting(SlowNotifier):
        reloaded = False

        async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109
            if self.reloaded:
                started_after.append(self.running)
            return await super().send(url, notification, timeout=timeout)

    notifier = Noting(0.1)
    store = Limits(str(tmp_path / "r.db"))
    await store.open()
    try:
        await outbox(store, 4)  # all claimed by the first round: nothing is held in reserve
        current = rules(tmp_path, concurrency=4)
        dispatcher = Dispatcher(store, lambda: current, notifier, clock=time.time, lease=30, poll=0.05)
        task = asyncio.create_task(dispatcher.run())
        for _ in range(500):
            if notifier.running == 4:
                break
            await asyncio.sleep(0.01)
        current = rules(tmp_path, concurrency=1)
        notifier.reloaded = True
        await outbox(store, 10, first=4)
        dispatcher.wake(["ops"])
        for _ in range(500):
            if len(started_after) >= 3:
                break
            await asyncio.sleep(0.01)
        await cancelled(task)
    finally:
        await store.close()
    assert 4 == notifier.peak
    assert len(started_after) >= 3, "nothing was sent after the reload"
    assert all(running == 0 for running in started_after), started_after
    assert all(limit > 0 for limit in limits), limits


@contextlib.asynccontextmanager
async def sending(
    tmp_path: Path, notifier: SlowNotifier, *, deliveries: int, concurrency: int
) -> AsyncIterator[tuple[SQLiteStore, Dispatcher, asyncio.Task[None]]]:
    """A dispatcher over ``deliveries`` rows, yielded once ``concurrency`` sends are in flight; stopped after."""
    store = SQLiteStore(str(tmp_path / "r.db"))
    await store.open()
    task: asyncio.Task[None] | None = None
    try:
        await outbox(store, deliveries)
        ruleset = rules(tmp_path, concurrency=concurrency)
        dispatcher = Dispatcher(store, lambda: ruleset, notifier, clock=time.time, lease=60, poll=0.05)
        task = asyncio.create_task(dispatcher.run())
        for _ in range(200):
            if notifier.running == concurrency:
                break
            await asyncio.sleep(0.01)
        yield store, dispatcher, task
    finally:
        if task is not None:
            await cancelled(task)
        await store.close()


async def cancelled(task: asyncio.Task[None]) -> None:
    """Cancel the dispatcher's run() as the app's shutdown does, and wait for it to end."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_stopping_gives_back_the_rows_claimed_ahead(tmp_path: Path) -> None:
    """On shutdown, rows claimed ahead and never started are claimable at once; sends cut short keep their lease."""
    notifier = SlowNotifier(3600)  # every send hangs until the dispatcher is stopped
    async with sending(tmp_path, notifier, deliveries=10, concurrency=2) as (store, _, task):
        await cancelled(task)
        started = {int(e.removeprefix("send ")) for e in notifier.events}
        claimable = await store.claim_deliveries("ops", limit=20, now=time.time(), lease=60)
        # 2 sends were cut short (leased: the channel may have them), 2 more were claimed ahead (given back).
        assert (2, 8) == (len(started), len(claimable))
        assert not started & {int(r.title) for r in claimable}


async def test_draining_lets_the_sends_in_flight_finish_and_starts_no_more(tmp_path: Path) -> None:
    """drain() waits for the sends in flight to be recorded, starts none after, and leaves the rest claimable."""
    notifier = SlowNotifier(0.3)
    async with sending(tmp_path, notifier, deliveries=10, concurrency=2) as (store, dispatcher, task):
        await dispatcher.drain(5.0)
        await cancelled(task)
        states = [r.state for r in await store.list_deliveries(limit=20)]
        claimable = await store.claim_deliveries("ops", limit=20, now=time.time(), lease=60)
        assert (2, 2, 8) == (len(notifier.events), states.count("sent"), len(claimable))


async def test_draining_gives_up_after_the_grace(tmp_path: Path) -> None:
    """A send that outlasts the grace is cut short when run() is cancelled, and keeps its lease."""
    notifier = SlowNotifier(3600)
    async with sending(tmp_path, notifier, deliveries=3, concurrency=1) as (store, dispatcher, task):
        started = time.monotonic()
        await dispatcher.drain(0.2)
        assert time.monotonic() - started < 2
        await cancelled(task)
        claimable = await store.claim_deliveries("ops", limit=20, now=time.time(), lease=60)
        assert (1, 2) == (len(notifier.events), len(claimable))


class CountedSupervision(SQLiteStore):
    """A store that counts the supervisor's query for channels with deliveries due."""

    queries = 0

    async def due_channels(self, now: float) -> set[str]:
        self.queries += 1
        return await super().due_channels(now)


async def test_waking_a_running_channel_leaves_the_supervisor_to_its_poll(tmp_path: Path) -> None:
    """The inbox worker wakes a channel after every batch: that sends the rows at once and costs no extra query."""
    store = CountedSupervision(str(tmp_path / "r.db"))
    await store.open()
    try:
        ruleset = rules(tmp_path, concurrency=2)
        # Polls of 30 s: only the wake-ups can get these rows sent within the test's few seconds.
        dispatcher = Dispatcher(store, lambda: ruleset, SlowNotifier(0.001), clock=time.time, lease=30, poll=30)
        task = asyncio.create_task(dispatcher.run())
        try:
            for _ in range(2000):  # bounded: 20 s
                if store.queries >= 1:
                    break  # the supervisor's first pass has run
                await asyncio.sleep(0.01)
            assert 1 == store.queries
            for n in range(20):
                await outbox(store, 1, first=n)
                dispatcher.wake(["ops"])
                await asyncio.sleep(0.01)
            for _ in range(500):
                if await _all_sent(store, 20):
                    break
                await asyncio.sleep(0.01)
            assert await _all_sent(store, 20)
            assert store.queries <= 2, f"{store.queries} supervisor queries for 20 wake-ups"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await store.close()


async def test_one_claim_per_wake_at_a_steady_rate(tmp_path: Path) -> None:
    """Deliveries arriving one at a time cost one claim each: a send that ends makes nothing due, no claim follows."""
    claims: list[int] = []  # rows each claim returned

    class Counted(SQLiteStore):
        async def claim_deliveries(self, channel: str, *, limit: int, now: float, lease: float) -> list[DeliveryRow]:
            rows = await super().claim_deliveries(channel, limit=limit, now=now, lease=lease)
            claims.append(len(rows))
            return rows

    notifier = SlowNotifier(0.0)
    store = Counted(str(tmp_path / "r.db"))
    await store.open()
    try:
        ruleset = rules(tmp_path, concurrency=2)
        # A poll far longer than the test: every claim here is one a wake-up or a full claim asked for.
        dispatcher = Dispatcher(store, lambda: ruleset, notifier, clock=time.time, lease=30, poll=600)
        task = asyncio.create_task(dispatcher.run())
        try:
            for n in range(5):
                await outbox(store, 1, first=n)
                dispatcher.wake(["ops"])
                deadline = time.monotonic() + 20
                while not await _all_sent(store, n + 1):
                    assert time.monotonic() < deadline, f"delivery {n} was not sent"
                    await asyncio.sleep(0.01)
        finally:
            await cancelled(task)
    finally:
        await store.close()
    assert len({e for e in notifier.events if e.startswith("send")}) == 5
    # The loop's first look (nothing due yet), then one claim of one row per wake-up.
    assert claims == [0, 1, 1, 1, 1, 1]


# -- deliveries leased by the commit that wrote them ------------------------------------------

FAULT = (Path(__file__).parent / "data" / "job.faulted.json").read_bytes()


def pipeline_rules(tmp_path: Path, concurrency: int) -> RuleSet:
    """Channel ``ops`` (a 1 s send timeout: the lease is the dispatcher's) and a rule sending each job.faulted there."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        f"channels:\n  ops: {{url: 'json://127.0.0.1:9/x', concurrency: {concurrency}, timeout: 1s}}\n"
        "rules:\n  - name: faults\n    match: {type: job.faulted}\n    notify: [ops]\n    title: fault\n"
    )
    return load_rules(path, environ={})


def counted_claims(monkeypatch: pytest.MonkeyPatch, store: Store) -> list[list[DeliveryRow]]:
    """The rows of each claim of deliveries the store answers from now on."""
    claims: list[list[DeliveryRow]] = []
    claim = store.claim_deliveries

    async def counted(channel: str, *, limit: int, now: float, lease: float) -> list[DeliveryRow]:
        rows = await claim(channel, limit=limit, now=now, lease=lease)
        claims.append(rows)
        return rows

    monkeypatch.setattr(store, "claim_deliveries", counted)
    return claims


async def fault(store: Store, n: int) -> None:
    """A job.faulted event arrives (as the edge stores it)."""
    await store.accept(InboxItem("uipath", f"fault-{n}", "job.faulted", FAULT, received_at=time.time()))


async def until(condition: Callable[[], Awaitable[bool] | bool], what: str, within: float = 20.0) -> None:
    """Wait until ``condition()`` holds, or fail with ``what``."""
    deadline = time.monotonic() + within
    while True:
        held = condition()
        if held if isinstance(held, bool) else await held:
            return
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def pipeline(
    store: Store, ruleset: RuleSet, notifier: SlowNotifier, *, poll: float = 600
) -> AsyncIterator[tuple[InboxWorker, Dispatcher]]:
    """The inbox worker and the dispatcher running on ``store``, woken by its commits as in the app.

    Polls of ``poll`` seconds: by default far longer than a test, so whatever is claimed, a wake-up
    asked for. Stopped after.
    """
    dispatcher = Dispatcher(store, lambda: ruleset, notifier, clock=time.time, lease=5, poll=poll)
    worker = InboxWorker(store, lambda: ruleset, clock=time.time, lease=30, poll=600, handoff=dispatcher)

    def wake(topic: str) -> None:
        if topic == "inbox":
            worker.wake()
        else:
            dispatcher.wake([topic.removeprefix("deliveries:")])

    await store.listen(wake)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(dispatcher.run())]
    try:
        yield worker, dispatcher
    finally:
        for task in tasks:
            await cancelled(task)


async def test_deliveries_at_a_steady_rate_go_out_without_a_claim(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One event at a time to an idle channel: each delivery is leased by its commit and sent once, none claimed."""
    claims = counted_claims(monkeypatch, store)
    notifier = SlowNotifier(0.0)
    async with pipeline(store, pipeline_rules(tmp_path, concurrency=2), notifier):
        await until(lambda: bool(claims), "the channel loop never looked at the outbox")
        for n in range(5):
            await fault(store, n)
            await until(functools.partial(_all_sent, store, n + 1), f"delivery {n} was not sent")
    assert ["send fault"] * 5 == notifier.events
    assert [("sent", 1)] * 5 == [(r.state, r.attempts) for r in await store.list_deliveries()]
    assert [[]] == claims  # the loop's first look, before the first event: nothing since


async def test_a_channel_with_a_backlog_still_gets_the_fair_claim(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new delivery to a channel with rows waiting is claimed in its turn, not handed over ahead of them."""
    claims = counted_claims(monkeypatch, store)
    gate = asyncio.Event()

    class Gated(SlowNotifier):
        async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109
            self.events.append(notification.title)
            await gate.wait()
            return SendResult(status="sent", reason=None, elapsed=0.0, recoverable=False)

    notifier = Gated(0.0)
    # A flood of one rule waits, due since a minute: 2 sends in flight, 2 claimed ahead, 6 in the store.
    accepted = [await store.accept(InboxItem("uipath", f"f{n}", "job.faulted", b"{}", time.time())) for n in range(10)]
    flood = [NewDelivery("flood", "ops", f"f{n}", "b", "failure", "text") for n in range(10)]
    await store.finish_inbox(
        [Processed(a.inbox_id, "processed", "{}", [d]) for a, d in zip(accepted, flood, strict=True)],
        now=time.time() - 60,
    )
    async with pipeline(store, pipeline_rules(tmp_path, concurrency=2), notifier):
        await until(lambda: 2 == len(notifier.events), "the flood's first sends did not start")
        await fault(store, 0)
        await until(functools.partial(_processed, store), "the fault was not processed")
        gate.set()
        await until(functools.partial(_all_sent, store, 11), "not everything was sent")
    assert any(r.rule == "faults" for rows in claims for r in rows), "the fault was not claimed"
    # The rows claimed ahead first, then the next claim takes each rule's first in turn: f4, then the fault.
    assert ["f0", "f1", "f2", "f3", "f4", "fault", "f5"] == notifier.events[:7]


class Dies:
    """A hand-off whose process dies between the commit that leased its deliveries and their send."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.adopted: list[DeliveryRow] = []

    def reserve(self, wanted: Mapping[str, int]) -> dict[str, tuple[int, float]]:
        return self.dispatcher.reserve(wanted)

    def adopt(self, reserved: Mapping[str, tuple[int, float]], rows: Sequence[DeliveryRow]) -> None:
        self.adopted += rows  # never sent from here

    def release(self, reserved: Mapping[str, tuple[int, float]]) -> None:
        self.dispatcher.release(reserved)


async def test_a_delivery_leased_by_a_process_that_died_is_sent_by_another_after_the_lease(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At-least-once: the commit leased it, its process never sent it; once the lease lapses another replica does."""
    claims = counted_claims(monkeypatch, store)
    ruleset = pipeline_rules(tmp_path, concurrency=2)
    dead = SlowNotifier(0.0)
    dispatcher = Dispatcher(store, lambda: ruleset, dead, clock=time.time, lease=5, poll=600)
    task = asyncio.create_task(dispatcher.run())
    try:
        await until(lambda: bool(claims), "the channel loop never looked at the outbox")
        handoff = Dies(dispatcher)
        worker = InboxWorker(store, lambda: ruleset, clock=time.time, lease=30, poll=600, handoff=handoff)
        await fault(store, 0)
        assert 1 == await worker.run_once()
        [row] = handoff.adopted
        assert [] == await store.claim_deliveries("ops", limit=10, now=time.time(), lease=5)  # leased: nobody's yet
    finally:
        await cancelled(task)
    # Another replica, its clock past the 5 s lease.
    other = SlowNotifier(0.0)
    replica = Dispatcher(store, lambda: ruleset, other, clock=lambda: time.time() + 6, lease=5, poll=0.05)
    await run_until_sent(replica, store, 1)
    assert ([], ["send fault"]) == (dead.events, other.events)
    assert [(row.id, "sent", 1)] == [(r.id, r.state, r.attempts) for r in await store.list_deliveries()]


async def test_a_due_retry_is_claimed_within_a_poll_while_deliveries_are_handed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handed-over deliveries wake no claim; the poll still looks at the store, whatever the traffic."""
    store = SQLiteStore(str(tmp_path / "r.db"))
    await store.open()
    try:
        accepted = await store.accept(InboxItem("uipath", "old", "job.faulted", b"{}", received_at=time.time()))
        retry = NewDelivery("earlier", "ops", "retry", "b", "failure", "text", hold=0.3)  # falls due in a moment
        await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}", [retry])], now=time.time())
        notifier = SlowNotifier(0.0)
        async with pipeline(store, pipeline_rules(tmp_path, concurrency=2), notifier, poll=0.2):
            # Events one after the other, each sent before the next arrives: not one idle poll interval.
            for n in range(2000):
                if "send retry" in notifier.events:
                    break
                await fault(store, n)
                await until(functools.partial(_all_sent_of, store, "faults", n + 1), f"delivery {n} was not sent")
            assert "send retry" in notifier.events
    finally:
        await store.close()


async def _all_sent_of(store: Store, rule: str, count: int) -> bool:
    rows = [r for r in await store.list_deliveries(limit=count + 10) if r.rule == rule]
    return len(rows) == count and all(r.state == "sent" for r in rows)


async def _processed(store: Store) -> bool:
    return 0 == (await store.queue_stats(now=time.time())).inbox_depth
