"""The common webhook plugins sent on the event loop: no thread, the same requests and outcomes as on a thread.

``receiver.delivery.onloop.install()`` (the application factory calls it) makes a direct send of
an allow-listed apprise plugin run on the event loop (``bridge``), its plain requests exchanged on
the loop's connections (``loop_http``), anything else on a thread, awaited. These tests send through
the real plugins to loopback endpoints and count ``ThreadPoolExecutor.submit`` to tell the paths
apart; the last section fails loudly when an apprise, httptools or greenlet upgrade breaks what the
loop path assumes (docs/performance.md, "Fast paths").
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import inspect
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apprise
import pytest
import requests
import requests_mock
from apprise.plugins.slack import NotifySlack
from support import PLAIN_CALLS, Endpoint, free_port, wait_until

from receiver.delivery import bridge, keepalive, loop_http, onloop, plain_http
from receiver.delivery.notifier import AppriseNotifier
from receiver.http.app import create_app
from receiver.render import Notification
from receiver.settings import Settings

NOTE = Notification(title="Job faulted", body="Process 'Invoices' faulted", severity="failure", body_format="text")


@pytest.fixture(
    params=[pytest.param(("asyncio", {}), id="asyncio"), pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """asyncio's own loop (the tests' and the CLI's) and uvloop (the server's): their transports differ."""
    return request.param


@pytest.fixture
def handoffs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``ThreadPoolExecutor.submit`` from now on (the thread it came from), as hand-offs to a thread."""
    made: list[str] = []
    submit = ThreadPoolExecutor.submit

    def counted(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        made.append(threading.current_thread().name)
        return submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", counted)
    return made


@pytest.fixture
def on_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop path installed for one test (put back as it was afterwards)."""
    monkeypatch.setattr(onloop, "_installed", False)
    onloop.install()


@pytest.fixture
def on_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep-alive installed, the loop path not: every direct send goes to a thread, as before."""
    monkeypatch.setattr(onloop, "_installed", False)
    keepalive.install()


@pytest.fixture
def tls_endpoint(certificate: tuple[Path, Path]) -> Iterator[Endpoint]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    found = Endpoint(tls=context)
    server = found.start()
    yield found
    server.shutdown()
    server.server_close()


@dataclass
class RawEndpoint:
    """A loopback HTTP/1.1 server that records each request's bytes and answers with ``answer(request)`` as is.

    An answer ending the connection is followed by a close. ``hold`` makes each request wait for
    the others before its answer goes out (sends that are all in flight at once).
    """

    answer: Callable[[bytes], bytes] = lambda request: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    hold: threading.Barrier | None = None
    received: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed: int = 0  # connections the client closed

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        chunk = conn.recv(65536)
                    except ConnectionResetError:  # closed by a client that gave up on an answer
                        chunk = b""
                    if not chunk:
                        self.closed += 1
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                request, buffer = head + b"\r\n\r\n" + buffer[:length], buffer[length:]
                self.received.append(request)
                if self.hold is not None:
                    self.hold.wait(10)
                answer = self.answer(request)
                try:
                    conn.sendall(answer)
                except OSError:  # the client gave up on a long answer
                    return
                if b"Connection: close" in answer.split(b"\r\n\r\n")[0]:
                    return

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def raw() -> Iterator[RawEndpoint]:
    found = RawEndpoint()
    yield found
    found.close()


async def loop_call(fn: Callable[[], Any]) -> Any:
    """``fn()`` run as the notifier runs a send on the loop (requests' calls inside go out on the loop)."""
    with ThreadPoolExecutor(1) as executor:
        return await bridge.run(fn, executor=executor)


def thread_call(fn: Callable[[], Any]) -> Any:
    """``fn()`` on a new thread: the thread path (``http.client`` on the thread's own connections)."""
    with ThreadPoolExecutor(1) as executor:
        return executor.submit(fn).result(30)


def failing(status: int, reason: str) -> Callable[[bytes], bytes]:
    body = b'{"error": "nope"}'
    return lambda request: f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


# --- the same requests on the wire --------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
@pytest.mark.parametrize("call", PLAIN_CALLS.values(), ids=PLAIN_CALLS.keys())
async def test_the_loop_writes_the_bytes_the_thread_path_writes(raw: RawEndpoint, call: dict[str, Any]) -> None:
    """Request line, Host, headers in order and body: byte for byte what http.client wrote (tests/test_keepalive.py
    compares that with requests' own)."""
    url = raw.url("/hook?fixed=1")
    threaded = thread_call(lambda: requests.post(url, timeout=5, **call))
    looped = await loop_call(lambda: requests.post(url, timeout=5, **call))
    assert (200, b"ok") == (threaded.status_code, threaded.content) == (looped.status_code, looped.content)
    assert raw.received[0] == raw.received[1]


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
async def test_other_methods_go_out_as_on_the_thread_path(method: str) -> None:
    """Content-Length: 0 where http.client adds it, none for GET and HEAD; a HEAD answer ends at its headers."""
    raw = RawEndpoint(
        answer=lambda request: (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + b"x" * 10 * (not request.startswith(b"HEAD"))
        )
    )
    try:
        threaded = thread_call(lambda: requests.request(method, raw.url(), timeout=5))
        looped = [await loop_call(lambda: requests.request(method, raw.url(), timeout=5)) for _ in range(2)]
    finally:
        raw.close()
    assert raw.received[0] == raw.received[1]
    assert [threaded.content] * 2 == [r.content for r in looped]
    assert 2 == raw.connections  # the thread's one, and the loop's one, reused


# --- apprise's plugins through the loop, no thread -------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_json_sends_on_the_loop_and_reuses_its_connection(endpoint: Endpoint, handoffs: list[str]) -> None:
    """Ten json:// sends: delivered, no hand-off to a thread, one connection."""
    notifier = AppriseNotifier()
    results = [await notifier.send(f"json://127.0.0.1:{endpoint.port}/hook", NOTE, timeout=10) for _ in range(10)]
    assert ["sent"] * 10 == [r.status for r in results]
    assert [] == handoffs
    assert 10 == len(endpoint.requests)
    assert 1 == endpoint.connections


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_slack_sends_on_the_loop(
    endpoint: Endpoint, handoffs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack's webhook (files=None in its call) goes out from the loop, its payload as the plugin built it."""
    monkeypatch.setattr(NotifySlack, "webhook_url", endpoint.url("/services"))
    result = await AppriseNotifier().send("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/#rpa", NOTE, timeout=10)
    assert "sent" == result.status
    assert [] == handoffs
    assert [("POST", "/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7")] == [
        (m, p) for m, p, _ in endpoint.requests
    ]
    assert b"#rpa" in endpoint.bodies[0]


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
@pytest.mark.parametrize("scheme", ["workflows", "jsons"])
async def test_https_sends_on_the_loop(tls_endpoint: Endpoint, handoffs: list[str], scheme: str) -> None:
    """Teams Workflows and jsons:// over TLS (self-signed, verify=no) from the loop, the connection reused."""
    path = "a1b2c3d4e5f6/SiGnAtUrE0123456789abcdef/" if scheme == "workflows" else "hook"
    url = f"{scheme}://127.0.0.1:{tls_endpoint.port}/{path}?verify=no"
    notifier = AppriseNotifier()
    results = [await notifier.send(url, NOTE, timeout=10) for _ in range(3)]
    assert ["sent"] * 3 == [r.status for r in results]
    assert [] == handoffs
    assert 1 == tls_endpoint.connections
    if scheme == "workflows":
        assert tls_endpoint.requests[0][1].startswith("/workflows/a1b2c3d4e5f6/triggers/manual/paths/invoke?")


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_the_certificate_is_checked_as_on_the_thread_path(
    tls_endpoint: Endpoint, certificate: tuple[Path, Path]
) -> None:
    """Not in certifi's bundle: SSLError; trusted through verify=<file>: sent."""
    with pytest.raises(requests.exceptions.SSLError):
        await loop_call(lambda: requests.post(tls_endpoint.url(), data="x", timeout=5))
    answer = await loop_call(lambda: requests.post(tls_endpoint.url(), data="x", timeout=5, verify=str(certificate[0])))
    assert 200 == answer.status_code


# --- connections -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_a_connection_the_endpoint_dropped_while_idle_is_replaced(endpoint: Endpoint) -> None:
    """The server closes after each answer without saying so: every send still succeeds, on a new connection."""
    endpoint.drop_after_each = True
    notifier = AppriseNotifier()
    statuses = []
    for n in range(3):
        statuses.append((await notifier.send(f"json://127.0.0.1:{endpoint.port}/hook", NOTE, timeout=10)).status)
        assert wait_until(lambda n=n: endpoint.finished > n, timeout=5)  # its FIN is on the way
    assert ["sent"] * 3 == statuses
    assert 3 == endpoint.connections


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_a_connection_idle_past_the_limit_is_closed_not_reused(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keepalive, "IDLE_SECONDS", 0.05)
    await loop_call(lambda: requests.post(endpoint.url(), data=b"{}", timeout=5))
    await asyncio.sleep(0.2)
    await loop_call(lambda: requests.post(endpoint.url(), data=b"{}", timeout=5))
    assert 2 == endpoint.connections
    assert wait_until(lambda: endpoint.closed_by_client >= 1, timeout=5)  # closed by us, not left open


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_connection_close_is_honoured(endpoint: Endpoint) -> None:
    endpoint.close_after_each = True
    answers = [await loop_call(lambda: requests.post(endpoint.url(), data=b"{}", timeout=5)) for _ in range(3)]
    assert [200] * 3 == [a.status_code for a in answers]
    assert 3 == endpoint.connections
    assert 0 == loop_http.idle_connections()


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", id="chunked"
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", id="after-100"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhel" + b"lo world", id="content-length"),
    ],
)
async def test_answers_are_read_whole_and_the_connection_reused(answer: bytes) -> None:
    raw = RawEndpoint(answer=lambda request: answer)
    try:
        answers = [await loop_call(lambda: requests.post(raw.url(), data=b"{}", timeout=5)) for _ in range(2)]
    finally:
        raw.close()
    assert [(200, "OK", b"hello world")] * 2 == [(a.status_code, a.reason, a.content) for a in answers]
    assert 1 == raw.connections


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"".join(b"X-%d: y\r\n" % n for n in range(101)), id="101-headers"),
        pytest.param(b"X-Long: " + b"y" * (1_100_000) + b"\r\n", id="a-header-past-1-MiB"),
    ],
)
async def test_an_answer_head_past_its_bounds_fails_as_on_the_thread_path(head: bytes) -> None:
    """Too many header lines, or a head that never ends: a connection error on both paths, nothing held."""
    raw = RawEndpoint(answer=lambda request: b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: 2\r\n\r\nok")
    try:
        with pytest.raises(requests.ConnectionError):
            await loop_call(lambda: requests.post(raw.url(), data=b"{}", timeout=5))
        with pytest.raises(requests.ConnectionError):
            thread_call(lambda: requests.post(raw.url(), data=b"{}", timeout=5))
    finally:
        raw.close()


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_a_body_delimited_by_the_close_is_read_to_the_end() -> None:
    raw = RawEndpoint(answer=lambda request: b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Id: 7\r\n\r\nall of it")
    try:
        answer = await loop_call(lambda: requests.post(raw.url(), data=b"{}", timeout=5))
    finally:
        raw.close()
    assert (200, b"all of it", "7") == (answer.status_code, answer.content, answer.headers["x-id"])


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_a_long_answer_is_kept_only_to_its_bound_and_its_connection_closed(endpoint: Endpoint) -> None:
    endpoint.answer_body = b"x" * (plain_http.ANSWER_BYTES + 100_000)
    answers = [await loop_call(lambda: requests.post(endpoint.url(), data=b"{}", timeout=5)) for _ in range(2)]
    assert [(200, plain_http.ANSWER_BYTES)] * 2 == [(a.status_code, len(a.content)) for a in answers]
    assert 2 == endpoint.connections


# --- failures, as on the thread path ---------------------------------------------------------------


@pytest.mark.anyio
async def test_failures_are_the_thread_path_s(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 500, a 404 and a refused connection: the same SendResult on the loop as on a thread."""
    raw = RawEndpoint(
        answer=lambda request: (
            failing(404, "Not Found")(request)
            if b" /gone" in request
            else failing(500, "Internal Server Error")(request)
        )
    )
    urls = [
        f"json://127.0.0.1:{raw.port}/hook",
        f"json://127.0.0.1:{raw.port}/gone",
        f"json://127.0.0.1:{free_port()}/x",
    ]

    async def outcomes() -> list[tuple[str, str | None, bool]]:
        notifier = AppriseNotifier()
        results = [await notifier.send(url, NOTE, timeout=5) for url in urls]
        return [(r.status, r.reason, r.recoverable) for r in results]

    try:
        monkeypatch.setattr(onloop, "_installed", False)
        keepalive.install()
        threaded = await outcomes()
        onloop.install()
        looped = await outcomes()
    finally:
        raw.close()
    assert threaded == looped
    assert "Failed to send JSON POST notification: Internal server error., error=500." == looped[0][1]
    assert ("failed", False) == (looped[1][0], looped[1][2])
    assert "A Connection error occurred sending JSON notification to 127.0.0.1." == looped[2][1]


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_refused_and_stalled_requests_raise_requests_errors() -> None:
    """Both errors name the endpoint by scheme, host and port: a path or query may hold the channel's token."""
    port = free_port()
    with pytest.raises(requests.ConnectionError, match="could not connect") as refused:
        await loop_call(lambda: requests.post(f"http://127.0.0.1:{port}/hook/T0k3n?key=S3cret", data="x", timeout=5))
    assert f"could not connect to http://127.0.0.1:{port}: " in str(refused.value)
    with socket.socket() as silent:  # accepts, reads, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent_port = silent.getsockname()[1]
        url = f"http://127.0.0.1:{silent_port}/hook/T0k3n?key=S3cret"
        with pytest.raises(requests.ReadTimeout) as stalled:
            await loop_call(lambda: requests.post(url, data="x", timeout=(5, 0.2)))
    assert f"no answer from http://127.0.0.1:{silent_port} in time" == str(stalled.value)
    assert 0 == loop_http.idle_connections()


@pytest.fixture
def stalled() -> Iterator[tuple[int, list[socket.socket]]]:
    """A port that accepts and reads but never answers; the accepted sockets, to see when the client closed."""
    accepted: list[socket.socket] = []
    server = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()
    for conn in accepted:
        conn.close()


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
@pytest.mark.parametrize(
    ("query", "budget", "expected"),
    [pytest.param("?rto=0.3", 5.0, "failed", id="rto"), pytest.param("?rto=30", 0.3, "timeout", id="budget")],
)
async def test_a_stall_ends_as_on_the_thread_path_and_its_connection_is_closed(
    stalled: tuple[int, list[socket.socket]], handoffs: list[str], query: str, budget: float, expected: str
) -> None:
    """rto first: failed with apprise's reason; the budget first: timeout, the send cancelled where it waited."""
    port, accepted = stalled
    result = await AppriseNotifier().send(f"json://127.0.0.1:{port}/hook{query}", NOTE, timeout=budget)
    assert (expected, True) == (result.status, result.recoverable)
    assert result.elapsed < 5
    assert [] == handoffs

    def closed_by_client() -> bool:
        assert wait_until(lambda: len(accepted) == 1, timeout=5)
        accepted[0].settimeout(5)
        while accepted[0].recv(65536):  # the request, then the end: the client closed its side
            pass
        return True

    assert await asyncio.to_thread(closed_by_client)  # in a thread: the loop must run to close it
    assert 0 == loop_http.idle_connections()


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_concurrent_sends_on_one_loop_each_get_their_own_failure_lines() -> None:
    """Two sends in flight at once on the loop's thread: each reason holds only its own plugin's lines."""
    raw = RawEndpoint(
        answer=lambda request: (
            failing(503, "Service Unavailable")(request) if b" /a" in request else failing(404, "Not Found")(request)
        ),
        hold=threading.Barrier(2),  # neither is answered before both are out
    )
    notifier = AppriseNotifier()
    try:
        first, second = await asyncio.gather(
            notifier.send(f"json://127.0.0.1:{raw.port}/a", NOTE, timeout=10),
            notifier.send(f"xml://127.0.0.1:{raw.port}/b", NOTE, timeout=10),
        )
    finally:
        raw.close()
    assert "Failed to send JSON POST notification: Servers are overloaded., error=503." == first.reason
    assert "Failed to send XML POST notification: Page not found., error=404." == second.reason


# --- what the loop path does not implement goes to a thread --------------------------------------------


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_a_proxied_host_is_sent_by_a_thread(
    endpoint: Endpoint, handoffs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY set for the host: plain_http declines, a thread sends it through the proxy, the loop awaits."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{endpoint.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    host = f"alerts-{endpoint.port}.example.invalid"  # new to every session: they remember the environment per host
    result = await AppriseNotifier().send(f"json://{host}/hook", NOTE, timeout=10)
    assert "sent" == result.status
    assert [f"http://{host}/hook"] == [path for _, path, _ in endpoint.requests]
    assert 1 == len(handoffs)


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_a_mocked_adapter_is_sent_by_a_thread(handoffs: list[str]) -> None:
    with requests_mock.Mocker() as mocked:
        mocked.post("http://hooks.example.invalid/hook", status_code=200, text="ok")
        result = await AppriseNotifier().send("json://hooks.example.invalid/hook", NOTE, timeout=10)
    assert "sent" == result.status
    assert 1 == mocked.call_count
    assert 1 == len(handoffs)


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_a_redirect_is_followed_by_a_thread(endpoint: Endpoint, handoffs: list[str]) -> None:
    endpoint.redirect["/old"] = (307, "/new")
    answer = await loop_call(lambda: requests.post(endpoint.url("/old"), data=b"payload", timeout=5))
    assert (200, [307]) == (answer.status_code, [r.status_code for r in answer.history])
    assert [("POST", "/old"), ("POST", "/new")] == [(m, p) for m, p, _ in endpoint.requests]
    assert 1 == len(handoffs)


@pytest.mark.usefixtures("on_loop")
@pytest.mark.parametrize(
    "url",
    [
        "discord://1234567890/AbCdEfGhIjKlMnOpQrStUvWxYz",
        "mailto://user:Sm7pPassw0rdSecret@example.com",
        "log://",
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/#rpa?template=file:///tmp/card.json",
    ],
)
def test_plugins_that_sleep_or_use_other_clients_keep_the_thread(url: str) -> None:
    """Discord sleeps out rate limits, e-mail speaks SMTP, log:// is receiver's own, a template is a file read."""
    plugin = apprise.Apprise.instantiate(url)
    assert plugin is not None
    assert not onloop.runs_on_loop(plugin)


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_a_thread_plugin_is_sent_by_a_thread(handoffs: list[str]) -> None:
    result = await AppriseNotifier().send("log://", NOTE, timeout=5)
    assert "sent" == result.status
    assert 1 == len(handoffs)


@pytest.mark.anyio
@pytest.mark.usefixtures("on_thread")
async def test_without_install_every_send_goes_to_a_thread(endpoint: Endpoint, handoffs: list[str]) -> None:
    result = await AppriseNotifier().send(f"json://127.0.0.1:{endpoint.port}/hook", NOTE, timeout=5)
    assert "sent" == result.status
    assert 1 == len(handoffs)


# --- what the loop path leans on: loud when an upgrade breaks it --------------------------------------


def test_the_app_factory_installs_the_loop_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notifier installs nothing; building the application does."""
    monkeypatch.setattr(onloop, "_installed", False)
    AppriseNotifier()
    assert not onloop.installed()
    create_app(Settings(database_url=f"sqlite:///{tmp_path}/r.db", webhook_secret="s" * 32))
    assert onloop.installed()


_REQUESTS_CALLS = frozenset({"request", "get", "post", "put", "patch", "delete", "head"})


@pytest.mark.parametrize("plugin", sorted(onloop.ON_LOOP, key=lambda p: p.__name__), ids=lambda p: p.__name__)
def test_an_allow_listed_plugin_does_its_io_through_requests_only_and_never_sleeps(plugin: type[Any]) -> None:
    """Its module sends with requests.post & co. and nothing else that waits; an apprise that changes it fails here."""
    module = inspect.getmodule(plugin)
    assert module is not None
    tree = ast.parse(inspect.getsource(module))
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    sends = [
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "requests"
    ]
    assert set(sends) & _REQUESTS_CALLS, "no longer sends with requests.post & co."
    assert not {"Session", "session"} & set(sends), "keeps its own session: keep-alive's patch would not see it"
    assert not [c for c in calls if c.endswith("sleep")], "sleeps: would stop the event loop"
    throttles = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("throttle")]
    assert not [n for n in throttles if n.keywords or n.args], "throttle(wait=...) sleeps"
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
    assert not imported & {"socket", "smtplib", "http", "urllib3", "httpx", "subprocess", "asyncio"}


def test_the_notifier_s_asset_keeps_apprise_s_store_in_memory() -> None:
    """Mattermost and Opsgenie remember lookups in apprise's store: in memory, no disk, without a storage path."""
    plugin = apprise.Apprise.instantiate("opsgenie://apikey", asset=AppriseNotifier()._asset)
    assert plugin is not None
    assert plugin.asset.storage_path is None
    assert onloop.runs_on_loop(plugin) == onloop.installed()


@pytest.mark.anyio
async def test_calls_interleaved_on_one_thread_keep_their_own_context_variables() -> None:
    """greenlet gives each call its own contextvars context: what one sets, the other never sees."""
    seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="caller")
    both_waiting = asyncio.Barrier(3)

    def call(name: str) -> tuple[str, str]:
        before = seen.get()
        seen.set(name)
        bridge.await_only(both_waiting.wait())
        return before, seen.get()

    with ThreadPoolExecutor(1) as executor:
        first = asyncio.ensure_future(bridge.run(call, "first", executor=executor))
        second = asyncio.ensure_future(bridge.run(call, "second", executor=executor))
        await both_waiting.wait()
        results = await asyncio.gather(first, second)
    assert [("caller", "first"), ("caller", "second")] == results
    assert "caller" == seen.get()


@pytest.mark.anyio
async def test_a_cancelled_call_unwinds_where_it_waited() -> None:
    unwound = []

    def call() -> None:
        try:
            bridge.await_only(asyncio.sleep(30))
        finally:
            unwound.append(True)

    with ThreadPoolExecutor(1) as executor, pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await bridge.run(call, executor=executor)
    assert [True] == unwound


def test_await_only_outside_a_call_is_refused() -> None:
    coroutine = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match=r"bridge\.run"):
        bridge.await_only(coroutine)
    coroutine.close()


def test_httptools_parses_answers_as_the_loop_path_reads_them() -> None:
    """Status and reason, headers, keep-alive known at message end, a chunked body joined."""
    events: list[Any] = []

    class Recorder:
        def on_status(self, reason: bytes) -> None:
            events.append(reason)

        def on_header(self, name: bytes, value: bytes) -> None:
            events.append((name, value))

        def on_body(self, body: bytes) -> None:
            events.append(body)

        def on_message_complete(self) -> None:
            events.append(parser.should_keep_alive())

    import httptools

    parser = httptools.HttpResponseParser(Recorder())
    parser.feed_data(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    assert [b"Created", (b"Transfer-Encoding", b"chunked"), b"ok", True] == events
    assert 201 == parser.get_status_code()


def test_a_plain_slack_call_is_prepared_for_the_plain_paths() -> None:
    """Slack passes files=None (and the like): still a plain request, not requests' machinery."""
    kwargs = {
        "data": "{}",
        "headers": {},
        "files": None,
        "verify": True,
        "timeout": (4, 10),
        "allow_redirects": False,
        "params": None,
    }
    assert (
        plain_http.prepare(requests.Session(), "POST", "https://hooks.example.invalid/services/x", kwargs) is not None
    )
    assert (
        plain_http.prepare(
            requests.Session(), "POST", "https://hooks.example.invalid/x", {**kwargs, "files": {"f": b"x"}}
        )
        is None
    )


@pytest.mark.anyio
@pytest.mark.usefixtures("on_loop")
async def test_the_first_sends_on_a_fresh_loop_thread_may_interleave(endpoint: Endpoint) -> None:
    """Several sends start before the loop thread's first request ended: all delivered."""
    keepalive._local.__dict__.clear()  # no session on this thread yet
    notifier = AppriseNotifier()
    url = f"json://127.0.0.1:{endpoint.port}/hook"
    results = await asyncio.gather(*(notifier.send(url, NOTE, timeout=10) for _ in range(4)))
    assert ["sent"] * 4 == [r.status for r in results]
