"""The store protocol: inbox dedup and leases, the outbox life cycle, durability across reopen.

Written against ``Store`` so every implementation runs the same suite (the ``store`` fixture is
parametrized by implementation). The PostgreSQL runs are marked ``postgres`` and need
``RECEIVER_TEST_DATABASE_URL``; each test gets a fresh schema, dropped afterwards. Below the
shared suite: what only one implementation has (SQLite locking; PostgreSQL replicas, URLs, errors).
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support import free_port, with_params

from receiver.errors import ConfigError, StoreError
from receiver.store import (
    HeldDelivery,
    InboxItem,
    LateDelivery,
    NewDelivery,
    NewSilence,
    NoiseLogEntry,
    NoiseRow,
    NoiseWrite,
    Processed,
    SQLiteStore,
    Store,
    open_store,
    schema,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'receiver.db'}"
    return str(request.getfixturevalue("pg_url"))


def item(event_id: str, *, source: str = "uipath", type_: str = "job.faulted", at: float = 1000.0) -> InboxItem:
    return InboxItem(source=source, event_id=event_id, type=type_, body=b'{"Type":"job.faulted"}', received_at=at)


def delivery(channel: str = "ops", rule: str = "r1") -> NewDelivery:
    return NewDelivery(rule=rule, channel=channel, title="t", body="b", severity="failure", body_format="text")


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``condition()`` holds (notifications arrive asynchronously), or fail."""
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    assert condition()


# -- the shared suite ---------------------------------------------------------------------


async def test_accept_then_duplicate(store: Store) -> None:
    """The same (source, EventId) is stored once; the repeat is reported as a duplicate of the same row."""
    first = await store.accept(item("e1"))
    again = await store.accept(item("e1"))
    other_source = await store.accept(item("e1", source="other"))
    assert (False, True, False) == (first.duplicate, again.duplicate, other_source.duplicate)
    assert first.inbox_id == again.inbox_id != other_source.inbox_id


async def test_concurrent_accepts_share_commits_and_dedup(store: Store) -> None:
    """Hundreds of concurrent accepts, with repeats inside one batch, each get a correct answer."""
    ids = [f"e{i % 150}" for i in range(300)]
    results = await asyncio.gather(*(store.accept(item(e)) for e in ids))
    assert 150 == sum(not r.duplicate for r in results)
    by_event: dict[str, set[int]] = {}
    for event_id, result in zip(ids, results, strict=True):
        by_event.setdefault(event_id, set()).add(result.inbox_id)
    assert all(1 == len(v) for v in by_event.values())
    assert 150 == len(await store.list_events(limit=1000))


async def test_accepted_rows_keep_what_was_received(store: Store) -> None:
    """An accepted event reads back with its body bytes, times and initial state unchanged."""
    body = b'{"Type":"job.faulted","x":"\xc3\xa9\x00"}'
    accepted = await store.accept(
        InboxItem(source="uipath", event_id="e1", type="job.faulted", body=body, received_at=1000.5, event_time=999.25)
    )
    [row] = await store.list_events()
    assert (accepted.inbox_id, "uipath", "e1", "job.faulted", body, 1000.5, 999.25, "new", None, None) == (
        row.id, row.source, row.event_id, row.type, row.body, row.received_at, row.event_time, row.state,
        row.processed_at, row.outcome,
    )  # fmt: skip


async def test_unstorable_text_is_replaced_not_refused(store: Store) -> None:
    """NUL and lone surrogates in untrusted text become U+FFFD on every store, and the event is kept."""
    accepted = await store.accept(item("id\x00\ud800"))
    assert not accepted.duplicate
    assert (await store.accept(item("id\ufffd\ufffd"))).duplicate
    title = NewDelivery(rule="r1", channel="ops", title="a\x00b", body="\udcff", severity="failure", body_format="text")
    await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}", [title])], now=2000)
    [row] = await store.deliveries_of(accepted.inbox_id)
    assert ("a\ufffdb", "\ufffd") == (row.title, row.body)


async def test_claim_inbox_leases_in_arrival_order(store: Store) -> None:
    """Claimed events come oldest first and are not claimed again until their lease expires."""
    for i in range(5):
        await store.accept(item(f"e{i}"))
    first = await store.claim_inbox(limit=3, now=2000, lease=60)
    assert ["e0", "e1", "e2"] == [r.event_id for r in first]
    second = await store.claim_inbox(limit=10, now=2001, lease=60)
    assert ["e3", "e4"] == [r.event_id for r in second]
    assert [] == await store.claim_inbox(limit=10, now=2059, lease=60)
    expired = await store.claim_inbox(limit=10, now=2061, lease=60)
    assert ["e0", "e1", "e2", "e3", "e4"] == [r.event_id for r in expired]


async def test_finish_inbox_writes_deliveries_and_state_together(store: Store) -> None:
    """Finishing marks events processed and creates their deliveries, idempotently."""
    accepted = await store.accept(item("e1"))
    batch = [Processed(accepted.inbox_id, "processed", '{"matched":["r1"]}', [delivery("ops"), delivery("mail")])]
    await store.finish_inbox(batch, now=2000)
    await store.finish_inbox(batch, now=2001)  # a re-run after a crash adds nothing
    assert [] == await store.claim_inbox(limit=10, now=5000, lease=60)
    rows = await store.deliveries_of(accepted.inbox_id)
    assert [("ops", "pending"), ("mail", "pending")] == [(r.channel, r.state) for r in rows]
    events = await store.list_events()
    assert ("processed", '{"matched":["r1"]}', 2001) == (events[0].state, events[0].outcome, events[0].processed_at)


async def test_finish_inbox_without_deliveries(store: Store) -> None:
    """An event that matched nothing, or could not be parsed, is finished with no delivery."""
    first = await store.accept(item("e1"))
    second = await store.accept(item("e2"))
    await store.finish_inbox(
        [Processed(first.inbox_id, "processed", "{}"), Processed(second.inbox_id, "unparsed", '{"parsed":false}')],
        now=2000,
    )
    assert [("e2", "unparsed"), ("e1", "processed")] == [(r.event_id, r.state) for r in await store.list_events()]
    assert [] == await store.list_deliveries()


async def _one_delivery(store: Store, channel: str = "ops") -> int:
    accepted = await store.accept(item(f"e-{channel}"))
    await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}", [delivery(channel)])], now=2000)
    return (await store.deliveries_of(accepted.inbox_id))[0].id


async def test_claim_deliveries_per_channel_with_lease(store: Store) -> None:
    """A channel's due delivery is claimed once per lease and never by another channel."""
    delivery_id = await _one_delivery(store, "ops")
    assert [] == await store.claim_deliveries("mail", limit=10, now=2000, lease=30)
    assert {"ops"} == await store.due_channels(2000)
    assert [delivery_id] == [r.id for r in await store.claim_deliveries("ops", limit=10, now=2000, lease=30)]
    assert [] == await store.claim_deliveries("ops", limit=10, now=2010, lease=30)
    assert set() == await store.due_channels(2010)
    assert [delivery_id] == [r.id for r in await store.claim_deliveries("ops", limit=10, now=2031, lease=30)]


async def test_a_delivery_written_leased_is_returned_as_a_claim_returns_it(store: Store) -> None:
    """finish_inbox leases what it is asked to, answers those rows as a claim would, and wakes only for the rest."""
    topics: list[str] = []
    await store.listen(topics.append)
    accepted = await store.accept(item("e1"))
    again = await store.accept(item("e2"))
    await store.finish_inbox([Processed(again.inbox_id, "processed", "{}", [delivery("ops", rule="r0")])], now=1999)
    leased = NewDelivery("r1", "ops", "t", "b", "failure", "text", lease=30.0)
    batch = [
        Processed(accepted.inbox_id, "processed", "{}", [leased, replace(leased, rule="r2"), delivery("mail")]),
        # Already written: nothing new, so no row for it, and a wake-up (a claim finds it).
        Processed(again.inbox_id, "processed", "{}", [replace(leased, rule="r0")]),
    ]
    topics.clear()
    rows = await store.finish_inbox(batch, now=2000)
    assert [("r1", 2000.0), ("r2", 2000.0)] == [(r.rule, r.next_attempt_at) for r in rows]
    await eventually(lambda: {"deliveries:mail", "deliveries:ops"} <= set(topics))
    # No claim returns them while the lease runs (the unleased r0 one is due); after it, the same rows.
    assert ["r0"] == [r.rule for r in await store.claim_deliveries("ops", limit=10, now=2029, lease=60)]
    assert rows == await store.claim_deliveries("ops", limit=10, now=2030, lease=60)


async def test_no_wake_up_for_a_channel_whose_deliveries_were_all_written_leased(store: Store) -> None:
    """Another replica would find nothing to claim: their writer sends them."""
    topics: list[str] = []
    await store.listen(topics.append)
    accepted = await store.accept(item("e1"))
    leased = NewDelivery("r1", "ops", "t", "b", "failure", "text", lease=30.0)
    await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}", [leased, delivery("mail")])], now=2000)
    await eventually(lambda: "deliveries:mail" in topics)
    await store.accept(item("e2"))
    await eventually(lambda: "inbox" in topics)  # later than any wake-up of the finish
    assert "deliveries:ops" not in topics


async def test_claim_deliveries_longest_due_first(store: Store) -> None:
    """Deliveries come in order of when they became due, then of creation, up to the limit."""
    later = await _one_delivery(store, "ops")  # due at 2000
    accepted = await store.accept(item("e-early"))
    both = [delivery("ops", rule="r1"), delivery("ops", rule="r2")]
    await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}", both)], now=1500)
    early = [r.id for r in await store.deliveries_of(accepted.inbox_id)]
    assert early == [r.id for r in await store.claim_deliveries("ops", limit=2, now=3000, lease=30)]
    assert [later] == [r.id for r in await store.claim_deliveries("ops", limit=5, now=3000, lease=30)]


async def _queue(store: Store, rule: str, count: int, *, at: float, channel: str = "ops") -> list[int]:
    """``count`` deliveries of ``rule`` on ``channel``, due at ``at``, in the order written."""
    ids = []
    for n in range(count):
        accepted = await store.accept(item(f"{rule}-{channel}-{at}-{n}"))
        await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}", [delivery(channel, rule)])], now=at)
        ids.extend(r.id for r in await store.deliveries_of(accepted.inbox_id))
    return ids


async def test_claims_take_turns_across_rules_each_in_its_own_order(store: Store) -> None:
    """A flood of one rule does not starve another: each claim takes every rule's next rows in turn."""
    flood = await _queue(store, "robot-errors", 30, at=1000)
    faults = await _queue(store, "job-faulted", 2, at=1500)
    later = await _queue(store, "robot-errors", 1, at=1200)  # due after the flood, before the faults
    first = [r.id for r in await store.claim_deliveries("ops", limit=4, now=3000, lease=30)]
    assert [flood[0], faults[0], flood[1], faults[1]] == first
    taken: list[int] = []
    while rows := await store.claim_deliveries("ops", limit=7, now=3000, lease=30):
        taken.extend(r.id for r in rows)
    assert [*flood[2:], *later] == taken  # the flooding rule's own order is kept


async def test_a_fair_claim_skips_other_channels_and_rows_not_due(store: Store) -> None:
    """Only due, unleased rows of the channel asked for are taken, whatever their rule."""
    await _queue(store, "r1", 2, at=1000, channel="mail")
    ops = await _queue(store, "r1", 1, at=1000)
    await _queue(store, "r2", 1, at=5000)  # not yet due at 3000
    assert ops == [r.id for r in await store.claim_deliveries("ops", limit=10, now=3000, lease=30)]
    assert [] == await store.claim_deliveries("ops", limit=10, now=3000, lease=30)


async def test_sent_is_never_claimed_again(store: Store) -> None:
    """After mark_sent no claim, however late, returns the delivery."""
    delivery_id = await _one_delivery(store)
    await store.claim_deliveries("ops", limit=1, now=2000, lease=30)
    await store.mark_sent(delivery_id, now=2001, elapsed=0.1)
    assert [] == await store.claim_deliveries("ops", limit=10, now=10**9, lease=30)
    row = (await store.list_deliveries(state="sent"))[0]
    assert (1, 2001, None) == (row.attempts, row.sent_at, row.last_error)


async def test_failure_waits_for_next_attempt_then_dead_letter(store: Store) -> None:
    """A failed attempt is due again at next_attempt_at; with no next attempt it is dead."""
    delivery_id = await _one_delivery(store)
    await store.claim_deliveries("ops", limit=1, now=2000, lease=30)
    await store.mark_failed(delivery_id, now=2001, reason="error=500", elapsed=0.2, next_attempt_at=2100)
    assert [] == await store.claim_deliveries("ops", limit=1, now=2099, lease=30)
    claimed = await store.claim_deliveries("ops", limit=1, now=2100, lease=30)
    assert [(1, "error=500")] == [(r.attempts, r.last_error) for r in claimed]
    await store.mark_failed(delivery_id, now=2101, reason="refused", elapsed=0.0, next_attempt_at=None)
    assert [] == await store.claim_deliveries("ops", limit=1, now=10**9, lease=30)
    dead = await store.list_deliveries(state="dead")
    assert [(delivery_id, 2, "refused")] == [(r.id, r.attempts, r.last_error) for r in dead]


async def test_retry_one_and_all_dead(store: Store) -> None:
    """A dead delivery is due again after retry, with a fresh budget; sent ones cannot be retried."""
    first = await _one_delivery(store, "ops")
    second = await _one_delivery(store, "mail")
    for delivery_id in (first, second):
        await store.mark_failed(delivery_id, now=2001, reason="x", elapsed=0.0, next_attempt_at=None)
    assert await store.retry_delivery(first, now=3000)
    assert [(first, 0, 3000.0)] == [
        (r.id, r.attempts, r.budget_since) for r in await store.claim_deliveries("ops", limit=5, now=3000, lease=30)
    ]
    assert 1 == await store.retry_dead(now=3001)
    assert [second] == [r.id for r in await store.claim_deliveries("mail", limit=5, now=3001, lease=30)]
    await store.mark_sent(second, now=3002, elapsed=0.1)
    assert not await store.retry_delivery(second, now=3003)
    assert not await store.retry_delivery(999_999, now=3003)
    assert 0 == await store.retry_dead(now=3004)


async def test_a_held_delivery_is_due_at_its_hold_unless_released(store: Store) -> None:
    """A held delivery (enrich:) is due when its hold ends, or at once with new text when released in time."""
    accepted = await store.accept(item("e1"))
    held = NewDelivery("r1", "ops", "t", "details unavailable: timeout", "failure", "text", hold=3.0)
    other = NewDelivery("r2", "ops", "t2", "b2", "failure", "text", hold=3.0)
    await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}", [held, other])], now=2000)
    assert [] == await store.claim_deliveries("ops", limit=5, now=2002.9, lease=30)
    topics: list[str] = []
    await store.listen(topics.append)
    target = HeldDelivery(accepted.inbox_id, "r1", "ops")
    assert await store.release_held(target, title="T", body="with details", now=2001)
    await eventually(lambda: "deliveries:ops" in topics)
    assert not await store.release_held(target, title="T", body="again", now=2001.5)  # released already
    [row] = await store.claim_deliveries("ops", limit=5, now=2001.5, lease=30)
    assert ("T", "with details", 2001.0) == (row.title, row.body, row.next_attempt_at)
    # The other one's hold ended before its release: it stays as written, due since 2003.
    late = HeldDelivery(accepted.inbox_id, "r2", "ops")
    assert not await store.release_held(late, title="X", body="too late", now=2003)
    [row] = await store.claim_deliveries("ops", limit=5, now=2003, lease=30)
    assert ("t2", "b2") == (row.title, row.body)


async def test_listen_hears_new_work(store: Store) -> None:
    """A listener hears "inbox" after new events and "deliveries:<channel>" after deliveries became due."""
    topics: list[str] = []
    await store.listen(topics.append)
    await store.accept(item("e1"))
    await eventually(lambda: "inbox" in topics)
    delivery_id = await _one_delivery(store, "ops")
    await eventually(lambda: "deliveries:ops" in topics)
    await store.mark_failed(delivery_id, now=2001, reason="x", elapsed=0.0, next_attempt_at=None)
    topics.clear()
    assert 1 == await store.retry_dead(now=3000)
    await eventually(lambda: ["deliveries:ops"] == topics)
    topics.clear()
    assert await store.retry_delivery(delivery_id, now=3001)
    await eventually(lambda: ["deliveries:ops"] == topics)


async def test_listen_is_quiet_for_duplicates(store: Store) -> None:
    """A repeated event commits nothing new, so listeners are not woken for it."""
    await store.accept(item("e1"))
    await asyncio.sleep(0.2)  # the first accept's own wake-up may still be on its way
    topics: list[str] = []
    await store.listen(topics.append)
    assert (await store.accept(item("e1"))).duplicate
    await store.ping()
    await asyncio.sleep(0.1)
    assert [] == topics


async def test_close_waits_for_accepts_in_flight(store_url: str) -> None:
    """Accepts already started when close is called are committed and answered, not dropped."""
    first = open_store(store_url)
    await first.open()
    tasks = [asyncio.create_task(first.accept(item(f"e{i}"))) for i in range(50)]
    await asyncio.sleep(0)
    await first.close()
    results = await asyncio.gather(*tasks)
    assert 50 == sum(not r.duplicate for r in results)
    second = open_store(store_url)
    await second.open()
    try:
        assert 50 == len(await second.list_events(limit=100))
    finally:
        await second.close()


async def test_rows_survive_reopen(store_url: str) -> None:
    """What was committed is there after the store is closed and opened again (migrations are not re-run)."""
    first = open_store(store_url)
    await first.open()
    await first.accept(item("kept"))
    await first.close()
    second = open_store(store_url)
    await second.open()
    try:
        assert ["kept"] == [r.event_id for r in await second.list_events()]
        assert (await second.accept(item("kept"))).duplicate
    finally:
        await second.close()


async def test_closed_store_refuses_work(store_url: str) -> None:
    """Calls on a store that is not open raise StoreError instead of hanging."""
    instance = open_store(store_url)
    with pytest.raises(StoreError, match="not open"):
        await instance.accept(item("e1"))
    await instance.open()
    await instance.close()
    with pytest.raises(StoreError, match="not open"):
        await instance.ping()


def test_unknown_database_scheme() -> None:
    """An unsupported URL scheme is a configuration error naming the scheme."""
    with pytest.raises(ConfigError, match="'mysql'"):
        open_store("mysql://x")


# -- noise control (shared suite) ----------------------------------------------------------


def noise_row(
    kind: str, key: str, *, data: str = "{}", due_at: float | None = None, expires_at: float | None = None
) -> NoiseRow:
    return NoiseRow(kind, "rule-a", key, data, due_at, expires_at)


async def test_noise_rows_are_written_replaced_deleted_and_purged(store: Store) -> None:
    """Noise rows are upserted by (kind, name, key), deleted by ref, and purged once expired unless timers."""
    rows = [
        noise_row("throttle", "a", data='{"until":10}', expires_at=100.0),
        noise_row("throttle", "b", expires_at=500.0),
        noise_row("group", "c", due_at=150.0),
        noise_row("absence", "d", due_at=90.0, expires_at=50.0),
    ]
    await store.finish_inbox([], now=1.0, noise=NoiseWrite(put=rows))
    refs = [(r.kind, r.name, r.key) for r in rows] + [("throttle", "rule-a", "missing")]
    assert sorted(rows, key=repr) == sorted(await store.load_noise(refs), key=repr)
    replaced = noise_row("throttle", "a", data='{"until":20}', expires_at=200.0)
    await store.finish_inbox([], now=2.0, noise=NoiseWrite(put=[replaced], delete=[("throttle", "rule-a", "b")]))
    assert [replaced] == await store.load_noise([("throttle", "rule-a", "a"), ("throttle", "rule-a", "b")])
    await store.finish_inbox([], now=3.0, noise=NoiseWrite(purge_before=300.0))
    left = await store.load_noise(refs)
    assert {"c", "d"} == {r.key for r in left}  # timers stay whatever their expiry


async def test_load_noise_many_refs_and_odd_keys(store: Store) -> None:
    """Hundreds of refs load in one call, and keys with quotes, commas and unicode read back as written."""
    keys = [f"process=Inv'oice,{i}☃" for i in range(700)]
    await store.finish_inbox([], now=1.0, noise=NoiseWrite(put=[noise_row("frequency", k) for k in keys]))
    found = await store.load_noise([("frequency", "rule-a", k) for k in keys[::2]])
    assert set(keys[::2]) == {r.key for r in found}
    assert [] == await store.load_noise([])


async def test_due_noise_earliest_first(store: Store) -> None:
    """Due timers come earliest first, up to the limit; next_noise_due names the earliest of all."""
    assert None is await store.next_noise_due()
    rows = [noise_row("group", k, due_at=t) for k, t in (("x", 30.0), ("y", 10.0), ("z", 20.0), ("w", 99.0))]
    await store.finish_inbox([], now=1.0, noise=NoiseWrite(put=[*rows, noise_row("throttle", "v", expires_at=5.0)]))
    assert 10.0 == await store.next_noise_due()
    assert ["y", "z"] == [r.key for r in await store.due_noise(until=30.0, limit=2)]
    assert ["y", "z", "x"] == [r.key for r in await store.due_noise(until=30.0, limit=10)]
    assert [] == await store.due_noise(until=9.0, limit=10)


async def test_finish_inbox_commits_noise_with_the_events(store: Store) -> None:
    """Events, their deliveries, late deliveries, noise rows and the decision log land in one commit."""
    first = await store.accept(item("e1"))
    second = await store.accept(item("e2"))
    await store.finish_inbox([Processed(first.inbox_id, "processed", "{}")], now=2000)
    entries = [
        NoiseLogEntry(1999.0, second.inbox_id, "faults", "P", "throttled", "throttled by rule 'faults'", True),
        NoiseLogEntry(1999.5, first.inbox_id, "digest", "", "flushed", "digest sent", False),
    ]
    noise = NoiseWrite(
        put=[noise_row("throttle", "P", expires_at=3000.0)],
        deliveries=[LateDelivery(first.inbox_id, delivery("ops", rule="digest"))],
        log=entries,
    )
    await store.finish_inbox([Processed(second.inbox_id, "processed", '{"noise":[]}')], now=2001, noise=noise)
    assert ["digest"] == [d.rule for d in await store.deliveries_of(first.inbox_id)]
    assert [] == await store.deliveries_of(second.inbox_id)
    assert {"e1": "processed", "e2": "processed"} == {r.event_id: r.state for r in await store.list_events()}
    log = await store.list_noise_log()
    assert [entries[1], entries[0]] == [r.entry for r in log]
    assert all(2001 == r.recorded_at for r in log)
    assert [entries[0]] == [r.entry for r in await store.list_noise_log(suppressed_only=True)]
    assert [entries[1]] == [r.entry for r in await store.list_noise_log(inbox_id=first.inbox_id)]
    assert 1 == len(await store.load_noise([("throttle", "rule-a", "P")]))


async def test_failed_finish_keeps_neither_events_nor_noise(store: Store) -> None:
    """When the commit fails (a delivery for an event that does not exist), nothing of it is kept."""
    accepted = await store.accept(item("e1"))
    noise = NoiseWrite(
        put=[noise_row("throttle", "P", expires_at=3000.0)],
        deliveries=[LateDelivery(accepted.inbox_id + 999, delivery())],
        log=[NoiseLogEntry(1.0, accepted.inbox_id, "r", None, "throttled", "x", True)],
    )
    with pytest.raises(StoreError):
        await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}")], now=2000, noise=noise)
    assert "new" == (await store.list_events())[0].state
    assert [] == await store.load_noise([("throttle", "rule-a", "P")])
    assert [] == await store.list_noise_log()
    assert [] == await store.list_deliveries()


async def test_late_deliveries_wake_their_channel(store: Store) -> None:
    """A digest written by finish_inbox wakes the workers of its channel like any delivery."""
    topics: list[str] = []
    await store.listen(topics.append)
    accepted = await store.accept(item("e1"))
    await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}")], now=2000)
    noise = NoiseWrite(deliveries=[LateDelivery(accepted.inbox_id, delivery("mail", rule="digest"))])
    await store.finish_inbox([], now=2001, noise=noise)
    await eventually(lambda: "deliveries:mail" in topics)


async def test_silences_are_added_listed_and_expired(store: Store) -> None:
    """Silences keep matchers, creator and comment; expiring ends them now; active ones are those not ended."""
    new = NewSilence(("process=Invoice*", "robot=BOT 01"), "SAP upgrade ☃", "alice", 1000.0, 8200.0)
    created = await store.add_silence(new, now=990.0)
    later = await store.add_silence(NewSilence(("rule=x",), "", "bob", 5000.0, 6000.0), now=991.0)
    assert (new.matchers, "SAP upgrade ☃", "alice", 990.0, 1000.0, 8200.0) == (
        created.matchers, created.comment, created.created_by, created.created_at, created.starts_at, created.ends_at,
    )  # fmt: skip
    assert [later.id, created.id] == [s.id for s in await store.list_silences()]
    assert [later.id, created.id] == [s.id for s in await store.list_silences(active_at=2000.0)]
    assert [created.id] == [s.id for s in await store.list_silences(active_at=7000.0)]
    expired = await store.expire_silence(created.id, now=3000.0)
    assert expired is not None
    assert 3000.0 == expired.ends_at
    again = await store.expire_silence(created.id, now=4000.0)
    assert again is not None
    assert 3000.0 == again.ends_at
    early = await store.expire_silence(later.id, now=4000.0)  # not started yet: ends (and starts) now
    assert early is not None
    assert (4000.0, 4000.0) == (early.starts_at, early.ends_at)
    assert None is await store.expire_silence(999_999, now=4000.0)
    assert [] == await store.list_silences(active_at=4000.0)


def test_both_stores_know_the_same_schema_versions() -> None:
    """A schema version means the same tables on SQLite and PostgreSQL."""
    from receiver.store import schema

    assert len(schema.SQLITE) == len(schema.POSTGRES)


# -- SQLite only ----------------------------------------------------------------------------


class TestSQLite:
    async def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        """A database written by a newer receiver is refused with a clear error, not damaged."""
        path = tmp_path / "r.db"
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA user_version = 999")
        conn.close()
        with pytest.raises(StoreError, match="newer than this receiver"):
            await SQLiteStore(str(path)).open()

    async def test_unwritable_location_is_a_store_error(self, tmp_path: Path) -> None:
        """A database path that cannot be created gives StoreError naming the path."""
        blocker = tmp_path / "file"
        blocker.write_text("x")
        with pytest.raises(StoreError, match="cannot open"):
            await SQLiteStore(str(blocker / "r.db")).open()

    async def test_accepts_wait_for_the_disk_after_relaxed_writes(self, tmp_path: Path) -> None:
        """Writes that are redone if lost skip the fsync; the accept after them (and after a failed one) waits for it.

        Those are the delivery claims and outcomes, and the inbox worker's lease, claims and results.
        """
        store = SQLiteStore(str(tmp_path / "receiver.db"))
        await store.open()
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)  # type: ignore[union-attr]

        def mode_of(prefix: str) -> str:
            """The synchronous mode in force when the last statement starting with ``prefix`` ran."""
            last = max(i for i, sql in enumerate(statements) if sql.startswith(prefix))
            pragmas = [sql for sql in statements[:last] if sql.startswith("PRAGMA synchronous=")]
            return pragmas[-1].rpartition("=")[2] if pragmas else "FULL"

        try:
            assert await store.acquire_lease("inbox", "worker-1", now=1999.0, ttl=60)
            await store.accept(item("claimed"))
            assert 1 == len(await store.claim_inbox(limit=10, now=1999.5, lease=30))
            delivery_id = await _one_delivery(store)
            for prefix in ("INSERT INTO leases", "UPDATE inbox SET lease_until", "INSERT INTO deliveries"):
                assert "NORMAL" == mode_of(prefix), prefix
            assert "FULL" == mode_of("INSERT INTO inbox")
            assert [delivery_id] == [r.id for r in await store.claim_deliveries("ops", limit=5, now=2001.0, lease=30)]
            await store.mark_sent(delivery_id, now=2002.0, elapsed=0.1)
            assert "NORMAL" == mode_of("UPDATE deliveries SET state = 'sent'")
            assert not (await store.accept(item("after-sent"))).duplicate
            assert "FULL" == mode_of("INSERT INTO inbox")
            store._conn.execute("DROP TABLE attempts")  # type: ignore[union-attr]
            with pytest.raises(StoreError):
                await store.mark_failed(delivery_id, now=2003.0, reason="x", elapsed=0.1, next_attempt_at=None)
            assert not (await store.accept(item("after-failure"))).duplicate
            assert "FULL" == mode_of("INSERT INTO inbox")
            assert 2 == store._conn.execute("PRAGMA synchronous").fetchone()[0]  # type: ignore[union-attr]
        finally:
            await store.close()

    async def test_write_failure_surfaces_as_store_error(self, tmp_path: Path) -> None:
        """When another connection holds the write lock past the timeout, accept raises StoreError."""
        store = SQLiteStore(str(tmp_path / "receiver.db"))
        await store.open()
        blocker = sqlite3.connect(tmp_path / "receiver.db", timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            store._conn.execute("PRAGMA busy_timeout=100")  # type: ignore[union-attr]
            with pytest.raises(StoreError):
                await store.accept(item("locked"))
        finally:
            blocker.rollback()
            blocker.close()
        try:
            assert not (await store.accept(item("locked"))).duplicate
        finally:
            await store.close()

    async def test_accept_after_inline_calls_waits_for_another_process_lock(self, tmp_path: Path) -> None:
        """After calls run on the event loop (which never wait for a lock), an accept still waits for another writer."""
        store = SQLiteStore(str(tmp_path / "receiver.db"))
        await store.open()
        try:
            await store.accept(item("first"))
            assert 1 == len(await store.claim_inbox(limit=5, now=2000.0, lease=30))  # inline: no busy wait
            blocker = sqlite3.connect(tmp_path / "receiver.db", timeout=0, check_same_thread=False)
            blocker.execute("BEGIN EXCLUSIVE")
            release = threading.Timer(0.3, blocker.rollback)
            release.start()
            try:
                assert not (await store.accept(item("while-locked"))).duplicate
            finally:
                release.join()
                blocker.close()
        finally:
            await store.close()


# -- cancelled callers ----------------------------------------------------------------------


async def cancel_after(call: asyncio.Task[object], steps: int, *, again_after: int | None = None) -> None:
    """Cancel ``call`` after ``steps`` turns of the event loop, and again ``again_after`` turns later
    (as an ``asyncio.timeout`` around a release in a cancelled task's ``finally`` does); wait for it."""
    for _ in range(steps):
        await asyncio.sleep(0)
    call.cancel()
    if again_after is not None:
        for _ in range(again_after):
            await asyncio.sleep(0)
        call.cancel()
    await asyncio.gather(call, return_exceptions=True)


async def test_a_lease_released_after_a_cancelled_renewal_is_free(store: Store) -> None:
    """A worker cancelled while renewing its lease, then releasing it (in its ``finally``), leaves the lease free.

    The renewal must not commit after the release, which would hold the lease for its whole TTL.
    """
    for steps in range(1, 40):
        renewal = asyncio.create_task(store.acquire_lease("prune", "first", now=1000.0, ttl=600))
        await cancel_after(renewal, steps)
        await store.release_lease("prune", "first")
        assert await store.acquire_lease("prune", "second", now=1000.0, ttl=600), steps
        await store.release_lease("prune", "second")


async def test_store_survives_callers_cancelled_at_any_point(store: Store) -> None:
    """Calls cancelled at every point of their run, once or twice, leave a store that answers and closes promptly."""
    for steps in range(1, 40):
        for again_after in (None, 1, 3, 8):
            call = asyncio.create_task(store.acquire_lease("prune", f"o{steps}", now=1000.0 + steps, ttl=60))
            await cancel_after(call, steps, again_after=again_after)
    async with asyncio.timeout(10):
        assert 1 == await store.bump_counter("after")
        assert await store.acquire_lease("other", "me", now=5000.0, ttl=60)
    started = asyncio.get_running_loop().time()
    await store.close()
    assert asyncio.get_running_loop().time() - started < 6


# -- PostgreSQL only ------------------------------------------------------------------------


@pytest.fixture
async def replicas(pg_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores with their own pools on one schema, as two replicas would have."""
    first, second = open_store(pg_url), open_store(pg_url)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


def lock_counter(schema: str) -> Any:
    """SQL that locks counter ``c`` of this schema's store until its transaction ends."""
    from psycopg import sql

    return sql.SQL("SELECT value FROM {}.counters WHERE name = 'c' FOR UPDATE").format(sql.Identifier(schema))


@pytest.mark.postgres
class TestPostgresCancelledCallers:
    """A caller cancelled during a store call (a stopped worker, a lost lease) does not cut its transaction short."""

    async def test_a_call_cancelled_at_any_point_still_commits(self, pg_url: str) -> None:
        """Each bump whose caller is cancelled, at any turn of the loop and even twice, is counted once."""
        store = open_store(pg_url)
        await store.open()
        try:
            calls = 0
            for steps in range(1, 30):
                for again_after in (None, 2, 6):
                    await cancel_after(asyncio.create_task(store.bump_counter("c")), steps, again_after=again_after)
                    calls += 1
        finally:
            await store.close()  # waits for the transactions the cancelled callers left running
        store = open_store(pg_url)
        await store.open()
        try:
            assert calls == await store.read_counter("c")
        finally:
            await store.close()

    async def test_a_caller_cancelled_while_its_statement_runs(
        self, pg_url: str, database_url: str, pg_schema: str
    ) -> None:
        """Cancelled while the server runs its statement, the call still commits, and returns when it has.

        It returns at most 1 s after the cancellation, or at once when cancelled again (a timeout
        around it); the transaction goes on either way.
        """
        import psycopg

        store = open_store(pg_url)
        await store.open()
        try:
            assert 1 == await store.bump_counter("c")
            async with await psycopg.AsyncConnection.connect(database_url) as blocker:
                await blocker.execute(lock_counter(pg_schema))
                call = asyncio.create_task(store.bump_counter("c"))
                await asyncio.sleep(0.2)  # the bump waits on the server for the row lock
                call.cancel()
                await asyncio.sleep(0.2)
                assert not call.done()  # its transaction has not ended yet
                await blocker.commit()
            await asyncio.gather(call, return_exceptions=True)
            assert call.cancelled()
            assert 2 == await store.read_counter("c")

            async with await psycopg.AsyncConnection.connect(database_url) as blocker:
                await blocker.execute(lock_counter(pg_schema))
                call = asyncio.create_task(store.bump_counter("c"))
                await asyncio.sleep(0.2)
                started = asyncio.get_running_loop().time()
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)  # the transaction still waits for the lock
                assert call.cancelled()
                assert 0.9 < asyncio.get_running_loop().time() - started < 2  # _CANCEL_WAIT_SECONDS
                await blocker.commit()
            async with asyncio.timeout(10):
                assert 4 == await store.bump_counter("c")  # behind the cancelled bump, which committed

            async with await psycopg.AsyncConnection.connect(database_url) as blocker:
                await blocker.execute(lock_counter(pg_schema))
                call = asyncio.create_task(store.bump_counter("c"))
                await asyncio.sleep(0.2)
                started = asyncio.get_running_loop().time()
                await cancel_after(call, 0, again_after=5)
                assert call.cancelled()
                assert asyncio.get_running_loop().time() - started < 0.5
                await blocker.commit()
            async with asyncio.timeout(10):
                # Queued behind the cancelled caller's bump for the row lock: that one committed first.
                assert 6 == await store.bump_counter("c")
        finally:
            await store.close()

    async def test_close_is_bounded_while_a_statement_hangs(
        self, pg_url: str, database_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A transaction stuck on the server does not hold close() past its bound; the store closes anyway."""
        import psycopg

        monkeypatch.setattr("receiver.store.postgres._CLOSE_SECONDS", 0.5)
        store = open_store(pg_url)
        await store.open()
        assert 1 == await store.bump_counter("c")
        async with await psycopg.AsyncConnection.connect(database_url) as blocker:
            await blocker.execute(lock_counter(pg_schema))
            call = asyncio.create_task(store.bump_counter("c"))
            await asyncio.sleep(0.2)
            started = asyncio.get_running_loop().time()
            await store.close()
            assert asyncio.get_running_loop().time() - started < 3
            await blocker.rollback()
        with pytest.raises((StoreError, asyncio.CancelledError)):
            await call


@pytest.mark.postgres
class TestPostgresReplicas:
    async def test_concurrent_inbox_claims_never_share_a_row(self, replicas: tuple[Store, Store]) -> None:
        """Many claims at once on two replicas get disjoint events that together are all of them."""
        first, second = replicas
        accepted = await asyncio.gather(*(first.accept(item(f"e{i}")) for i in range(300)))
        claims = await asyncio.gather(
            *(store.claim_inbox(limit=7, now=2000, lease=60) for _ in range(30) for store in replicas)
        )
        claimed = [row.id for rows in claims for row in rows]
        assert len(claimed) == len(set(claimed))
        leftover = await second.claim_inbox(limit=1000, now=2000, lease=60)
        assert sorted(a.inbox_id for a in accepted) == sorted(claimed + [r.id for r in leftover])

    async def test_concurrent_delivery_claims_never_share_a_row(self, replicas: tuple[Store, Store]) -> None:
        """Two replicas claiming one channel's deliveries at once never get the same delivery."""
        first, second = replicas
        events = await asyncio.gather(*(first.accept(item(f"e{i}")) for i in range(200)))
        await first.finish_inbox([Processed(a.inbox_id, "processed", "{}", [delivery()]) for a in events], now=2000)
        claims = await asyncio.gather(
            *(store.claim_deliveries("ops", limit=5, now=2000, lease=60) for _ in range(30) for store in replicas)
        )
        claimed = [row.id for rows in claims for row in rows]
        assert len(claimed) == len(set(claimed))
        leftover = await second.claim_deliveries("ops", limit=1000, now=2000, lease=60)
        assert 200 == len(claimed) + len(leftover)

    async def test_same_event_on_two_replicas_is_stored_once(self, replicas: tuple[Store, Store]) -> None:
        """Each EventId posted to both replicas at once, in opposite orders, is new on exactly one of them."""
        first, second = replicas
        ids = [f"e{i}" for i in range(200)]
        on_first, on_second = await asyncio.gather(
            asyncio.gather(*(first.accept(item(e)) for e in ids)),
            asyncio.gather(*(second.accept(item(e)) for e in reversed(ids))),
        )
        for a, b in zip(on_first, reversed(on_second), strict=True):
            assert (1, a.inbox_id) == (a.duplicate + b.duplicate, b.inbox_id)
        assert 200 == len(await first.list_events(limit=1000))

    async def test_accepts_after_a_burst_are_answered(self, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """With every batch slot just used, the next accepts one by one are still committed and answered."""
        monkeypatch.setattr("receiver.store.postgres.PostgresStore._FLUSHERS", 1)
        store = open_store(pg_url)
        await store.open()
        try:
            await asyncio.gather(*(store.accept(item(f"burst{i}")) for i in range(50)))
            async with asyncio.timeout(10):  # awaited directly: a wrapping task would hide the race
                for i in range(20):
                    assert not (await store.accept(item(f"one{i}"))).duplicate
        finally:
            await store.close()

    async def test_notification_reaches_the_other_replica(self, replicas: tuple[Store, Store]) -> None:
        """Work committed on one replica wakes the listener of the other."""
        first, second = replicas
        topics: list[str] = []
        await first.listen(topics.append)
        accepted = await second.accept(item("e1"))
        await eventually(lambda: ["inbox"] == topics)
        await second.finish_inbox([Processed(accepted.inbox_id, "processed", "{}", [delivery("ops")])], now=2000)
        await eventually(lambda: ["inbox", "deliveries:ops"] == topics)

    async def test_concurrent_opens_migrate_once(self, pg_url: str, database_url: str, pg_schema: str) -> None:
        """Replicas starting together on a new schema all open, and the migrations are recorded once."""
        import psycopg

        stores = [open_store(pg_url) for _ in range(6)]
        try:
            await asyncio.gather(*(s.open() for s in stores))
        finally:
            await asyncio.gather(*(s.close() for s in stores))
        with psycopg.connect(with_params(database_url, options=f"-csearch_path%3D{pg_schema}")) as conn:
            versions = conn.execute("SELECT version FROM receiver_migrations ORDER BY version").fetchall()
            assert [(v,) for v in range(1, len(schema.POSTGRES) + 1)] == versions

    async def test_other_schemas_are_not_seen(self, pg_url: str, database_url: str) -> None:
        """Two schemas in one database are separate stores: no shared rows, no shared notifications."""
        other_schema = f"receiver_test_{uuid.uuid4().hex[:16]}"
        mine, other = open_store(pg_url), open_store(with_params(database_url, schema=other_schema))
        await mine.open()
        await other.open()
        try:
            topics: list[str] = []
            await mine.listen(topics.append)
            await other.accept(item("e1"))
            await other.ping()
            await asyncio.sleep(0.2)
            assert ([], []) == (topics, await mine.list_events())
        finally:
            await mine.close()
            await other.close()
            import psycopg
            from psycopg import sql

            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(other_schema)))


@pytest.mark.postgres
class TestPostgresConfiguration:
    async def test_search_path_option_selects_an_existing_schema(self, database_url: str, pg_schema: str) -> None:
        """libpq's options=-csearch_path=NAME puts the tables in that schema."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
        store = open_store(with_params(database_url, options=f"-csearch_path%3D{pg_schema}"))
        await store.open()
        try:
            await store.accept(item("e1"))
        finally:
            await store.close()
        with psycopg.connect(database_url) as conn:
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}.inbox").format(sql.Identifier(pg_schema))).fetchone()
        assert (1,) == count

    async def test_search_path_without_existing_schema_is_refused(self, database_url: str, pg_schema: str) -> None:
        """A search_path naming no existing schema is a StoreError saying how to fix it."""
        store = open_store(with_params(database_url, options=f"-csearch_path%3D{pg_schema}"))
        with pytest.raises(StoreError, match=r"\?schema=NAME"):
            await store.open()

    async def test_newer_schema_is_refused(self, pg_url: str, database_url: str, pg_schema: str) -> None:
        """A schema migrated by a newer receiver is refused with a clear error, not damaged."""
        import psycopg
        from psycopg import sql

        store = open_store(pg_url)
        await store.open()
        await store.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("INSERT INTO {}.receiver_migrations (version) VALUES (999)").format(sql.Identifier(pg_schema))
            )
        with pytest.raises(StoreError, match="newer than this receiver"):
            await open_store(pg_url).open()

    async def test_dropped_connections_are_replaced(self, database_url: str, pg_schema: str) -> None:
        """After the server ends every connection (a restart), calls succeed again and the listener comes back."""
        import psycopg

        app = f"receiver_{pg_schema[-16:]}"
        url = with_params(database_url, schema=pg_schema, application_name=app)
        first, second = open_store(url), open_store(url)
        await first.open()
        await second.open()
        try:
            topics: list[str] = []
            await first.listen(topics.append)
            await second.accept(item("before"))
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app,)
                )
            assert not (await second.accept(item("after"))).duplicate
            for i in range(500):  # the listener reconnects after a backoff; notifications sent meanwhile are lost
                topics.clear()
                await second.accept(item(f"probe{i}"))
                await asyncio.sleep(0.02)
                if topics:
                    break
            assert ["inbox"] == topics
        finally:
            await first.close()
            await second.close()

    async def test_database_errors_name_the_database(self, pg_url: str, database_url: str, pg_schema: str) -> None:
        """A failing statement becomes a StoreError naming host and database."""
        import psycopg
        from psycopg import sql

        store = open_store(pg_url)
        await store.open()
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(pg_schema)))
            with pytest.raises(StoreError) as raised:
                await store.accept(item("e1"))
            parts = urlsplit(database_url)
            assert f"{parts.hostname}:{parts.port or 5432}{parts.path}" in str(raised.value)
        finally:
            await store.close()


class TestPostgresWithoutServer:
    """What needs the driver but no running server."""

    @pytest.fixture(autouse=True)
    def _driver(self) -> None:
        pytest.importorskip("psycopg")

    async def test_refused_connection_names_host_not_password(self) -> None:
        """A server that is not there gives StoreError naming host, port and database, with the password masked."""
        port = free_port()
        store = open_store(f"postgresql://ops:s3cr%40t-pw@127.0.0.1:{port}/alerts?connect_timeout=2")
        with pytest.raises(StoreError) as raised:
            await store.open()
        message = str(raised.value)
        assert f"127.0.0.1:{port}/alerts" in message
        assert "s3cr" not in message

    @pytest.mark.parametrize(
        "url",
        [
            pytest.param("postgresql://ops:s3cr%zzt@db/alerts", id="bad-percent-encoding"),
            pytest.param("postgres://ops:s3cret@db/alerts?bogus=1", id="unknown-parameter"),
        ],
    )
    def test_malformed_url_is_a_config_error_without_password(self, url: str) -> None:
        """A URL libpq cannot parse is a ConfigError, and the password is not in it."""
        with pytest.raises(ConfigError) as raised:
            open_store(url)
        assert "s3cr" not in str(raised.value)

    @pytest.mark.parametrize(
        "url",
        [
            pytest.param("postgresql://db/alerts?schema=Bad-Name", id="invalid"),
            pytest.param("postgresql://db/alerts?schema=a&schema=b", id="conflicting"),
        ],
    )
    def test_bad_schema_parameter_is_a_config_error(self, url: str) -> None:
        """The schema parameter must be one plain lowercase identifier."""
        with pytest.raises(ConfigError, match="schema"):
            open_store(url)

    def test_both_url_schemes_give_the_postgres_store(self) -> None:
        """postgresql:// and postgres:// both name the PostgreSQL store, described without the password."""
        from receiver.store.postgres import PostgresStore

        stores = [
            open_store(f"{scheme}://ops:pw@db.example:6432/alerts?schema=rx") for scheme in ("postgresql", "postgres")
        ]
        assert [(PostgresStore, "db.example:6432/alerts")] * 2 == [(type(s), s.where) for s in stores]  # type: ignore[attr-defined]

    def test_missing_driver_names_the_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without psycopg installed, a PostgreSQL URL is a ConfigError saying which extra to install."""
        monkeypatch.delitem(sys.modules, "receiver.store.postgres", raising=False)
        monkeypatch.setitem(sys.modules, "psycopg", None)
        with pytest.raises(ConfigError, match=r"pip install 'orchestrator-alert-receiver\[postgres\]'"):
            open_store("postgresql://db/alerts")


async def test_lease_is_held_by_one_owner_until_it_lapses(store: Store) -> None:
    """A named lease is renewed by its owner, refused to others while it runs, and taken over after."""
    assert await store.acquire_lease("inbox", "a", now=1000, ttl=10)
    assert not await store.acquire_lease("inbox", "b", now=1005, ttl=10)
    assert await store.acquire_lease("inbox", "a", now=1008, ttl=10)  # renewed until 1018
    assert not await store.acquire_lease("inbox", "b", now=1017, ttl=10)
    assert await store.acquire_lease("inbox", "b", now=1018, ttl=10)
    assert not await store.acquire_lease("inbox", "a", now=1019, ttl=10)
    assert await store.acquire_lease("other", "a", now=1019, ttl=10)


async def test_released_lease_is_taken_at_once(store: Store) -> None:
    """A clean shutdown gives the lease up: the next owner need not wait for it to lapse; others cannot free it."""
    assert await store.acquire_lease("inbox", "a", now=1000, ttl=60)
    await store.release_lease("inbox", "b")  # not b's to give
    assert not await store.acquire_lease("inbox", "b", now=1001, ttl=60)
    await store.release_lease("inbox", "a")
    assert await store.acquire_lease("inbox", "b", now=1001, ttl=60)
    assert not await store.acquire_lease("inbox", "a", now=1002, ttl=60)


async def test_counters_start_at_zero_and_count_up_for_every_connection(store_url: str) -> None:
    """A named counter reads 0 until bumped, counts up by one, and another store on the database sees it."""
    one, other = open_store(store_url), open_store(store_url)
    await one.open()
    await other.open()
    try:
        assert (0, 0) == (await one.read_counter("ui_sessions"), await other.read_counter("ui_sessions"))
        assert [1, 2] == [await one.bump_counter("ui_sessions"), await other.bump_counter("ui_sessions")]
        assert (2, 0) == (await one.read_counter("ui_sessions"), await other.read_counter("else"))
    finally:
        await one.close()
        await other.close()


async def test_a_raised_counter_only_moves_on(store: Store) -> None:
    """raise_counter keeps the higher of the stored and the given value (a watermark never goes back)."""
    assert 1_700_000_000 == await store.raise_counter("gap-recovery:uipath", 1_700_000_000)
    assert 1_700_000_000 == await store.raise_counter("gap-recovery:uipath", 1_600_000_000)
    assert 1_800_000_000 == await store.raise_counter("gap-recovery:uipath", 1_800_000_000)
    assert 1_800_000_000 == await store.read_counter("gap-recovery:uipath")


async def test_released_claims_are_claimable_at_once(store: Store) -> None:
    """Released events and deliveries are claimed again before their leases end; processed and sent rows stay so."""
    ids = [(await store.accept(item(f"r-{n}"))).inbox_id for n in range(3)]
    assert ids == [r.id for r in await store.claim_inbox(limit=10, now=1000, lease=60)]
    await store.finish_inbox([Processed(ids[0], "processed", "{}", [delivery("ops"), delivery("mail")])], now=1001)
    await store.release_claims(inbox_ids=ids)
    assert ids[1:] == [r.id for r in await store.claim_inbox(limit=10, now=1002, lease=60)]

    sent, unstarted = [d.id for d in await store.deliveries_of(ids[0])]
    claimed = {r.id for r in await store.claim_deliveries("ops", limit=10, now=1002, lease=60)}
    claimed |= {r.id for r in await store.claim_deliveries("mail", limit=10, now=1002, lease=60)}
    assert {sent, unstarted} == claimed
    await store.mark_sent(sent, now=1003, elapsed=0.1)
    await store.release_claims(delivery_ids=[sent, unstarted])
    again = await store.claim_deliveries("ops", limit=10, now=1004, lease=60)
    again += await store.claim_deliveries("mail", limit=10, now=1004, lease=60)
    assert [unstarted] == [r.id for r in again]
    assert "sent" == (await store.get_delivery(sent)).state  # type: ignore[union-attr]
