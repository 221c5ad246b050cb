"""EdgeActivity: background work gives way to a burst at the edge, but never waits longer than it is allowed."""

from __future__ import annotations

import asyncio
import time

import pytest

from receiver.pipeline.activity import EdgeActivity


@pytest.mark.anyio
async def test_an_idle_edge_does_not_delay_anything() -> None:
    edge = EdgeActivity(quiet=5.0)
    started = time.monotonic()
    await edge.wait_quiet(10.0)
    assert time.monotonic() - started < 5.0  # the quiet period or the bound would take 5-10 s


@pytest.mark.anyio
async def test_a_few_requests_in_hand_do_not_hold_background_work() -> None:
    """Steady traffic keeps a request or two in hand; alerts must not wait for it to stop."""
    edge = EdgeActivity(burst=8, quiet=5.0)
    for _ in range(7):
        edge.started()
    started = time.monotonic()
    await edge.wait_quiet(10.0)
    assert time.monotonic() - started < 5.0  # the quiet period or the bound would take 5-10 s


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
    """Back in a burst within the quiet period: the period starts again from the burst's last answer.

    Decided by lower bounds only (a timer never fires early), so a slow machine cannot pass it wrongly.
    """
    quiet = 1.0
    edge = EdgeActivity(burst=2, quiet=quiet)
    edge.started()
    edge.started()
    edge.finished()
    waiter = asyncio.create_task(edge.wait_quiet(30.0))
    await asyncio.sleep(0.2)
    assert not waiter.done(), "the machine stalled for the whole quiet period: nothing left to test"
    edge.started()  # a burst again, within the period
    edge.finished()
    last_answer = time.monotonic()
    await asyncio.wait_for(waiter, timeout=30.0)
    assert time.monotonic() - last_answer >= quiet - 0.01, "quiet came before the period after the last answer"
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
