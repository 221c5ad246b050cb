"""CPU per claim_inbox + finish_inbox pair on PostgreSQL: each transaction in a shielded task, or awaited bare.

One process, one store, alternating blocks of pairs: through ``_run`` (the transaction in a task
of its own, shielded from the caller's cancellation) and through ``_transact`` awaited directly
(what ``_run`` did before). Prints the median and the lowest block of each, CPU and wall time.
``PYTHONPATH=. python bench/ab_store_shield.py --database postgresql://root@127.0.0.1:5432/test?schema=NAME``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from receiver.store import EventRow, InboxItem, NewDelivery, Processed, open_store
from receiver.store import _plans as plans
from receiver.store.postgres import PostgresStore


async def run(url: str, pairs: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """µs of CPU and of wall time per pair, one entry per block."""
    store = open_store(url)
    assert isinstance(store, PostgresStore)  # noqa: S101 - the A/B is of the PostgreSQL store
    await store.open()
    delivery = NewDelivery("r", "ops", "t", "b", "failure", "text")
    events = 2 * pairs * rounds * 2 + 10
    await asyncio.gather(
        *(store.accept(InboxItem("uipath", f"e{i}", "job.faulted", b"{}" * 200, 1000.0 + i)) for i in range(events))
    )

    def done(rows: list[EventRow]) -> list[Processed]:
        return [Processed(row.id, "processed", "{}", [delivery]) for row in rows]

    async def shielded() -> None:
        rows = await store._run(plans.claim_inbox, 2, 9000.0, 60, write=True, relaxed=True)
        await store._run(plans.finish_inbox, done(rows), 9000.0, None, write=True, relaxed=True)

    async def bare() -> None:
        rows = await store._transact(plans.claim_inbox, (2, 9000.0, 60))
        await store._transact(plans.finish_inbox, (done(rows), 9000.0, None))

    steps: dict[str, Callable[[], Awaitable[None]]] = {"bare": bare, "shielded task": shielded}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    try:
        for _ in range(rounds):
            for name, step in steps.items():
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(pairs):
                    await step()
                results[name].append(
                    ((time.process_time() - cpu) / pairs * 1e6, (time.perf_counter() - wall) / pairs * 1e6)
                )
    finally:
        await store.close()
    return results


def main() -> None:
    """Parse the arguments, run, print one line per variant."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=16)
    args = parser.parse_args()
    for name, blocks in asyncio.run(run(args.database, args.pairs, args.rounds)).items():
        cpu = sorted(b[0] for b in blocks)
        wall = sorted(b[1] for b in blocks)
        print(  # noqa: T201 - a bench prints its result
            f"{name:14s} CPU {statistics.median(cpu):7.1f} µs (lowest block {cpu[0]:.1f}), "
            f"wall {statistics.median(wall):7.1f} µs per claim+finish pair"
        )


if __name__ == "__main__":
    main()
