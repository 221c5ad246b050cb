"""Admin access against a real ``receiver serve``: blank tokens, trickled form bodies, a trusted proxy.

Raw sockets where a client must misbehave on purpose (a body sent a byte at a time) or send
forwarded headers; everything on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from support import ServerProcess

pytestmark = pytest.mark.slow

ADMIN = "server-admin-token-42"
RULES = "channels:\n  log: {url: 'log://'}\nrules:\n  - {name: all, match: {}, notify: [log]}\n"


def start(tmp_path: Path, **env: str) -> ServerProcess:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    base = {"RECEIVER_WEBHOOK_SECRET": "server-secret", "RECEIVER_BODY_TIMEOUT_SECONDS": "1"}
    return ServerProcess(rules=rules, database=tmp_path / "r.db", env={**base, **env}).start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = start(tmp_path, RECEIVER_ADMIN_TOKEN=ADMIN)
    yield process
    process.stop()


def request(
    server: ServerProcess, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, body=body, headers=dict(headers or {}))
    reply = conn.getresponse()
    reply.read()
    conn.close()
    return reply


def healthz_seconds(server: ServerProcess) -> float:
    """How long /healthz took to answer 200 (at most 1 s: past that it counts as not answered)."""
    started = time.monotonic()
    with urllib.request.urlopen(f"{server.base}/healthz", timeout=1) as reply:  # noqa: S310 - loopback
        assert 200 == reply.status
    return time.monotonic() - started


def trickle(server: ServerProcess, head: bytes, body: bytes) -> tuple[bytes, float, list[float]]:
    """Send ``head``, then ``body`` one byte every 0.2 s (8 s at most) until the server answers and closes.

    Returns what came back, the seconds until the server closed its side (or the 8 s ran out), and
    how long /healthz took at each step.
    """
    health: list[float] = []
    reply = b""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head)
        started = time.monotonic()
        sock.settimeout(0.2)
        for byte in body[:40]:
            health.append(healthz_seconds(server))
            try:
                sock.sendall(bytes([byte]))
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            reply += chunk
        return reply, time.monotonic() - started, health


def form_head(server: ServerProcess, path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        pytest.param("/ui/login", "", id="ui-login"),
        pytest.param("/api/silences", f"Authorization: Bearer {ADMIN}\r\n", id="api-silences"),
    ],
)
def test_a_trickled_body_is_cut_at_the_deadline(server: ServerProcess, path: str, extra: str) -> None:
    """A form or JSON body sent a byte at a time gets 408 after the 1 s deadline; /healthz answers throughout."""
    body = b"token=" + b"a" * 194
    head = form_head(server, path, len(body)).replace(b"\r\n\r\n", f"\r\n{extra}\r\n".encode())
    reply, closed_after, health = trickle(server, head, body)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b'"error":"body_timeout"' in reply
    assert closed_after < 4, f"the connection stayed {closed_after:.1f} s for a 1 s deadline"
    assert max(health) < 1.0
    assert 200 == request(server, "GET", "/healthz").status


def test_a_refusal_that_leaves_the_body_unread_ends_the_connection(server: ServerProcess) -> None:
    """POST /api/rules/reload without a token, body still trickling: 401, then the server closes its side."""
    body = b"x" * 200
    head = form_head(server, "/api/rules/reload", len(body))
    reply, closed_after, health = trickle(server, head, body)
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
    assert b"connection: close" in reply.lower()
    assert closed_after < 4, f"the trickling client kept its connection {closed_after:.1f} s after its 401"
    assert max(health) < 1.0


@pytest.mark.parametrize("blank", [pytest.param("", id="empty"), pytest.param("  ", id="spaces")])
def test_blank_tokens_open_nothing(tmp_path: Path, blank: str) -> None:
    """RECEIVER_ADMIN_TOKEN and RECEIVER_LOGS_TOKEN set but blank (compose's unset value): every route stays off."""
    server = start(tmp_path, RECEIVER_ADMIN_TOKEN=blank, RECEIVER_LOGS_TOKEN=blank)
    try:
        empty_bearer = {"Authorization": "Bearer ", "Content-Type": "application/json"}
        api = request(server, "GET", "/api/rules", headers=empty_bearer)
        form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": server.base}
        login = request(server, "POST", "/ui/login", b"token=&next=/ui", form)
        logs = request(server, "POST", "/logs/uipath", b'{"level":"Error"}', empty_bearer)
    finally:
        server.stop()
    assert (404, 404, 404) == (api.status, login.status, logs.status)
    assert login.getheader("set-cookie") is None


def test_behind_a_trusted_proxy_https_and_the_client_address_are_believed(tmp_path: Path) -> None:
    """A trusted proxy's X-Forwarded-Proto makes the cookie Secure and adds HSTS; failures count per X-Forwarded-For."""
    env = {"RECEIVER_TRUSTED_PROXIES": "127.0.0.1", "RECEIVER_AUTH_FAILURES_PER_MINUTE": "2"}
    server = start(tmp_path, RECEIVER_ADMIN_TOKEN=ADMIN, **env)
    try:
        forwarded = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Forwarded-Proto": "https",
            "Origin": f"https://127.0.0.1:{server.port}",
        }
        login = request(server, "POST", "/ui/login", f"token={ADMIN}".encode(), forwarded)
        attacker = {**forwarded, "X-Forwarded-For": "203.0.113.9"}
        wrong = [request(server, "POST", "/ui/login", b"token=guess", attacker).status for _ in range(3)]
        other = request(server, "POST", "/ui/login", b"token=guess", {**forwarded, "X-Forwarded-For": "203.0.113.10"})
    finally:
        server.stop()
    assert 303 == login.status
    assert "secure" in (login.getheader("set-cookie") or "").lower()
    assert "max-age=31536000" == login.getheader("strict-transport-security")
    assert [401, 401, 429] == wrong
    assert 401 == other.status


def test_without_trusted_proxies_forwarded_headers_are_ignored(server: ServerProcess) -> None:
    """By default no proxy is trusted: X-Forwarded-Proto does not make a plain-http answer https."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Forwarded-Proto": "https",
        "Origin": server.base,
    }
    login = request(server, "POST", "/ui/login", f"token={ADMIN}".encode(), headers)
    assert 303 == login.status
    assert "secure" not in (login.getheader("set-cookie") or "").lower()
    assert login.getheader("strict-transport-security") is None
