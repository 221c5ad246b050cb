"""The shared store: PostgreSQL through psycopg 3 and its async connection pool.

N replicas of receiver share one database. What keeps them from doing the same work twice is
in the database, not in the processes: the unique (source, event_id) key dedups webhooks posted
to several replicas, and claims lease rows with ``FOR UPDATE SKIP LOCKED``, so two replicas
claiming at once get disjoint rows. ``NOTIFY`` (sent in the transaction that wrote the rows)
wakes idle workers of every replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
import structlog
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from receiver.errors import ConfigError, StoreError
from receiver.store import STORE_TABLES, StoreStats
from receiver.store import schema as _schema
from receiver.store._base import SQLStore
from receiver.store._plans import Plan
from receiver.store._retention import COUNT_ROWS
from receiver.store.sql import NOTIFY, POSTGRES, Sql, query

__all__ = ["PostgresStore"]

log = structlog.get_logger()

_T = TypeVar("_T")
_Conn = psycopg.AsyncConnection[TupleRow]

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# A deadlock between replicas (two batches inserting the same keys in opposite orders) aborts one
# transaction after deadlock_timeout; the whole transaction is safe to run again. Sorting a batch by
# key would avoid it but lose the arrival order of, e.g., the log entries of one request.
_ATTEMPTS = 3
_LISTEN_BACKOFF_MAX = 10.0
# How long close() waits for transactions under way, then for the pool, before it gives up on them.
_CLOSE_SECONDS = 3.0
# How long a cancelled call waits for its transaction to end: shutdown clean-ups bound their store
# calls at 2 s ("a store that hangs must not hang the shutdown"), which this lengthens at most.
_CANCEL_WAIT_SECONDS = 1.0
# SQLSTATE classes of data the database refuses however often it is sent: 22 data exception,
# 23 integrity constraint violation, 54 program limit exceeded (an index entry past 2,704 bytes).
_REFUSED = ("22", "23", "54")

_NOTIFY = "SELECT pg_notify(%(channel)s, topic) FROM unnest(%(topics)s::text[]) AS topic"


class PostgresStore(SQLStore):
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

    dialect = POSTGRES
    # Four: a few batches at once overlap the network round trips of one with the commit of another.
    _FLUSHERS = 4

    def __init__(
        self, url: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 10, timeout: float = 10.0
    ) -> None:
        super().__init__()
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
        # JIT compiling takes 0.1-0.5 s, more than any of these statements runs (the charts' too):
        # off unless the URL's own options turn it on.
        params["options"] = f"-c jit=off {params.get('options', '')}".strip()
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
        self._callbacks: list[Callable[[str], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._transactions: set[asyncio.Task[Any]] = set()
        self._closing = False  # close() waits for the transactions under way and starts no other

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
        self._accepts.loop = self._sent.loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Let the transactions under way finish, stop listening and close every connection.

        Bounded in time: transactions not finished after ``_CLOSE_SECONDS`` are cancelled, and a
        pool that does not close in as long is left behind (the server rolls back what it held).
        """
        self._closing = True
        try:
            await self._finish_transactions()
        finally:
            pool, self._pool = self._pool, None
            self._closing = False
        listener, self._listener = self._listener, None
        self._callbacks.clear()
        if listener is not None:
            listener.cancel()
            await asyncio.wait({listener}, timeout=_CLOSE_SECONDS)
        if pool is None:
            return
        # A task waited on with a timeout, not asyncio.timeout(): the pool's own waits may not end
        # at the first cancellation.
        closing = asyncio.get_running_loop().create_task(pool.close(timeout=_CLOSE_SECONDS / 2))
        done, _ = await asyncio.wait({closing}, timeout=_CLOSE_SECONDS)
        if not done:
            log.warning("store_close_timeout", store=self.where, seconds=_CLOSE_SECONDS)
            closing.cancel()
        elif not closing.cancelled() and (exc := closing.exception()) is not None:
            log.warning("store_close_failed", store=self.where, error=self._scrub(str(exc)))

    async def _finish_transactions(self) -> None:
        """Wait for the transactions under way (group commits included); cancel those past the bound."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLOSE_SECONDS
        # A group commit starts its next batch when one ends: the set may grow while waiting.
        while self._transactions and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._transactions), timeout=left)
        if self._transactions:
            log.warning("store_close_cancels", store=self.where, transactions=len(self._transactions))
            for task in self._transactions:
                task.cancel()

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

    async def _run(self, plan: Callable[..., Plan[_T]], *args: Any, write: bool = False, relaxed: bool = False) -> _T:
        """Run ``plan(*args)`` in one transaction on a pooled connection; driver errors become StoreError.

        The transaction runs in a task of its own, shielded from the caller's cancellation: psycopg
        does not survive one inside a transaction block (it sends the server a cancel request that
        can hit a later statement, such as the caller's own clean-up; a second one closes the
        connection; one during the pool's check leaves it in autocommit). A cancelled caller gets
        CancelledError once the transaction has ended, at most ``_CANCEL_WAIT_SECONDS`` later, or at once
        when cancelled again: its next call (a lease's release in a ``finally``) is not overtaken.
        """
        if self._pool is None or self._closing:
            raise StoreError(f"PostgreSQL store {self.where} is not open")
        task = self._start(plan, args)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait({task}, timeout=_CANCEL_WAIT_SECONDS)
            raise

    def _start(self, plan: Callable[..., Plan[_T]], args: tuple[Any, ...]) -> asyncio.Task[_T]:
        """The transaction of ``plan(*args)`` as a task of its own, which ``close`` waits for."""
        task = asyncio.get_running_loop().create_task(self._transact(plan, args))
        self._transactions.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._transactions.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller cancelled meanwhile no longer reads it

    def _write_batch(
        self, plan: Callable[..., Plan[list[_T]]], take: Callable[[], Any], *, relaxed: bool
    ) -> asyncio.Task[list[_T]]:
        # No caller awaits a group commit's write directly, so no shield; close waits for it too.
        return self._start(plan, (take,))

    async def _transact(self, plan: Callable[..., Plan[_T]], args: tuple[Any, ...]) -> _T:
        pool = self._pool
        if pool is None:
            raise StoreError(f"PostgreSQL store {self.where} is not open")
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with pool.connection() as conn, conn.transaction():
                    return await self._drive(conn, plan(*args))
            except (errors.DeadlockDetected, errors.SerializationFailure) as exc:
                if attempt == _ATTEMPTS:
                    raise self._error(exc) from exc
            except psycopg.Error as exc:
                raise self._error(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _drive(self, conn: _Conn, steps: Plan[_T]) -> _T:
        reply: Any = None
        try:
            while True:
                statement, params = steps.send(reply)
                reply = await self._execute(conn, statement, params)
        except StopIteration as done:
            result: _T = done.value
            return result

    async def _execute(self, conn: _Conn, statement: Sql, params: Any) -> Any:
        """One statement of a plan: its rows if it returns any, else how many rows it changed."""
        if statement is NOTIFY:
            # Sent when the transaction commits, to every replica on this schema.
            if params:
                await conn.execute(_NOTIFY, {"channel": self._channel, "topics": params})
            return None
        if statement.columns is not None:
            rows, shared = params
            if not rows:
                return [] if statement.returns else 0
            params = dict(shared)
            for column in statement.columns:  # one array per column, for unnest
                params[column] = [row[column] for row in rows]
        cursor = await conn.execute(statement.texts[1], params)
        return await cursor.fetchall() if statement.returns else cursor.rowcount

    def _unexpected(self, exc: BaseException) -> StoreError:
        error = StoreError(self._scrub(f"PostgreSQL store {self.where}: {exc!r}"))
        error.__cause__ = exc
        return error

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

    # -- size -----------------------------------------------------------------------------

    async def table_stats(self, *, exact_limit: int = 1_000_000) -> StoreStats:
        """Rows per table (counted up to ``exact_limit``, past it the planner's estimate) and the tables' size."""
        return await self._run(_table_stats, exact_limit)


_TABLE_SIZES = query(
    "SELECT c.relname, c.reltuples, pg_total_relation_size(c.oid) FROM pg_class c "
    "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND c.relname = ANY(%(tables)s)"
)


def _table_stats(exact_limit: int) -> Plan[StoreStats]:
    """Rows per table: the planner's estimate, or a bounded count where that is small; and their size."""
    sizes = yield _TABLE_SIZES, {"tables": list(STORE_TABLES)}
    found = {str(name): (float(estimate), int(size)) for name, estimate, size in sizes}
    rows: dict[str, int] = {}
    for table in STORE_TABLES:
        if table not in found:
            continue
        estimate = round(found[table][0])  # -1 until the table was first vacuumed or analyzed
        if estimate > exact_limit:
            rows[table] = estimate
            continue
        # A bounded count: exact for small tables, never a full scan of a big one.
        ((count,),) = yield COUNT_ROWS[table], {"limit": exact_limit + 1}
        rows[table] = max(int(count), estimate)
    return StoreStats(rows, sum(size for _, size in found.values()), exact_limit)


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
