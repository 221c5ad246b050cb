"""A limit on failed token checks per client address: guessing the admin token takes forever.

Each address may fail ``limit`` times per ``window`` seconds (a fixed window per address); past
that, every check from it is refused until its window ends, the right token included (else the
answer would still tell a right guess from a wrong one). The table holds at most ``max_clients``
addresses, the least recently failing dropped first, so a flood of addresses costs bounded memory.
The table is per process: N replicas allow N times the limit, which still bounds guessing.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["FailureLimiter"]


class FailureLimiter:
    """Counts failed checks per client address and says when one must wait.

    Args:
        limit: failures allowed per address within one window.
        window: the window's length in seconds.
        max_clients: addresses remembered at most (the oldest is forgotten first).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Whole seconds ``client`` must wait before its next check, or None when it may try now."""
        entry = self._failures.get(client)
        if entry is None:
            return None
        started, count = entry
        left = started + self.window - self._clock()
        if left <= 0:
            del self._failures[client]
            return None
        return max(1, math.ceil(left)) if count >= self.limit else None

    def failed(self, client: str) -> int:
        """Record a failed check by ``client``; returns its failures in the current window."""
        now = self._clock()
        started, count = self._failures.pop(client, (now, 0))
        if started + self.window <= now:
            started, count = now, 0
        self._failures[client] = (started, count + 1)
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)
        return count + 1

    def __len__(self) -> int:
        return len(self._failures)
