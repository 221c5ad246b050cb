"""EntryQuota: a token bucket per source, counted in entries, all or nothing."""

from __future__ import annotations

import pytest

from receiver.http.quota import EntryQuota, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_full_bucket_takes_a_burst_then_refills_at_the_rate(clock: Clock) -> None:
    """5,000 at once, then nothing more until the rate has refilled what is asked."""
    quota = EntryQuota(clock)
    assert 0.0 == quota.take("a", 5000, rate=100, burst=5000)
    assert 0.5 == pytest.approx(quota.take("a", 50, rate=100, burst=5000))
    clock.now += 0.5
    assert 0.0 == quota.take("a", 50, rate=100, burst=5000)


def test_the_bucket_never_holds_more_than_the_burst(clock: Clock) -> None:
    """A long quiet spell does not save up more than ``burst``."""
    quota = EntryQuota(clock)
    quota.take("a", 10, rate=1, burst=10)
    clock.now += 3600
    assert 0.0 == quota.take("a", 10, rate=1, burst=10)
    assert 1.0 == pytest.approx(quota.take("a", 1, rate=1, burst=10))


def test_a_refused_request_takes_nothing(clock: Clock) -> None:
    """All or nothing: what was refused is still there for a smaller request."""
    quota = EntryQuota(clock)
    quota.take("a", 6, rate=1, burst=10)
    assert 2.0 == pytest.approx(quota.take("a", 6, rate=1, burst=10))
    assert 0.0 == quota.take("a", 4, rate=1, burst=10)


def test_sources_have_their_own_buckets(clock: Clock) -> None:
    quota = EntryQuota(clock)
    quota.take("a", 10, rate=1, burst=10)
    assert 0.0 == quota.take("b", 10, rate=1, burst=10)


def test_wait_does_not_take(clock: Clock) -> None:
    """``wait`` answers without spending anything."""
    quota = EntryQuota(clock)
    assert 0.0 == quota.wait("a", 10, rate=1, burst=10)
    assert 0.0 == quota.take("a", 10, rate=1, burst=10)
    assert 1.0 == pytest.approx(quota.wait("a", 1, rate=1, burst=10))


def test_rate_zero_is_no_limit(clock: Clock) -> None:
    quota = EntryQuota(clock)
    assert [0.0] * 3 == [quota.take("a", 10, rate=0, burst=10) for _ in range(3)]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [pytest.param(0.001, "1", id="under-a-second"), pytest.param(1.0, "1", id="one"), pytest.param(1.2, "2", id="up")],
)
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, expected: str) -> None:
    assert expected == retry_after(seconds)
