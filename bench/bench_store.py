"""CPU per store call on the pipeline's path: accept, claim and finish, claim and mark sent, load noise.

One process drives one store: ``--count`` accepts one by one, as many at once (one group commit
after another), then the inbox worker's and the dispatcher's calls, one at a time. CPU is the
process's (the event loop and the store thread), per call. To compare two versions of the store
code, run each from its own checkout, alternating, on the same database kind:
``PYTHONPATH=. python bench/bench_store.py`` (SQLite in memory, which leaves out the fsync),
``--database sqlite:///PATH`` or ``--database postgresql://root@127.0.0.1:5432/test?schema=NAME``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from receiver.store import InboxItem, NewDelivery, Processed, open_store


async def run(url: str, count: int) -> dict[str, float]:  # noqa: C901 - one small closure per step
    """µs of CPU per call of each step."""
    store = open_store(url)
    await store.open()
    tag = uuid.uuid4().hex[:8]
    delivery = NewDelivery("r", "ops", "t", "b", "failure", "text")
    results: dict[str, float] = {}

    def item(name: str, i: int) -> InboxItem:
        return InboxItem("uipath", f"{name}{tag}{i}", "job.faulted", b"{}" * 200, 1000.0 + i)

    async def timed(name: str, calls: int, step: Callable[[], Awaitable[None]]) -> None:
        start = time.process_time()
        await step()
        results[name] = (time.process_time() - start) / calls * 1e6

    async def one_by_one() -> None:
        for i in range(count):
            await store.accept(item("s", i))

    async def burst() -> None:
        await asyncio.gather(*(store.accept(item("b", i)) for i in range(count)))

    async def claim_finish() -> None:
        for _ in range(count // 2):
            rows = await store.claim_inbox(limit=2, now=9000.0, lease=60)
            await store.finish_inbox([Processed(r.id, "processed", "{}", [delivery]) for r in rows], now=9000.0)

    async def deliver() -> None:
        for _ in range(count // 2):
            for row in await store.claim_deliveries("ops", limit=1, now=9001.0, lease=60):
                await store.mark_sent(row.id, now=9001.0, elapsed=0.01)

    async def load_noise() -> None:
        for i in range(count):
            await store.load_noise([("throttle", "r", f"k{i % 50}"), ("group", "r", "x")])

    try:
        await timed("accept, one by one", count, one_by_one)
        await timed("accept, all at once", count, burst)
        await timed("claim_inbox + finish_inbox (2 events)", count // 2, claim_finish)
        await timed("claim_deliveries + mark_sent", count // 2, deliver)
        await timed("load_noise (2 refs)", count, load_noise)
    finally:
        await store.close()
    return results


def main() -> None:
    """Parse the arguments, run, print one line per step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="sqlite:///:memory:")
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    for name, micros in asyncio.run(run(args.database, args.count)).items():
        print(f"{name:40s} {micros:8.1f} µs CPU per call")  # noqa: T201 - a bench prints its result


if __name__ == "__main__":
    main()
