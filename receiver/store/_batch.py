"""Group commit, for both stores: calls that arrive while a write is under way share the next one.

One transaction (and one fsync, or one round trip) for every request that arrived meanwhile is
what lets one database keep up with a busy estate (``accept``), and halves the delivery path's
store time (``mark_sent``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from receiver.errors import StoreError

__all__ = ["GroupCommit"]

_I = TypeVar("_I")
_R = TypeVar("_R")


class GroupCommit(Generic[_I, _R]):
    """Writes items in batches, at most ``flushers`` batches under way at once.

    A batch is taken when its write starts (``take``, called by the write, on the store thread
    for SQLite), not when it is queued: what arrives while it waits for a connection or the
    store thread joins it.

    Args:
        write: writes the items ``take()`` returns in one transaction, and returns one result per
            item, in order: as an awaitable, or as the future of a thread (SQLite's store thread,
            answered with one hand-off back to the loop). ``take`` may be called again (a retried
            transaction): it returns the same items.
        error: the StoreError to answer with when the write failed with another exception.
        flushers: batches under way at once.
        max_items: the most items in one batch.
        max_bytes: the most bytes (``size``) in one batch; a bigger item goes alone.
        size: an item's size in bytes.
        committed: called on the loop with each item and its result once its batch committed, also
            when the caller that submitted it was cancelled meanwhile.
    """

    def __init__(
        self,
        write: Callable[[Callable[[], list[_I]]], Awaitable[list[_R]] | concurrent.futures.Future[list[_R]]],
        *,
        error: Callable[[BaseException], StoreError],
        flushers: int = 1,
        max_items: int = 500,
        max_bytes: int = 16 * 1024 * 1024,
        size: Callable[[_I], int] | None = None,
        committed: Callable[[_I, _R], None] | None = None,
    ) -> None:
        self._write = write
        self._error = error
        self._flushers = flushers
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._size = size
        self._committed = committed
        self._lock = threading.Lock()  # the store thread takes batches too
        self._pending: list[tuple[_I, asyncio.Future[_R]]] = []
        self._running = 0
        self._starting = False  # a write was started and has not taken its batch yet
        self._writes: set[_Write[_R]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: _I) -> _R:
        """Write ``item`` with whatever else is pending; raises StoreError when its batch failed."""
        loop = self.loop
        if loop is None:
            raise StoreError("store is not open")
        # The loop the store was opened on, not asyncio.get_running_loop(): that one costs a getpid()
        # system call, several µs on a loaded server, on every webhook.
        future: asyncio.Future[_R] = loop.create_future()
        with self._lock:
            self._pending.append((item, future))
            start = self._reserve()
        if start:
            self._start()
        return await future

    async def drain(self) -> None:
        """Wait until no write is under way (at close)."""
        while self._writes:
            waits = [asyncio.wrap_future(w) if isinstance(w, concurrent.futures.Future) else w for w in self._writes]
            await asyncio.gather(*waits, return_exceptions=True)

    def _reserve(self) -> bool:
        """Under the lock: whether to start a write for what is pending."""
        if self._starting or self._running >= self._flushers or not self._pending:
            return False
        self._starting = True
        self._running += 1
        return True

    def _start(self) -> None:
        batch = _Batch(self)
        loop = self.loop
        assert loop is not None  # noqa: S101 - type narrowing: submit() checked it
        write: _Write[_R]
        try:
            started = self._write(batch.take)
        except Exception as exc:  # noqa: BLE001 - a store not open: every waiting call must get the answer
            write = loop.create_future()
            write.set_exception(exc)
            started = write
        if isinstance(started, concurrent.futures.Future):
            write = started
            write.add_done_callback(lambda done: loop.call_soon_threadsafe(self._done, batch, done))
        else:
            write = asyncio.ensure_future(started)
            write.add_done_callback(lambda done: self._done(batch, done))
        self._writes.add(write)

    def _take(self) -> list[tuple[_I, asyncio.Future[_R]]]:
        with self._lock:
            self._starting = False
            size = count = 0
            for item, _ in self._pending:
                bytes_ = self._size(item) if self._size is not None else 0
                if count and (count >= self._max_items or size + bytes_ > self._max_bytes):
                    break
                size += bytes_
                count += 1
            taken, self._pending = self._pending[:count], self._pending[count:]
        return taken

    def _done(self, batch: _Batch[_I, _R], write: _Write[_R]) -> None:
        self._writes.discard(write)
        entries = batch.entries()  # taken now if the write failed before taking its batch
        futures = [future for _, future in entries]
        if write.cancelled():
            _fail_all(futures, StoreError("the store write was cancelled"))
        elif (exc := write.exception()) is not None:
            _fail_all(futures, exc if isinstance(exc, StoreError) else self._error(exc))
        else:
            results = write.result()
            for future, result in zip(futures, results, strict=True):
                if not future.done():  # its request may have been cancelled meanwhile
                    future.set_result(result)
            if self._committed is not None:
                for (item, _), result in zip(entries, results, strict=True):
                    self._committed(item, result)
        with self._lock:
            self._running -= 1
            start = self._reserve()
        if start:
            self._start()


_Write = asyncio.Future[list[_R]] | concurrent.futures.Future[list[_R]]


class _Batch(Generic[_I, _R]):
    """The items of one write, taken once."""

    __slots__ = ("_group", "_taken")

    def __init__(self, group: GroupCommit[_I, _R]) -> None:
        self._group = group
        self._taken: list[tuple[_I, asyncio.Future[_R]]] | None = None

    def entries(self) -> list[tuple[_I, asyncio.Future[_R]]]:
        if self._taken is None:
            self._taken = self._group._take()
        return self._taken

    def take(self) -> list[_I]:
        return [item for item, _ in self.entries()]


def _fail_all(futures: list[asyncio.Future[Any]], error: StoreError) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
