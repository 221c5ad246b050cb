"""Whether the edge is in a burst of requests, for background work that should give way to it.

The one home of the burst gate: the edge wraps each authenticated request in ``handling()``, and
the inbox worker and the dispatcher call ``wait_quiet`` before a batch or a claim; nothing else
looks at it. They share the event loop (and, pinned, the CPU) with the edge. In a burst, webhook
answers come first: Orchestrator is waiting on them, while an event in the inbox is already safe.
So background work waits until the burst is over, bounded so that it never stops: in a sustained
flood it still runs once per ``max_defer`` of its caller (docs/performance.md, "Fast paths").

A burst is many requests in hand at once, not one: at a steady few hundred webhooks a second
the edge nearly always has one or two in hand, and background work that waited for none fell
behind (the soak, docs/reliability.md).

Only authenticated work counts: the edge enters ``handling()`` once a request's signature (or
bearer token) has passed and its body is read, not when the request arrives. Otherwise anyone could hold
``BURST`` connections open with trickled unsigned bodies and keep the workers waiting ``max_defer``
at every turn, slowing delivery to a few sends a second per channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

__all__ = ["BURST", "QUIET_SECONDS", "EdgeActivity"]

BURST = 8
"""Requests in hand at once from which the edge counts as busy."""

QUIET_SECONDS = 0.002
"""How long the edge must have stayed under ``BURST`` to count as quiet again.

Not zero: in a flood the edge empties for an instant after every group commit (all its answers
go out in one pass, the next requests are not read yet), and background work must not wake in
that instant. 2 ms adds at most that much to an alert's latency.
"""


class EdgeActivity:
    """Counts the requests the edge has in hand; ``wait_quiet`` waits while it is in a burst."""

    def __init__(self, burst: int = BURST, quiet: float = QUIET_SECONDS) -> None:
        self._burst = burst
        self._quiet = quiet
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._settling: asyncio.TimerHandle | None = None
        self._last_finished = 0.0

    @property
    def inflight(self) -> int:
        """Requests being answered right now."""
        return self._inflight

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Count one authenticated request in hand at the edge while the block runs."""
        self.started()
        try:
            yield
        finally:
            self.finished()

    def started(self) -> None:
        """The edge took a request."""
        self._inflight += 1
        if self._inflight >= self._burst:
            self._idle.clear()
            if self._settling is not None:
                self._settling.cancel()
                self._settling = None

    def finished(self) -> None:
        """The edge answered a request; quiet once it stays under the burst for ``quiet`` seconds."""
        self._inflight -= 1
        self._last_finished = time.monotonic()
        if self._inflight < self._burst and self._settling is None and not self._idle.is_set():
            self._settling = asyncio.get_running_loop().call_later(self._quiet, self._settle)

    def _settle(self) -> None:
        # Counted from the last answer, not from when the count fell: in a flood, the next requests
        # are read in the same turn of the loop as this timer, before their handlers have started
        # (and counted). Only a quiet period after the last answer is really quiet.
        self._settling = None
        if self._inflight >= self._burst:
            return
        wait = self._last_finished + self._quiet - time.monotonic()
        if wait > 0:
            self._settling = asyncio.get_running_loop().call_later(wait, self._settle)
        else:
            self._idle.set()

    async def wait_quiet(self, at_most: float) -> None:
        """Return once the edge is quiet, or after ``at_most`` seconds, whichever comes first."""
        if self._idle.is_set() or at_most <= 0:
            return
        # asyncio.timeout, not wait_for: a cancellation of the caller must not be swallowed here.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._idle.wait()
