"""Deadlines for reading request bodies, kept by one watchdog instead of a timer per request.

uvicorn bounds idle keep-alive connections but not a client that sends its body slowly: each
such request would hold a task, a connection and its buffer for as long as the client likes.
``asyncio.timeout`` would bound it, at a cost the webhook path cannot spare (docs/performance.md,
"Fast paths"). Here a read registers its task in a dict and one loop, waking every ``tick``
seconds, cancels the reads that are overdue; the reader turns that cancellation into its 408
(``expired``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from receiver.errors import ReceiverError

__all__ = ["BodyError", "ReadDeadlines"]


class BodyError(ReceiverError):
    """A request body that was not read: too large (413), too slow (408), or the client left (400).

    Attributes:
        status: the HTTP status to answer.
        code: the ``error`` of the JSON answer.
        detail: the message for the client.
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class ReadDeadlines:
    """Cancels body reads that run past their deadline (a granularity of ``tick`` seconds).

    Args:
        tick: how often overdue reads are looked for.
    """

    def __init__(self, tick: float = 0.5) -> None:
        self._tick = tick
        self._reading: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, within: float) -> asyncio.Task[object] | None:
        """The current task starts a read that must end within ``within`` seconds; returns that task.

        None outside a task (nothing to watch). The loop is the one ``run`` runs on when known:
        ``asyncio.current_task()`` would look it up again on every request.
        """
        task = asyncio.current_task(self._loop)
        if task is not None:
            self._reading[task] = time.monotonic() + within
        return task

    def done(self, task: asyncio.Task[object]) -> bool:
        """``task``'s read ended; True when it was cancelled for running out of time.

        The reader calls this in a ``finally`` and, when a CancelledError is on its way up and this
        says True, turns it into its time-out answer (after ``task.uncancel()``).
        """
        self._reading.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    async def run(self) -> None:
        """Cancel overdue reads until cancelled itself."""
        self._loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            overdue = [task for task, deadline in self._reading.items() if deadline <= now]
            for task in overdue:
                del self._reading[task]
                self._expired.add(task)
                task.cancel()

    async def read_body(
        self, receive: Callable[[], Awaitable[Mapping[str, Any]]], *, limit: int, within: float
    ) -> bytes:
        """The whole body from ASGI ``receive``, at most ``limit`` bytes and within ``within`` seconds.

        For the routes off the webhook path (forms, admin API); the edge has its own copy tuned for speed.

        Raises:
            BodyError: over ``limit`` (413 ``body_too_large``), not in full within ``within`` (408
                ``body_timeout``) or the client went away (400 ``client_disconnected``).
        """
        task = self.watch(within)
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise BodyError(400, "client_disconnected", "the client went away")
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyError(413, "body_too_large", f"body is over the limit of {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
        except asyncio.CancelledError:
            if task is None or not self.done(task):
                raise  # the server is stopping
            task.uncancel()
            raise BodyError(408, "body_timeout", f"the body did not arrive within {within:g} s") from None
        finally:
            if task is not None:
                self.done(task)
