"""The overview's chart queries on every store: events per slot and result, the top faulting
processes and robots, and delivery latency per channel, with exact figures from seeded rows.

The same ``store`` fixture as tests/test_store_queries.py: SQLite in ``tmp_path``, and PostgreSQL
(marked ``postgres``) in a fresh schema when ``RECEIVER_TEST_DATABASE_URL`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from receiver.store import (
    ChannelLatency,
    DeliveryRow,
    InboxItem,
    NameCount,
    NewDelivery,
    NoiseLogEntry,
    NoiseWrite,
    Processed,
    ResultCount,
    Store,
)

pytestmark = pytest.mark.anyio

HOUR = 3600.0
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC, the first slot's start


@dataclass(frozen=True)
class Seed:
    """One event and what became of it."""

    at: float
    outcome: str  # sent, dead, failing, pending, suppressed, unparsed, quiet, new, sent+dead
    type: str = "job.faulted"
    process: str | None = "Invoice"
    robot: str | None = "BOT01"


async def seed(store: Store, seeds: list[Seed], *, channel: str = "ops", prefix: str = "e") -> dict[int, int]:
    """Store every seed through the store's own methods; the inbox id of each seed's index."""
    ids = {}
    for n, s in enumerate(seeds):
        accepted = await store.accept(InboxItem("uipath", f"{prefix}{n}", s.type, b"{}", received_at=s.at))
        ids[n] = accepted.inbox_id
    await store.claim_inbox(limit=1000, now=T0 + 100 * HOUR, lease=60)
    processed, log = [], []
    for n, s in enumerate(seeds):
        if s.outcome == "new":
            continue
        wanted = {"sent": 1, "dead": 1, "failing": 1, "pending": 1, "sent+dead": 2}.get(s.outcome, 0)
        deliveries = [NewDelivery(f"rule{k}", channel, "t", "b", "failure", "text") for k in range(wanted)]
        state = "unparsed" if s.outcome == "unparsed" else "processed"
        processed.append(Processed(ids[n], state, "{}", deliveries, process=s.process, robot=s.robot))
        if s.outcome == "suppressed":
            log.append(NoiseLogEntry(s.at, ids[n], "rule0", "k", "throttled", "3 within 10m", True))
        elif s.outcome == "quiet":
            log.append(NoiseLogEntry(s.at, ids[n], "rule0", "k", "notified", "first", False))
    await store.finish_inbox(processed, now=T0 + 100 * HOUR, noise=NoiseWrite(log=log))
    by_inbox: dict[int, list[DeliveryRow]] = {}
    for d in await store.list_deliveries(limit=1000):
        by_inbox.setdefault(d.inbox_id, []).append(d)
    for n, s in enumerate(seeds):
        for k, d in enumerate(sorted(by_inbox.get(ids[n], []), key=lambda d: d.rule)):
            if s.outcome == "sent" or (s.outcome == "sent+dead" and k == 0):
                await store.mark_sent(d.id, now=d.created_at + 1, elapsed=0.1)
            elif s.outcome == "dead" or s.outcome == "sent+dead":
                await store.mark_failed(d.id, now=T0, reason="502", elapsed=0.1, next_attempt_at=None)
            elif s.outcome == "failing":
                await store.mark_failed(d.id, now=T0, reason="502", elapsed=0.1, next_attempt_at=T0 + 999 * HOUR)
    return ids


def counts(rows: list[ResultCount]) -> dict[tuple[int, str], int]:
    return {(r.slot, r.result): r.count for r in rows}


class TestEventCounts:
    async def test_each_result_is_counted_in_its_slot(self, store: Store) -> None:
        """Every outcome lands in the result CHART_RESULTS defines, in the slot of its arrival."""
        await seed(
            store,
            [
                Seed(T0 + 10, "sent"),
                Seed(T0 + 20, "pending"),  # not tried yet: on its way, notified
                Seed(T0 + 30, "dead"),
                Seed(T0 + 40, "failing"),
                Seed(T0 + 50, "sent+dead"),  # one delivery dead is enough to fail
                Seed(T0 + HOUR + 1, "suppressed"),
                Seed(T0 + HOUR + 2, "unparsed"),
                Seed(T0 + HOUR + 3, "quiet"),  # a decision that suppressed nothing
                Seed(T0 + 2 * HOUR + 4, "new"),
            ],
        )
        found = counts(await store.event_counts(since=T0, width=HOUR, slots=3))
        assert {
            (0, "notified"): 2,
            (0, "failed"): 3,
            (1, "suppressed"): 1,
            (1, "failed"): 1,
            (1, "other"): 1,
            (2, "other"): 1,
        } == found

    async def test_slot_boundaries_and_the_range_cut(self, store: Store) -> None:
        """A slot includes its start and excludes its end; events before or at the range's end are left out."""
        await seed(
            store,
            [
                Seed(T0 - 0.001, "sent"),  # before the range
                Seed(T0, "sent"),  # the first slot's first instant
                Seed(T0 + HOUR - 0.001, "sent"),  # the first slot's last instant
                Seed(T0 + HOUR, "sent"),  # the second slot
                Seed(T0 + 24 * HOUR - 0.001, "sent"),  # the last slot of a 24-hour range
                Seed(T0 + 24 * HOUR, "sent"),  # the range's end: left out
            ],
        )
        found = counts(await store.event_counts(since=T0, width=HOUR, slots=24))
        assert {(0, "notified"): 2, (1, "notified"): 1, (23, "notified"): 1} == found

    async def test_six_hour_slots(self, store: Store) -> None:
        """The 7-day view's slots are the same query with another width."""
        await seed(store, [Seed(T0 + h * HOUR, "suppressed") for h in (0, 5, 6, 27, 167)])
        found = counts(await store.event_counts(since=T0, width=6 * HOUR, slots=28))
        assert {(0, "suppressed"): 2, (1, "suppressed"): 1, (4, "suppressed"): 1, (27, "suppressed"): 1} == found

    async def test_an_empty_store_has_no_rows(self, store: Store) -> None:
        """Nothing received: nothing to count."""
        assert [] == await store.event_counts(since=T0, width=HOUR, slots=24)


class TestTopNames:
    async def test_faults_per_process_and_robot_most_first(self, store: Store) -> None:
        """Only fault types count, only within the range; ties go by name; NULL names are left out."""
        await seed(
            store,
            [
                Seed(T0 + 1, "sent", process="Payroll", robot="BOT02"),
                Seed(T0 + 2, "sent", process="Payroll", robot="BOT02"),
                Seed(T0 + 3, "dead", type="queueItem.transactionFailed", process="Invoice", robot="BOT01"),
                Seed(T0 + 4, "sent", process="Invoice", robot="BOT02"),
                Seed(T0 + 5, "sent", type="schedule.failed", process="Zeta", robot=None),
                Seed(T0 + 6, "quiet", type="job.completed", process="Payroll", robot="BOT01"),  # not a fault
                Seed(T0 - 1, "sent", process="Old", robot="BOT09"),  # before the range
                Seed(T0 + HOUR, "sent", process="Late", robot="BOT09"),  # at the range's end
            ],
        )
        processes = await store.top_names("process", since=T0, until=T0 + HOUR, limit=10)
        robots = await store.top_names("robot", since=T0, until=T0 + HOUR, limit=10)
        assert [NameCount("Invoice", 2), NameCount("Payroll", 2), NameCount("Zeta", 1)] == processes
        assert [NameCount("BOT02", 3), NameCount("BOT01", 1)] == robots
        assert [NameCount("Invoice", 2)] == await store.top_names("process", since=T0, until=T0 + HOUR, limit=1)


class TestDeliveryLatency:
    async def test_nearest_rank_percentiles_per_channel(self, store: Store) -> None:
        """p50 and p95 are the values at ranks ceil(0.5 n) and ceil(0.95 n) of sent_at - created_at."""
        ids = await seed(store, [Seed(T0 + n, "pending") for n in range(20)])
        rows = await store.list_deliveries(inbox_ids=list(ids.values()), limit=100)
        for n, d in enumerate(sorted(rows, key=lambda d: d.inbox_id)):
            await store.mark_sent(d.id, now=d.created_at + (n + 1), elapsed=0.1)  # 1 s .. 20 s
        found = await store.delivery_latency(since=T0, until=T0 + 200 * HOUR)
        assert [ChannelLatency("ops", 20, p50=10.0, p95=19.0, max=20.0)] == [
            ChannelLatency(c.channel, c.count, round(c.p50, 3), round(c.p95, 3), round(c.max, 3)) for c in found
        ]

    async def test_only_deliveries_sent_in_the_range_count(self, store: Store) -> None:
        """Dead and pending deliveries have no latency; a delivery sent after the range is left out."""
        await seed(store, [Seed(T0, "sent"), Seed(T0 + 1, "dead"), Seed(T0 + 2, "failing")])
        sent_at = T0 + 100 * HOUR + 1  # seed() sends one second after creation
        assert [] == await store.delivery_latency(since=T0, until=sent_at)
        (ops,) = await store.delivery_latency(since=T0, until=sent_at + 1)
        assert (1, 1.0, 1.0) == (ops.count, round(ops.p50, 3), round(ops.p95, 3))

    async def test_percentiles_of_the_most_recent_sample(self, store: Store) -> None:
        """Past the sample, p50 and p95 are those of the channel's most recent sent deliveries; count and max of all."""
        ids = await seed(store, [Seed(T0 + n, "pending") for n in range(20)])
        rows = await store.list_deliveries(inbox_ids=list(ids.values()), limit=100)
        for n, d in enumerate(sorted(rows, key=lambda d: d.inbox_id)):
            await store.mark_sent(d.id, now=d.created_at + (n + 1), elapsed=0.1)  # 1 s .. 20 s, the slowest last
        (ops,) = await store.delivery_latency(since=T0, until=T0 + 200 * HOUR, sample=10)
        assert ("ops", 20, 15.0, 20.0, 20.0) == (
            ops.channel,
            ops.count,
            round(ops.p50, 3),  # the 5th of the 10 most recent (11 s .. 20 s)
            round(ops.p95, 3),
            round(ops.max, 3),
        )

    async def test_each_channel_has_its_own_sample(self, store: Store) -> None:
        """A quiet channel keeps its own figures beside a busy one."""
        await seed(store, [Seed(T0 + n, "sent") for n in range(12)], channel="busy")
        await seed(store, [Seed(T0 + 100 + n, "sent") for n in range(2)], channel="quiet", prefix="q")
        found = await store.delivery_latency(since=T0, until=T0 + 200 * HOUR, sample=5)
        assert [("busy", 12, 1.0), ("quiet", 2, 1.0)] == [(c.channel, c.count, round(c.p95, 3)) for c in found]
