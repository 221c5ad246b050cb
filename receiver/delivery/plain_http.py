"""apprise's plain HTTP requests, sent on kept-alive ``http.client`` connections instead of through requests.

apprise's webhook plugins (json://, Slack, Teams, Discord, ...) build each request plainly: a
method, a URL, headers, a str/bytes or JSON body, maybe basic auth and query parameters. requests
spends ~0.3 ms of CPU per call around that (preparing, merging settings, hooks, two cookie jars,
a redirect generator, urllib3's pool and retry objects), about as much as the rest of receiver's
work for an event (docs/performance.md, "Fast paths"). ``send()`` prepares the request with
requests' own ``PreparedRequest`` steps (URL quoting and IDNA, parameters, body encoding,
Content-Length, basic auth), writes it on this thread's open connection with ``http.client``,
and returns the ``requests.Response`` the plugin reads (status, reason, headers, content).

Anything else takes requests' path (``send()`` returns None before sending anything): a proxy the
environment sets for the host, a client certificate, files or a streamed body, cookies, hooks,
``stream=True``, a timeout that is not a number or a pair. A redirect answer is followed by
requests (``Session.resolve_redirects``), as ``requests.post`` would. Errors are requests'
exception types (``ConnectTimeout``, ``ReadTimeout``, ``SSLError``, ``ConnectionError``), which
the plugins catch and report.

Differences on the wire, on purpose: ``Accept-Encoding: identity`` (a compressed answer would
need decoding, and the plugins read a few bytes of it at most).
"""

from __future__ import annotations

import http.client
import importlib.metadata
import os.path
import socket
import ssl
import time
import weakref
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import certifi
import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, select_proxy
from urllib3 import HTTPHeaderDict
from urllib3.util.wait import wait_for_read

__all__ = ["ANSWER_BYTES", "Connections", "send"]

_PLAIN_ARGUMENTS: Final = frozenset(
    {"params", "data", "json", "headers", "auth", "verify", "timeout", "allow_redirects"}
)
"""The keyword arguments of ``requests.request`` this path implements; any other sends through requests."""

ANSWER_BYTES: Final = 1 << 20
"""The most of an answer's body kept (the plugins read a status, an id or an error from it); past it the
connection is closed instead of read to its end."""

_URLLIB3_AGENT: Final = f"python-urllib3/{importlib.metadata.version('urllib3')}"

_Key = tuple[str, str, int, bool | str]


class Connections:
    """One thread's open connections, by scheme, host, port and certificate check. Not thread-safe."""

    def __init__(self) -> None:
        self._open: dict[_Key, http.client.HTTPConnection] = {}
        # A thread that ends drops its session: its sockets are closed then, not left to warn in the collector.
        weakref.finalize(self, _close_all, self._open)

    def take(self, key: _Key) -> http.client.HTTPConnection | None:
        """The open connection for ``key``, removed from the cache while it is used; None if none is usable."""
        conn = self._open.pop(key, None)
        if conn is not None and (conn.sock is None or wait_for_read(conn.sock, timeout=0.0)):
            # Readable while no request is out: the server closed it (or broke the protocol).
            conn.close()
            return None
        return conn

    def give_back(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        self._open[key] = conn

    def close(self) -> None:
        _close_all(self._open)

    def __len__(self) -> int:
        return len(self._open)


def _close_all(connections: dict[_Key, http.client.HTTPConnection]) -> None:
    for conn in connections.values():
        conn.close()
    connections.clear()


_contexts: dict[bool | str, ssl.SSLContext] = {}


def _tls_context(verify: bool | str) -> ssl.SSLContext:
    """A TLS context per certificate check (requests' rules: True = certifi's bundle, a path = that bundle)."""
    context = _contexts.get(verify)
    if context is None:
        if verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif verify is True:
            context = ssl.create_default_context(cafile=certifi.where())
        else:
            context = ssl.create_default_context(
                cafile=None if os.path.isdir(verify) else verify, capath=verify if os.path.isdir(verify) else None
            )
        context.set_alpn_protocols(["http/1.1"])
        _contexts[verify] = context
    return context


def _seconds(value: Any) -> bool:
    return value is None or isinstance(value, int | float)


def _timeouts(timeout: Any) -> tuple[float | None, float | None] | None:
    if timeout is None or isinstance(timeout, int | float):
        return timeout, timeout
    if (
        isinstance(timeout, tuple)
        and len(timeout) == 2
        and all(t is None or isinstance(t, int | float) for t in timeout)
    ):
        return timeout[0], timeout[1]
    return None  # urllib3's Timeout object, or anything else: requests' path


def send(
    session: requests.Session, connections: Connections, method: str, url: Any, kwargs: dict[str, Any]
) -> requests.Response | None:
    """Send ``requests.request(method, url, **kwargs)`` on ``connections``; None when requests must send it.

    ``session`` gives what requests would merge in: its default headers, the environment's
    proxies and CA bundle (``merge_environment_settings``), ``.netrc`` credentials.
    """
    if not kwargs.keys() <= _PLAIN_ARGUMENTS or not isinstance(url, str):
        return None
    timeouts = _timeouts(kwargs.get("timeout"))
    auth = kwargs.get("auth")
    if timeouts is None or not (auth is None or (isinstance(auth, tuple) and len(auth) == 2)):
        return None
    if session.auth is not None or session.cookies or session.hooks["response"] or session.cert is not None:
        return None
    prepared = PreparedRequest()
    prepared.prepare_method(method)
    prepared.prepare_url(url, kwargs.get("params"))
    assert prepared.url is not None  # noqa: S101 - prepare_url set it, or raised
    if not prepared.url.startswith(("http://", "https://")) or not _stock_adapter(session, prepared.url):
        return None
    settings = session.merge_environment_settings(prepared.url, {}, None, kwargs.get("verify"), None)
    if settings["cert"] is not None or select_proxy(prepared.url, settings["proxies"]):
        return None
    headers = CaseInsensitiveDict(session.headers)
    for name, value in (kwargs.get("headers") or {}).items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    headers["Accept-Encoding"] = "identity"
    headers.setdefault("User-Agent", _URLLIB3_AGENT)  # urllib3 adds it when a caller removed requests'
    prepared.prepare_headers(headers)
    prepared.prepare_body(kwargs.get("data"), None, kwargs.get("json"))
    if not isinstance(prepared.body, str | bytes | None):
        return None  # a stream or a file: requests' path
    if auth is None and session.trust_env:
        auth = _netrc_auth(session, prepared.url)
    prepared.prepare_auth(auth, prepared.url)
    prepared.prepare_cookies(requests.cookies.RequestsCookieJar())
    prepared.prepare_hooks({})
    response = _exchange(connections, prepared, settings["verify"], timeouts)
    if kwargs.get("allow_redirects", True) and response.is_redirect:
        # Rare for a webhook: followed by requests, exactly as Session.send does it.
        history = list(
            session.resolve_redirects(
                response,
                prepared,
                stream=False,
                timeout=kwargs.get("timeout"),
                verify=settings["verify"],
                cert=None,
                proxies=settings["proxies"],
            )
        )
        if history:
            history.insert(0, response)
            response = history.pop()
            response.history = history
    return response


_STOCK_SENDS: Final = (requests.Session.send, HTTPAdapter.send)


def _stock_adapter(session: requests.Session, url: str) -> bool:
    """Whether requests would send through its own HTTPAdapter (one mounted or patched, as by a mock, wins)."""
    adapter = session.get_adapter(url)
    stock = (requests.Session.send, HTTPAdapter.send) == _STOCK_SENDS
    return stock and type(adapter) is HTTPAdapter and "send" not in vars(adapter) and "send" not in vars(session)


def _netrc_auth(session: requests.Session, url: str) -> tuple[str, str] | None:
    lookup = getattr(session, "netrc_auth", None)
    return lookup(url) if lookup is not None else requests.utils.get_netrc_auth(url)


def _exchange(
    connections: Connections, prepared: PreparedRequest, verify: bool | str, timeouts: tuple[float | None, float | None]
) -> requests.Response:
    """Write the request on an open connection (or a new one) and read the whole answer."""
    parts = urlsplit(prepared.url or "")
    scheme, host = parts.scheme, parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    key: _Key = (scheme, host, port, verify if scheme == "https" else True)
    connect_timeout, read_timeout = timeouts
    conn = connections.take(key)
    started = time.perf_counter()
    if conn is None:
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=_tls_context(verify))
        else:
            conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        try:
            conn.connect()
        except Exception as exc:
            conn.close()
            raise _connect_error(exc, prepared) from exc
    try:
        assert conn.sock is not None  # noqa: S101 - connected above or kept open
        conn.sock.settimeout(read_timeout)
        body = prepared.body.encode("utf-8") if isinstance(prepared.body, str) else prepared.body  # as requests does
        assert body is None or isinstance(body, bytes)  # noqa: S101 - send() let only these through
        conn.request(prepared.method or "GET", prepared.path_url, body=body, headers=dict(prepared.headers))
        answer = conn.getresponse()
        content = answer.read(ANSWER_BYTES + 1)  # an endpoint's answer is not ours to hold whole
    except BaseException as exc:
        conn.close()  # half a request or answer on it: never reused
        if isinstance(exc, Exception):
            raise _exchange_error(exc, prepared) from exc
        raise
    if answer.will_close or not answer.isclosed():  # closing, or the rest of a long answer still on it
        conn.close()
    else:
        connections.give_back(key, conn)
    content = content[:ANSWER_BYTES]
    response = requests.Response()
    response.status_code = answer.status
    response.reason = answer.reason
    response.headers = CaseInsensitiveDict(HTTPHeaderDict(answer.getheaders()))
    response.encoding = get_encoding_from_headers(response.headers)
    response.url = prepared.url or ""
    response.request = prepared
    response._content = content  # read whole, as requests does without stream=True
    response._content_consumed = True
    response.elapsed = timedelta(seconds=time.perf_counter() - started)
    return response


def _connect_error(exc: Exception, prepared: PreparedRequest) -> Exception:
    if isinstance(exc, TimeoutError | socket.timeout):
        return requests.exceptions.ConnectTimeout(f"connection to {prepared.url} timed out", request=prepared)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return requests.exceptions.SSLError(f"TLS with {prepared.url} failed: {exc}", request=prepared)
    if isinstance(exc, OSError):
        return requests.exceptions.ConnectionError(f"could not connect to {prepared.url}: {exc}", request=prepared)
    return exc


def _exchange_error(exc: Exception, prepared: PreparedRequest) -> Exception:
    if isinstance(exc, TimeoutError | socket.timeout):
        return requests.exceptions.ReadTimeout(f"no answer from {prepared.url} in time", request=prepared)
    if isinstance(exc, ssl.SSLError):
        return requests.exceptions.SSLError(f"TLS with {prepared.url} failed: {exc}", request=prepared)
    if isinstance(exc, OSError | http.client.HTTPException):
        return requests.exceptions.ConnectionError(f"connection to {prepared.url} failed: {exc!r}", request=prepared)
    return exc
