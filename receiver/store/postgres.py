"""The shared store: PostgreSQL through psycopg 3 and its async connection pool.

N replicas of receiver share one database. What keeps them from doing the same work twice is
in the database, not in the processes: the unique (source, event_id) key dedups webhooks posted
to several replicas, and claims lease rows with ``FOR UPDATE SKIP LOCKED``, so two replicas
claiming at once get disjoint rows. ``NOTIFY`` (sent in the transaction that wrote the rows)
wakes idle workers of every replica.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
import structlog
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from receiver.errors import ConfigError, StoreError
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
from receiver.store._queries import POSTGRES as _DIALECT
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

__all__ = ["PostgresStore"]

log = structlog.get_logger()

_T = TypeVar("_T")
_Conn = psycopg.AsyncConnection[TupleRow]

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# One accept batch is one INSERT statement; the caps keep it (and the transaction) of bounded size.
_BATCH_ITEMS = 500
_BATCH_BYTES = 16 * 1024 * 1024
# Concurrent accept transactions per store. One would be classic group commit; a few overlap the
# network round trips of one batch with the commit of another.
_FLUSHERS = 4
# A deadlock between replicas (two batches inserting the same keys in opposite orders) aborts one
# transaction after deadlock_timeout; the whole transaction is safe to run again. Sorting a batch by
# key would avoid it but lose the arrival order of, e.g., the log entries of one request.
_ATTEMPTS = 3
_LISTEN_BACKOFF_MAX = 10.0
# SQLSTATE classes of data the database refuses however often it is sent: 22 data exception,
# 23 integrity constraint violation, 54 program limit exceeded (an index entry past 2,704 bytes).
_REFUSED = ("22", "23", "54")

_EVENT_COLUMNS = (
    "id, source, event_id, type, body, received_at, event_time, state, processed_at, outcome, process, robot"
)
_DELIVERY_COLUMNS = (
    "id, inbox_id, rule, channel, title, body, severity, body_format, state, attempts, created_at, "
    "budget_since, next_attempt_at, last_error, sent_at"
)

_INSERT_INBOX = """
    INSERT INTO inbox (source, event_id, type, body, received_at, event_time)
    SELECT source, event_id, type, body, received_at, event_time
    FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[], %s::float8[], %s::float8[])
        WITH ORDINALITY AS item (source, event_id, type, body, received_at, event_time, n)
    ORDER BY n
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING id, source, event_id
"""
_FIND_INBOX = """
    SELECT id, source, event_id FROM inbox
    WHERE (source, event_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""
_CLAIM_INBOX = f"""
    UPDATE inbox SET lease_until = %(until)s
    WHERE id IN (
        SELECT id FROM inbox
        WHERE state = 'new' AND (lease_until IS NULL OR lease_until <= %(now)s)
        ORDER BY id LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    RETURNING {_EVENT_COLUMNS}
"""
_INSERT_DELIVERIES = """
    INSERT INTO deliveries (inbox_id, rule, channel, title, body, severity, body_format, created_at,
                            budget_since, next_attempt_at)
    SELECT inbox_id, rule, channel, title, body, severity, body_format, %(now)s, %(now)s, %(now)s
    FROM unnest(%(inbox_id)s::bigint[], %(rule)s::text[], %(channel)s::text[], %(title)s::text[],
                %(body)s::text[], %(severity)s::text[], %(body_format)s::text[])
        WITH ORDINALITY AS d (inbox_id, rule, channel, title, body, severity, body_format, n)
    ORDER BY n
    ON CONFLICT (inbox_id, rule, channel) DO NOTHING
    RETURNING channel
"""
_FINISH_INBOX = """
    UPDATE inbox SET state = u.state, outcome = u.outcome, processed_at = %(now)s, lease_until = NULL,
        process = u.process, robot = u.robot
    FROM unnest(%(id)s::bigint[], %(state)s::text[], %(outcome)s::text[], %(process)s::text[], %(robot)s::text[])
        AS u (id, state, outcome, process, robot)
    WHERE inbox.id = u.id
"""
_CLAIM_DELIVERIES = f"""
    UPDATE deliveries SET lease_until = %(until)s
    WHERE id IN (
        SELECT id FROM deliveries
        WHERE state = 'pending' AND channel = %(channel)s AND next_attempt_at <= %(now)s
            AND (lease_until IS NULL OR lease_until <= %(now)s)
        ORDER BY next_attempt_at, id LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    RETURNING {_DELIVERY_COLUMNS}
"""
_LOAD_NOISE = f"""
    SELECT {NOISE_COLUMNS} FROM noise_state
    WHERE (kind, name, key) IN (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))
"""
_PURGE_NOISE = "DELETE FROM noise_state WHERE due_at IS NULL AND expires_at IS NOT NULL AND expires_at <= %s"
_DELETE_NOISE = """
    DELETE FROM noise_state
    WHERE (kind, name, key) IN (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))
"""
_PUT_NOISE = f"""
    INSERT INTO noise_state ({NOISE_COLUMNS})
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[])
    ON CONFLICT (kind, name, key) DO UPDATE
    SET data = excluded.data, due_at = excluded.due_at, expires_at = excluded.expires_at
"""
_LOG_NOISE = """
    INSERT INTO noise_log (at, recorded_at, inbox_id, rule, key, action, reason, suppressed)
    SELECT at, %(now)s, inbox_id, rule, key, action, reason, suppressed
    FROM unnest(%(at)s::float8[], %(inbox_id)s::bigint[], %(rule)s::text[], %(key)s::text[], %(action)s::text[],
                %(reason)s::text[], %(suppressed)s::boolean[])
        WITH ORDINALITY AS e (at, inbox_id, rule, key, action, reason, suppressed, n)
    ORDER BY n
"""
_NOTIFY_DELIVERIES = "SELECT pg_notify(%s, 'deliveries:' || channel) FROM unnest(%s::text[]) AS channel"


class PostgresStore:
    """The store shared by N replicas: PostgreSQL, reached through a pool of async connections.

    The URL is libpq's, ``postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DB[?PARAM=VALUE&...]`` (also
    ``postgres://``), with every libpq parameter (``sslmode``, ``connect_timeout``, ``options``...)
    plus one of receiver's own:

    * ``schema=NAME``: keep the tables in schema ``NAME`` (lowercase letters, digits and ``_``),
      created at ``open`` if missing. Several deployments, or test runs, can share one database
      this way. Without it the tables go to the first existing schema of the ``search_path``, which
      can also be set through libpq: ``?options=-csearch_path%3DNAME`` (the schema must exist).

    Replicas on the same database and schema share the work; notifications (``listen``) are
    scoped to the schema too. Errors name the host and database, never the password.

    Args:
        url: the database URL.
        schema: the schema, instead of ``?schema=`` in the URL.
        min_size: connections the pool keeps open.
        max_size: connections the pool opens at most (one more is used by ``listen``).
        timeout: seconds to wait for a connection (at ``open``, or from a busy pool) before failing.

    Raises:
        ConfigError: a URL libpq cannot parse, or an invalid schema name.
    """

    def __init__(
        self, url: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 10, timeout: float = 10.0
    ) -> None:
        parts = urlsplit(url)
        self._secrets = _secrets(parts.password)
        query = parse_qsl(parts.query, keep_blank_values=True)
        url_schemas = {value for key, value in query if key == "schema"}
        if len(url_schemas) > 1 or (schema is not None and url_schemas - {schema}):
            raise ConfigError(f"database URL {self._scrub(url)!r}: conflicting schemas {sorted(url_schemas)!r}")
        schema = schema if schema is not None else next(iter(url_schemas), None)
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigError(
                f"database URL {self._scrub(url)!r}: schema {schema!r} must be lowercase letters, digits and '_', "
                "starting with a letter or '_'"
            )
        # libpq refuses parameters it does not know, so receiver's own is taken out first.
        rest = urlencode([(k, v) for k, v in query if k != "schema"], quote_via=quote)
        try:
            params = conninfo_to_dict(urlunsplit(parts._replace(query=rest)))
        except psycopg.Error as exc:
            raise ConfigError(self._scrub(f"invalid PostgreSQL URL {self._scrub(url)!r}: {exc}")) from exc
        self._secrets |= _secrets(str(params.get("password") or ""))
        if schema is not None:
            params["options"] = f"{params.get('options', '')} -c search_path={schema}".strip()
        params.setdefault("connect_timeout", str(max(1, round(timeout))))
        params.setdefault("application_name", "receiver")
        self._params: dict[str, Any] = params
        self._schema = schema
        host = params.get("host") or params.get("hostaddr") or "localhost"
        self.where = f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or '?'}"
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._pool: AsyncConnectionPool[_Conn] | None = None
        self._channel = ""
        self._queue: list[tuple[InboxItem, asyncio.Future[Accepted]]] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._flush_starting = False
        self._callbacks: list[Callable[[str], None]] = []
        self._listener: asyncio.Task[None] | None = None

    # -- life cycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Apply pending migrations (under an advisory lock), then open the pool.

        Raises:
            StoreError: the server cannot be reached, or its schema is newer than this receiver.
        """
        if self._pool is not None:
            return
        try:
            async with await psycopg.AsyncConnection.connect(**self._params) as conn:
                schema = await self._migrate(conn)
        except psycopg.Error as exc:
            raise self._error(exc, "cannot open") from exc
        self._channel = _channel_name(schema)
        pool: AsyncConnectionPool[_Conn] = AsyncConnectionPool(
            kwargs=self._params,
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            # A connection broken since its last use (server restart, idle timeout) is replaced
            # before a caller sees it, instead of failing that caller's transaction.
            check=AsyncConnectionPool.check_connection,
            timeout=self._timeout,
            name="receiver",
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except psycopg.Error as exc:
            await pool.close()
            raise self._error(exc, "cannot open") from exc
        self._pool = pool

    async def close(self) -> None:
        """Wait for pending accepts, stop listening and close every connection."""
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        self._callbacks.clear()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        """Raise StoreError when the database cannot be queried."""
        await self._tx(lambda conn: conn.execute("SELECT 1"))

    async def _migrate(self, conn: _Conn) -> str:
        """Bring the schema to the newest version; returns the schema's name."""
        schema = self._schema
        if schema is None:
            row = await (await conn.execute("SELECT current_schema(), current_setting('search_path')")).fetchone()
            if row is None or row[0] is None:
                path = None if row is None else row[1]
                raise StoreError(
                    self._scrub(
                        f"PostgreSQL store {self.where}: no schema of search_path {path!r} exists; "
                        "create one or add ?schema=NAME to the database URL"
                    )
                )
            schema = str(row[0])
        async with conn.transaction():
            # Replicas starting together queue here; the first applies the migrations and the
            # others find them applied. Transaction-scoped, so a crash cannot leave it held.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(schema),))
            if self._schema is not None:
                cursor = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
                if await cursor.fetchone() is None:
                    await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS receiver_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            row = await (await conn.execute("SELECT coalesce(max(version), 0) FROM receiver_migrations")).fetchone()
            version = int(row[0]) if row is not None else 0
            if version > len(_schema.POSTGRES):
                raise StoreError(
                    self._scrub(
                        f"PostgreSQL store {self.where} (schema {schema!r}) has schema version {version}, newer than "
                        f"this receiver knows ({len(_schema.POSTGRES)}); upgrade receiver"
                    )
                )
            for number, script in enumerate(_schema.POSTGRES[version:], start=version + 1):
                # Without parameters psycopg sends the script as a simple query, several statements at once.
                await conn.execute(script.encode())
                await conn.execute("INSERT INTO receiver_migrations (version) VALUES (%s)", (number,))
        return schema

    async def _tx(self, fn: Callable[[_Conn], Awaitable[_T]]) -> _T:
        """Run ``fn(connection)`` in one transaction; driver errors become StoreError."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"PostgreSQL store {self.where} is not open")
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with pool.connection() as conn, conn.transaction():
                    return await fn(conn)
            except (errors.DeadlockDetected, errors.SerializationFailure) as exc:
                if attempt == _ATTEMPTS:
                    raise self._error(exc) from exc
            except psycopg.Error as exc:
                raise self._error(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _error(self, exc: BaseException, action: str = "") -> StoreError:
        prefix = f"{action} PostgreSQL store" if action else "PostgreSQL store"
        return StoreError(self._scrub(f"{prefix} {self.where}: {exc}"), recoverable=not _refused(exc))

    def _scrub(self, message: str) -> str:
        """``message`` without the password, whatever part of the driver quoted it."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            message = message.replace(secret, "***")
        return message

    # -- notifications --------------------------------------------------------------------

    async def listen(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(topic)`` for each notification of this schema (see ``Store``).

        Raises:
            StoreError: the store is not open, or the listening connection cannot be made.
        """
        if self._pool is None:
            raise StoreError(f"PostgreSQL store {self.where} is not open")
        if self._listener is None:
            conn = await self._connect_listener()
            self._listener = asyncio.create_task(self._listen(conn), name="receiver-store-listener")
        self._callbacks.append(callback)

    async def _connect_listener(self) -> _Conn:
        try:
            conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._params)
        except psycopg.Error as exc:
            raise self._error(exc, "cannot listen on") from exc
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except psycopg.Error as exc:
            await conn.close()
            raise self._error(exc, "cannot listen on") from exc
        return conn

    async def _listen(self, conn: _Conn) -> None:
        """Hand notifications to the callbacks; reconnect, with backoff, when the connection drops."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                async for note in conn.notifies():
                    for callback in self._callbacks:
                        loop.call_soon(callback, note.payload)
            except psycopg.Error as exc:
                log.warning("store_listener_disconnected", store=self.where, error=self._scrub(str(exc)))
            finally:
                await conn.close()
            delay = 0.5
            while True:
                await asyncio.sleep(delay)
                try:
                    conn = await self._connect_listener()
                    break
                except StoreError as exc:
                    log.warning("store_listener_reconnect_failed", store=self.where, error=str(exc))
                    delay = min(delay * 2, _LISTEN_BACKOFF_MAX)
            log.info("store_listener_reconnected", store=self.where)

    async def _notify(self, conn: _Conn, channels: Iterable[str]) -> None:
        """Queue one ``deliveries:<channel>`` notification per channel, sent when ``conn`` commits."""
        names = sorted(set(channels))
        if names:
            await conn.execute(_NOTIFY_DELIVERIES, (self._channel, names))

    # -- inbox ----------------------------------------------------------------------------

    async def accept(self, item: InboxItem) -> Accepted:
        """Commit ``item``; requests arriving together share one INSERT and one commit.

        Raises:
            StoreError: the batch the item was in could not be committed.
        """
        if self._pool is None:
            raise StoreError(f"PostgreSQL store {self.where} is not open")
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        # A flusher not yet running will take this item too, and so will a running one before it
        # exits (it leaves only after finding the queue empty); otherwise start one, up to the cap.
        if not self._flush_starting and len(self._flushers) < _FLUSHERS:
            self._flush_starting = True
            self._flushers.add(asyncio.create_task(self._flush()))
        return await future

    async def _flush(self) -> None:
        me = asyncio.current_task()
        try:
            while True:
                # From here on, new arrivals may start another flusher: this one has taken its batch.
                self._flush_starting = False
                batch = self._take_batch()
                if not batch:
                    # Leave the set now, not in a done callback: an accept between the two would see
                    # the cap reached and queue an item no flusher ever takes.
                    self._flushers.discard(me)
                    return
                await self._commit_batch(batch)
        finally:
            self._flushers.discard(me)

    async def _commit_batch(self, batch: list[tuple[InboxItem, asyncio.Future[Accepted]]]) -> None:
        items = [item for item, _ in batch]
        futures = [future for _, future in batch]
        try:
            results = await self._tx(functools.partial(self._insert_batch, items=items))
        except StoreError as exc:
            _fail_all(futures, exc)
            return
        except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer, whatever failed
            error = StoreError(self._scrub(f"PostgreSQL store {self.where}: {exc!r}"))
            error.__cause__ = exc
            _fail_all(futures, error)
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():  # its request may have been cancelled meanwhile
                future.set_result(result)

    def _take_batch(self) -> list[tuple[InboxItem, asyncio.Future[Accepted]]]:
        size = 0
        count = 0
        for item, _ in self._queue:
            if count and (count >= _BATCH_ITEMS or size + len(item.body) > _BATCH_BYTES):
                break
            size += len(item.body)
            count += 1
        batch, self._queue = self._queue[:count], self._queue[count:]
        return batch

    async def _insert_batch(self, conn: _Conn, *, items: list[InboxItem]) -> list[Accepted]:
        keys = [(storable(i.source), storable(i.event_id)) for i in items]
        cursor = await conn.execute(
            _INSERT_INBOX,
            (
                [s for s, _ in keys],
                [e for _, e in keys],
                [storable(i.type) for i in items],
                [i.body for i in items],
                [i.received_at for i in items],
                [i.event_time for i in items],
            ),
        )
        inserted = {(str(s), str(e)): int(i) for i, s, e in await cursor.fetchall()}
        if inserted:
            await conn.execute("SELECT pg_notify(%s, 'inbox')", (self._channel,))
        # Rows that conflicted were committed by someone else (another request, another replica,
        # which the INSERT waited for), so a fresh statement in READ COMMITTED sees them.
        found: dict[tuple[str, str], int] = {}
        missing = sorted({key for key in keys if key not in inserted})
        if missing:
            cursor = await conn.execute(_FIND_INBOX, ([s for s, _ in missing], [e for _, e in missing]))
            found = {(str(s), str(e)): int(i) for i, s, e in await cursor.fetchall()}
        results: list[Accepted] = []
        first_seen: set[tuple[str, str]] = set()
        for key in keys:
            if key in inserted and key not in first_seen:
                first_seen.add(key)
                results.append(Accepted(inbox_id=inserted[key], duplicate=False))
            elif key in inserted or key in found:
                results.append(Accepted(inbox_id=inserted[key] if key in inserted else found[key], duplicate=True))
            else:
                raise StoreError(f"PostgreSQL store {self.where}: inbox row {key!r} conflicted but cannot be found")
        return results

    async def acquire_lease(self, name: str, owner: str, *, now: float, ttl: float) -> bool:
        """Take or renew the named lease for ``owner``; False while another owner's lease runs."""

        async def acquire(conn: _Conn) -> bool:
            cursor = await conn.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (%(name)s, %(owner)s, %(until)s) "
                "ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at "
                "WHERE leases.owner = EXCLUDED.owner OR leases.expires_at <= %(now)s RETURNING owner",
                {"name": name, "owner": owner, "until": now + ttl, "now": now},
            )
            return await cursor.fetchone() is not None

        return await self._tx(acquire)

    async def release_lease(self, name: str, owner: str) -> None:
        """Give up the named lease if ``owner`` holds it."""

        async def release(conn: _Conn) -> None:
            await conn.execute(
                "DELETE FROM leases WHERE name = %(name)s AND owner = %(owner)s", {"name": name, "owner": owner}
            )

        await self._tx(release)

    async def read_counter(self, name: str) -> int:
        """The named counter's value (0 before its first bump)."""

        async def select(conn: _Conn) -> int:
            cursor = await conn.execute("SELECT value FROM counters WHERE name = %s", (name,))
            row = await cursor.fetchone()
            return 0 if row is None else int(row[0])

        return await self._tx(select)

    async def bump_counter(self, name: str) -> int:
        """Add one to the named counter and return the new value."""

        async def bump(conn: _Conn) -> int:
            cursor = await conn.execute(
                "INSERT INTO counters (name, value) VALUES (%s, 1) "
                "ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
                (name,),
            )
            row = await cursor.fetchone()
            if row is None:  # pragma: no cover - an upsert with RETURNING always returns its row
                raise StoreError(f"counter {name!r} was not written")
            return int(row[0])

        return await self._tx(bump)

    async def release_claims(self, *, inbox_ids: Collection[int] = (), delivery_ids: Collection[int] = ()) -> None:
        """Clear the leases of unprocessed events and of deliveries still pending among these ids."""
        events, deliveries = list(inbox_ids), list(delivery_ids)
        if not events and not deliveries:
            return

        async def release(conn: _Conn) -> None:
            await conn.execute(
                "UPDATE inbox SET lease_until = NULL WHERE id = ANY(%(ids)s) AND state = 'new'", {"ids": events}
            )
            await conn.execute(
                "UPDATE deliveries SET lease_until = NULL WHERE id = ANY(%(ids)s) AND state = 'pending'",
                {"ids": deliveries},
            )

        await self._tx(release)

    async def claim_inbox(self, *, limit: int, now: float, lease: float) -> list[EventRow]:
        """Lease up to ``limit`` events still ``new`` whose lease is free, oldest first.

        Rows locked by another replica's claim in progress are skipped, not waited for.
        """

        async def claim(conn: _Conn) -> list[EventRow]:
            cursor = await conn.execute(_CLAIM_INBOX, {"until": now + lease, "now": now, "limit": limit})
            return sorted((EventRow(*r) for r in await cursor.fetchall()), key=lambda r: r.id)

        return await self._tx(claim)

    async def finish_inbox(
        self, processed: Sequence[Processed], *, now: float, noise: NoiseWrite | None = None
    ) -> None:
        """Write the deliveries (ignoring ones already written), the noise changes, and mark the events done.

        All in one transaction: a crash leaves either all of it or none.
        """
        # In inbox id order, so two replicas finishing the same events lock them in the same order.
        ordered = sorted(processed, key=lambda p: p.inbox_id)
        deliveries = [(p.inbox_id, d) for p in ordered for d in p.deliveries]
        if noise is not None:
            deliveries += [(late.inbox_id, late.delivery) for late in noise.deliveries]
        latest = {p.inbox_id: p for p in ordered}  # a repeated id: the last one wins, as on SQLite

        async def finish(conn: _Conn) -> None:
            if deliveries:
                cursor = await conn.execute(_INSERT_DELIVERIES, _deliveries_params(deliveries, now))
                await self._notify(conn, (str(r[0]) for r in await cursor.fetchall()))
            if latest:
                await conn.execute(
                    _FINISH_INBOX,
                    {
                        "now": now,
                        "id": list(latest),
                        "state": [p.state for p in latest.values()],
                        "outcome": [storable(p.outcome) for p in latest.values()],
                        "process": [filter_name(p.process) for p in latest.values()],
                        "robot": [filter_name(p.robot) for p in latest.values()],
                    },
                )
            if noise is not None:
                await _write_noise(conn, noise, now)

        await self._tx(finish)

    # -- noise control --------------------------------------------------------------------

    async def load_noise(self, refs: Collection[NoiseRef]) -> list[NoiseRow]:
        """The rows of these refs that exist."""
        wanted = noise_refs(refs)
        if not wanted:
            return []

        async def select(conn: _Conn) -> list[NoiseRow]:
            cursor = await conn.execute(
                _LOAD_NOISE, ([r[0] for r in wanted], [r[1] for r in wanted], [r[2] for r in wanted])
            )
            return as_requested((NoiseRow(*r) for r in await cursor.fetchall()), wanted)

        return await self._tx(select)

    async def due_noise(self, *, until: float, limit: int) -> list[NoiseRow]:
        """Timers due at or before ``until``, earliest first."""

        async def select(conn: _Conn) -> list[NoiseRow]:
            cursor = await conn.execute(
                f"SELECT {NOISE_COLUMNS} FROM noise_state WHERE due_at IS NOT NULL AND due_at <= %s "
                "ORDER BY due_at, kind, name, key LIMIT %s",
                (until, limit),
            )
            return [NoiseRow(*r) for r in await cursor.fetchall()]

        return await self._tx(select)

    async def next_noise_due(self) -> float | None:
        """The earliest timer."""

        async def select(conn: _Conn) -> float | None:
            row = await (await conn.execute("SELECT min(due_at) FROM noise_state")).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._tx(select)

    async def add_silence(self, silence: NewSilence, *, now: float) -> SilenceRow:
        """Store an ad-hoc silence."""
        matchers = json.dumps([storable(m) for m in silence.matchers])

        async def insert(conn: _Conn) -> SilenceRow:
            cursor = await conn.execute(
                "INSERT INTO silences (matchers, comment, created_by, created_at, starts_at, ends_at) "
                f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {SILENCE_COLUMNS}",
                (
                    matchers,
                    storable(silence.comment),
                    storable(silence.created_by),
                    now,
                    silence.starts_at,
                    silence.ends_at,
                ),
            )
            row = await cursor.fetchone()
            if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
                raise StoreError(f"PostgreSQL store {self.where}: the new silence was not returned")
            return silence_row(row)

        return await self._tx(insert)

    async def list_silences(self, *, active_at: float | None = None, limit: int = 100) -> list[SilenceRow]:
        """Newest first; with ``active_at`` only those not ended by then."""

        async def select(conn: _Conn) -> list[SilenceRow]:
            if active_at is None:
                cursor = await conn.execute(
                    f"SELECT {SILENCE_COLUMNS} FROM silences ORDER BY id DESC LIMIT %s", (limit,)
                )
            else:
                cursor = await conn.execute(
                    f"SELECT {SILENCE_COLUMNS} FROM silences WHERE ends_at > %s ORDER BY id DESC LIMIT %s",
                    (active_at, limit),
                )
            return [silence_row(r) for r in await cursor.fetchall()]

        return await self._tx(select)

    async def expire_silence(self, silence_id: int, *, now: float) -> SilenceRow | None:
        """End a silence now, unless it has ended already."""

        async def expire(conn: _Conn) -> SilenceRow | None:
            await conn.execute(
                "UPDATE silences SET ends_at = %(now)s, starts_at = least(starts_at, %(now)s) "
                "WHERE id = %(id)s AND ends_at > %(now)s",
                {"now": now, "id": silence_id},
            )
            cursor = await conn.execute(f"SELECT {SILENCE_COLUMNS} FROM silences WHERE id = %s", (silence_id,))
            row = await cursor.fetchone()
            return None if row is None else silence_row(row)

        return await self._tx(expire)

    async def list_noise_log(
        self, *, limit: int = 100, suppressed_only: bool = False, inbox_id: int | None = None
    ) -> list[NoiseLogRow]:
        """Newest decisions first."""

        async def select(conn: _Conn) -> list[NoiseLogRow]:
            cursor = await conn.execute(
                f"SELECT {LOG_COLUMNS} FROM noise_log "
                "WHERE (NOT %(suppressed)s OR suppressed) AND (%(inbox)s::bigint IS NULL OR inbox_id = %(inbox)s) "
                "ORDER BY id DESC LIMIT %(limit)s",
                {"suppressed": suppressed_only, "inbox": inbox_id, "limit": limit},
            )
            return [log_row(r) for r in await cursor.fetchall()]

        return await self._tx(select)

    async def list_events(self, *, limit: int = 100, query: EventQuery | None = None) -> list[EventRow]:
        """Newest events first, those ``query`` admits."""
        where, params = event_where(query, _DIALECT)

        async def select(conn: _Conn) -> list[EventRow]:
            cursor = await conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM inbox{where} ORDER BY id DESC LIMIT %s", [*params, limit]
            )
            return [EventRow(*r) for r in await cursor.fetchall()]

        return await self._tx(select)

    async def get_event(self, inbox_id: int) -> EventRow | None:
        """One event, or None."""

        async def select(conn: _Conn) -> EventRow | None:
            cursor = await conn.execute(f"SELECT {_EVENT_COLUMNS} FROM inbox WHERE id = %s", (inbox_id,))
            row = await cursor.fetchone()
            return None if row is None else EventRow(*row)

        return await self._tx(select)

    async def queue_stats(self, *, now: float) -> QueueStats:
        """Unprocessed events, and per channel the pending (with the earliest due time among the due) and dead."""

        async def select(conn: _Conn) -> QueueStats:
            cursor = await conn.execute("SELECT count(*), min(received_at) FROM inbox WHERE state = 'new'")
            depth, oldest = await cursor.fetchone() or (0, None)
            channels: dict[str, ChannelStats] = {}
            cursor = await conn.execute(
                "SELECT channel, count(*), min(next_attempt_at) FILTER (WHERE next_attempt_at <= %s) "
                "FROM deliveries WHERE state = 'pending' GROUP BY channel",
                (now,),
            )
            for channel, pending, due in await cursor.fetchall():
                channels[channel] = ChannelStats(pending=int(pending), oldest_due_at=due)
            cursor = await conn.execute(
                "SELECT channel, count(*) FROM deliveries WHERE state = 'dead' GROUP BY channel"
            )
            for channel, dead in await cursor.fetchall():
                known = channels.get(channel, ChannelStats())
                channels[channel] = ChannelStats(known.pending, int(dead), known.oldest_due_at)
            return QueueStats(inbox_depth=int(depth), inbox_oldest_at=oldest, channels=channels)

        return await self._tx(select)

    # -- outbox ---------------------------------------------------------------------------

    async def claim_deliveries(self, channel: str, *, limit: int, now: float, lease: float) -> list[DeliveryRow]:
        """Lease due, unleased deliveries of one channel, the longest due first.

        Rows locked by another replica's claim in progress are skipped, not waited for.
        """

        async def claim(conn: _Conn) -> list[DeliveryRow]:
            cursor = await conn.execute(
                _CLAIM_DELIVERIES, {"until": now + lease, "now": now, "limit": limit, "channel": channel}
            )
            rows = [DeliveryRow(*r) for r in await cursor.fetchall()]
            return sorted(rows, key=lambda r: (r.next_attempt_at, r.id))

        return await self._tx(claim)

    async def due_channels(self, now: float) -> set[str]:
        """Channels with at least one delivery due and not leased."""

        async def select(conn: _Conn) -> set[str]:
            cursor = await conn.execute(
                "SELECT DISTINCT channel FROM deliveries WHERE state = 'pending' AND next_attempt_at <= %(now)s "
                "AND (lease_until IS NULL OR lease_until <= %(now)s)",
                {"now": now},
            )
            return {str(r[0]) for r in await cursor.fetchall()}

        return await self._tx(select)

    async def mark_sent(self, delivery_id: int, *, now: float, elapsed: float) -> None:
        """Record success; the row leaves the due set for good."""

        async def sent(conn: _Conn) -> None:
            await conn.execute(
                "UPDATE deliveries SET state = 'sent', sent_at = %s, attempts = attempts + 1, lease_until = NULL, "
                "last_error = NULL WHERE id = %s",
                (now, delivery_id),
            )
            await conn.execute(
                "INSERT INTO attempts (delivery_id, at, status, reason, elapsed) VALUES (%s, %s, 'sent', NULL, %s)",
                (delivery_id, now, elapsed),
            )

        await self._tx(sent)

    async def mark_failed(
        self, delivery_id: int, *, now: float, reason: str, elapsed: float, next_attempt_at: float | None
    ) -> None:
        """Record a failed attempt and when to try again, or move it to the dead letters."""
        reason = storable(reason)

        async def failed(conn: _Conn) -> None:
            if next_attempt_at is None:
                await conn.execute(
                    "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, lease_until = NULL, "
                    "last_error = %s WHERE id = %s AND state = 'pending'",
                    (reason, delivery_id),
                )
            else:
                await conn.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, lease_until = NULL, last_error = %s, "
                    "next_attempt_at = %s WHERE id = %s AND state = 'pending'",
                    (reason, next_attempt_at, delivery_id),
                )
            await conn.execute(
                "INSERT INTO attempts (delivery_id, at, status, reason, elapsed) VALUES (%s, %s, %s, %s, %s)",
                (delivery_id, now, "dead" if next_attempt_at is None else "failed", reason, elapsed),
            )

        await self._tx(failed)

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

        async def select(conn: _Conn) -> list[DeliveryRow]:
            cursor = await conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries{where} ORDER BY id DESC LIMIT %s", [*params, limit]
            )
            return [DeliveryRow(*r) for r in await cursor.fetchall()]

        return await self._tx(select)

    async def get_delivery(self, delivery_id: int) -> DeliveryRow | None:
        """One delivery, or None."""

        async def select(conn: _Conn) -> DeliveryRow | None:
            cursor = await conn.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id = %s", (delivery_id,))
            row = await cursor.fetchone()
            return None if row is None else DeliveryRow(*row)

        return await self._tx(select)

    async def list_attempts(self, delivery_ids: Collection[int]) -> list[AttemptRow]:
        """The attempt log of these deliveries, in the order of the attempts."""
        if not delivery_ids:
            return []
        where, param = _DIALECT.in_list("delivery_id", delivery_ids)

        async def select(conn: _Conn) -> list[AttemptRow]:
            cursor = await conn.execute(
                f"SELECT id, delivery_id, at, status, reason, elapsed FROM attempts WHERE {where} ORDER BY id", (param,)
            )
            return [AttemptRow(*r) for r in await cursor.fetchall()]

        return await self._tx(select)

    async def deliveries_of(self, inbox_id: int) -> list[DeliveryRow]:
        """The deliveries an event produced, in creation order."""

        async def select(conn: _Conn) -> list[DeliveryRow]:
            cursor = await conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE inbox_id = %s ORDER BY id", (inbox_id,)
            )
            return [DeliveryRow(*r) for r in await cursor.fetchall()]

        return await self._tx(select)

    async def retry_delivery(self, delivery_id: int, *, now: float) -> bool:
        """Make one unsent delivery due now, with a fresh attempt budget, and wake its channel's workers."""

        async def retry(conn: _Conn) -> bool:
            cursor = await conn.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = %s, budget_since = %s, attempts = 0, "
                "lease_until = NULL WHERE id = %s AND state IN ('pending', 'dead') RETURNING channel",
                (now, now, delivery_id),
            )
            row = await cursor.fetchone()
            if row is None:
                return False
            await self._notify(conn, [str(row[0])])
            return True

        return await self._tx(retry)

    async def retry_dead(self, *, now: float) -> int:
        """Make every dead delivery due now, with a fresh attempt budget, and wake their channels' workers."""

        async def retry(conn: _Conn) -> int:
            cursor = await conn.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = %s, budget_since = %s, attempts = 0, "
                "lease_until = NULL WHERE state = 'dead' RETURNING channel",
                (now, now),
            )
            channels = [str(r[0]) for r in await cursor.fetchall()]
            await self._notify(conn, channels)
            return len(channels)

        return await self._tx(retry)

    # -- retention ------------------------------------------------------------------------

    async def prune_events(
        self, cutoffs: PruneCutoffs, *, after: tuple[float, int] | None, limit: int, dry_run: bool = False
    ) -> PruneStep:
        """Delete (or count) the events of one batch that may go, in one short transaction."""

        async def prune(conn: _Conn) -> PruneStep:
            cursor = await conn.execute(
                _prune.scan_events_sql(_DIALECT), _prune.scan_events_params(cutoffs, after, limit)
            )
            scanned = await cursor.fetchall()
            counts = {"inbox": 0, "deliveries": 0, "attempts": 0}
            if scanned:
                candidates = [int(r[0]) for r in scanned]
                if not dry_run:
                    # Locked first, so a delivery re-driven meanwhile is seen pending below (its
                    # event stays) rather than deleted after its retry committed.
                    await conn.execute(
                        "SELECT 1 FROM deliveries WHERE inbox_id = ANY(%s) ORDER BY id FOR UPDATE", (candidates,)
                    )
                sql, params = _prune.eligible_sql(_DIALECT, cutoffs, candidates)
                ids = [int(r[0]) for r in await (await conn.execute(sql, params)).fetchall()]
                if ids:
                    for table, statement, param in _prune.delete_sql(_DIALECT, ids, dry_run=dry_run):
                        cursor = await conn.execute(statement, (param,))
                        row = await cursor.fetchone() if dry_run else None
                        counts[table] = int(row[0]) if row is not None else cursor.rowcount
            last = scanned[-1] if len(scanned) >= limit else None
            return PruneStep(counts, None if last is None else (float(last[1]), int(last[0])))

        return await self._tx(prune)

    async def prune_noise_log(
        self, before: float, *, after: tuple[float, int] | None, limit: int, dry_run: bool = False
    ) -> PruneStep:
        """Delete (or count) the oldest noise decisions recorded before ``before``, up to ``limit``."""

        async def prune(conn: _Conn) -> PruneStep:
            cursor = await conn.execute(
                "SELECT id, recorded_at FROM noise_log WHERE id > %s ORDER BY id LIMIT %s",
                (0 if after is None else after[1], limit),
            )
            rows = [(int(i), float(at)) for i, at in await cursor.fetchall()]
            ids, more = _prune.noise_log_run(rows, before, limit)
            if ids and not dry_run:
                await conn.execute("DELETE FROM noise_log WHERE id = ANY(%s)", (ids,))
            return PruneStep({"noise_log": len(ids)}, (0.0, ids[-1]) if more and ids else None)

        return await self._tx(prune)

    async def prune_silences(self, before: float, *, limit: int, dry_run: bool = False) -> int:
        """Delete (or count) up to ``limit`` silences that ended before ``before``."""

        async def prune(conn: _Conn) -> int:
            select = "SELECT id FROM silences WHERE ends_at < %s ORDER BY ends_at LIMIT %s"
            if dry_run:
                row = await (await conn.execute(f"SELECT count(*) FROM ({select}) s", (before, limit))).fetchone()
                return 0 if row is None else int(row[0])
            cursor = await conn.execute(f"DELETE FROM silences WHERE id IN ({select})", (before, limit))
            return cursor.rowcount

        return await self._tx(prune)

    async def timer_inbox_ids(self) -> set[int]:
        """The events noise timers refer to."""

        async def select(conn: _Conn) -> set[int]:
            cursor = await conn.execute(
                "SELECT data::jsonb -> 'inbox_id', data::jsonb -> 'first_inbox_id' FROM noise_state "
                "WHERE due_at IS NOT NULL"
            )
            return {
                int(v) for row in await cursor.fetchall() for v in row if isinstance(v, int) and not isinstance(v, bool)
            }

        return await self._tx(select)

    async def table_stats(self, *, exact_limit: int = 1_000_000) -> StoreStats:
        """Rows per table (counted up to ``exact_limit``, past it the planner's estimate) and the tables' size."""

        async def select(conn: _Conn) -> StoreStats:
            cursor = await conn.execute(
                "SELECT c.relname, c.reltuples, pg_total_relation_size(c.oid) FROM pg_class c "
                "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND c.relname = ANY(%s)",
                (list(STORE_TABLES),),
            )
            found = {str(name): (float(estimate), int(size)) for name, estimate, size in await cursor.fetchall()}
            rows: dict[str, int] = {}
            for table in STORE_TABLES:
                if table not in found:
                    continue
                estimate = round(found[table][0])  # -1 until the table was first vacuumed or analyzed
                if estimate > exact_limit:
                    rows[table] = estimate
                    continue
                # A bounded count: exact for small tables, never a full scan of a big one.
                query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) t").format(sql.Identifier(table))
                row = await (await conn.execute(query, (exact_limit + 1,))).fetchone()
                count = 0 if row is None else int(row[0])
                rows[table] = max(count, estimate)
            return StoreStats(rows, sum(size for _, size in found.values()), exact_limit)

        return await self._tx(select)


def _deliveries_params(deliveries: Sequence[tuple[int, NewDelivery]], now: float) -> dict[str, Any]:
    return {
        "now": now,
        "inbox_id": [i for i, _ in deliveries],
        "rule": [storable(d.rule) for _, d in deliveries],
        "channel": [storable(d.channel) for _, d in deliveries],
        "title": [storable(d.title) for _, d in deliveries],
        "body": [storable(d.body) for _, d in deliveries],
        "severity": [storable(d.severity) for _, d in deliveries],
        "body_format": [storable(d.body_format) for _, d in deliveries],
    }


async def _write_noise(conn: _Conn, noise: NoiseWrite, now: float) -> None:
    """Apply noise changes inside the caller's transaction: purge, deletes, then writes."""
    if noise.purge_before is not None:
        await conn.execute(_PURGE_NOISE, (noise.purge_before,))
    if noise.delete:
        refs = [noise_ref(ref) for ref in noise.delete]
        await conn.execute(_DELETE_NOISE, ([r[0] for r in refs], [r[1] for r in refs], [r[2] for r in refs]))
    if noise.put:
        # One row per ref: a later write of the same ref in the batch wins (ON CONFLICT cannot
        # touch one row twice in one statement).
        rows = {noise_ref((r.kind, r.name, r.key)): r for r in noise.put}
        await conn.execute(
            _PUT_NOISE,
            (
                [kind for kind, _, _ in rows],
                [name for _, name, _ in rows],
                [key for _, _, key in rows],
                [storable(r.data) for r in rows.values()],
                [r.due_at for r in rows.values()],
                [r.expires_at for r in rows.values()],
            ),
        )
    if noise.log:
        log = noise.log
        await conn.execute(
            _LOG_NOISE,
            {
                "now": now,
                "at": [e.at for e in log],
                "inbox_id": [e.inbox_id for e in log],
                "rule": [None if e.rule is None else storable(e.rule) for e in log],
                "key": [None if e.key is None else stored_key(e.key) for e in log],
                "action": [storable(e.action) for e in log],
                "reason": [storable(e.reason) for e in log],
                "suppressed": [e.suppressed for e in log],
            },
        )


def _refused(exc: BaseException) -> bool:
    """True when the database (or psycopg, before sending: NUL in text) refused the data itself."""
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return True
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state[:2] in _REFUSED


def _secrets(password: str | None) -> set[str]:
    """The forms a password can take in a message: as written in the URL, and decoded."""
    if not password:
        return set()
    return {password, unquote(password)} - {""}


def _lock_key(schema: str) -> int:
    """The advisory lock of one schema's migrations (a signed 64-bit key, as pg_advisory_xact_lock takes)."""
    digest = hashlib.blake2b(f"receiver.migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _channel_name(schema: str) -> str:
    """The NOTIFY channel of one schema; hashed when the name would pass PostgreSQL's 63-byte limit."""
    name = f"receiver.{schema}"
    if len(name.encode()) > 63:
        name = "receiver." + hashlib.blake2b(schema.encode(), digest_size=16).hexdigest()
    return name


def _fail_all(futures: list[asyncio.Future[Accepted]], error: StoreError) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
