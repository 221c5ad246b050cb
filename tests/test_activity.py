"""EdgeActivity: background work gives way to a burst at the edge, but never waits longer than it is allowed."""

from __future__ import annotations

import asyncio
import time

import pytest

from receiver.pipeline.activity import EdgeActivity


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_an_idle_edge_does_not_delay_anything() -> None:
    edge = EdgeActivity(quiet=5.0)
    started = time.monotonic()
    await edge.wait_quiet(10.0)
    assert time.monotonic() - started < 1.0


@pytest.mark.anyio
async def test_a_few_requests_in_hand_do_not_hold_background_work() -> None:
    """Steady traffic keeps a request or two in hand; alerts must not wait for it to stop."""
    edge = EdgeActivity(burst=8, quiet=5.0)
    for _ in range(7):
        edge.started()
    started = time.monotonic()
    await edge.wait_quiet(10.0)
    assert time.monotonic() - started < 1.0


@pytest.mark.anyio
async def test_a_burst_holds_background_work_until_at_most() -> None:
    edge = EdgeActivity(burst=2, quiet=0.01)
    edge.started()
    edge.started()
    started = time.monotonic()
    await edge.wait_quiet(0.2)
    waited = time.monotonic() - started
    assert 0.19 <= waited < 2.0
    assert 2 == edge.inflight


@pytest.mark.anyio
async def test_quiet_only_after_the_quiet_period_under_the_burst() -> None:
    edge = EdgeActivity(burst=2, quiet=0.1)
    edge.started()
    edge.started()
    edge.finished()
    waiter = asyncio.create_task(edge.wait_quiet(5.0))
    await asyncio.sleep(0.05)
    # Back to a burst within the quiet period: the period starts again once it is over.
    edge.started()
    await asyncio.sleep(0.02)
    edge.finished()
    await asyncio.sleep(0.05)
    assert not waiter.done(), "quiet came before 0.1 s under the burst"
    await asyncio.wait_for(waiter, timeout=2.0)
    assert 1 == edge.inflight


@pytest.mark.anyio
async def test_cancelling_the_waiter_is_not_swallowed() -> None:
    edge = EdgeActivity(burst=1, quiet=0.01)
    edge.started()
    waiter = asyncio.create_task(edge.wait_quiet(10.0))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
