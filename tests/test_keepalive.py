"""receiver.delivery.keepalive: apprise's HTTP sends reuse connections, and nothing else about a request changes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

import pytest
import requests
from support import wait_until

from receiver.delivery import keepalive
from receiver.delivery.notifier import AppriseNotifier
from receiver.render import Notification

_T = TypeVar("_T")


@dataclass
class Endpoint:
    """A keep-alive HTTP/1.1 server on loopback that counts connections and records requests."""

    answer_headers: dict[str, str] = field(default_factory=dict)
    close_after_each: bool = False
    connections: int = 0
    closed_by_client: int = 0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    def start(self) -> ThreadingHTTPServer:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                endpoint.connections += 1

            def finish(self) -> None:
                super().finish()
                endpoint.closed_by_client += not self.close_connection_by_us

            close_connection_by_us = False

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                endpoint.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                for name, value in endpoint.answer_headers.items():
                    self.send_header(name, value)
                if endpoint.close_after_each:
                    self.send_header("Connection", "close")
                    self.close_connection_by_us = True
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = _answer
            do_GET = _answer

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()  # quick to shut down
        return server

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    found = Endpoint()
    server = found.start()
    yield found
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _installed() -> None:
    keepalive.install()


def in_new_thread(work: Callable[[], _T]) -> _T:
    """Run ``work`` on a thread of its own: a thread with no session yet, as apprise's pool threads start."""
    result: list[_T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]
    return result[0]


def test_requests_from_one_thread_share_one_connection(endpoint: Endpoint) -> None:
    statuses = in_new_thread(
        lambda: [requests.post(endpoint.url(), data=b"{}", timeout=5).status_code for _ in range(5)]
    )
    assert statuses == [200] * 5
    assert len(endpoint.requests) == 5
    assert endpoint.connections == 1


def test_every_request_function_goes_through_the_shared_session(endpoint: Endpoint) -> None:
    def calls() -> list[int]:
        return [
            requests.get(endpoint.url(), timeout=5).status_code,
            requests.post(endpoint.url(), json={"a": 1}, timeout=5).status_code,
            requests.request("POST", endpoint.url(), data=b"x", timeout=5).status_code,
        ]

    assert in_new_thread(calls) == [200, 200, 200]
    assert endpoint.connections == 1
    assert keepalive.installed()


def test_a_cookie_the_endpoint_sets_is_never_sent_back(endpoint: Endpoint) -> None:
    endpoint.answer_headers["Set-Cookie"] = "affinity=abc; Path=/"
    in_new_thread(lambda: [requests.post(endpoint.url(), data=b"{}", timeout=5) for _ in range(3)])
    assert endpoint.connections == 1  # the same session, so a kept jar would have sent it
    assert [headers.get("cookie") for _, _, headers in endpoint.requests] == [None, None, None]


def test_a_connection_idle_past_the_limit_is_closed_and_not_reused(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keepalive, "IDLE_SECONDS", 0.05)

    def two_apart() -> None:
        requests.post(endpoint.url(), data=b"{}", timeout=5)
        time.sleep(0.2)
        requests.post(endpoint.url(), data=b"{}", timeout=5)

    in_new_thread(two_apart)
    assert endpoint.connections == 2
    # The idle one was closed by us, not left open for the garbage collector or the server.
    assert wait_until(lambda: endpoint.closed_by_client >= 1, timeout=5)


def test_a_connection_the_endpoint_closes_is_replaced_without_a_failure(endpoint: Endpoint) -> None:
    endpoint.close_after_each = True
    statuses = in_new_thread(
        lambda: [requests.post(endpoint.url(), data=b"{}", timeout=5).status_code for _ in range(3)]
    )
    assert statuses == [200, 200, 200]
    assert endpoint.connections == 3


def test_the_environment_s_proxy_applies_per_host(endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY and NO_PROXY still decide per host, with what the environment gives remembered."""
    proxy = Endpoint()
    proxy_server = proxy.start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")

        def calls() -> None:
            for _ in range(2):
                requests.post(endpoint.url("/direct"), data=b"{}", timeout=5)
                requests.post("http://alerts.example.invalid/via-proxy", data=b"{}", timeout=5)

        in_new_thread(calls)
    finally:
        proxy_server.shutdown()
        proxy_server.server_close()
    assert [path for _, path, _ in endpoint.requests] == ["/direct", "/direct"]
    # A proxy gets the absolute URL of the real target.
    assert [path for _, path, _ in proxy.requests] == ["http://alerts.example.invalid/via-proxy"] * 2


@pytest.mark.anyio
async def test_apprise_sends_reuse_connections(endpoint: Endpoint) -> None:
    notifier = AppriseNotifier()
    assert keepalive.installed()
    url = f"json://127.0.0.1:{endpoint.port}/hook"
    note = Notification(title="t", body="b", severity="failure", body_format="text")
    results = [await notifier.send(url, note, timeout=10) for _ in range(12)]
    assert [r.status for r in results] == ["sent"] * 12
    assert len(endpoint.requests) == 12
    # apprise sends from a small pool of threads, each with its own connection: far fewer than 12.
    assert endpoint.connections <= 6


def _post(endpoint: Endpoint) -> int:
    return requests.post(endpoint.url(), data=b"{}", timeout=5).status_code
