"""Slow and idle clients against a real ``receiver serve``: bounded, answered, and harmless to others.

uvicorn closes idle keep-alive connections (``RECEIVER_KEEPALIVE_SECONDS``) but has no limit on a
client that trickles its body; the edge answers that one 408 after ``RECEIVER_BODY_TIMEOUT_SECONDS``.
Raw sockets, because an HTTP client library will not send slowly on purpose.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ServerProcess, fault

from receiver.signature import sign

pytestmark = pytest.mark.slow

SECRET = "slow-secret"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    rules = tmp_path / "rules.yaml"
    rules.write_text("channels:\n  log: {url: 'log://'}\nrules:\n  - {name: all, match: {}, notify: [log]}\n")
    env = {
        "RECEIVER_WEBHOOK_SECRET": SECRET,
        "RECEIVER_BODY_TIMEOUT_SECONDS": "1",
        "RECEIVER_KEEPALIVE_SECONDS": "1",
        "RECEIVER_MAX_CONCURRENCY": "20",
    }
    process = ServerProcess(rules=rules, database=tmp_path / "r.db", env=env).start()
    yield process
    process.stop()


def _head(port: int, body: bytes, *, length: int | None = None) -> bytes:
    return (
        f"POST /webhooks/uipath HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-UiPath-Signature: {sign(body, SECRET)}\r\nContent-Length: {len(body) if length is None else length}\r\n\r\n"
    ).encode()


def _read_reply(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_a_trickled_body_gets_408_and_the_connection_closes(server: ServerProcess) -> None:
    body = fault("slow-1")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_head(server.port, body) + body[:10])
        started = time.monotonic()
        # Keep trickling, a byte every 0.2 s: never finishing within the 1 s allowed.
        sock.settimeout(0.2)
        reply = b""
        for byte in body[10:40]:
            try:
                sock.sendall(bytes([byte]))
                reply += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if reply:
                break
        reply += _read_reply(sock, timeout=5)
        waited = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b'"error":"body_timeout"' in reply
    assert waited < 5, f"the 408 took {waited:.1f} s for a 1 s limit"
    # Nothing half-received was stored, and the server still takes webhooks.
    assert (202, "accepted") == _status(server, fault("after-slow"))
    assert (202, "accepted") == _status(server, body)


def test_a_client_still_sending_after_the_408_still_reads_it(server: ServerProcess) -> None:
    """Bytes that arrive after the 408 are read and dropped, not answered with a reset that loses the 408."""
    body = fault("late-1")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_head(server.port, body) + body[:10])
        time.sleep(2.0)  # the 408 went out after 1 s; the client has not read it yet
        sock.sendall(body[10:40])  # to a closed socket, these would draw a reset
        time.sleep(0.3)
        reply = _read_reply(sock, timeout=5)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b'"error":"body_timeout"' in reply


def test_a_body_over_the_limit_gets_its_413_while_the_client_is_still_sending(server: ServerProcess) -> None:
    """The 413 comes before the body is read; the body still streaming in must not reset it away."""
    declared = 8 * 1024 * 1024  # over the server's limit: refused on the header, unread
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_head(server.port, b"", length=declared))
        sock.settimeout(2.0)
        sent = 0
        try:
            while sent < declared:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server stopped reading: fine, as long as the answer is there
        reply = _read_reply(sock, timeout=5)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"error":"body_too_large"' in reply


def test_a_client_that_stops_mid_body_does_not_hold_its_connection(server: ServerProcess) -> None:
    body = fault("stalled-1")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_head(server.port, body) + body[: len(body) // 2])
        reply = _read_reply(sock, timeout=8)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"connection: close" in reply.lower()


def test_slow_clients_do_not_delay_others(server: ServerProcess) -> None:
    stalled = []
    try:
        for n in range(5):
            sock = socket.create_connection(("127.0.0.1", server.port))
            body = fault(f"hold-{n}")
            sock.sendall(_head(server.port, body) + body[:5])
            stalled.append(sock)
        started = time.monotonic()
        statuses = [_status(server, fault(f"quick-{n}")) for n in range(20)]
        elapsed = time.monotonic() - started
    finally:
        for sock in stalled:
            sock.close()
    assert [(202, "accepted")] * 20 == statuses
    assert elapsed < 5, f"20 webhooks took {elapsed:.1f} s next to 5 stalled clients"


def test_an_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    body = fault("keepalive-1")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_head(server.port, body) + body)
        first = _read_one_answer(sock)
        assert first.startswith(b"HTTP/1.1 202"), first[:200]
        started = time.monotonic()
        rest = _read_reply(sock, timeout=10)
        closed_after = time.monotonic() - started
    assert b"" == rest
    assert closed_after < 8, f"an idle connection stayed open {closed_after:.1f} s with a 1 s keep-alive"


def test_a_body_longer_than_declared_is_not_stored_whole_or_answered_twice(server: ServerProcess) -> None:
    """A Content-Length shorter than what follows: the rest is a second, garbage request, refused on its own."""
    body = fault("declared-short")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_head(server.port, body, length=len(body) - 5) + body)
        reply = _read_reply(sock, timeout=5)
    # The truncated body fails its signature and the 5 leftover bytes are not a request: uvicorn
    # may answer that 400 (and close) before our 401 goes out. Either way nothing was accepted.
    assert reply.startswith((b"HTTP/1.1 401", b"HTTP/1.1 400")), reply[:200]
    assert b"HTTP/1.1 202" not in reply
    assert (202, "accepted") == _status(server, body), "the truncated body was stored"


def _read_one_answer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """One whole answer (head and Content-Length bytes of body), leaving the connection open."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _status(server: ServerProcess, body: bytes) -> tuple[int, str]:
    """Status and the reply's ``status`` field (the text of the body when it has none)."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_head(server.port, body).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + body)
        reply = _read_reply(sock, timeout=10)
    head, _, payload = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    try:
        return status, str(json.loads(payload).get("status"))
    except ValueError:
        return status, payload.decode(errors="replace")[:100]


def test_past_max_concurrency_new_requests_get_503_until_the_slow_ones_are_gone(server: ServerProcess) -> None:
    stalled = []
    try:
        for n in range(25):  # RECEIVER_MAX_CONCURRENCY is 20
            sock = socket.create_connection(("127.0.0.1", server.port))
            body = fault(f"crowd-{n}")
            sock.sendall(_head(server.port, body) + body[:5])
            stalled.append(sock)
        time.sleep(0.3)
        crowded = _status(server, fault("crowded-out"))
        # The stalled reads end with their 408 after 1 s; then there is room again.
        deadline = time.monotonic() + 10
        later = _status(server, fault("after-crowd"))
        while later[0] != 202 and time.monotonic() < deadline:
            time.sleep(0.2)
            later = _status(server, fault("after-crowd"))
    finally:
        for sock in stalled:
            sock.close()
    assert 503 == crowded[0]
    assert (202, "accepted") == later


def test_silent_connections_and_unfinished_heads_do_not_crowd_out_webhooks(server: ServerProcess) -> None:
    """Sockets opened and left silent, or left mid-head, are closed: webhooks get in again, not 503 for ever.

    uvicorn counts every open connection against RECEIVER_MAX_CONCURRENCY (20 here) and, before an
    answer, never closed one that sent nothing or half a head.
    """
    held = []
    try:
        for n in range(25):
            sock = socket.create_connection(("127.0.0.1", server.port))
            if n % 2:
                sock.sendall(b"POST /webhooks/uipath HTTP/1.1\r\nHost: x\r\n")  # half a head
            held.append(sock)
        time.sleep(0.3)
        crowded = _status(server, fault("silent-crowded"))
        deadline = time.monotonic() + 10
        later = _status(server, fault("after-silent"))
        while later[0] != 202 and time.monotonic() < deadline:
            time.sleep(0.2)
            later = _status(server, fault("after-silent"))
        half = _read_reply(held[1], timeout=5)
    finally:
        for sock in held:
            sock.close()
    assert 503 == crowded[0]
    assert (202, "accepted") == later
    assert half.startswith(b"HTTP/1.1 408"), half[:200]
    assert b"head_timeout" in half


def test_max_concurrency_is_how_many_are_served_at_once(server: ServerProcess) -> None:
    """RECEIVER_MAX_CONCURRENCY=20: with 19 requests in progress the 20th is served; with 20, the 21st gets 503.

    uvicorn's ``limit_concurrency`` counts the new connection itself, so the same number there serves
    one fewer (and 1 would serve nothing at all)."""

    def stall(tag: str) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", server.port))
        body = fault(tag)
        sock.sendall(_head(server.port, body) + body[:5])
        return sock

    stalled = []
    try:
        stalled += [stall(f"held-{n}") for n in range(19)]
        time.sleep(0.15)
        twentieth = _status(server, fault("twentieth"))
        stalled.append(stall("held-19"))
        time.sleep(0.15)
        twenty_first = _status(server, fault("twenty-first"))
    finally:
        for sock in stalled:
            sock.close()
    assert (202, "accepted") == twentieth
    assert 503 == twenty_first[0]
