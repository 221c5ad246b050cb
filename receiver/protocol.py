"""uvicorn's httptools protocol with a bound on the size of a request's head.

httptools (llhttp) takes headers of any size, and uvicorn keeps them all: 20 MB of headers reached
the app, so the body limit (``RECEIVER_MAX_BODY_BYTES``) could be sidestepped by sending the
bytes as a header. uvicorn bounds heads only with its h11 parser, which is pure Python and would
cost the webhook path more than its whole budget. So this subclass counts the bytes that arrive
while a head is incomplete, and past ``MAX_HEAD_BYTES`` answers 431 and closes the connection:
what it holds is bounded by the limit plus one read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD_BYTES", "BoundedHttpToolsProtocol"]

MAX_HEAD_BYTES = 64 * 1024
"""The largest request line plus headers taken (Orchestrator sends well under 2 KiB)."""

_BODY = b'{"error":"headers_too_large","detail":"the request line and headers are over 65536 bytes"}'
_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _BODY
)


_LINGER_SECONDS = 5.0
_LINGER_BYTES = 64 * 1024 * 1024
"""After a 431, how long and how much of the rest of the request is read and dropped."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that refuses a head over ``MAX_HEAD_BYTES`` with 431."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a connection starts with the first request's head
        self._head_bytes = 0
        self._heads_done = 0
        self._refused = False  # answered 431: what still arrives is read and dropped
        self._discarded = 0
        self._linger: asyncio.TimerHandle | None = None

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads_done += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0  # what follows is the next request's head

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._discard(len(data))
            return
        was_in_head, heads_done = self._in_head, self._heads_done
        super().data_received(data)
        # All of this read belonged to one head only if a head was open before it and none
        # completed during it; otherwise count nothing (an undercount by at most one read).
        if was_in_head and self._in_head and heads_done == self._heads_done:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._refuse()

    def _refuse(self) -> None:
        """Answer 431, then read and drop what the client is still sending before closing.

        Closing at once would reset the connection while the client is still sending, and a reset
        throws away our answer on its side too: it would see "connection reset", not why. So the
        write side is shut, and the rest is read and dropped for a bounded time and amount.
        """
        self._refused = True
        self.transport.write(_431)
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
        super().connection_lost(exc)
