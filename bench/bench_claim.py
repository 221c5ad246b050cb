"""The cost of one claim of deliveries with a flood queued: the fair claim against the oldest-first one.

One channel holds ``--flood`` due deliveries of one rule and one of another (``--rules`` rules in
all); each claim takes ``--limit`` rows (the dispatcher claims 2 x concurrency) with a lease of 0
s, so every claim sees the whole backlog again. Three statements, the same rows, the same run:
``fair`` (the store's claim: a skip scan of the rules, then each rule's first rows), ``window``
(``row_number()`` over every due row), and ``oldest`` (the claim before fair claiming, which
leaves the other rule's row behind the flood). Prints the median wall time per claim and where
the other rule's row came in the first claim.
``PYTHONPATH=. python bench/bench_claim.py [--database postgresql://root@127.0.0.1:5432/test?schema=NAME]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from receiver.store import InboxItem, NewDelivery, Processed, Store, _plans, open_store
from receiver.store._rows import DELIVERY_COLUMNS
from receiver.store.sql import Dialect, Sql, sql

_OLDEST = sql(
    "UPDATE deliveries SET lease_until = :until WHERE id IN ("  # noqa: S608 - constant column names
    "SELECT id FROM deliveries WHERE state = 'pending' AND channel = :channel AND next_attempt_at <= :now "
    "AND (lease_until IS NULL OR lease_until <= :now) ORDER BY next_attempt_at, id LIMIT :limit {skip_locked}) "
    f"RETURNING {DELIVERY_COLUMNS}"
)


def _window(_: Dialect) -> str:
    return (
        "UPDATE deliveries SET lease_until = :until WHERE id IN (SELECT id FROM (SELECT id, next_attempt_at AS at, "  # noqa: S608
        "row_number() OVER (PARTITION BY rule ORDER BY next_attempt_at, id) AS turn FROM deliveries "
        "WHERE state = 'pending' AND channel = :channel AND next_attempt_at <= :now "
        "AND (lease_until IS NULL OR lease_until <= :now)) ranked ORDER BY turn, at, id LIMIT :limit) "
        f"RETURNING {DELIVERY_COLUMNS}"
    )


async def _fill(store: Store, flood: int, rules: int) -> None:
    batch = []
    for i in range(flood + rules - 1):
        accepted = await store.accept(InboxItem("uipath", f"b{i}", "robot.log", b"{}", 1000.0 + i))
        rule = "robot-errors" if i < flood else f"rule-{i - flood}"
        delivery = NewDelivery(rule, "ops", "t", "b", "failure", "text")
        batch.append(Processed(accepted.inbox_id, "processed", "{}", [delivery]))
        if len(batch) == 500:
            await store.finish_inbox(batch, now=1000.0)
            batch = []
    await store.finish_inbox(batch, now=2000.0)  # the last ones (the other rules) became due last


async def _time(store: Store, statement: Sql, limit: int, claims: int) -> tuple[float, int]:
    original = _plans._CLAIM_DELIVERIES
    _plans._CLAIM_DELIVERIES = statement
    try:
        first = await store.claim_deliveries("ops", limit=limit, now=9000.0, lease=0)
        position = next((n for n, r in enumerate(first, 1) if r.rule != "robot-errors"), 0)
        times = []
        for _ in range(claims):
            start = time.perf_counter()
            await store.claim_deliveries("ops", limit=limit, now=9000.0, lease=0)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000, position
    finally:
        _plans._CLAIM_DELIVERIES = original


async def run(url: str, flood: int, rules: int, limit: int, claims: int) -> None:
    store = open_store(url)
    await store.open()
    try:
        await _fill(store, flood, rules)
        statements = {"fair": _plans._CLAIM_DELIVERIES, "window": sql(_window), "oldest": _OLDEST}
        results: dict[str, list[float]] = {name: [] for name in statements}
        positions: dict[str, int] = {}
        for _ in range(3):  # interleaved rounds: the table's churn (each claim updates rows) hits all alike
            for name, statement in statements.items():
                ms, positions[name] = await _time(store, statement, limit, claims // 3)
                results[name].append(ms)
        for name, times in results.items():
            where = f"at {positions[name]}" if positions[name] else "not in it"
            ms = statistics.median(times)
            print(f"{name:7s} {ms:8.3f} ms per claim; the other rule's row {where}")  # noqa: T201
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=None, help="default: a new SQLite file")
    parser.add_argument("--flood", type=int, default=5000)
    parser.add_argument("--rules", type=int, default=2)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--claims", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(run(url, args.flood, args.rules, args.limit, args.claims))


if __name__ == "__main__":
    main()
