"""The overview's chart queries on a store of a million events, against baselines in the same run.

The store is filled directly with SQL (``executemany``, not through HTTP): ``--events`` inbox rows
(1,000,000 by default) received over the last 7 days, with realistic types (job started and
completed, faults, queue items, robot status), 200 processes and 60 robots drawn with a skew,
a body of ``--body-bytes``, and what became of them: about one event in six is a fault with one
or two deliveries (mostly sent after a short latency, some dead or failing) or a suppression in
the noise log, a few are unparsed, the rest matched nothing.

Then each query runs ``--runs`` times (median and worst reported), through the store's own
methods as the page calls them: the events-per-slot chart over 24 h (hourly slots) and over 7 d
(6-hour slots), the top faulting processes and robots, the delivery latency per channel, each
for 24 h and 7 d. Baselines: what the overview already read before the charts (``queue_stats``
and the 25 newest events), and a plain ``count(*)`` of the inbox rows in the same range.

``--write-cost N`` measures instead what the chart indexes (migrations 7 and 10) cost the write
path: ``N`` faults accepted, claimed, finished with a delivery and sent, on a fresh SQLite store
with and without the indexes, interleaved, ``--runs`` rounds.

Run from the checkout: ``python bench/bench_charts.py`` (SQLite), or
``python bench/bench_charts.py --database postgresql://root@127.0.0.1:5432/test`` (a schema of
its own, dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3  # noqa: TID251 - the bench fills the store file directly
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from harness import workdir

from receiver.store import InboxItem, NewDelivery, Processed, Store, open_store

DAY = 86400.0
HOUR = 3600.0
CHUNK = 20_000
SEED = 20261206

# (type, share of events, is a fault)
TYPES = [
    ("job.started", 0.30, False),
    ("job.completed", 0.28, False),
    ("queueItem.transactionCompleted", 0.16, False),
    ("job.faulted", 0.12, True),
    ("queueItem.transactionFailed", 0.05, True),
    ("robot.status", 0.05, False),
    ("job.stopped", 0.03, False),
    ("schedule.failed", 0.01, True),
]


def _log(message: str) -> None:
    print(f"  charts: {message}", file=sys.stderr, flush=True)  # noqa: T201 - progress


def _rows(events: int, now: float, body: bytes) -> Iterator[tuple[list[tuple[Any, ...]], ...]]:
    """Chunks of (inbox, deliveries, noise_log) rows, ids 1..events, received over the last 7 days."""
    rng = random.Random(SEED)  # noqa: S311 - made-up data, the same every run
    kinds = [t for t, _, _ in TYPES]
    weights = [w for _, w, _ in TYPES]
    faults = {t for t, _, fault in TYPES if fault}
    processes = [f"Process_{n:03d}" for n in range(200)]
    robots = [f"ROBOT-{n:02d}" for n in range(60)]
    skew = [1 / (n + 1) for n in range(200)]
    robot_skew = [1 / (n + 1) for n in range(60)]
    start = now - 7 * DAY
    delivery_id = noise_id = 0
    for first in range(1, events + 1, CHUNK):
        inbox: list[tuple[Any, ...]] = []
        deliveries: list[tuple[Any, ...]] = []
        noise: list[tuple[Any, ...]] = []
        ids = range(first, min(events + 1, first + CHUNK))
        types = rng.choices(kinds, weights, k=len(ids))
        for n, kind in zip(ids, types, strict=True):
            at = start + (n - 0.5) * 7 * DAY / events  # evenly spread, in id order as in life
            process = rng.choices(processes, skew)[0]
            robot = rng.choices(robots, robot_skew)[0]
            state = "unparsed" if rng.random() < 0.005 else "processed"
            outcome = '{"parsed":true,"matched":[],"deliveries":0,"unknown_type":false,"noise":[]}'
            if state == "processed" and kind in faults:
                if rng.random() < 0.2:  # throttled or grouped: nothing sent
                    noise_id += 1
                    noise.append((noise_id, at, at, n, "faults", process, "throttled", "3 within 10m", True))
                else:
                    for channel in ("ops", "pager")[: rng.choice((1, 2))]:
                        delivery_id += 1
                        roll = rng.random()
                        if roll < 0.02:
                            d_state, attempts, sent = "dead", 5, None
                        elif roll < 0.03:
                            d_state, attempts, sent = "pending", 2, None
                        else:
                            d_state, attempts, sent = "sent", 1, at + rng.expovariate(1 / 0.4)
                        deliveries.append(
                            (delivery_id, n, channel, body[:300].decode(), d_state, attempts, at, at, at, sent)
                        )
                    noise_id += 1
                    noise.append((noise_id, at, at, n, "faults", process, "notified", "sent", False))
            inbox.append((n, f"ev-{n:012d}", kind, body, at, at, state, at + 0.05, outcome, process, robot))
        yield inbox, deliveries, noise


_INBOX = (
    "INSERT INTO inbox (id, source, event_id, type, body, received_at, event_time, state, processed_at, outcome, "
    "process, robot) VALUES ({p}, 'uipath', {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
_DELIVERY = (
    "INSERT INTO deliveries (id, inbox_id, rule, channel, title, body, severity, body_format, state, attempts, "
    "created_at, budget_since, next_attempt_at, sent_at) "
    "VALUES ({p}, {p}, 'faults', {p}, 'Job faulted', {p}, 'failure', 'text', {p}, {p}, {p}, {p}, {p}, {p})"
)
_NOISE = (
    "INSERT INTO noise_log (id, at, recorded_at, inbox_id, rule, key, action, reason, suppressed) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)


def _open(url: str) -> None:
    """Create the schema through the store itself (its migrations, its indexes)."""

    async def run() -> None:
        store = open_store(url)
        await store.open()
        await store.close()

    asyncio.run(run())


def fill_sqlite(path: Path, events: int, now: float, body: bytes) -> None:
    _open(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    try:
        for inbox, deliveries, noise in _rows(events, now, body):
            with conn:
                conn.executemany(_INBOX.format(p="?"), inbox)
                conn.executemany(_DELIVERY.format(p="?"), deliveries)
                conn.executemany(_NOISE.format(p="?"), noise)
        conn.execute("ANALYZE")
    finally:
        conn.close()


_COPY = {
    "inbox": "id, event_id, type, body, received_at, event_time, state, processed_at, outcome, process, robot, source",
    "deliveries": "id, inbox_id, channel, body, state, attempts, created_at, budget_since, next_attempt_at, sent_at, "
    "rule, title, severity, body_format",
    "noise_log": "id, at, recorded_at, inbox_id, rule, key, action, reason, suppressed",
}
_FIXED = {"inbox": ("uipath",), "deliveries": ("faults", "Job faulted", "failure", "text"), "noise_log": ()}


def fill_postgres(url: str, events: int, now: float, body: bytes) -> None:
    """The same rows with COPY (COPY gives the identity columns their values as they are)."""
    import psycopg  # noqa: TID251 - the bench fills the store directly

    _open(url)
    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(url.split("?")[0], options=f"-c search_path={schema}") as conn:
        for inbox, deliveries, noise in _rows(events, now, body):
            with conn.cursor() as cur:
                for table, rows in (("inbox", inbox), ("deliveries", deliveries), ("noise_log", noise)):
                    with cur.copy(f"COPY {table} ({_COPY[table]}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row((*row, *_FIXED[table]))
            conn.commit()
    with psycopg.connect(url.split("?")[0], options=f"-c search_path={schema}", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def drop_schema(url: str) -> None:
    import psycopg  # noqa: TID251 - the bench's own schema

    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _timed(call: Callable[[], Awaitable[Any]], runs: int) -> dict[str, float]:
    await call()  # warm: the first run reads the pages from disk
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}


async def measure(url: str, now: float, runs: int, count: Callable[[float], Awaitable[int]]) -> dict[str, Any]:
    store: Store = open_store(url)
    await store.open()
    try:
        day, week = now - DAY, now - 7 * DAY

        async def overview_before() -> None:
            await store.queue_stats(now=now)
            await store.list_events(limit=25)

        cases: dict[str, Callable[[], Awaitable[Any]]] = {
            "baseline: overview reads before the charts": overview_before,
            "baseline: count(*) of inbox, 24 h": lambda: count(day),
            "baseline: count(*) of inbox, 7 d": lambda: count(week),
            "events per hour, 24 h": lambda: store.event_counts(since=now - 23 * HOUR, width=HOUR, slots=24),
            "events per 6 h, 7 d": lambda: store.event_counts(since=now - 27 * 6 * HOUR, width=6 * HOUR, slots=28),
            "top processes, 24 h": lambda: store.top_names("process", since=day, until=now, limit=8),
            "top robots, 24 h": lambda: store.top_names("robot", since=day, until=now, limit=8),
            "top processes, 7 d": lambda: store.top_names("process", since=week, until=now, limit=8),
            "top robots, 7 d": lambda: store.top_names("robot", since=week, until=now, limit=8),
            "delivery latency, 24 h": lambda: store.delivery_latency(since=day, until=now),
            "delivery latency, 7 d": lambda: store.delivery_latency(since=week, until=now),
        }
        results = {}
        for name, call in cases.items():
            results[name] = await _timed(call, runs)
            _log(f"{name}: {results[name]}")
        counts = await store.event_counts(since=now - 23 * HOUR, width=HOUR, slots=24)
        results["check: events in the 24 h chart"] = sum(c.count for c in counts)
        return results
    finally:
        await store.close()


_CHART_INDEXES = ("inbox_unparsed", "inbox_faults", "inbox_arrival", "noise_log_held", "deliveries_latency")


async def _write_path(path: Path, events: int, *, with_indexes: bool) -> float:
    """Seconds to take ``events`` faults through accept, claim, finish with a delivery, and sent."""
    store = open_store(f"sqlite:///{path}")
    await store.open()
    if not with_indexes:
        conn = sqlite3.connect(path)  # the store is idle: its schema is changed beside it
        for name in _CHART_INDEXES:
            conn.execute(f"DROP INDEX {name}")
        conn.close()
    body = json.dumps({"Type": "job.faulted", "Job": {"Info": "x" * 700}}).encode()
    started = time.perf_counter()
    try:
        for first in range(0, events, 100):
            now = time.time()
            await asyncio.gather(
                *(
                    store.accept(InboxItem("uipath", f"w{n}", "job.faulted", body, received_at=now))
                    for n in range(first, min(events, first + 100))
                )
            )
            rows = await store.claim_inbox(limit=100, now=now, lease=60)
            delivery = NewDelivery("faults", "ops", "Job faulted", "b" * 300, "failure", "text")
            await store.finish_inbox(
                [Processed(r.id, "processed", "{}", [delivery], process="P", robot="R") for r in rows], now=now
            )
            for d in await store.claim_deliveries("ops", limit=100, now=now, lease=60):
                await store.mark_sent(d.id, now=now, elapsed=0.01)
    finally:
        await store.close()
    return time.perf_counter() - started


def write_cost(events: int, rounds: int) -> dict[str, Any]:
    """The chart indexes' cost on the write path: the same faults with and without them, interleaved."""
    times: dict[str, list[float]] = {"with the chart indexes": [], "without": []}
    for with_indexes in (True, False):  # warm-up, not counted: imports, the first files
        with workdir("charts-write") as tmp:
            asyncio.run(_write_path(Path(tmp) / "w.db", min(events, 500), with_indexes=with_indexes))
    for _ in range(rounds):
        for label, with_indexes in (("with the chart indexes", True), ("without", False)):
            with workdir("charts-write") as tmp:
                seconds = asyncio.run(_write_path(Path(tmp) / "w.db", events, with_indexes=with_indexes))
            times[label].append(seconds * 1e6 / events)
            _log(f"write path {label}: {times[label][-1]:.0f} µs per fault")
    return {label: round(statistics.median(values), 1) for label, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--body-bytes", type=int, default=900, help="size of each stored webhook body")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--database", help="a PostgreSQL URL (a schema of its own is made and dropped)")
    parser.add_argument(
        "--write-cost",
        type=int,
        metavar="N",
        help="instead: N faults through the write path, with and without the indexes",
    )
    args = parser.parse_args(argv)
    if args.write_cost:
        report = {"store": "sqlite", "write path, µs per fault (median)": write_cost(args.write_cost, args.runs)}
        print(json.dumps(report, indent=2, ensure_ascii=False))  # noqa: T201 - the report
        return 0
    body = json.dumps({"Type": "job.faulted", "Job": {"Info": "x" * args.body_bytes}}).encode()[: args.body_bytes]
    now = time.time()
    with workdir("charts") as tmp:
        started = time.perf_counter()
        if args.database:
            url = f"{args.database}?schema=bench_charts_{uuid.uuid4().hex[:8]}"
            fill_postgres(url, args.events, now, body)
        else:
            path = Path(tmp) / "receiver.db"
            url = f"sqlite:///{path}"
            fill_sqlite(path, args.events, now, body)
        _log(f"filled {args.events:,} events in {time.perf_counter() - started:.0f} s")
        try:
            count = _counter(url)
            results = asyncio.run(measure(url, now, args.runs, count))
        finally:
            if args.database:
                drop_schema(url)
    report = {"store": "postgresql" if args.database else "sqlite", "events": args.events, "results": results}
    print(json.dumps(report, indent=2))  # noqa: T201 - the report
    return 0


def _counter(url: str) -> Callable[[float], Awaitable[int]]:
    """A plain ``count(*)`` of the inbox rows received since a time, on its own connection."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), check_same_thread=False)

        async def count_sqlite(since: float) -> int:
            return int(conn.execute("SELECT count(*) FROM inbox WHERE received_at >= ?", (since,)).fetchone()[0])

        return count_sqlite
    import psycopg  # noqa: TID251 - the bench's baseline

    schema = url.rsplit("schema=", 1)[1]
    pg = psycopg.connect(url.split("?")[0], options=f"-c search_path={schema}", autocommit=True)

    async def count_postgres(since: float) -> int:
        row = pg.execute("SELECT count(*) FROM inbox WHERE received_at >= %s", (since,)).fetchone()
        return int(row[0]) if row else 0

    return count_postgres


if __name__ == "__main__":
    raise SystemExit(main())
