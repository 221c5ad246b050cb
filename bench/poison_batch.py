"""Reproduction: one event with a 10,000-character throttle key in a batch of 100 (issue #19, defect 6).

A standalone script (not a test): ``python bench/poison_batch.py DATABASE_URL [--passes N]``. On
PostgreSQL without ``?schema=`` it makes a fresh schema, printed first, to drop afterwards.

Accepts 100 ``job.faulted`` events (one with a 10,000-character process, the throttle key) into a
fresh store, then runs the real inbox worker pass after pass, moving its clock past the lease
between passes, as the server would. Prints, per pass, whether it failed and how many events are
``new``, ``processed`` and ``unparsed``, and the commits and wall time of the run. On PostgreSQL
before the fix, every pass fails and all 100 stay ``new``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import string
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from receiver.errors import StoreError
from receiver.pipeline.worker import InboxWorker
from receiver.rules import load_rules
from receiver.store import InboxItem, open_store

RULES = """
channels:
  ops: "log://"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    throttle: {interval: 10m, key: "{{ process }}"}
"""


def event(n: int, process: str) -> bytes:
    return json.dumps(
        {
            "Type": "job.faulted",
            "EventId": f"ev-{n}",
            "Job": {"State": "Faulted", "Robot": {"Name": "R1"}, "Release": {"ProcessKey": process}},
        }
    ).encode()


async def run(url: str, passes: int) -> None:
    if url.startswith("postgresql://") and "schema=" not in url:
        schema = f"poison_{uuid.uuid4().hex[:8]}"  # a fresh one per run; drop it afterwards
        url += ("&" if "?" in url else "?") + f"schema={schema}"
        print(f"schema {schema}")  # noqa: T201 - a script's output
    store = open_store(url)
    await store.open()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(RULES)
        ruleset = load_rules(path, environ={})
    now = [1_767_000_000.0]
    long_key = "".join(random.Random(19).choices(string.ascii_letters + string.digits, k=10_000))  # noqa: S311
    for n in range(100):
        body = event(n, long_key if n == 50 else f"Process{n}")
        await store.accept(InboxItem("uipath", f"ev-{n}", "job.faulted", body, received_at=now[0]))
    worker = InboxWorker(store, lambda: ruleset, clock=lambda: now[0], lease=60, poll=0.01)
    started = time.perf_counter()
    try:
        for number in range(1, passes + 1):
            try:
                await worker.run_once()
                result = "ok"
            except StoreError as exc:
                result = f"failed: {str(exc).splitlines()[0][:120]}"
            states = Counter(r.state for r in await store.list_events(limit=1000))
            print(f"pass {number}: {result}; {dict(sorted(states.items()))}")  # noqa: T201 - a script's output
            now[0] += 61  # past the lease: what a failed batch waits before it is claimed again
        print(f"wall time {time.perf_counter() - started:.3f} s")  # noqa: T201 - a script's output
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.database_url, args.passes))


if __name__ == "__main__":
    main()
