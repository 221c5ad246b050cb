"""receiver's HTTP/1.1 protocol: uvicorn's httptools protocol with a bounded head and one write per answer.

A bounded head: httptools (llhttp) takes headers of any size, and uvicorn keeps them all: 20 MB
of headers reached the app, so the body limit (``RECEIVER_MAX_BODY_BYTES``) could be sidestepped
by sending the bytes as a header. uvicorn bounds heads only with its h11 parser, which is pure
Python and would cost the webhook path more than its whole budget. So this subclass counts the
bytes that arrive while a head is incomplete, and past ``MAX_HEAD_BYTES`` answers 431 and
closes the connection: what it holds is bounded by the limit plus one read. A head that
arrives whole in one read (up to 256 KiB) is measured as parsed when it completes.

Past ``limit_concurrency`` (RECEIVER_MAX_CONCURRENCY), uvicorn's plain-text 503, and its plain-text
400 for a request that is not HTTP, are replaced by answers with the JSON error body every other
refusal has.

One write per answer: uvicorn writes an answer's head when the app starts it and its body when
the app sends it, two ``send`` system calls and two TCP segments for a 200-byte answer
(docs/performance.md, "Fast paths"). The head is held and goes out with the first body write; a
``100 Continue`` is never held, nor the answer to a HEAD (uvicorn writes no body for it).

A bounded wait for a head: uvicorn closes an idle connection only after an answer (its keep-alive
timer), so a connection opened and left silent, or a head sent in part and never finished, was
held for ever and counted against ``limit_concurrency``: a thousand of them (one client, a
thousand sockets) and every webhook got 503. A connection now closes when it sends nothing for
the keep-alive time, and a head not complete within ``head_timeout`` seconds of the connection
(or of the previous answer) gets 408 and the connection is closed.

Over ``limit_concurrency`` uvicorn answers a plain-text 503, and a request that is not HTTP a
plain-text 400; the answers here are the JSON error body every other refusal has.

All lean on uvicorn's internals (``HttpToolsProtocol``, its ``cycle``): pyproject.toml bounds
uvicorn, and tests/test_fast_paths.py fails when a version inside the bound breaks them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HEAD_TIMEOUT_SECONDS", "MAX_HEAD_BYTES", "BoundedHttpToolsProtocol"]

MAX_HEAD_BYTES = 64 * 1024
"""The largest request line plus headers taken (Orchestrator sends well under 2 KiB)."""

_BODY = b'{"error":"headers_too_large","detail":"the request line and headers are over 65536 bytes"}'
_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _BODY
)


HEAD_TIMEOUT_SECONDS = 10.0
"""The default time a request head may take (``receiver serve`` passes ``RECEIVER_BODY_TIMEOUT_SECONDS``)."""


def _refusal(status: bytes, code: str, detail: str) -> bytes:
    body = b'{"error":"' + code.encode() + b'","detail":"' + detail.encode() + b'"}'
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + body
    )


_BUSY_BODY = b'{"error":"over_capacity","detail":"too many requests in progress; retry in a moment"}'


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    """uvicorn's answer past ``limit_concurrency`` (RECEIVER_MAX_CONCURRENCY), with receiver's JSON error body."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_BUSY_BODY)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _BUSY_BODY, "more_body": False})


_LINGER_SECONDS = 5.0
_LINGER_BYTES = 64 * 1024 * 1024
"""After an answer that ends a connection mid-request (431, or a 408 or 413 before the body was
read), how long and how much of the rest of the request is read and dropped before closing."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` refusing a head over ``MAX_HEAD_BYTES`` (431) or slower than ``head_timeout`` (408)."""

    head_timeout: float = HEAD_TIMEOUT_SECONDS
    """Seconds a request head may take, from the connection (or the previous answer) on."""

    @classmethod
    def with_head_timeout(cls, seconds: float) -> type[BoundedHttpToolsProtocol]:
        """The protocol class with its own head timeout (uvicorn takes a class, and builds one per connection)."""
        return type(cls.__name__, (cls,), {"head_timeout": seconds})

    def __init__(self, *args: Any, head_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = self.head_timeout if head_timeout is None else head_timeout
        self._head_deadline: asyncio.TimerHandle | None = None
        self._in_head = True  # a connection starts with the first request's head
        self._head_bytes = 0
        self._heads_done = 0
        self._refused = False  # answered 431: what still arrives is read and dropped
        self._discarded = 0
        self._linger: asyncio.TimerHandle | None = None
        self._read_bytes = 0  # the size of the read being parsed
        self._oversized = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # As after an answer: silent for the keep-alive time, the connection is closed (uvicorn
        # arms this timer only after an answer, and disarms it when bytes arrive).
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_head and not self.transport.is_closing():
            self._arm_head_deadline()  # the next head, if one comes, has its time from now

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or not self._in_head or self._refused:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # an answer is being made (pipelined requests): its end arms the deadline again
        if self._head_bytes == 0:
            self.transport.close()  # nothing of a head arrived: an idle connection
            return
        seconds = f"{self._head_timeout:g}"
        self.transport.write(
            _refusal(b"408 Request Timeout", "head_timeout", f"the request head did not arrive within {seconds} s")
        )
        self._linger_then_close()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        chosen: Any = _over_capacity if app is service_unavailable else app
        super()._start_asgi_task(cycle, chosen)

    def on_headers_complete(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        if self._head_bytes + self._read_bytes > MAX_HEAD_BYTES and self._head_size() > MAX_HEAD_BYTES:
            # A head that arrived whole in one large read: the per-read count below never saw it open.
            self._oversized = True
            raise _HeadTooLargeError
        self._in_head = False
        self._heads_done += 1
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            # A HEAD's answer has no body write to join its head to (uvicorn writes none): hold nothing.
            hold = cycle.scope["method"] != "HEAD"
            cycle.transport = _JoinedWrites(self.transport, self._close_after_answer, hold=hold)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0  # what follows is the next request's head
        if self.cycle is not None and self.cycle.response_complete and not self.transport.is_closing():
            # Answered before its body ended (a refusal): the body's rest disarmed uvicorn's keep-alive
            # timer, which the answer had armed. The next head has its time from now.
            self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._discard(len(data))
            return
        was_in_head, heads_done = self._in_head, self._heads_done
        self._read_bytes = len(data)
        super().data_received(data)
        # All of this read belonged to one head only if a head was open before it and none
        # completed during it; otherwise count nothing (an undercount by at most one read).
        if was_in_head and self._in_head and heads_done == self._heads_done:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._refuse()

    def _head_size(self) -> int:
        """The request line and headers as parsed (llhttp has dropped the separators: a lower bound)."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers an exception raised in a parser callback with 400; ours means 431.
        if self._oversized:
            self._refuse()
            return
        # uvicorn's own 400 is plain text: every refusal here has the JSON error body.
        body = json.dumps({"error": "invalid_http", "detail": msg}).encode()
        head = b"".join(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers)
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\n" + head + b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()

    def _refuse(self) -> None:
        """Answer 431, then read and drop what the client is still sending before closing."""
        self.transport.write(_431)
        self._linger_then_close()

    def _close_after_answer(self) -> None:
        """Close the connection after an answer that ends it (``Connection: close``).

        Mid-body (a 408 for a body too slow, a 413 for one too large), the client may still be
        sending: linger as after a 431.
        """
        if self._in_head or self.transport.is_closing():
            self.transport.close()
        else:
            self._linger_then_close()

    def _linger_then_close(self) -> None:
        """Shut the write side, read and drop what still arrives for a bounded time and amount, then close.

        Closing at once would reset the connection while the client is still sending (the kernel
        answers unread data with a reset), and a reset throws away our answer on its side too: it
        would see "connection reset", not why.
        """
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger = self.loop.call_later(_LINGER_SECONDS, self.transport.close)

    def _discard(self, size: int) -> None:
        self._discarded += size
        if self._discarded > _LINGER_BYTES and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        super().connection_lost(exc)


class _HeadTooLargeError(Exception):
    """Raised in the parser's callback to stop it at a head over ``MAX_HEAD_BYTES``."""


class _JoinedWrites:
    """The transport as one request's cycle sees it: the answer's head waits for its first body write.

    Only ``write``, ``close`` and ``is_closing`` are used by uvicorn's cycle; the rest passes
    through. ``close`` (an answer that ends the connection) goes to the protocol, which lingers if
    the request's body is still arriving.
    """

    __slots__ = ("_close", "_head", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, close: Callable[[], None], *, hold: bool = True) -> None:
        self._transport = transport
        self._close = close
        self._head: bytes | None = None
        self._started = not hold  # started: nothing (more) is held

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif not self._started and data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 100 "):
            self._started = True
            self._head = data
            return
        self._transport.write(data)

    def close(self) -> None:
        # An app that started an answer and failed: what was held still goes out first.
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
