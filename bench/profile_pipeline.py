"""Where an event's CPU goes after the 202: the inbox worker by part, and the dispatcher per send.

In-process, no HTTP server: the same store, rule engine, worker, dispatcher and notifier
``receiver serve`` runs, driven directly and measured with ``time.process_time`` (user + system,
all threads, the store thread included), pinned to the server CPU. The notification sink
(bench/sink.py, 5 ms per answer) runs on the load CPU.

- worker: 1,000 signed job.faulted bodies in the inbox, the delivery benchmark's rule (every
  job.faulted to one json:// channel, title from the event id); CPU per event, and the share of it
  in each part (timed around the part's function, so the parts add up to a little less).
- delivery: 1,000 sends, 4 at a time, to the sink: apprise called directly; receiver's notifier;
  the dispatcher over a SQLite outbox (claims, outcomes, attempts, metrics, log line) with
  receiver's notifier; the same dispatcher with a stand-in channel that only waits 5 ms, which is
  the dispatcher's and the store's own cost per send; and that again over an outbox in a list,
  which leaves the dispatcher's own.

Run: ``.venv/bin/python bench/profile_pipeline.py [--events N] [--reps R]``. Prints medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import apprise  # noqa: TID251 - the baseline calls apprise directly, by design
from harness import SECRET, SERVER_CPU, Sink, run_tag, signed_faults, sink_rules

from receiver.delivery.notifier import AppriseNotifier, SendResult
from receiver.logconfig import configure_logging
from receiver.pipeline.dispatch import Dispatcher
from receiver.render import Notification
from receiver.rules import RuleSet
from receiver.rules.load import load_rules
from receiver.settings import Settings  # noqa: TID251 - logging configured as `receiver serve` does
from receiver.store import DeliveryRow, InboxItem, NewDelivery, Processed
from receiver.store.sqlite import SQLiteStore

CONCURRENCY = 4


class _Parts:
    """Seconds spent inside chosen functions, by name (patched in for one run)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def timing(self, owner: Any, attribute: str, label: str) -> Iterator[None]:
        original = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started

        setattr(owner, attribute, timed)
        try:
            yield
        finally:
            setattr(owner, attribute, original)


async def _store_with(tmp: Path, events: int) -> tuple[SQLiteStore, list[int]]:
    store = SQLiteStore(str(tmp / "receiver.db"))
    await store.open()
    items = [
        InboxItem(source="uipath", event_id=event_id, type="job.faulted", body=body, received_at=time.time())
        for event_id, _, body in signed_faults(events, run_tag())
    ]
    accepted = await asyncio.gather(*(store.accept(item) for item in items))
    return store, [a.inbox_id for a in accepted]


async def _worker_run(rules: RuleSet, events: int) -> dict[str, float]:
    import receiver.noise.engine as engine_module
    import receiver.noise.stage as stage_module
    import receiver.pipeline.worker as worker_module

    parts = _Parts()
    with tempfile.TemporaryDirectory() as tmp:
        store, _ = await _store_with(Path(tmp), events)
        worker = worker_module.InboxWorker(store, lambda: rules, clock=time.time, lease=60, poll=1)
        with contextlib.ExitStack() as patches:
            patches.enter_context(parts.timing(worker_module, "parse_row", "typed parse (pydantic)"))
            patches.enter_context(parts.timing(engine_module.Engine, "plan", "rule matching (plan)"))
            patches.enter_context(parts.timing(stage_module, "render", "templates (render)"))
            patches.enter_context(parts.timing(engine_module.Engine, "process", "noise engine incl. render"))
            patches.enter_context(parts.timing(SQLiteStore, "_call_locked", "store calls (thread or inline)"))
            cpu = time.process_time()
            while await worker.run_once():
                pass
            cpu = time.process_time() - cpu
        await store.close()
    return {"worker CPU per event": cpu / events} | {k: v / events for k, v in parts.seconds.items()}


class _StandIn:
    """A channel that takes 5 ms and costs nothing: what is left is the dispatcher's own cost."""

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109
        await asyncio.sleep(0.005)
        return SendResult("sent", None, 0.005, recoverable=False)


class _MemoryOutbox:
    """The outbox in a list: what the dispatcher costs per send without SQLite."""

    def __init__(self, count: int) -> None:
        now = time.time()
        self.rows = [
            DeliveryRow(
                n, n, "faults", "sink", f"t{n}", f"b{n}", "failure", "text", "pending", 0, now, now, now, None, None
            )
            for n in range(1, count + 1)
        ]
        self.sent = 0

    async def claim_deliveries(self, channel: str, *, limit: int, now: float, lease: float) -> list[DeliveryRow]:
        claimed, self.rows = self.rows[:limit], self.rows[limit:]
        return claimed

    async def mark_sent(self, delivery_id: int, *, now: float, elapsed: float) -> None:
        self.sent += 1

    async def due_channels(self, now: float) -> set[str]:
        return set()


async def _bounded(count: int, send: Callable[[int], Awaitable[Any]]) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with slots:
            await send(n)

    await asyncio.gather(*(one(n) for n in range(count)))


async def _direct(url: str, count: int) -> None:
    apobj = apprise.Apprise()
    apobj.add(url)
    await _bounded(count, lambda n: apobj.async_notify(body=f"direct {n}", title=f"t{n}"))


async def _notifier(url: str, count: int) -> None:
    notifier = AppriseNotifier()
    note = Notification(title="t", body="b", severity="failure", body_format="text")
    await _bounded(count, lambda n: notifier.send(url, note, timeout=30))


async def _dispatcher(rules: RuleSet, count: int, notifier: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store, inbox_ids = await _store_with(Path(tmp), count)
        deliveries = [NewDelivery("faults", "sink", f"t{n}", f"b{n}", "failure", "text") for n in range(count)]
        await store.finish_inbox(
            [Processed(i, "processed", "{}", [d]) for i, d in zip(inbox_ids, deliveries, strict=True)],
            now=time.time(),
        )
        dispatcher = Dispatcher(store, lambda: rules, notifier, clock=time.time, lease=60, poll=0.5)
        task = asyncio.create_task(dispatcher.run())
        try:
            while await _pending(store):  # noqa: ASYNC110 - polls the store, as a user would
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await store.close()


async def _pending(store: SQLiteStore) -> int:
    stats = (await store.queue_stats(now=time.time())).channels.get("sink")
    return stats.pending if stats else 0


async def _dispatcher_in_memory(rules: RuleSet, count: int) -> None:
    outbox = _MemoryOutbox(count)
    store: Any = outbox  # the three methods the dispatcher calls on a busy channel
    dispatcher = Dispatcher(store, lambda: rules, _StandIn(), clock=time.time, lease=60, poll=0.5)
    task = asyncio.create_task(dispatcher.run())
    try:
        while outbox.sent < count:  # noqa: ASYNC110 - polls, as the SQLite variant does
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _cpu_per(count: int, run: Callable[[], Awaitable[None]]) -> float:
    cpu = time.process_time()
    asyncio.run(run())
    return (time.process_time() - cpu) / count


def main(argv: list[str] | None = None) -> int:
    """Measure and print the worker's parts and the delivery layers."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("RECEIVER_WEBHOOK_SECRET", SECRET)
    configure_logging(Settings(log_format="json", log_level="info"))
    sink = Sink().start()  # pinned to the load CPU by the harness
    if SERVER_CPU is not None:
        os.sched_setaffinity(0, {SERVER_CPU})
    results: dict[str, list[float]] = defaultdict(list)
    try:
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
            rules = load_rules(sink_rules(Path(tmp), sink.port, concurrency=CONCURRENCY), environ={})
            n = args.events
            for _ in range(args.reps):
                for name, value in asyncio.run(_worker_run(rules, n)).items():
                    results[name].append(value)
                results["apprise direct"].append(_cpu_per(n, lambda: _direct(sink.url, n)))
                results["receiver's notifier"].append(_cpu_per(n, lambda: _notifier(sink.url, n)))
                results["dispatcher + notifier"].append(_cpu_per(n, lambda: _dispatcher(rules, n, AppriseNotifier())))
                results["dispatcher, stand-in channel"].append(_cpu_per(n, lambda: _dispatcher(rules, n, _StandIn())))
                results["... and an in-memory outbox"].append(_cpu_per(n, lambda: _dispatcher_in_memory(rules, n)))
    finally:
        sink.stop()
    print(f"CPU µs, median of {args.reps} runs of {args.events} (user + system, all threads)")  # noqa: T201
    for name, values in results.items():
        scope = "per send" if name in _DELIVERY else "per event"
        print(f"  {name:32} {statistics.median(values) * 1e6:7.0f} µs {scope}")  # noqa: T201
    return 0


_DELIVERY = (
    "apprise direct",
    "receiver's notifier",
    "dispatcher + notifier",
    "dispatcher, stand-in channel",
    "... and an in-memory outbox",
)


if __name__ == "__main__":
    sys.exit(main())
