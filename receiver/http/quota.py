"""How many robot-log entries each source may post: a token bucket per source, counted in entries.

Entries, not requests, because an entry is what becomes an event (and possibly a notification):
one request of 1,000 entries costs as much as 1,000 requests of one. A bucket holds up to
``burst`` entries and refills at ``rate`` entries a second; a request takes as many as it
carries, all or nothing, so a refused request leaves nothing stored and the bucket untouched.

The buckets live in the process: with several replicas each one counts on its own, so a
source may send up to replicas x rate in total.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["EntryQuota", "retry_after"]


class EntryQuota:
    """Token buckets per source name; ``take`` answers how long to wait when a request does not fit.

    Only configured sources reach it (unknown ones are refused before), so the buckets stay few.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (entries available, when counted)

    def _available(self, source: str, rate: float, burst: float, now: float) -> float:
        tokens, counted = self._buckets.get(source, (burst, now))
        return min(burst, tokens + max(0.0, now - counted) * rate)

    def wait(self, source: str, entries: int, *, rate: float, burst: int) -> float:
        """Seconds until ``entries`` would fit in ``source``'s bucket (0.0: now), without taking them.

        Args:
            source: the source name.
            entries: how many entries the request carries.
            rate: entries per second the bucket refills; 0 or less means no limit.
            burst: the bucket's size in entries.
        """
        if rate <= 0:
            return 0.0
        now = self._clock()
        missing = min(entries, burst) - self._available(source, rate, burst, now)
        return 0.0 if missing <= 0 else missing / rate

    def take(self, source: str, entries: int, *, rate: float, burst: int) -> float:
        """Take ``entries`` from ``source``'s bucket if they fit; else take nothing.

        Args:
            source: the source name.
            entries: how many entries the request carries (at most ``burst``).
            rate: entries per second the bucket refills; 0 or less means no limit.
            burst: the bucket's size in entries.

        Returns:
            0.0 when taken, else the seconds until they would fit.
        """
        if rate <= 0:
            return 0.0
        now = self._clock()
        tokens = self._available(source, rate, burst, now)
        if tokens < entries:
            return (entries - tokens) / rate
        self._buckets[source] = (tokens - entries, now)
        return 0.0


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` value for a wait: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
