"""receiver.delivery.keepalive: apprise's HTTP sends reuse connections, and nothing else about a request changes."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from support import PLAIN_CALLS, Endpoint, free_port, wait_until

from receiver.delivery import keepalive, plain_http
from receiver.delivery.notifier import AppriseNotifier
from receiver.render import Notification

_T = TypeVar("_T")


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


# --- the plain path: what apprise's webhook plugins send goes out on http.client ----------------


@pytest.mark.parametrize("call", PLAIN_CALLS.values(), ids=PLAIN_CALLS.keys())
def test_the_plain_path_sends_what_requests_sends(endpoint: Endpoint, call: dict[str, Any]) -> None:
    """Method, path, query, headers (but Accept-Encoding) and body arrive as requests itself sends them."""
    url = endpoint.url("/hook?fixed=1")
    with requests.Session() as own:  # requests' own path, not the patched functions
        reference = own.request("POST", url, timeout=5, **call)
    session, connections = requests.Session(), plain_http.Connections()
    ours = plain_http.send(session, connections, "POST", url, {"timeout": 5, **call})
    connections.close()
    assert ours is not None  # it took the plain path
    assert (reference.status_code, reference.content) == (ours.status_code, ours.content) == (200, b"ok")
    assert ours.headers["content-length"] == "2"
    (method, path, headers), (our_method, our_path, our_headers) = endpoint.requests
    assert (our_method, our_path) == (method, path)
    assert {k: v for k, v in our_headers.items() if k != "accept-encoding"} == {
        k: v for k, v in headers.items() if k != "accept-encoding"
    }
    assert our_headers["accept-encoding"] == "identity"
    assert endpoint.bodies[1] == endpoint.bodies[0]


def test_what_the_plain_path_does_not_implement_goes_through_requests(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    session, connections = requests.Session(), plain_http.Connections()
    url = endpoint.url()
    for odd in (
        {"files": {"f": b"x"}},
        {"stream": True},
        {"cert": str(tmp_path / "client.pem")},
        {"cookies": {"a": "b"}},
        {"proxies": {"http": "http://127.0.0.1:9"}},
        {"timeout": object()},
        {"data": iter([b"chunk"])},
    ):
        assert plain_http.send(session, connections, "POST", url, odd) is None, odd
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert plain_http.send(requests.Session(), connections, "POST", url, {"data": "x"}) is None
    assert endpoint.requests == []  # nothing was sent by the calls it declined


@pytest.mark.parametrize(
    ("status", "method_after"), [(307, "POST"), (308, "POST"), (302, "GET"), (303, "GET")], ids=str
)
def test_a_redirect_is_followed_as_requests_follows_it(endpoint: Endpoint, status: int, method_after: str) -> None:
    endpoint.redirect["/old"] = (status, "/new")
    answer = in_new_thread(lambda: requests.post(endpoint.url("/old"), data=b"payload", timeout=5))
    assert answer.status_code == 200
    assert [r.status_code for r in answer.history] == [status]
    assert [(m, p) for m, p, _ in endpoint.requests] == [("POST", "/old"), (method_after, "/new")]
    assert endpoint.bodies == [b"payload", b"payload" if method_after == "POST" else b""]


def test_a_connection_the_endpoint_drops_without_a_word_is_replaced(endpoint: Endpoint) -> None:
    endpoint.drop_after_each = True

    def three() -> list[int]:
        statuses = []
        for n in range(3):
            statuses.append(requests.post(endpoint.url(), data=b"{}", timeout=5).status_code)
            assert wait_until(lambda n=n: endpoint.finished > n, timeout=5)  # the server closed its end
        return statuses

    assert in_new_thread(three) == [200, 200, 200]
    assert endpoint.connections == 3


def test_failures_are_requests_exceptions() -> None:
    """apprise's plugins catch requests.RequestException and log it as the send's failure reason."""
    with pytest.raises(requests.ConnectionError, match="could not connect"):
        in_new_thread(lambda: requests.post(f"http://127.0.0.1:{free_port()}/hook", data="x", timeout=5))
    with socket.socket() as silent:  # accepts, reads, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        with pytest.raises(requests.ReadTimeout):
            in_new_thread(lambda: requests.post(url, data="x", timeout=(5, 0.2)))


def test_https_checks_the_certificate_as_requests_does(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    tls = Endpoint(tls=context)
    server = tls.start()
    try:
        with pytest.raises(requests.exceptions.SSLError):  # self-signed: not in certifi's bundle
            in_new_thread(lambda: requests.post(tls.url(), data="x", timeout=5))
        trusted = in_new_thread(
            lambda: [requests.post(tls.url(), data="x", timeout=5, verify=str(cert)) for _ in range(2)]
        )
        unchecked = in_new_thread(lambda: requests.post(tls.url(), data="x", timeout=5, verify=False))  # noqa: S501
    finally:
        server.shutdown()
        server.server_close()
    assert [r.status_code for r in trusted] == [200, 200]
    assert unchecked.status_code == 200
    assert (
        tls.connections == 2
    )  # one kept for the two trusted sends, one unchecked (the refused one never got a handler)


def test_a_long_answer_is_kept_only_to_its_bound_and_its_connection_not_reused(endpoint: Endpoint) -> None:
    endpoint.answer_body = b"x" * (plain_http.ANSWER_BYTES + 100_000)

    def two() -> list[requests.Response]:
        return [requests.post(endpoint.url(), data=b"{}", timeout=5) for _ in range(2)]

    answers = in_new_thread(two)
    assert [(r.status_code, len(r.content)) for r in answers] == [(200, plain_http.ANSWER_BYTES)] * 2
    assert endpoint.connections == 2  # the unread rest was not left on a connection to reuse
