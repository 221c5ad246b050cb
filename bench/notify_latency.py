"""How long after ``accept`` returns the store's wake-up (``listen``) reaches this process.

The workers are woken only by the store's bus (docs/performance.md, "Fast paths"); this measures
what that costs a single process against a direct call made when ``accept`` returns.

Run: ``.venv/bin/python bench/notify_latency.py [DATABASE_URL] [--count N]`` (default: a
temporary SQLite file; for PostgreSQL give ``postgresql://USER@HOST:5432/DB``; a schema of its
own is created, and its name printed to drop afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from receiver.store import InboxItem, open_store


async def _measure(url: str, count: int) -> list[float]:
    store = open_store(url)
    await store.open()
    heard = asyncio.Event()
    at: list[float] = [0.0]

    def on_topic(topic: str) -> None:
        if topic == "inbox":
            at[0] = time.perf_counter()
            heard.set()

    await store.listen(on_topic)
    late: list[float] = []
    try:
        for n in range(count):
            heard.clear()
            item = InboxItem(
                source="bench",
                event_id=f"e-{n}",
                type="job.faulted",
                body=b"{}",
                received_at=time.time(),
                event_time=None,
            )
            await store.accept(item)
            returned = time.perf_counter()
            await asyncio.wait_for(heard.wait(), 5)
            late.append(max(0.0, at[0] - returned) * 1e6)
    finally:
        await store.close()
    return late


def main() -> None:
    """Print the p50, p90 and maximum delay in microseconds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'notify.db'}"
        schema = f"notify_bench_{uuid.uuid4().hex[:8]}" if url.startswith("postgresql") else None
        if schema:
            url += ("&" if "?" in url else "?") + f"schema={schema}"
        late = sorted(asyncio.run(_measure(url, max(1, min(args.count, 10_000)))))
    p90 = late[int(len(late) * 0.9) - 1] if len(late) >= 10 else late[-1]
    summary = f"p50 {statistics.median(late):.0f}  p90 {p90:.0f}  max {late[-1]:.0f}"
    print(f"wake-up after accept returned, µs: {summary}")  # noqa: T201 - the result
    if schema:
        print(f"drop the schema it made: DROP SCHEMA {schema} CASCADE")  # noqa: T201 - a hint


if __name__ == "__main__":
    main()
