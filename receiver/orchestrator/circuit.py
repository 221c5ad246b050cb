"""A circuit breaker per connection: after repeated failures, stop calling Orchestrator for a while."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Circuit"]


class Circuit:
    """Closed, open for ``cooldown`` seconds after ``threshold`` failures in a row, then one trial call.

    Args:
        threshold: consecutive failed attempts (network errors, timeouts, 5xx) that open it.
        cooldown: seconds it stays open before a trial call is let through.
        on_change: called with True when it opens and False when it closes again.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 60.0,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.on_change = on_change
        self._clock = clock
        self.failures = 0
        self._opened_at: float | None = None

    @property
    def is_open(self) -> bool:
        """True from the moment it opens until a trial call succeeds."""
        return self._opened_at is not None

    def wait(self) -> float:
        """Seconds until a call may be made: 0 when closed or when the trial call is due."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown - self._clock())

    def success(self) -> None:
        """Record an answer from Orchestrator (any status but 5xx): closes the circuit."""
        self.failures = 0
        if self._opened_at is not None:
            self._opened_at = None
            if self.on_change is not None:
                self.on_change(False)

    def failure(self) -> None:
        """Record a failed attempt; opens (or re-opens after a failed trial) at the threshold."""
        self.failures += 1
        if self._opened_at is not None:
            self._opened_at = self._clock()  # the trial failed: another full cooldown
        elif self.failures >= self.threshold:
            self._opened_at = self._clock()
            if self.on_change is not None:
                self.on_change(True)
