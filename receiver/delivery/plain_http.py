"""apprise's plain HTTP requests, sent on kept-alive ``http.client`` connections instead of through requests.

apprise's webhook plugins (json://, Slack, Teams, Discord, ...) build each request plainly: a
method, a URL, headers, a str/bytes or JSON body, maybe basic auth and query parameters. requests
spends ~0.3 ms of CPU per call around that (preparing, merging settings, hooks, two cookie jars,
a redirect generator, urllib3's pool and retry objects), about as much as the rest of receiver's
work for an event (docs/performance.md, "Fast paths"). ``send()`` prepares the request with
requests' own ``PreparedRequest`` steps (URL quoting and IDNA, parameters, body encoding,
Content-Length, basic auth), writes it on this thread's open connection with ``http.client``,
and returns the ``requests.Response`` the plugin reads (status, reason, headers, content).

``prepare()`` is the first half (the request, or None when requests must send it) and
``response()`` builds the answer: ``loop_http`` shares both for the sends that run on the event
loop, so the two exchanges write the same bytes and return the same ``Response``.

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
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import certifi
import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, select_proxy
from urllib3.util.wait import wait_for_read

__all__ = [
    "ANSWER_BYTES",
    "Connections",
    "Plain",
    "body_bytes",
    "connect_error",
    "exchange_error",
    "follow",
    "prepare",
    "response",
    "send",
    "tls_context",
]

_PLAIN_ARGUMENTS: Final = frozenset(
    {"params", "data", "json", "headers", "auth", "verify", "timeout", "allow_redirects"}
)
"""The keyword arguments of ``requests.request`` this path implements; any other sends through requests."""

_AS_IF_ABSENT: Final = frozenset(
    {("files", None), ("cookies", None), ("hooks", None), ("cert", None), ("proxies", None), ("stream", None)}
    | {("stream", False)}
)
"""Other arguments with the value requests gives them by default (Slack passes ``files=None``): as if not passed."""

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


def tls_context(verify: bool | str) -> ssl.SSLContext:
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


@dataclass(frozen=True, slots=True)
class Plain:
    """A request ``send()`` can write itself: requests' ``PreparedRequest`` and the settings to send it with."""

    prepared: PreparedRequest
    verify: bool | str
    timeouts: tuple[float | None, float | None]
    timeout: Any  # the caller's argument, for requests when it follows a redirect
    proxies: dict[str, str]
    allow_redirects: bool

    def key(self) -> _Key:
        """Which kept-alive connection it may go out on: scheme, host, port, certificate check."""
        parts = urlsplit(self.prepared.url or "")
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        return scheme, parts.hostname or "", port, self.verify if scheme == "https" else True

    def redirected(self, response: requests.Response) -> bool:
        """Whether requests must follow ``response`` (``follow()``)."""
        return self.allow_redirects and response.is_redirect


def send(
    session: requests.Session, connections: Connections, method: str, url: Any, kwargs: dict[str, Any]
) -> requests.Response | None:
    """Send ``requests.request(method, url, **kwargs)`` on ``connections``; None when requests must send it."""
    plain = prepare(session, method, url, kwargs)
    if plain is None:
        return None
    response = _exchange(connections, plain)
    return follow(session, plain, response) if plain.redirected(response) else response


def _plain_arguments(kwargs: dict[str, Any]) -> bool:
    return all(
        name in _PLAIN_ARGUMENTS or ((value is None or value is False) and (name, value) in _AS_IF_ABSENT)
        for name, value in kwargs.items()
    )


def prepare(session: requests.Session, method: str, url: Any, kwargs: dict[str, Any]) -> Plain | None:
    """``requests.request(method, url, **kwargs)`` prepared for ``send()``, or None when requests must send it.

    ``session`` gives what requests would merge in: its default headers, the environment's
    proxies and CA bundle (``merge_environment_settings``), ``.netrc`` credentials.
    """
    if not isinstance(url, str) or not _plain_arguments(kwargs):
        return None
    timeouts = _timeouts(kwargs.get("timeout"))
    auth = kwargs.get("auth")
    if timeouts is None or not (auth is None or (isinstance(auth, tuple) and len(auth) == 2)):
        return None
    if session.auth is not None or session.cookies or session.hooks["response"] or session.cert is not None:
        return None
    prepared = PreparedRequest()
    prepared.prepare_method(method)
    _prepare_url(prepared, url, kwargs.get("params"))
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
    # No prepare_cookies: an empty jar adds no header (follow() gives the redirects their jar).
    prepared.prepare_hooks({})
    return Plain(
        prepared,
        settings["verify"],
        timeouts,
        kwargs.get("timeout"),
        settings["proxies"],
        bool(kwargs.get("allow_redirects", True)),
    )


def follow(session: requests.Session, plain: Plain, response: requests.Response) -> requests.Response:
    """Follow a redirect answer with requests (rare for a webhook), exactly as ``Session.send`` does it."""
    plain.prepared.prepare_cookies(requests.cookies.RequestsCookieJar())
    history = list(
        session.resolve_redirects(
            response,
            plain.prepared,
            stream=False,
            timeout=plain.timeout,
            verify=plain.verify,
            cert=None,
            proxies=plain.proxies,
        )
    )
    if history:
        history.insert(0, response)
        response = history.pop()
        response.history = history
    return response


_URL_ENTRIES: Final = 256
"""Prepared URLs remembered (the channels' URLs and their query parameters; a reload brings new ones)."""

_urls: dict[Hashable, str] = {}


def _prepare_url(prepared: PreparedRequest, url: str, params: Any) -> None:
    """``prepared.prepare_url(url, params)``, remembered: quoting, IDNA and encoding the same URL cost ~15 µs."""
    try:
        key = (url, tuple(params.items()) if isinstance(params, dict) else params)
        found = _urls.get(key)
    except TypeError:  # a parameter that cannot be a key: prepared every time
        prepared.prepare_url(url, params)
        return
    if found is None:
        prepared.prepare_url(url, params)
        if len(_urls) >= _URL_ENTRIES:
            _urls.clear()
        found = _urls[key] = prepared.url or ""
    prepared.url = found


def _headers(headers: list[tuple[str, str]]) -> CaseInsensitiveDict[str]:
    """An answer's headers as requests gives them: a repeated one joined with ", " (urllib3's HTTPHeaderDict)."""
    joined: dict[str, tuple[str, str]] = {}
    for name, value in headers:
        key = name.lower()
        seen = joined.get(key)
        joined[key] = (name, value) if seen is None else (seen[0], f"{seen[1]}, {value}")
    return CaseInsensitiveDict(dict(joined.values()))


def body_bytes(prepared: PreparedRequest) -> bytes | None:
    """The request's body as written (a str in UTF-8, as requests sends it)."""
    body = prepared.body.encode("utf-8") if isinstance(prepared.body, str) else prepared.body
    assert body is None or isinstance(body, bytes)  # noqa: S101 - prepare() let only these through
    return body


def response(
    prepared: PreparedRequest,
    status: int,
    reason: str,
    headers: list[tuple[str, str]],
    content: bytes,
    started: float,
) -> requests.Response:
    """The ``requests.Response`` for an answer read whole (both exchanges build theirs here)."""
    answer = requests.Response()
    answer.status_code = status
    answer.reason = reason
    answer.headers = _headers(headers)
    answer.encoding = get_encoding_from_headers(answer.headers)
    answer.url = prepared.url or ""
    answer.request = prepared
    answer._content = content  # read whole, as requests does without stream=True
    answer._content_consumed = True
    answer.elapsed = timedelta(seconds=time.perf_counter() - started)
    return answer


_STOCK_SENDS: Final = (requests.Session.send, HTTPAdapter.send)


def _stock_adapter(session: requests.Session, url: str) -> bool:
    """Whether requests would send through its own HTTPAdapter (one mounted or patched, as by a mock, wins)."""
    adapter = session.get_adapter(url)
    stock = (requests.Session.send, HTTPAdapter.send) == _STOCK_SENDS
    return stock and type(adapter) is HTTPAdapter and "send" not in vars(adapter) and "send" not in vars(session)


def _netrc_auth(session: requests.Session, url: str) -> tuple[str, str] | None:
    lookup = getattr(session, "netrc_auth", None)
    return lookup(url) if lookup is not None else requests.utils.get_netrc_auth(url)


def _exchange(connections: Connections, plain: Plain) -> requests.Response:
    """Write the request on an open connection (or a new one) and read the whole answer."""
    prepared = plain.prepared
    key = plain.key()
    scheme, host, port, _ = key
    connect_timeout, read_timeout = plain.timeouts
    conn = connections.take(key)
    started = time.perf_counter()
    if conn is None:
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=tls_context(plain.verify))
        else:
            conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        try:
            conn.connect()
        except Exception as exc:
            conn.close()
            raise connect_error(exc, prepared) from exc
    try:
        assert conn.sock is not None  # noqa: S101 - connected above or kept open
        conn.sock.settimeout(read_timeout)
        body = body_bytes(prepared)
        conn.request(prepared.method or "GET", prepared.path_url, body=body, headers=dict(prepared.headers))
        answer = conn.getresponse()
        content = answer.read(ANSWER_BYTES + 1)  # an endpoint's answer is not ours to hold whole
    except BaseException as exc:
        conn.close()  # half a request or answer on it: never reused
        if isinstance(exc, Exception):
            raise exchange_error(exc, prepared) from exc
        raise
    if answer.will_close or not answer.isclosed():  # closing, or the rest of a long answer still on it
        conn.close()
    else:
        connections.give_back(key, conn)
    return response(prepared, answer.status, answer.reason, answer.getheaders(), content[:ANSWER_BYTES], started)


def _where(prepared: PreparedRequest) -> str:
    """The endpoint an error names: scheme, host and port only (a path or query may hold the channel's token)."""
    parts = urlsplit(prepared.url or "")
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def connect_error(exc: Exception, prepared: PreparedRequest) -> Exception:
    if isinstance(exc, TimeoutError | socket.timeout):
        return requests.exceptions.ConnectTimeout(f"connection to {_where(prepared)} timed out", request=prepared)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return requests.exceptions.SSLError(f"TLS with {_where(prepared)} failed: {exc}", request=prepared)
    if isinstance(exc, OSError):
        return requests.exceptions.ConnectionError(f"could not connect to {_where(prepared)}: {exc}", request=prepared)
    return exc


def exchange_error(exc: Exception, prepared: PreparedRequest) -> Exception:
    if isinstance(exc, TimeoutError | socket.timeout):
        return requests.exceptions.ReadTimeout(f"no answer from {_where(prepared)} in time", request=prepared)
    if isinstance(exc, ssl.SSLError):
        return requests.exceptions.SSLError(f"TLS with {_where(prepared)} failed: {exc}", request=prepared)
    if isinstance(exc, OSError | http.client.HTTPException):
        where = _where(prepared)
        return requests.exceptions.ConnectionError(f"connection to {where} failed: {exc!r}", request=prepared)
    return exc
