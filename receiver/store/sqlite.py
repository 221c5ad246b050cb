"""The embedded store: one SQLite file in WAL mode with ``synchronous=FULL``.

Every commit waits for the disk, except those whose loss in a power cut is made good by
redoing them (``_run(..., redone_if_lost=True)``): a delivery's claim and its outcome, and the
inbox worker's lease, claims and results (a lost result leaves its events ``new``, processed
again to the same deliveries). The WAL is written in order, so the next commit that waits for
the disk (the next accepted webhook) makes all of them durable too.

SQLite is synchronous; every statement runs on one dedicated thread so the event loop never
blocks on disk and no two threads share the connection. Concurrent ``accept`` calls are
committed together (group commit): one fsync for every request that arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, TypeVar

from receiver.errors import StoreError
from receiver.store import (
    STORE_TABLES,
    Accepted,
    AttemptRow,
    ChannelStats,
    DeliveryRow,
    EventQuery,
    EventRow,
    InboxItem,
    NewDelivery,
    NewSilence,
    NoiseLogRow,
    NoiseRef,
    NoiseRow,
    NoiseWrite,
    Processed,
    PruneCutoffs,
    PruneStep,
    QueueStats,
    SilenceRow,
    StoreStats,
)
from receiver.store import _retention as _prune
from receiver.store import schema as _schema
from receiver.store._queries import SQLITE as _DIALECT
from receiver.store._queries import delivery_where, event_where, filter_name
from receiver.store._rows import (
    LOG_COLUMNS,
    NOISE_COLUMNS,
    SILENCE_COLUMNS,
    as_requested,
    log_row,
    noise_refs,
    silence_row,
)
from receiver.store._text import noise_ref, storable, stored_key

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")
_I = TypeVar("_I")
_R = TypeVar("_R")

_EVENT_COLUMNS = (
    "id, source, event_id, type, body, received_at, event_time, state, processed_at, outcome, process, robot"
)
_DELIVERY_COLUMNS = (
    "id, inbox_id, rule, channel, title, body, severity, body_format, state, attempts, created_at, "
    "budget_since, next_attempt_at, last_error, sent_at"
)
# Refs looked up per statement (three parameters each; old SQLite allows 999 parameters).
_REFS_PER_QUERY = 300


_BUSY_SECONDS = 5.0
"""How long a statement waits for another process's write lock before it fails.

Every statement runs on the one store thread, so a webhook's accept can wait behind a worker's
write that is itself waiting: up to twice this before its 503. Orchestrator gives up after 60 s
and wants an answer within seconds (reference/uipath-webhooks.md §4).
"""


_CACHE_KIB = 8192


class SQLiteStore:
    """The embedded store: one SQLite file in WAL mode, written from one thread.

    ``listen`` hears this object's own commits only: another process writing the same file (the
    CLI re-driving deliveries) is seen at the next poll.

    Args:
        path: the database file (created with its directory), or ``:memory:``.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._accepts = _GroupCommit(self, self._insert_batch, after=self._accepted)
        self._sent = _GroupCommit(self, _mark_sent_batch, redone_if_lost=True)
        self._listeners: list[Callable[[str], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop open() ran on
        self._synchronous = "FULL"  # the connection's PRAGMA synchronous (store thread only)

    # -- life cycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file, set WAL and FULL sync, and apply migrations."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="receiver-store")
        loop = self._loop = asyncio.get_running_loop()
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
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def ping(self) -> None:
        """Raise StoreError when the file cannot be read."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def listen(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(topic)`` after this store committed new work (see ``Store``)."""
        if self._executor is None:
            raise StoreError("store is not open")
        self._listeners.append(callback)

    def _open_sync(self) -> None:
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

    def _close_sync(self, conn: sqlite3.Connection) -> None:
        conn.close()
        self._conn = None

    async def _run(self, fn: Callable[[sqlite3.Connection], _T], *, redone_if_lost: bool = False) -> _T:
        """Run ``fn(connection)`` on the store thread; sqlite3 errors become StoreError.

        ``redone_if_lost``: the commit may skip the fsync (``synchronous=NORMAL``). Only for writes
        whose loss in a power cut is made good by redoing them: a claim's lease, a delivery's
        outcome (the notification is sent again: at-least-once). A process crash loses none of
        them either way (WAL). It halves the delivery path's store time: an fsync is ~0.6 ms here.
        """
        if self._executor is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        if redone_if_lost:
            return await loop.run_in_executor(self._executor, self._call_relaxed, fn)
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call_relaxed(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return self._call(fn, relaxed=True)

    def _call(self, fn: Callable[[sqlite3.Connection], _T], *, relaxed: bool = False) -> _T:
        conn = self._conn
        if conn is None:
            raise StoreError("store is not open")
        try:
            # Every call but a relaxed one runs with FULL: the next write may be an accept, which
            # must reach the disk. The mode is switched only when it changes (two PRAGMAs per call
            # were ~10 µs of each delivery's outcome and claim).
            mode = "NORMAL" if relaxed else "FULL"
            if self._synchronous != mode:
                conn.execute(f"PRAGMA synchronous={mode}")
                self._synchronous = mode
            return fn(conn)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            # DataError ("string or blob too big") and IntegrityError (a constraint) refuse the data
            # itself; every other error (locked, I/O, disk full) may pass on a later try.
            refused = isinstance(exc, sqlite3.DataError | sqlite3.IntegrityError)
            raise StoreError(f"SQLite store {self.path!r}: {exc}", recoverable=not refused) from exc
        except BaseException:
            # Whatever failed, a transaction left open would make every later BEGIN fail.
            if conn.in_transaction:
                conn.rollback()
            raise

    def _emit(self, topics: Iterable[str]) -> None:
        """Schedule every listener for each topic (on the event loop; see ``Store.listen``)."""
        if not self._listeners:
            return
        loop = asyncio.get_running_loop()
        for topic in topics:
            for callback in self._listeners:
                loop.call_soon(callback, topic)

    # -- inbox ----------------------------------------------------------------------------

    async def accept(self, item: InboxItem) -> Accepted:
        """Commit ``item``; requests that arrive while a commit runs share the next one."""
        return await self._accepts.submit(item)

    def _accepted(self, loop: asyncio.AbstractEventLoop, results: list[Accepted]) -> None:
        if not all(r.duplicate for r in results):
            loop.call_soon_threadsafe(self._emit, ("inbox",))

    @staticmethod
    def _insert_batch(conn: sqlite3.Connection, items: list[InboxItem]) -> list[Accepted]:
        results: list[Accepted] = []
        conn.execute("BEGIN IMMEDIATE")
        for item in items:
            source, event_id = storable(item.source), storable(item.event_id)
            cursor = conn.execute(
                "INSERT INTO inbox (source, event_id, type, body, received_at, event_time) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source, event_id) DO NOTHING",
                (source, event_id, storable(item.type), item.body, item.received_at, item.event_time),
            )
            if cursor.rowcount == 1:
                results.append(Accepted(inbox_id=int(cursor.lastrowid or 0), duplicate=False))
            else:
                row = conn.execute(
                    "SELECT id FROM inbox WHERE source = ? AND event_id = ?", (source, event_id)
                ).fetchone()
                results.append(Accepted(inbox_id=int(row[0]), duplicate=True))
        conn.execute("COMMIT")
        return results

    async def acquire_lease(self, name: str, owner: str, *, now: float, ttl: float) -> bool:
        """Take or renew the named lease for ``owner``; False while another owner's lease runs."""

        def acquire(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            cursor = conn.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET owner = excluded.owner, expires_at = excluded.expires_at "
                "WHERE leases.owner = excluded.owner OR leases.expires_at <= ?",
                (name, owner, now + ttl, now),
            )
            conn.execute("COMMIT")
            return cursor.rowcount == 1

        # Lost in a power cut, the lease is simply older: it lapses and is taken again.
        return await self._run(acquire, redone_if_lost=True)

    async def release_lease(self, name: str, owner: str) -> None:
        """Give up the named lease if ``owner`` holds it."""
        await self._run(
            lambda conn: conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner)),
            redone_if_lost=True,  # lost in a power cut, the lease simply runs out
        )

    async def read_counter(self, name: str) -> int:
        """The named counter's value (0 before its first bump)."""
        row = await self._run(
            lambda conn: conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        )
        return 0 if row is None else int(row[0])

    async def bump_counter(self, name: str) -> int:
        """Add one to the named counter and return the new value."""

        def bump(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "INSERT INTO counters (name, value) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
                (name,),
            ).fetchone()
            return int(row[0])

        return await self._run(bump)

    async def release_claims(self, *, inbox_ids: Collection[int] = (), delivery_ids: Collection[int] = ()) -> None:
        """Clear the leases of unprocessed events and of deliveries still pending among these ids."""
        events = [(i,) for i in inbox_ids]
        deliveries = [(i,) for i in delivery_ids]
        if not events and not deliveries:
            return

        def release(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("UPDATE inbox SET lease_until = NULL WHERE id = ? AND state = 'new'", events)
            conn.executemany("UPDATE deliveries SET lease_until = NULL WHERE id = ? AND state = 'pending'", deliveries)
            conn.execute("COMMIT")

        await self._run(release, redone_if_lost=True)

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

        return await self._run(claim, redone_if_lost=True)  # a lost claim: the rows are free again

    async def finish_inbox(
        self, processed: Sequence[Processed], *, now: float, noise: NoiseWrite | None = None
    ) -> None:
        """Write the deliveries (ignoring ones already written), the noise changes, and mark the events done.

        All in one transaction: a crash leaves either all of it or none.
        """
        deliveries = [(p.inbox_id, d) for p in processed for d in p.deliveries]
        if noise is not None:
            deliveries += [(late.inbox_id, late.delivery) for late in noise.deliveries]

        def finish(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO deliveries (inbox_id, rule, channel, title, body, severity, body_format, created_at, "
                "budget_since, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (inbox_id, rule, channel) DO NOTHING",
                [_delivery_params(inbox_id, d, now) for inbox_id, d in deliveries],
            )
            conn.executemany(
                "UPDATE inbox SET state = ?, outcome = ?, processed_at = ?, lease_until = NULL, process = ?, robot = ? "
                "WHERE id = ?",
                [
                    (p.state, storable(p.outcome), now, filter_name(p.process), filter_name(p.robot), p.inbox_id)
                    for p in processed
                ],
            )
            if noise is not None:
                _write_noise(conn, noise, now)
            conn.execute("COMMIT")

        # Lost in a power cut, the events are still `new` with the noise state they were seen
        # with: processed again, they give the same deliveries (a notification may go twice).
        # With the lease and the claim above, three fsyncs less per batch, and at a steady
        # 200 events a second a batch is 1-5 events.
        await self._run(finish, redone_if_lost=True)
        self._emit(sorted({f"deliveries:{d.channel}" for _, d in deliveries}))

    # -- noise control --------------------------------------------------------------------

    async def load_noise(self, refs: Collection[NoiseRef]) -> list[NoiseRow]:
        """The rows of these refs that exist."""
        wanted = noise_refs(refs)
        stored = list(wanted)

        def select(conn: sqlite3.Connection) -> list[NoiseRow]:
            rows: list[NoiseRow] = []
            for start in range(0, len(stored), _REFS_PER_QUERY):
                chunk = stored[start : start + _REFS_PER_QUERY]
                values = ", ".join("(?, ?, ?)" for _ in chunk)
                params = [part for ref in chunk for part in ref]
                rows.extend(
                    NoiseRow(*r)
                    for r in conn.execute(
                        f"SELECT {NOISE_COLUMNS} FROM noise_state WHERE (kind, name, key) IN (VALUES {values})",
                        params,
                    )
                )
            return as_requested(rows, wanted)

        if not wanted:
            return []
        return await self._run(select)

    async def due_noise(self, *, until: float, limit: int) -> list[NoiseRow]:
        """Timers due at or before ``until``, earliest first."""
        return await self._run(
            lambda conn: [
                NoiseRow(*r)
                for r in conn.execute(
                    f"SELECT {NOISE_COLUMNS} FROM noise_state WHERE due_at IS NOT NULL AND due_at <= ? "
                    "ORDER BY due_at, kind, name, key LIMIT ?",
                    (until, limit),
                )
            ]
        )

    async def next_noise_due(self) -> float | None:
        """The earliest timer."""
        row = await self._run(lambda conn: conn.execute("SELECT min(due_at) FROM noise_state").fetchone())
        return None if row is None or row[0] is None else float(row[0])

    async def add_silence(self, silence: NewSilence, *, now: float) -> SilenceRow:
        """Store an ad-hoc silence."""
        matchers = json.dumps([storable(m) for m in silence.matchers])
        comment, created_by = storable(silence.comment), storable(silence.created_by)

        def insert(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            cursor = conn.execute(
                "INSERT INTO silences (matchers, comment, created_by, created_at, starts_at, ends_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (matchers, comment, created_by, now, silence.starts_at, silence.ends_at),
            )
            conn.execute("COMMIT")
            return int(cursor.lastrowid or 0)

        silence_id = await self._run(insert)
        return SilenceRow(
            silence_id, tuple(json.loads(matchers)), comment, created_by, now, silence.starts_at, silence.ends_at
        )

    async def list_silences(self, *, active_at: float | None = None, limit: int = 100) -> list[SilenceRow]:
        """Newest first; with ``active_at`` only those not ended by then."""

        def select(conn: sqlite3.Connection) -> list[SilenceRow]:
            if active_at is None:
                rows = conn.execute(f"SELECT {SILENCE_COLUMNS} FROM silences ORDER BY id DESC LIMIT ?", (limit,))
            else:
                rows = conn.execute(
                    f"SELECT {SILENCE_COLUMNS} FROM silences WHERE ends_at > ? ORDER BY id DESC LIMIT ?",
                    (active_at, limit),
                )
            return [silence_row(r) for r in rows]

        return await self._run(select)

    async def expire_silence(self, silence_id: int, *, now: float) -> SilenceRow | None:
        """End a silence now, unless it has ended already."""

        def expire(conn: sqlite3.Connection) -> SilenceRow | None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE silences SET ends_at = ?, starts_at = min(starts_at, ?) WHERE id = ? AND ends_at > ?",
                (now, now, silence_id, now),
            )
            row = conn.execute(f"SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?", (silence_id,)).fetchone()
            conn.execute("COMMIT")
            return None if row is None else silence_row(row)

        return await self._run(expire)

    async def list_noise_log(
        self, *, limit: int = 100, suppressed_only: bool = False, inbox_id: int | None = None
    ) -> list[NoiseLogRow]:
        """Newest decisions first."""
        where = []
        params: list[object] = []
        if suppressed_only:
            where.append("suppressed = 1")
        if inbox_id is not None:
            where.append("inbox_id = ?")
            params.append(inbox_id)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        params.append(limit)
        return await self._run(
            lambda conn: [
                log_row(r)
                for r in conn.execute(f"SELECT {LOG_COLUMNS} FROM noise_log {clause}ORDER BY id DESC LIMIT ?", params)
            ]
        )

    async def list_events(self, *, limit: int = 100, query: EventQuery | None = None) -> list[EventRow]:
        """Newest events first, those ``query`` admits."""
        where, params = event_where(query, _DIALECT)
        sql = f"SELECT {_EVENT_COLUMNS} FROM inbox{where} ORDER BY id DESC LIMIT ?"
        return await self._run(lambda conn: [EventRow(*r) for r in conn.execute(sql, [*params, limit])])

    async def get_event(self, inbox_id: int) -> EventRow | None:
        """One event, or None."""

        def select(conn: sqlite3.Connection) -> EventRow | None:
            row = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM inbox WHERE id = ?", (inbox_id,)).fetchone()
            return None if row is None else EventRow(*row)

        return await self._run(select)

    async def queue_stats(self, *, now: float) -> QueueStats:
        """Unprocessed events, and per channel the pending (with the earliest due time among the due) and dead."""

        def select(conn: sqlite3.Connection) -> QueueStats:
            depth, oldest = conn.execute("SELECT count(*), min(received_at) FROM inbox WHERE state = 'new'").fetchone()
            channels: dict[str, ChannelStats] = {}
            for channel, pending, due in conn.execute(
                "SELECT channel, count(*), min(CASE WHEN next_attempt_at <= ? THEN next_attempt_at END) "
                "FROM deliveries WHERE state = 'pending' GROUP BY channel",
                (now,),
            ):
                channels[channel] = ChannelStats(pending=int(pending), oldest_due_at=due)
            for channel, dead in conn.execute(
                "SELECT channel, count(*) FROM deliveries WHERE state = 'dead' GROUP BY channel"
            ):
                known = channels.get(channel, ChannelStats())
                channels[channel] = ChannelStats(known.pending, int(dead), known.oldest_due_at)
            return QueueStats(inbox_depth=int(depth), inbox_oldest_at=oldest, channels=channels)

        return await self._run(select)

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

        return await self._run(claim, redone_if_lost=True)

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
        """Record success; the row leaves the due set for good. Outcomes share transactions, as accepts do."""
        await self._sent.submit((delivery_id, now, elapsed))

    async def mark_failed(
        self, delivery_id: int, *, now: float, reason: str, elapsed: float, next_attempt_at: float | None
    ) -> None:
        """Record a failed attempt and when to try again, or move it to the dead letters."""
        reason = storable(reason)

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

        await self._run(failed, redone_if_lost=True)

    async def list_deliveries(
        self,
        *,
        state: str | None = None,
        limit: int = 100,
        failing: bool = False,
        channel: str | None = None,
        rule: str | None = None,
        inbox_ids: Collection[int] | None = None,
        before: int | None = None,
    ) -> list[DeliveryRow]:
        """Newest deliveries first, filtered (see ``Store.list_deliveries``)."""
        where, params = delivery_where(
            _DIALECT, state=state, failing=failing, channel=channel, rule=rule, inbox_ids=inbox_ids, before=before
        )
        sql = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries{where} ORDER BY id DESC LIMIT ?"
        return await self._run(lambda conn: [DeliveryRow(*r) for r in conn.execute(sql, [*params, limit])])

    async def get_delivery(self, delivery_id: int) -> DeliveryRow | None:
        """One delivery, or None."""

        def select(conn: sqlite3.Connection) -> DeliveryRow | None:
            row = conn.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
            return None if row is None else DeliveryRow(*row)

        return await self._run(select)

    async def list_attempts(self, delivery_ids: Collection[int]) -> list[AttemptRow]:
        """The attempt log of these deliveries, in the order of the attempts."""
        if not delivery_ids:
            return []
        where, param = _DIALECT.in_list("delivery_id", delivery_ids)
        sql = f"SELECT id, delivery_id, at, status, reason, elapsed FROM attempts WHERE {where} ORDER BY id"
        return await self._run(lambda conn: [AttemptRow(*r) for r in conn.execute(sql, (param,))])

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

        def retry(conn: sqlite3.Connection) -> str | None:
            # SELECT then UPDATE rather than RETURNING, which needs SQLite 3.35 (newer than some distributions).
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT channel FROM deliveries WHERE id = ? AND state IN ('pending', 'dead')", (delivery_id,)
            ).fetchone()
            conn.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, budget_since = ?, attempts = 0, "
                "lease_until = NULL WHERE id = ? AND state IN ('pending', 'dead')",
                (now, now, delivery_id),
            )
            conn.execute("COMMIT")
            return None if row is None else str(row[0])

        channel = await self._run(retry)
        if channel is None:
            return False
        self._emit([f"deliveries:{channel}"])
        return True

    async def retry_dead(self, *, now: float) -> int:
        """Make every dead delivery due now, with a fresh attempt budget."""

        def retry(conn: sqlite3.Connection) -> list[str]:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute("SELECT channel FROM deliveries WHERE state = 'dead'").fetchall()
            conn.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, budget_since = ?, attempts = 0, "
                "lease_until = NULL WHERE state = 'dead'",
                (now, now),
            )
            conn.execute("COMMIT")
            return [str(r[0]) for r in rows]

        channels = await self._run(retry)
        self._emit(sorted({f"deliveries:{c}" for c in channels}))
        return len(channels)

    # -- retention ------------------------------------------------------------------------

    async def prune_events(
        self, cutoffs: PruneCutoffs, *, after: tuple[float, int] | None, limit: int, dry_run: bool = False
    ) -> PruneStep:
        """Delete (or count) the events of one batch that may go; one short write transaction."""

        def prune(conn: sqlite3.Connection) -> PruneStep:
            # IMMEDIATE even for a dry run: the eligibility and the deletes see one state of the deliveries.
            conn.execute("BEGIN IMMEDIATE")
            scanned = conn.execute(
                _prune.scan_events_sql(_DIALECT), _prune.scan_events_params(cutoffs, after, limit)
            ).fetchall()
            counts = {"inbox": 0, "deliveries": 0, "attempts": 0}
            if scanned:
                sql, params = _prune.eligible_sql(_DIALECT, cutoffs, [r[0] for r in scanned])
                ids = [int(r[0]) for r in conn.execute(sql, params)]
                if ids:
                    for table, statement, param in _prune.delete_sql(_DIALECT, ids, dry_run=dry_run):
                        cursor = conn.execute(statement, (param,))
                        counts[table] = int(cursor.fetchone()[0]) if dry_run else cursor.rowcount
            conn.execute("COMMIT")
            last = scanned[-1] if len(scanned) >= limit else None
            return PruneStep(counts, None if last is None else (float(last[1]), int(last[0])))

        # Lost in a power cut, the rows are simply deleted again at the next run; an fsync per
        # batch would hold the store thread (and the webhooks behind it) for nothing.
        return await self._run(prune, redone_if_lost=True)

    async def prune_noise_log(
        self, before: float, *, after: tuple[float, int] | None, limit: int, dry_run: bool = False
    ) -> PruneStep:
        """Delete (or count) the oldest noise decisions recorded before ``before``, up to ``limit``."""

        def prune(conn: sqlite3.Connection) -> PruneStep:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                "SELECT id, recorded_at FROM noise_log WHERE id > ? ORDER BY id LIMIT ?",
                (0 if after is None else after[1], limit),
            ).fetchall()
            ids, more = _prune.noise_log_run(rows, before, limit)
            if ids and not dry_run:
                where, param = _DIALECT.in_list("id", ids)
                conn.execute(f"DELETE FROM noise_log WHERE {where}", (param,))
            conn.execute("COMMIT")
            return PruneStep({"noise_log": len(ids)}, (0.0, ids[-1]) if more and ids else None)

        return await self._run(prune, redone_if_lost=True)  # as prune_events

    async def prune_silences(self, before: float, *, limit: int, dry_run: bool = False) -> int:
        """Delete (or count) up to ``limit`` silences that ended before ``before``."""

        def prune(conn: sqlite3.Connection) -> int:
            select = "SELECT id FROM silences WHERE ends_at < ? ORDER BY ends_at LIMIT ?"
            if dry_run:
                return int(conn.execute(f"SELECT count(*) FROM ({select})", (before, limit)).fetchone()[0])
            return conn.execute(f"DELETE FROM silences WHERE id IN ({select})", (before, limit)).rowcount

        return await self._run(prune)

    async def timer_inbox_ids(self) -> set[int]:
        """The events noise timers refer to."""
        return await self._run(
            lambda conn: _ids(
                conn.execute(
                    "SELECT json_extract(data, '$.inbox_id'), json_extract(data, '$.first_inbox_id') "
                    "FROM noise_state WHERE due_at IS NOT NULL"
                )
            )
        )

    async def table_stats(self, *, exact_limit: int = 1_000_000) -> StoreStats:
        """Rows per table and the file's size, read on a connection and thread of its own.

        Counting a large table takes a while; on the store thread it would hold every accept
        behind it. A reader of its own in WAL mode blocks no writer.
        """
        if self._executor is None:
            raise StoreError("store is not open")
        if self.path == ":memory:":  # no second connection sees this database
            rows = await self._run(lambda conn: _count_rows(conn, exact_limit))
            return StoreStats(rows, 0, exact_limit)
        try:
            return await asyncio.to_thread(self._stats_sync, exact_limit)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path!r}: {exc}") from exc

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


def _ids(rows: Iterable[tuple[Any, ...]]) -> set[int]:
    """The integers among the values of ``rows`` (ids read out of JSON)."""
    return {int(v) for row in rows for v in row if isinstance(v, int | float) and not isinstance(v, bool)}


def _count_rows(conn: sqlite3.Connection, exact_limit: int) -> dict[str, int]:
    """Rows per table: counted up to ``exact_limit``, past it estimated from the span of row ids."""
    rows: dict[str, int] = {}
    for table in STORE_TABLES:
        (count,) = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT ?)", (exact_limit + 1,)).fetchone()
        if count > exact_limit:
            low, high = conn.execute(f"SELECT min(rowid), max(rowid) FROM {table}").fetchone()
            count = max(count, int(high) - int(low) + 1)
        rows[table] = int(count)
    return rows


def _delivery_params(inbox_id: int, d: NewDelivery, now: float) -> tuple[object, ...]:
    return (
        inbox_id,
        storable(d.rule),
        storable(d.channel),
        storable(d.title),
        storable(d.body),
        storable(d.severity),
        storable(d.body_format),
        now,
        now,
        now,
    )


def _write_noise(conn: sqlite3.Connection, noise: NoiseWrite, now: float) -> None:
    """Apply noise changes inside the caller's transaction: purge, deletes, then writes."""
    if noise.purge_before is not None:
        conn.execute(
            "DELETE FROM noise_state WHERE due_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ?",
            (noise.purge_before,),
        )
    conn.executemany(
        "DELETE FROM noise_state WHERE kind = ? AND name = ? AND key = ?",
        [noise_ref(ref) for ref in noise.delete],
    )
    conn.executemany(
        f"INSERT INTO noise_state ({NOISE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, name, key) "
        "DO UPDATE SET data = excluded.data, due_at = excluded.due_at, expires_at = excluded.expires_at",
        [(*noise_ref((r.kind, r.name, r.key)), storable(r.data), r.due_at, r.expires_at) for r in noise.put],
    )
    conn.executemany(
        "INSERT INTO noise_log (at, recorded_at, inbox_id, rule, key, action, reason, suppressed) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                e.at,
                now,
                e.inbox_id,
                None if e.rule is None else storable(e.rule),
                None if e.key is None else stored_key(e.key),
                storable(e.action),
                storable(e.reason),
                1 if e.suppressed else 0,
            )
            for e in noise.log
        ],
    )


def _mark_sent_batch(conn: sqlite3.Connection, sent: list[tuple[int, float, float]]) -> list[None]:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "UPDATE deliveries SET state = 'sent', sent_at = ?, attempts = attempts + 1, lease_until = NULL, "
        "last_error = NULL WHERE id = ?",
        [(now, delivery_id) for delivery_id, now, _ in sent],
    )
    conn.executemany(
        "INSERT INTO attempts (delivery_id, at, status, reason, elapsed) VALUES (?, ?, 'sent', NULL, ?)",
        sent,
    )
    conn.execute("COMMIT")
    return [None] * len(sent)


class _GroupCommit(Generic[_I, _R]):
    """Calls that arrive while the store thread is busy share its next transaction: one commit, one fsync.

    Args:
        store: whose thread and connection run the writes.
        write: writes a batch in one transaction and returns one result per item, in order.
        redone_if_lost: the commit may skip the fsync (see ``SQLiteStore._run``).
        after: called on the store thread with the loop and the results of a committed batch.
    """

    def __init__(
        self,
        store: SQLiteStore,
        write: Callable[[sqlite3.Connection, list[_I]], list[_R]],
        *,
        redone_if_lost: bool = False,
        after: Callable[[asyncio.AbstractEventLoop, list[_R]], None] | None = None,
    ) -> None:
        self._store = store
        self._write = write
        self._redone_if_lost = redone_if_lost
        self._after = after
        self._lock = threading.Lock()
        self._pending: list[tuple[_I, asyncio.Future[_R]]] = []
        self._queued = False

    async def submit(self, item: _I) -> _R:
        """Write ``item`` with whatever else is pending; raises StoreError when the batch failed."""
        store = self._store
        executor, loop = store._executor, store._loop
        if executor is None or loop is None:
            raise StoreError("store is not open")
        # The loop the store was opened on, not asyncio.get_running_loop(): that one costs a getpid()
        # system call, several µs on a loaded server, on every webhook.
        future: asyncio.Future[_R] = loop.create_future()
        with self._lock:
            self._pending.append((item, future))
            queue_flush = not self._queued
            self._queued = True
        if queue_flush:
            executor.submit(self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._queued = False
        if not batch:
            return
        futures = [future for _, future in batch]
        items = [item for item, _ in batch]
        call = self._store._call_relaxed if self._redone_if_lost else self._store._call
        try:
            results = call(lambda conn: self._write(conn, items))
        except StoreError as exc:
            loop.call_soon_threadsafe(_fail_all, futures, exc)
            return
        except Exception as exc:  # noqa: BLE001 - runs on the store thread: an unresolved future would hang its caller
            error = StoreError(f"SQLite store {self._store.path!r}: {exc!r}")
            error.__cause__ = exc
            loop.call_soon_threadsafe(_fail_all, futures, error)
            return
        loop.call_soon_threadsafe(_resolve_all, futures, results)
        if self._after is not None:
            self._after(loop, results)


def _resolve_all(futures: list[asyncio.Future[Any]], results: list[Any]) -> None:
    for future, result in zip(futures, results, strict=True):
        if not future.done():
            future.set_result(result)


def _fail_all(futures: list[asyncio.Future[Any]], error: StoreError) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
