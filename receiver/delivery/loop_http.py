"""apprise's plain HTTP requests exchanged on the event loop: kept-alive asyncio connections, httptools answers.

The loop's counterpart of ``plain_http``'s ``http.client`` exchange, for the sends that run on the
event loop (``receiver.delivery.bridge``; docs/performance.md, "Fast paths"). ``exchange()`` takes
a request ``plain_http.prepare()`` built, writes it as ``http.client`` would (the same request
line, ``Host``, headers and body), reads the answer with ``httptools`` (status, reason, headers;
a Content-Length, chunked or close-delimited body; HEAD; 1xx skipped) and returns the same
``requests.Response`` (``plain_http.response``). As on the thread path, at most ``ANSWER_BYTES``
of a body are kept and the connection is closed rather than read on; a connection the answer
closes (``Connection: close``, HTTP/1.0) is not reused; errors are requests' types
(``plain_http.connect_error``/``exchange_error``); the read timeout applies to each wait for
bytes, as requests' does.

Connections are kept per event loop, by scheme, host, port and certificate check, several per
host (sends to one channel run concurrently). One idle for longer than keep-alive's limit, or that
became readable or reached its end while idle (the server closed it), is closed instead of reused;
a task of each loop closes the idle ones every limit's length, and all of them when the loop ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import http.client
import re
import time
import weakref
from typing import Final, cast

import httptools
import requests
from urllib3.util.wait import wait_for_read

from receiver.delivery import plain_http

__all__ = ["exchange", "idle_connections"]

_IDLE_PER_HOST: Final = 16
"""Idle connections kept per scheme, host, port and check: more than a channel's concurrent sends."""

_BODY_METHODS: Final = frozenset({"PATCH", "POST", "PUT"})  # http.client sends "Content-Length: 0" without a body
# http.client's checks of a header line, which refuse what could split it.
_LEGAL_NAME: Final = re.compile(rb"[^:\s][^:\r\n]*").fullmatch
_ILLEGAL_VALUE: Final = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])").search
_INVALID_PATH: Final = re.compile("[\x00-\x20\x7f]").search

_Key = tuple[str, str, int, bool | str]

_MAX_HEADERS: Final = 100  # http.client's bound on an answer's header lines ("got more than 100 headers")
_HEAD_BYTES: Final = 1 << 20
"""The most bytes read before an answer's head is complete (its status line and headers, and the rest of
the read that completes it); httptools would otherwise hold a header line of any length."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.dead = False
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None  # None while no request is out
        self._done: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout: float | None = None
        self._last_read = 0.0
        self._head_only = False
        self._headers_done = False
        self._length_known = False
        self._head_read = 0
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.keep_alive = False

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # a stream's (uvloop's are no asyncio.Transport)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:  # bytes while no request is out: the server broke off (or the protocol)
            self.close()
            return
        self._last_read = self._loop.time()
        if not self._headers_done:
            self._head_read += len(data)
            if self._head_read > _HEAD_BYTES:
                self._fail(http.client.HTTPException(f"answer head over {_HEAD_BYTES} bytes"))
                return
        try:
            parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(http.client.HTTPException(f"unreadable answer: {exc}"))

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost says what that means for an answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        if self._parser is None:
            return
        if self._headers_done and not self._length_known:
            self._finish(keep_alive=False)  # a body delimited by the end of the connection
        elif exc is not None:
            self._fail(exc)
        elif not self._headers_done:
            self._fail(http.client.RemoteDisconnected("Remote end closed connection without response"))
        else:
            self._fail(http.client.IncompleteRead(b"".join(self.body)))

    # --- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._parser is None:  # a second answer to one request
            self.dead = True
            return
        self._start_answer()

    def _start_answer(self) -> None:
        self.reason = b""
        self.headers = []
        self._headers_done = False
        self._length_known = False

    def on_status(self, reason: bytes) -> None:
        if self._parser is not None:
            self.reason += reason  # may come in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._parser is None:
            return
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._length_known = True
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))
        if len(self.headers) > _MAX_HEADERS:
            self._fail(http.client.HTTPException(f"got more than {_MAX_HEADERS} headers"))

    def on_headers_complete(self) -> None:
        if self._parser is None:
            return
        self.status = self._parser.get_status_code()
        self._headers_done = True
        if not 100 <= self.status < 200 and (self._head_only or self.status in (204, 304)):
            self._length_known = True
            if self._head_only:  # the answer to HEAD has no body, whatever its Content-Length says
                self._finish(keep_alive=self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self._parser is None:
            return
        self.body.append(body)
        self.size += len(body)
        if self.size > plain_http.ANSWER_BYTES:
            self._finish(keep_alive=False)  # the rest is not ours to read: the connection is closed

    def on_message_complete(self) -> None:
        parser = self._parser
        if parser is None:  # a HEAD answer, finished at its headers (or one more than asked for)
            return
        if 100 <= self.status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self._head_read = 0
            return
        self._finish(keep_alive=parser.should_keep_alive())

    # --- the exchange ------------------------------------------------------------------------

    def ask(self, request: bytes, *, head_only: bool, read_timeout: float | None) -> asyncio.Future[None]:
        """Write ``request``; the future is done when the whole answer is in (or fails with the reason)."""
        assert self.transport is not None  # noqa: S101 - connected
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only
        self.status, self.body, self.size, self.keep_alive, self._head_read = 0, [], 0, False, 0
        self._start_answer()
        self._done = self._loop.create_future()
        self._read_timeout = read_timeout
        self._last_read = self._loop.time()
        if read_timeout is not None:
            self._timer = self._loop.call_at(self._last_read + read_timeout, self._check_read)
        self.transport.write(request)
        return self._done

    def _check_read(self) -> None:
        self._timer = None
        if self._parser is None or self._read_timeout is None:
            return
        due = self._last_read + self._read_timeout
        if self._loop.time() + 0.001 >= due:
            self._fail(TimeoutError("read timed out"))
        else:  # bytes came meanwhile: the timeout counts from the last of them
            self._timer = self._loop.call_at(due, self._check_read)

    def _finish(self, *, keep_alive: bool) -> None:
        self._parser = None
        self.keep_alive = keep_alive
        self._stop_timer()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self._parser = None
        self._stop_timer()
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def reusable(self, now: float, idle_seconds: float) -> bool:
        """Whether this idle connection may take the next request: fresh, and not closed by the server."""
        if self.dead or self.transport is None or self.transport.is_closing() or now - self.idle_since > idle_seconds:
            return False
        sock = self.transport.get_extra_info("socket")
        # Readable while no request is out: the server closed it (its FIN may not have been read yet).
        return sock is not None and not wait_for_read(sock, timeout=0.0)

    def close(self) -> None:
        """Close it, unsent bytes dropped (it holds half an exchange, or nothing worth flushing)."""
        self.dead = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()


class _Pool:
    """One event loop's idle connections, most recently used last."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.idle: dict[_Key, list[_Connection]] = {}
        self.idle_seconds = 30.0
        # Its own empty context: the sweeper is no send's business.
        self._sweeper = loop.create_task(self._sweep(loop), context=contextvars.Context())

    def take(self, key: _Key, now: float) -> _Connection | None:
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.reusable(now, self.idle_seconds):
                return conn
            conn.close()
        return None

    def give_back(self, key: _Key, conn: _Connection, now: float) -> None:
        conn.idle_since = now
        idle = self.idle.setdefault(key, [])
        idle.append(conn)
        if len(idle) > _IDLE_PER_HOST:
            idle.pop(0).close()

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while True:
                await asyncio.sleep(self.idle_seconds)
                now = loop.time()
                for idle in self.idle.values():
                    for conn in [c for c in idle if now - c.idle_since > self.idle_seconds or c.dead]:
                        idle.remove(conn)
                        conn.close()
        finally:  # the loop ends (its remaining tasks are cancelled): its connections are closed, not left to warn
            for idle in self.idle.values():
                for conn in idle:
                    conn.close()
            self.idle.clear()
            _pools.pop(loop, None)


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()


def idle_connections() -> int:
    """How many connections the running loop keeps open and idle."""
    pool = _pools.get(asyncio.get_running_loop())
    return sum(len(idle) for idle in pool.idle.values()) if pool is not None else 0


def _request_bytes(prepared: requests.PreparedRequest, key: _Key) -> bytes:
    """The request as ``http.client`` writes it for ``plain_http``: request line, Host, the headers in order, body."""
    _, host, port, _ = key
    method = prepared.method or "GET"
    path = prepared.path_url
    if _INVALID_PATH(path):
        raise http.client.InvalidURL(f"URL can't contain control characters. {path!r}")
    lines = [f"{method} {path} HTTP/1.1".encode("ascii")]
    headers = dict(prepared.headers)
    names = {name.lower() for name in headers}
    if "host" not in names:
        netloc = f"[{host}]" if ":" in host else host
        default = 443 if key[0] == "https" else 80
        lines.append(b"Host: " + (netloc if port == default else f"{netloc}:{port}").encode("ascii"))
    if "accept-encoding" not in names:
        lines.append(b"Accept-Encoding: identity")
    body = plain_http.body_bytes(prepared)
    if "content-length" not in names and "transfer-encoding" not in names:
        if body is not None:
            lines.append(b"Content-Length: %d" % len(body))
        elif method.upper() in _BODY_METHODS:
            lines.append(b"Content-Length: 0")
    for name, value in headers.items():
        raw_name = name.encode("ascii")
        raw_value = value.encode("latin-1") if isinstance(value, str) else bytes(value)
        if not _LEGAL_NAME(raw_name):
            raise ValueError(f"Invalid header name {raw_name!r}")
        if _ILLEGAL_VALUE(raw_value):
            raise ValueError(f"Invalid header value {raw_value!r}")
        lines.append(raw_name + b": " + raw_value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


async def _connect(loop: asyncio.AbstractEventLoop, plain: plain_http.Plain, key: _Key) -> _Connection:
    scheme, host, port, _ = key
    tls = plain_http.tls_context(plain.verify) if scheme == "https" else None
    try:
        async with asyncio.timeout(plain.timeouts[0]):
            _, conn = await loop.create_connection(
                lambda: _Connection(loop), host, port, ssl=tls, server_hostname=host if tls is not None else None
            )
    except Exception as exc:
        raise plain_http.connect_error(exc, plain.prepared) from exc
    return conn


async def exchange(plain: plain_http.Plain, *, idle_seconds: float) -> requests.Response:
    """Send ``plain`` on one of the running loop's kept-alive connections (or a new one) and read the whole answer.

    Args:
        plain: what ``plain_http.prepare()`` made of a ``requests.request`` call.
        idle_seconds: a connection idle for longer is closed instead of reused.

    Returns:
        The answer, as ``requests.request`` returns it (not following a redirect).

    Raises:
        requests.RequestException: ``ConnectTimeout``, ``ReadTimeout``, ``SSLError``, ``ConnectionError``.
    """
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = _Pool(loop)
    pool.idle_seconds = idle_seconds
    prepared = plain.prepared
    key = plain.key()
    started = time.perf_counter()
    try:
        request = _request_bytes(prepared, key)
    except Exception as exc:
        raise plain_http.exchange_error(exc, prepared) from exc
    conn = pool.take(key, loop.time()) or await _connect(loop, plain, key)
    try:
        await conn.ask(request, head_only=prepared.method == "HEAD", read_timeout=plain.timeouts[1])
    except BaseException as exc:
        conn.close()  # half a request or answer on it: never reused
        if isinstance(exc, Exception):
            raise plain_http.exchange_error(exc, prepared) from exc
        raise
    content = b"".join(conn.body)[: plain_http.ANSWER_BYTES]
    conn.body = []  # not held by an idle connection
    reason = conn.reason.decode("latin-1").strip()
    answer = plain_http.response(prepared, conn.status, reason, conn.headers, content, started)
    if conn.keep_alive and not conn.dead:
        pool.give_back(key, conn, loop.time())
    else:
        conn.close()
    return answer
