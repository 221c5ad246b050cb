"""A flood on a channel does not bury the next alert: the dispatcher takes each rule's deliveries in turn."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from receiver.delivery.notifier import SendResult
from receiver.pipeline.dispatch import Dispatcher
from receiver.render import Notification
from receiver.rules import RuleSet, load_rules
from receiver.store import InboxItem, NewDelivery, Processed, Store

pytestmark = pytest.mark.anyio

CONCURRENCY = 4
FLOOD = 5000


class Sink:
    """Records the titles it is sent, in order; each send takes a millisecond."""

    def __init__(self) -> None:
        self.titles: list[str] = []

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109 - the Notifier protocol
        await asyncio.sleep(0.001)
        self.titles.append(notification.title)
        return SendResult(status="sent", reason=None, elapsed=0.001, recoverable=False)


def channel_rules(tmp_path: Path) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(f"channels:\n  ops: {{url: 'json://127.0.0.1:9/x', concurrency: {CONCURRENCY}}}\nrules: []\n")
    return load_rules(path, environ={})


async def queue(store: Store, rule: str, titles: list[str], *, at: float) -> None:
    """One event and one delivery on channel ``ops`` per title, committed 500 at a time.

    The 500 accepts are submitted together, so the store's group commit writes them in one
    transaction (one at a time, the 5,000 rows took seconds of commits on PostgreSQL).
    """
    for start in range(0, len(titles), 500):
        chunk = titles[start : start + 500]
        accepted = await asyncio.gather(
            *(store.accept(InboxItem("uipath", f"{rule}-{title}", "robot.log", b"{}", at)) for title in chunk)
        )
        batch = [
            Processed(item.inbox_id, "processed", "{}", [NewDelivery(rule, "ops", title, "b", "failure", "text")])
            for item, title in zip(accepted, chunk, strict=True)
        ]
        await store.finish_inbox(batch, now=at)


async def wait_for(predicate: object, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


async def test_a_fault_after_a_flood_of_robot_errors_goes_out_within_a_few_sends(store: Store, tmp_path: Path) -> None:
    """5,000 robot-log Errors queued and being sent; a job.faulted queued then is among the next few sends."""
    await queue(store, "robot-errors", [f"error {n}" for n in range(FLOOD)], at=time.time() - 60)
    sink = Sink()
    ruleset = channel_rules(tmp_path)
    dispatcher = Dispatcher(store, lambda: ruleset, sink, clock=time.time, lease=30, poll=0.05)
    task = asyncio.create_task(dispatcher.run())
    try:
        await wait_for(lambda: len(sink.titles) >= 50)
        await queue(store, "job-faulted", ["job faulted"], at=time.time())
        sent_before = len(sink.titles)
        dispatcher.wake(["ops"])
        await wait_for(lambda: "job faulted" in sink.titles)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    position = sink.titles.index("job faulted") + 1 - sent_before
    # Ahead of it at most: the sends in flight, the rows claimed ahead, and the flood's next row in its claim.
    assert position <= CONCURRENCY * 2 + 2, f"the fault was send {position} after it was queued"
    errors = [int(t.split()[1]) for t in sink.titles if t.startswith("error")]
    assert errors == sorted(errors), "the flood's own order was not kept"


async def test_queued_before_the_dispatcher_starts_the_fault_is_in_its_first_claim(
    store: Store, tmp_path: Path
) -> None:
    """With the flood and the fault both waiting, the fault is among the first concurrency*2+1 sends."""
    await queue(store, "robot-errors", [f"error {n}" for n in range(FLOOD)], at=time.time() - 60)
    await queue(store, "job-faulted", ["job faulted"], at=time.time())
    sink = Sink()
    ruleset = channel_rules(tmp_path)
    dispatcher = Dispatcher(store, lambda: ruleset, sink, clock=time.time, lease=30, poll=0.05)
    task = asyncio.create_task(dispatcher.run())
    try:
        await wait_for(lambda: "job faulted" in sink.titles)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sink.titles.index("job faulted") + 1 <= CONCURRENCY * 2 + 1
