"""The store protocol: inbox dedup and leases, the outbox life cycle, durability across reopen.

Written against ``Store`` so every implementation runs the same suite (the ``store`` fixture
is parametrized by implementation).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.errors import StoreError
from receiver.store import InboxItem, NewDelivery, Processed, SQLiteStore, Store, open_store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite")])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    instance = open_store(f"sqlite:///{tmp_path / 'receiver.db'}")
    await instance.open()
    yield instance
    await instance.close()


def item(event_id: str, *, source: str = "uipath", type_: str = "job.faulted", at: float = 1000.0) -> InboxItem:
    return InboxItem(source=source, event_id=event_id, type=type_, body=b'{"Type":"job.faulted"}', received_at=at)


def delivery(channel: str = "ops", rule: str = "r1") -> NewDelivery:
    return NewDelivery(rule=rule, channel=channel, title="t", body="b", severity="failure", body_format="text")


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
    assert ("processed", '{"matched":["r1"]}') == (events[0].state, events[0].outcome)


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


async def test_rows_survive_reopen(tmp_path: Path) -> None:
    """What was committed is there after the store is closed and opened again."""
    url = f"sqlite:///{tmp_path / 'nested' / 'r.db'}"
    first = open_store(url)
    await first.open()
    await first.accept(item("kept"))
    await first.close()
    second = open_store(url)
    await second.open()
    assert ["kept"] == [r.event_id for r in await second.list_events()]
    assert (await second.accept(item("kept"))).duplicate
    await second.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer receiver is refused with a clear error, not damaged."""
    path = tmp_path / "r.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StoreError, match="newer than this receiver"):
        await SQLiteStore(str(path)).open()


async def test_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    """A database path that cannot be created gives StoreError naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open"):
        await SQLiteStore(str(blocker / "r.db")).open()


async def test_write_failure_surfaces_as_store_error(store: Store, tmp_path: Path) -> None:
    """When another connection holds the write lock past the timeout, accept raises StoreError."""
    if not isinstance(store, SQLiteStore):
        pytest.skip("SQLite locking")
    blocker = sqlite3.connect(tmp_path / "receiver.db", timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        store._conn.execute("PRAGMA busy_timeout=100")  # type: ignore[union-attr]
        with pytest.raises(StoreError):
            await store.accept(item("locked"))
    finally:
        blocker.rollback()
        blocker.close()
    assert not (await store.accept(item("locked"))).duplicate


def test_unknown_database_scheme() -> None:
    """An unsupported URL scheme is a configuration error naming the scheme."""
    from receiver.errors import ConfigError

    with pytest.raises(ConfigError, match="'mysql'"):
        open_store("mysql://x")
