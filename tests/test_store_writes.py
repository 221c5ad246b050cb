"""``StoreWrites``: what /readyz and /metrics say about a store that takes no writes, and what they cost it."""

from __future__ import annotations

import asyncio

import pytest

from receiver.errors import StoreError
from receiver.http.runtime import StoreWrites

pytestmark = pytest.mark.anyio


class FullStore:
    """Refuses every write, slowly (a file locked by another process: the busy timeout)."""

    def __init__(self) -> None:
        self.writes = 0
        self.sizes: list[int] = []

    async def acquire_lease(self, name: str, owner: str, *, now: float, ttl: float) -> bool:
        self.writes += 1
        self.sizes.append(len(owner))
        await asyncio.sleep(0.2)
        raise StoreError("database or disk is full")

    async def release_lease(self, name: str, owner: str) -> None:
        self.writes += 1


async def test_a_flood_of_readiness_checks_makes_one_probe_write_at_a_time() -> None:
    """/readyz needs no token: a hundred checks at once while the store fails cost one write, not a hundred."""
    writes = StoreWrites()
    writes.failed("database or disk is full", 1_000_000)
    store = FullStore()
    answers = await asyncio.gather(*(writes.check(store, "me", 0.0) for _ in range(100)))  # type: ignore[arg-type]
    assert {"database or disk is full"} == set(answers)
    assert 1 == store.writes
    assert [1_000_000] == store.sizes  # as large as the body refused


async def test_no_write_while_nothing_failed() -> None:
    store = FullStore()
    assert None is await StoreWrites().check(store, "me", 0.0)  # type: ignore[arg-type]
    assert 0 == store.writes
