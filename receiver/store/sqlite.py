"""The embedded store: one SQLite file in WAL mode with ``synchronous=FULL``.

Every commit waits for the disk, except those whose loss in a power cut is made good by
redoing them (``relaxed``): a delivery's claim and its outcome, and the inbox worker's lease,
claims and results (a lost result leaves its events ``new``, processed again to the same
deliveries). The WAL is written in order, so the next commit that waits for the disk (the next
accepted webhook) makes all of them durable too.

SQLite is synchronous; a plan (``receiver.store._plans``) runs in one transaction on one
dedicated thread, so the event loop never waits on the disk. Concurrent ``accept`` calls are
committed together (group commit): one fsync for every request that arrived meanwhile. The pipeline's
short calls that do not wait on the disk (reads, relaxed writes: ``_INLINE_PLANS``) run on the event
loop instead when the store thread is idle, each within ``_INLINE_SECONDS`` (a hand-off to the
thread and back costs more CPU than such a call; docs/performance.md, "Tenth session").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from receiver.errors import StoreError
from receiver.store import STORE_TABLES, StoreStats
from receiver.store import _alerts as alerts
from receiver.store import _plans as plans
from receiver.store import schema as _schema
from receiver.store._base import SQLStore
from receiver.store._plans import Plan
from receiver.store._retention import COUNT_ROWS
from receiver.store.sql import NOTIFY, SQLITE, Sql

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")

_BUSY_SECONDS = 5.0
"""How long a statement waits for another process's write lock before it fails.

Every statement runs on the one store thread, so a webhook's accept can wait behind a worker's
write that is itself waiting: up to twice this before its 503. Orchestrator gives up after 60 s
and wants an answer within seconds (reference/uipath-webhooks.md §4).
"""


_CACHE_KIB = 8192

_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default

_INLINE_PLANS: frozenset[Callable[..., Plan[Any]]] = frozenset(
    {
        plans.ping,
        plans.acquire_lease,
        plans.release_lease,
        plans.release_claims,
        plans.claim_inbox,
        plans.finish_inbox,
        plans.load_noise,
        plans.due_noise,
        plans.next_noise_due,
        plans.list_silences,
        plans.claim_deliveries,
        plans.due_channels,
        plans.mark_sent,
        plans.mark_failed,
        alerts.open_alerts,
        alerts.next_alert_time,
        alerts.due_alerts,
    }
)
"""The plans that may run on the event loop: the inbox worker's (its alerts' included) and the dispatcher's reads and
relaxed writes, each bounded by its batch. Never an accept (it waits for the disk), a prune or an
admin read (their size has no bound)."""

_INLINE_ROWS = 20
"""The most rows a ``finish_inbox`` writes on the event loop: a burst's batch of 100 events takes
5-10 ms, which the store thread spends while the loop answers webhooks."""

_INLINE_SECONDS = 0.002
"""The longest an inline call's statements hold the event loop: past it the call is rolled back
and run again on the store thread."""

_INLINE_CHECK_STEPS = 1000
"""SQLite virtual machine steps between two looks at that bound (a fraction of a µs each)."""

_ON_THREAD = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT})
"""The errors of an inline call that mean "run it on the thread": locked by another process, or too long."""


class _RunOnThread(Exception):
    """An inline call gave up (a lock held elsewhere, or out of time); nothing of it was kept."""


class _WaitForLock(Exception):
    """A call on the thread met a lock held elsewhere without waiting (an inline call's setting); nothing was kept."""


class SQLiteStore(SQLStore):
    """The embedded store: one SQLite file in WAL mode, written from one thread.

    ``listen`` hears this object's own commits only: another process writing the same file (the
    CLI re-driving deliveries) is seen at the next poll.

    Args:
        path: the database file (created with its directory), or ``:memory:``.
    """

    dialect = SQLITE
    # Two: one batch on the store thread, the next one queued behind it, taking what arrived meanwhile.
    _FLUSHERS = 2

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._listeners: list[Callable[[str], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop open() ran on
        self._synchronous = "FULL"  # the connection's PRAGMA synchronous (holder of _using only)
        # Held by whoever uses the connection: the store thread, or the event loop running a call
        # inline, which only tries it: a store thread at work sends the call to its queue instead.
        self._using = threading.Lock()
        self._checkpointing = True  # the connection checkpoints the WAL at commit (the thread's setting)
        self._busy_wait = True  # the connection waits for another process's lock (the thread's setting)

    # -- life cycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file, set WAL and FULL sync, and apply migrations."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="receiver-store")
        loop = self._loop = self._accepts.loop = self._sent.loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._open_sync)
        except (sqlite3.Error, OSError) as exc:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise StoreError(f"cannot open SQLite store {self.path!r}: {exc}") from exc
        except StoreError:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        """Drain pending accepts, close the connection and stop the thread."""
        self._listeners.clear()
        if self._executor is None:
            return
        await self._accepts.drain()
        await self._sent.drain()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def listen(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(topic)`` after this store committed new work (see ``Store``)."""
        if self._executor is None:
            raise StoreError("store is not open")
        self._listeners.append(callback)

    def _open_sync(self) -> None:
        with self._using:
            self._open_locked()

    def _open_locked(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread is off because the connection is created on, and only used from,
        # the store thread; closing may happen from it too.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_SECONDS)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._synchronous = "FULL"
            conn.execute("PRAGMA foreign_keys=ON")
            # 8 MiB of page cache, not SQLite's 2: the (source, EventId) index takes random keys, so
            # every accept touches a random leaf page, and past 2 MiB each miss was a pread() system
            # call on the webhook path (c=64: 0.40 -> 0.43 of bare; docs/performance.md).
            conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            # Temporary b-trees in memory: with the default (a temp file, opened lazily), setting one up cost
            # 30-40 µs, and the fair claim builds several per call (250 -> 40 µs; docs/performance.md).
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute(f"PRAGMA busy_timeout={int(_BUSY_SECONDS * 1000)}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(_schema.SQLITE):
                raise StoreError(
                    f"database {self.path!r} has schema version {version}, newer than this receiver knows "
                    f"({len(_schema.SQLITE)}); upgrade receiver"
                )
            for number, script in enumerate(_schema.SQLITE[version:], start=version + 1):
                conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close_sync(self) -> None:
        with self._using:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def _run(
        self, plan: Callable[..., Plan[_T]], *args: Any, write: bool = False, relaxed: bool = False
    ) -> asyncio.Future[_T]:
        """Run ``plan(*args)`` in one transaction when it writes: inline if it may, else on the store thread.

        ``relaxed``: the commit may skip the fsync (``synchronous=NORMAL``). Only for writes whose
        loss in a power cut is made good by redoing them: a claim's lease, a delivery's outcome
        (the notification is sent again: at-least-once). A process crash loses none of them either
        way (WAL). It halves the delivery path's store time: an fsync is ~0.6 ms here.
        """
        executor, loop = self._executor, self._loop
        if executor is None or loop is None:
            raise StoreError("store is not open")
        if plan in _INLINE_PLANS and (write is False or relaxed) and _small(plan, args):
            done = self._inline(loop, plan, args, write, relaxed)
            if done is not None:
                return done
        return loop.run_in_executor(executor, self._call, plan, args, write, relaxed)

    def _write_batch(
        self, plan: Callable[..., Plan[list[_T]]], take: Callable[[], Any], *, relaxed: bool
    ) -> asyncio.Future[list[_T]] | concurrent.futures.Future[list[_T]]:
        if self._executor is None or self._loop is None:
            raise StoreError("store is not open")
        if relaxed and plan in _INLINE_PLANS:
            done = self._inline(self._loop, plan, (take,), True, relaxed)
            if done is not None:
                return done
        # The thread's own future: the group commit answers its callers with one hand-off back to the loop.
        return self._executor.submit(self._call, plan, (take,), True, relaxed)

    def _inline(
        self,
        loop: asyncio.AbstractEventLoop,
        plan: Callable[..., Plan[_T]],
        args: tuple[Any, ...],
        write: bool,
        relaxed: bool,
    ) -> asyncio.Future[_T] | None:
        """Run the call on the event loop, done; None when it must go to the store thread instead.

        Only while the store thread is idle (a lock tried, never waited for), with no busy wait
        for another process's lock, within ``_INLINE_SECONDS``: a call that meets a lock or runs
        longer is rolled back and handed to the thread, which waits as long as it must.
        """
        if not self._using.acquire(blocking=False):
            return None
        future: asyncio.Future[_T] = loop.create_future()
        try:
            conn = self._conn
            if conn is None:
                return None  # closed: the thread's call says so
            deadline = time.monotonic() + _INLINE_SECONDS
            conn.set_progress_handler(lambda: time.monotonic() > deadline, _INLINE_CHECK_STEPS)
            try:
                future.set_result(self._call_locked(plan, args, write, relaxed, inline=True))
            finally:
                conn.set_progress_handler(None, 0)
        except _RunOnThread:
            return None
        except BaseException as exc:  # noqa: BLE001 - the caller gets it from the future, as from the thread
            future.set_exception(exc)
        finally:
            self._using.release()
        return future

    def _unexpected(self, exc: BaseException) -> StoreError:
        error = StoreError(f"SQLite store {self.path!r}: {exc!r}")
        error.__cause__ = exc
        return error

    def _call(self, plan: Callable[..., Plan[_T]], args: tuple[Any, ...], write: bool, relaxed: bool) -> _T:
        """Run a call on the store thread."""
        with self._using:
            try:
                return self._call_locked(plan, args, write, relaxed, inline=False)
            except _WaitForLock:
                # The busy timeout is set back for the thread only when a lock was met: flipping it on
                # every hand-off between the loop and the thread cost ~30 µs of CPU per event.
                if self._conn is None:
                    raise StoreError("store is not open") from None
                self._conn.execute(f"PRAGMA busy_timeout={int(_BUSY_SECONDS * 1000)}")
                self._busy_wait = True
                return self._call_locked(plan, args, write, relaxed, inline=False)

    def _call_locked(
        self, plan: Callable[..., Plan[_T]], args: tuple[Any, ...], write: bool, relaxed: bool, *, inline: bool
    ) -> _T:
        conn = self._conn
        if conn is None:
            raise StoreError("store is not open")
        try:
            self._settle(conn, write=write, relaxed=relaxed, inline=inline)
            if write:
                conn.execute("BEGIN IMMEDIATE")
            result, topics = _drive(conn, plan(*args))
            if write:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if inline and code in _ON_THREAD:
                raise _RunOnThread from exc
            if not inline and not self._busy_wait and code in _ON_THREAD:
                raise _WaitForLock from exc
            # DataError ("string or blob too big") and IntegrityError (a constraint) refuse the data
            # itself; every other error (locked, I/O, disk full) may pass on a later try.
            refused = isinstance(exc, sqlite3.DataError | sqlite3.IntegrityError)
            raise StoreError(f"SQLite store {self.path!r}: {exc}", recoverable=not refused) from exc
        except BaseException:
            # Whatever failed, a transaction left open would make every later BEGIN fail.
            if conn.in_transaction:
                conn.rollback()
            raise
        if topics and self._listeners and self._loop is not None:
            if inline:
                self._loop.call_soon(self._emit, topics)
            else:
                self._loop.call_soon_threadsafe(self._emit, topics)
        return result

    def _settle(self, conn: sqlite3.Connection, *, write: bool, relaxed: bool, inline: bool) -> None:
        """Set the connection up for the call; each PRAGMA only when its value changes (~5-15 µs each).

        Inline: fail at once on another process's lock, and leave the WAL's checkpoint (pages written
        and fsynced) to the thread's next commit. The thread checkpoints again at once, but waits for a
        lock again only once it met one (``_call``).
        """
        if inline and self._busy_wait:
            conn.execute("PRAGMA busy_timeout=0")
            self._busy_wait = False
        if self._checkpointing == inline:
            conn.execute(f"PRAGMA wal_autocheckpoint={0 if inline else _AUTOCHECKPOINT_PAGES}")
            self._checkpointing = not inline
        # A write that is not relaxed runs with FULL: it must reach the disk.
        mode = "NORMAL" if relaxed else "FULL"
        if write and self._synchronous != mode:
            conn.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode

    def _emit(self, topics: Iterable[str]) -> None:
        """Schedule every listener for each topic (on the event loop; see ``Store.listen``)."""
        loop = self._loop
        if loop is None:
            return
        for topic in topics:
            for callback in self._listeners:
                loop.call_soon(callback, topic)

    async def _report(self, plan: Callable[..., Plan[_T]], *args: Any) -> _T:
        """Run a read-only plan on a connection and thread of its own (WAL: it blocks no writer).

        A chart's aggregate over a week of events takes a while; on the store thread it would hold
        every accept behind it (docs/performance.md, "The overview's charts").
        """
        if self._executor is None or self._conn is None:
            raise StoreError("store is not open")
        if self.path == ":memory:":  # no second connection sees this database
            return await self._run(plan, *args)
        try:
            return await asyncio.to_thread(self._report_sync, plan, args)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path!r}: {exc}") from exc

    def _report_sync(self, plan: Callable[..., Plan[_T]], args: tuple[Any, ...]) -> _T:
        uri = f"{Path(self.path).resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=_BUSY_SECONDS)
        try:
            conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            return _drive(conn, plan(*args))[0]
        finally:
            conn.close()

    # -- size -----------------------------------------------------------------------------

    async def table_stats(self, *, exact_limit: int = 1_000_000) -> StoreStats:
        """Rows per table and the file's size, read on a connection and thread of its own.

        Counting a large table takes a while; on the store thread it would hold every accept
        behind it. A reader of its own in WAL mode blocks no writer.
        """
        if self._executor is None or self._conn is None:
            raise StoreError("store is not open")
        try:
            if self.path == ":memory:":  # no second connection sees this database: counted on the store thread
                loop = asyncio.get_running_loop()
                rows = await loop.run_in_executor(self._executor, self._count_locked, exact_limit)
                return StoreStats(rows, 0, exact_limit)
            return await asyncio.to_thread(self._stats_sync, exact_limit)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path!r}: {exc}") from exc

    def _count_locked(self, exact_limit: int) -> dict[str, int]:
        with self._using:
            if self._conn is None:
                raise StoreError("store is not open")
            return _count_rows(self._conn, exact_limit)

    def _stats_sync(self, exact_limit: int) -> StoreStats:
        path = Path(self.path).resolve()
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=_BUSY_SECONDS)
        try:
            rows = _count_rows(conn, exact_limit)
        finally:
            conn.close()
        size = 0
        for file in (path, path.with_name(path.name + "-wal")):
            with contextlib.suppress(OSError):
                size += file.stat().st_size
        return StoreStats(rows, size, exact_limit)


def _small(plan: Callable[..., Plan[Any]], args: tuple[Any, ...]) -> bool:
    """Whether a call of an inline plan is small enough for the loop (only ``finish_inbox`` writes batches)."""
    if plan is not plans.finish_inbox:
        return True
    processed, _, noise = args
    rows = sum(1 + len(p.deliveries) for p in processed)
    if noise is not None:
        rows += len(noise.put) + len(noise.delete) + len(noise.deliveries) + len(noise.log)
    return rows <= _INLINE_ROWS


def _count_rows(conn: sqlite3.Connection, exact_limit: int) -> dict[str, int]:
    """Rows per table: counted up to ``exact_limit``, past it estimated from the span of row ids."""
    rows: dict[str, int] = {}
    for table in STORE_TABLES:
        ((count,),) = _execute(conn, COUNT_ROWS[table], {"limit": exact_limit + 1})
        if count > exact_limit:
            low, high = conn.execute(f"SELECT min(rowid), max(rowid) FROM {table}").fetchone()
            count = max(count, int(high) - int(low) + 1)
        rows[table] = int(count)
    return rows


def _drive(conn: sqlite3.Connection, steps: Plan[_T]) -> tuple[_T, list[str]]:
    """Run a plan's statements; its result, and the topics it notifies once committed."""
    topics: list[str] = []
    reply: Any = None
    try:
        while True:
            statement, params = steps.send(reply)
            if statement is NOTIFY:
                topics += params
                reply = None
            else:
                reply = _execute(conn, statement, params)
    except StopIteration as done:
        return done.value, topics


def _execute(conn: sqlite3.Connection, statement: Sql, params: Any) -> Any:
    """One statement of a plan: its rows if it returns any, else how many rows it changed."""
    text, bind = statement.texts[0], statement.bind
    if statement.columns is None:
        cursor = conn.execute(text, params if bind is None else bind(params))
        return cursor.fetchall() if statement.returns else cursor.rowcount
    rows, shared = params
    if shared:
        rows = [{**shared, **row} for row in rows]
    if not statement.returns:
        return conn.executemany(text, rows if bind is None else map(bind, rows)).rowcount if rows else 0
    found: list[Any] = []
    for row in rows:
        cursor = conn.execute(text, row if bind is None else bind(row))
        if statement.echo:  # RETURNING id and row values, read off the cursor and the row
            if cursor.rowcount == 1:
                found.append((cursor.lastrowid, *(row[column] for column in statement.echo)))
        else:  # executemany cannot return rows
            found += cursor.fetchall()
    return found
