"""The durable store: the inbox of accepted events and the outbox of deliveries.

The only module that talks to a database. ``Store`` is the protocol the server codes against;
``SQLiteStore`` is the embedded default (WAL, ``synchronous=FULL``). A PostgreSQL store will
implement the same protocol for several replicas.

What must survive a crash is a row here before anyone is told "done":

* ``accept`` commits the inbox row before the webhook gets its 202. Concurrent accepts are
  committed together (group commit): one fsync for every request that arrived meanwhile,
  which is what lets a single SQLite file keep up with a busy estate.
* ``finish_inbox`` writes the outbox rows and marks the event processed in one transaction.
* ``mark_sent`` runs only after apprise reported success.

Work is claimed with leases (``lease_until``): a worker that dies leaves rows that another
claim picks up once the lease expired. Times are Unix seconds (float, UTC) passed in by the
caller, so tests drive the clock.

SQLite is synchronous; every statement runs on one dedicated thread so the event loop never
blocks on disk and no two threads share the connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeVar

from receiver.errors import ConfigError, StoreError

__all__ = [
    "Accepted",
    "DeliveryRow",
    "EventRow",
    "InboxItem",
    "NewDelivery",
    "Processed",
    "SQLiteStore",
    "Store",
    "open_store",
]

_T = TypeVar("_T")

InboxState = Literal["new", "processed", "unparsed"]
DeliveryState = Literal["pending", "sent", "dead"]


@dataclass(frozen=True, slots=True)
class InboxItem:
    """An event to accept: the raw body exactly as received, and what the edge read of it."""

    source: str
    event_id: str
    type: str
    body: bytes
    received_at: float
    event_time: float | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer to ``accept``: the inbox row, and whether it was already there."""

    inbox_id: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class EventRow:
    """One inbox row."""

    id: int
    source: str
    event_id: str
    type: str
    body: bytes
    received_at: float
    event_time: float | None
    state: str
    processed_at: float | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A rendered notification due to one channel, written with the event it came from."""

    rule: str
    channel: str
    title: str
    body: str
    severity: str
    body_format: str


@dataclass(frozen=True, slots=True)
class Processed:
    """The outcome of processing one inbox event: its new state and the deliveries it produced."""

    inbox_id: int
    state: InboxState
    outcome: str
    deliveries: Sequence[NewDelivery] = ()


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One outbox row and its delivery state."""

    id: int
    inbox_id: int
    rule: str
    channel: str
    title: str
    body: str
    severity: str
    body_format: str
    state: str
    attempts: int
    created_at: float
    budget_since: float
    next_attempt_at: float
    last_error: str | None
    sent_at: float | None


class Store(Protocol):
    """What the server needs from a database. Every method is safe to call concurrently."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None:
        """Finish pending writes and release the connection."""

    async def ping(self) -> None:
        """Raise StoreError when the store cannot be read."""

    async def accept(self, item: InboxItem) -> Accepted:
        """Commit ``item`` to the inbox, or find the row with its (source, event_id)."""

    async def claim_inbox(self, *, limit: int, now: float, lease: float) -> list[EventRow]:
        """Lease up to ``limit`` unprocessed events in order of arrival."""

    async def finish_inbox(self, processed: Sequence[Processed], *, now: float) -> None:
        """Write the events' deliveries and mark them done, in one transaction."""

    async def claim_deliveries(self, channel: str, *, limit: int, now: float, lease: float) -> list[DeliveryRow]:
        """Lease up to ``limit`` due deliveries of ``channel``, oldest due first."""

    async def due_channels(self, now: float) -> set[str]:
        """Channels that have deliveries due (for deliveries of channels no longer configured)."""

    async def mark_sent(self, delivery_id: int, *, now: float, elapsed: float) -> None:
        """Record a successful delivery; it will never be sent again."""

    async def mark_failed(
        self, delivery_id: int, *, now: float, reason: str, elapsed: float, next_attempt_at: float | None
    ) -> None:
        """Record a failed attempt; ``next_attempt_at`` None moves the delivery to the dead letters."""

    async def list_deliveries(self, *, state: str | None = None, limit: int = 100) -> list[DeliveryRow]:
        """Newest deliveries first, optionally in one state."""

    async def retry_delivery(self, delivery_id: int, *, now: float) -> bool:
        """Make a failed or dead delivery due now; False when there is no such unsent delivery."""

    async def retry_dead(self, *, now: float) -> int:
        """Make every dead delivery due now; returns how many."""

    async def list_events(self, *, limit: int = 100) -> list[EventRow]:
        """Newest events first."""

    async def deliveries_of(self, inbox_id: int) -> list[DeliveryRow]:
        """The deliveries an event produced."""


def open_store(database_url: str) -> Store:
    """Build the store a database URL names (not yet opened).

    Args:
        database_url: ``sqlite:///relative/path``, ``sqlite:////absolute/path`` or ``sqlite:///:memory:``.

    Raises:
        ConfigError: an unknown or unsupported scheme.
    """
    if database_url.startswith("sqlite:///"):
        return SQLiteStore(database_url.removeprefix("sqlite:///"))
    if database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "PostgreSQL is not supported yet by this version; use sqlite:///PATH "
            "(the PostgreSQL store will be installed with the receiver[postgres] extra)"
        )
    raise ConfigError(f"database URL {database_url.split(':', 1)[0]!r}: expected sqlite:///PATH or postgresql://...")


_MIGRATIONS: tuple[str, ...] = (
    # 1: inbox, outbox and the attempt log.
    """
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        body BLOB NOT NULL,
        received_at REAL NOT NULL,
        event_time REAL,
        state TEXT NOT NULL DEFAULT 'new',
        lease_until REAL,
        processed_at REAL,
        outcome TEXT,
        UNIQUE (source, event_id)
    );
    CREATE INDEX inbox_new ON inbox (id) WHERE state = 'new';
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        inbox_id INTEGER NOT NULL REFERENCES inbox (id),
        rule TEXT NOT NULL,
        channel TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        severity TEXT NOT NULL,
        body_format TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        budget_since REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        lease_until REAL,
        last_error TEXT,
        sent_at REAL,
        UNIQUE (inbox_id, rule, channel)
    );
    CREATE INDEX deliveries_due ON deliveries (channel, next_attempt_at) WHERE state = 'pending';
    CREATE INDEX deliveries_inbox ON deliveries (inbox_id);
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
        at REAL NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        elapsed REAL NOT NULL
    );
    CREATE INDEX attempts_delivery ON attempts (delivery_id);
    """,
)

_EVENT_COLUMNS = "id, source, event_id, type, body, received_at, event_time, state, processed_at, outcome"
_DELIVERY_COLUMNS = (
    "id, inbox_id, rule, channel, title, body, severity, body_format, state, attempts, created_at, "
    "budget_since, next_attempt_at, last_error, sent_at"
)


class SQLiteStore:
    """The embedded store: one SQLite file in WAL mode, written from one thread.

    Args:
        path: the database file (created with its directory), or ``:memory:``.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[InboxItem, asyncio.Future[Accepted]]] = []
        self._flush_queued = False

    # -- life cycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file, set WAL and FULL sync, and apply migrations."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="receiver-store")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._open_sync)
        except (sqlite3.Error, OSError) as exc:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise StoreError(f"cannot open SQLite store {self.path!r}: {exc}") from exc

    async def close(self) -> None:
        """Drain pending accepts, close the connection and stop the thread."""
        if self._executor is None:
            return
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def ping(self) -> None:
        """Raise StoreError when the file cannot be read."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    def _open_sync(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread is off because the connection is created on, and only used from,
        # the store thread; closing may happen from it too.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise StoreError(
                f"database {self.path!r} has schema version {version}, newer than this receiver knows "
                f"({len(_MIGRATIONS)}); upgrade receiver"
            )
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
        self._conn = conn

    def _close_sync(self, conn: sqlite3.Connection) -> None:
        conn.close()
        self._conn = None

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(connection)`` on the store thread; sqlite3 errors become StoreError."""
        if self._executor is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._conn
        if conn is None:
            raise StoreError("store is not open")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            if conn is not None and conn.in_transaction:
                conn.rollback()
            raise StoreError(f"SQLite store {self.path!r}: {exc}") from exc

    # -- inbox ----------------------------------------------------------------------------

    async def accept(self, item: InboxItem) -> Accepted:
        """Commit ``item``; requests that arrive while a commit runs share the next one."""
        if self._executor is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Accepted] = loop.create_future()
        with self._lock:
            self._pending.append((item, future))
            queue_flush = not self._flush_queued
            self._flush_queued = True
        if queue_flush:
            self._executor.submit(self._flush_accepts, loop)
        return await future

    def _flush_accepts(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._flush_queued = False
        if not batch:
            return
        try:
            results = self._call(lambda conn: self._insert_batch(conn, [item for item, _ in batch]))
        except StoreError as exc:
            error = exc
            loop.call_soon_threadsafe(_fail_all, [future for _, future in batch], error)
            return
        loop.call_soon_threadsafe(_resolve_all, [future for _, future in batch], results)

    @staticmethod
    def _insert_batch(conn: sqlite3.Connection, items: list[InboxItem]) -> list[Accepted]:
        results: list[Accepted] = []
        conn.execute("BEGIN IMMEDIATE")
        for item in items:
            cursor = conn.execute(
                "INSERT INTO inbox (source, event_id, type, body, received_at, event_time) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source, event_id) DO NOTHING",
                (item.source, item.event_id, item.type, item.body, item.received_at, item.event_time),
            )
            if cursor.rowcount == 1:
                results.append(Accepted(inbox_id=int(cursor.lastrowid or 0), duplicate=False))
            else:
                row = conn.execute(
                    "SELECT id FROM inbox WHERE source = ? AND event_id = ?", (item.source, item.event_id)
                ).fetchone()
                results.append(Accepted(inbox_id=int(row[0]), duplicate=True))
        conn.execute("COMMIT")
        return results

    async def claim_inbox(self, *, limit: int, now: float, lease: float) -> list[EventRow]:
        """Lease up to ``limit`` events still ``new`` whose lease is free, oldest first."""

        def claim(conn: sqlite3.Connection) -> list[EventRow]:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM inbox WHERE state = 'new' "
                "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY id LIMIT ?",
                (now, limit),
            ).fetchall()
            conn.executemany("UPDATE inbox SET lease_until = ? WHERE id = ?", [(now + lease, r[0]) for r in rows])
            conn.execute("COMMIT")
            return [EventRow(*r) for r in rows]

        return await self._run(claim)

    async def finish_inbox(self, processed: Sequence[Processed], *, now: float) -> None:
        """Write the deliveries (ignoring ones already written) and mark the events done, in one transaction."""

        def finish(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO deliveries (inbox_id, rule, channel, title, body, severity, body_format, created_at, "
                "budget_since, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (inbox_id, rule, channel) DO NOTHING",
                [
                    (p.inbox_id, d.rule, d.channel, d.title, d.body, d.severity, d.body_format, now, now, now)
                    for p in processed
                    for d in p.deliveries
                ],
            )
            conn.executemany(
                "UPDATE inbox SET state = ?, outcome = ?, processed_at = ?, lease_until = NULL WHERE id = ?",
                [(p.state, p.outcome, now, p.inbox_id) for p in processed],
            )
            conn.execute("COMMIT")

        await self._run(finish)

    async def list_events(self, *, limit: int = 100) -> list[EventRow]:
        """Newest events first."""
        return await self._run(
            lambda conn: [
                EventRow(*r)
                for r in conn.execute(f"SELECT {_EVENT_COLUMNS} FROM inbox ORDER BY id DESC LIMIT ?", (limit,))
            ]
        )

    # -- outbox ---------------------------------------------------------------------------

    async def claim_deliveries(self, channel: str, *, limit: int, now: float, lease: float) -> list[DeliveryRow]:
        """Lease due, unleased deliveries of one channel, the longest due first."""

        def claim(conn: sqlite3.Connection) -> list[DeliveryRow]:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE state = 'pending' AND channel = ? "
                "AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
                "ORDER BY next_attempt_at, id LIMIT ?",
                (channel, now, now, limit),
            ).fetchall()
            conn.executemany("UPDATE deliveries SET lease_until = ? WHERE id = ?", [(now + lease, r[0]) for r in rows])
            conn.execute("COMMIT")
            return [DeliveryRow(*r) for r in rows]

        return await self._run(claim)

    async def due_channels(self, now: float) -> set[str]:
        """Channels with at least one delivery due and not leased."""
        return await self._run(
            lambda conn: {
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT channel FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ? "
                    "AND (lease_until IS NULL OR lease_until <= ?)",
                    (now, now),
                )
            }
        )

    async def mark_sent(self, delivery_id: int, *, now: float, elapsed: float) -> None:
        """Record success; the row leaves the due set for good."""

        def sent(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE deliveries SET state = 'sent', sent_at = ?, attempts = attempts + 1, lease_until = NULL, "
                "last_error = NULL WHERE id = ?",
                (now, delivery_id),
            )
            conn.execute(
                "INSERT INTO attempts (delivery_id, at, status, reason, elapsed) VALUES (?, ?, 'sent', NULL, ?)",
                (delivery_id, now, elapsed),
            )
            conn.execute("COMMIT")

        await self._run(sent)

    async def mark_failed(
        self, delivery_id: int, *, now: float, reason: str, elapsed: float, next_attempt_at: float | None
    ) -> None:
        """Record a failed attempt and when to try again, or move it to the dead letters."""

        def failed(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            if next_attempt_at is None:
                conn.execute(
                    "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, lease_until = NULL, "
                    "last_error = ? WHERE id = ? AND state = 'pending'",
                    (reason, delivery_id),
                )
            else:
                conn.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, lease_until = NULL, last_error = ?, "
                    "next_attempt_at = ? WHERE id = ? AND state = 'pending'",
                    (reason, next_attempt_at, delivery_id),
                )
            conn.execute(
                "INSERT INTO attempts (delivery_id, at, status, reason, elapsed) VALUES (?, ?, ?, ?, ?)",
                (delivery_id, now, "dead" if next_attempt_at is None else "failed", reason, elapsed),
            )
            conn.execute("COMMIT")

        await self._run(failed)

    async def list_deliveries(self, *, state: str | None = None, limit: int = 100) -> list[DeliveryRow]:
        """Newest deliveries first, optionally in one state."""

        def select(conn: sqlite3.Connection) -> list[DeliveryRow]:
            if state is None:
                rows = conn.execute(
                    f"SELECT {_DELIVERY_COLUMNS} FROM deliveries ORDER BY id DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE state = ? ORDER BY id DESC LIMIT ?",
                    (state, limit),
                ).fetchall()
            return [DeliveryRow(*r) for r in rows]

        return await self._run(select)

    async def deliveries_of(self, inbox_id: int) -> list[DeliveryRow]:
        """The deliveries an event produced, in creation order."""
        return await self._run(
            lambda conn: [
                DeliveryRow(*r)
                for r in conn.execute(
                    f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE inbox_id = ? ORDER BY id", (inbox_id,)
                )
            ]
        )

    async def retry_delivery(self, delivery_id: int, *, now: float) -> bool:
        """Make one unsent delivery due now, with a fresh attempt budget."""

        def retry(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            cursor = conn.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, budget_since = ?, attempts = 0, "
                "lease_until = NULL WHERE id = ? AND state IN ('pending', 'dead')",
                (now, now, delivery_id),
            )
            conn.execute("COMMIT")
            return cursor.rowcount == 1

        return await self._run(retry)

    async def retry_dead(self, *, now: float) -> int:
        """Make every dead delivery due now, with a fresh attempt budget."""

        def retry(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            cursor = conn.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, budget_since = ?, attempts = 0, "
                "lease_until = NULL WHERE state = 'dead'",
                (now, now),
            )
            conn.execute("COMMIT")
            return cursor.rowcount

        return await self._run(retry)


def _resolve_all(futures: list[asyncio.Future[Accepted]], results: list[Accepted]) -> None:
    for future, result in zip(futures, results, strict=True):
        if not future.done():
            future.set_result(result)


def _fail_all(futures: list[asyncio.Future[Accepted]], error: StoreError) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
