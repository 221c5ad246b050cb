"""The delivery baseline: apprise called directly, no receiver in between.

Sends ``--count`` notifications to one apprise URL, ``--concurrency`` at a time (the
receiver's channel concurrency), titled ``<tag><n>`` like the receiver's benchmark rules title
them with the event id. With ``--rate`` the sends are instead started at that steady rate (each
at its scheduled time while a slot is free), for the end-to-end baseline. Writes a JSON document
to ``--out``: wall-clock start, each title's scheduled time, and how many sends apprise reported
as failed. Run by the suite as a child process pinned to the server's CPU, so it gets the same
CPU the receiver gets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import apprise  # noqa: TID251 - the baseline calls apprise directly, by design


async def _send_all(url: str, tag: str, count: int, concurrency: int, rate: float | None) -> dict[str, object]:
    apobj = apprise.Apprise()
    apobj.add(url)
    slots = asyncio.Semaphore(concurrency)
    failed = 0
    scheduled: dict[str, float] = {}

    async def send(n: int) -> None:
        nonlocal failed
        async with slots:
            ok = await apobj.async_notify(body=f"direct {n}", title=f"{tag}{n}")
        failed += not ok

    start_wall, start = time.time(), time.perf_counter()
    tasks = []
    for n in range(count):
        if rate:
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            scheduled[f"{tag}{n}"] = start_wall + n / rate
        else:
            scheduled[f"{tag}{n}"] = start_wall
        tasks.append(asyncio.create_task(send(n)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
    return {"start": start_wall, "end": time.time(), "failed": failed, "scheduled": scheduled}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=float, default=None, help="sends per second (default: as fast as possible)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(_send_all(args.url, args.tag, args.count, args.concurrency, args.rate))
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
