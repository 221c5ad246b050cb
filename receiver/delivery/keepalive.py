"""Keep-alive for apprise's HTTP sends: each sending thread reuses its connections while they are fresh.

apprise's HTTP plugins (Slack, Teams, Discord, json://, ...) call ``requests.post()`` and its
siblings, and each call builds a ``requests.Session``, opens a connection, sends, and closes
both: a TCP handshake per notification, and for https a TLS handshake too. ``install()`` routes
those calls through one ``Session`` per thread instead, so consecutive sends from a thread reuse
its open connection to the same host (docs/performance.md, "Fast paths").

``install()`` patches the ``requests`` module for the whole process, so nothing here runs on
import: the application factory (``receiver.http.app.create_app``) and the CLI commands that send
call it.

What a call still sees as if its session were new:

* **Cookies.** The jar is emptied after every call: a cookie one endpoint sets is never sent
  with a later notification (within one call, across its redirects, cookies work as before).
* **Environment.** Proxies (``HTTPS_PROXY``, ``NO_PROXY``), ``REQUESTS_CA_BUNDLE`` and
  ``.netrc`` apply as with ``requests.request``. What the environment gives for one scheme and
  host is worked out on a session's first request there and kept for the session's life: requests
  scans the whole environment two or three times per call for it, and a server's environment does
  not change while it runs.
* **Idle connections are not trusted.** A connection unused for ``IDLE_SECONDS`` is closed, not
  reused: NAT gateways, firewalls and load balancers drop idle flows without telling either end
  (Azure's after 4 minutes, AWS's NAT after 350 s), and a request written into a dropped flow
  waits for its read timeout and fails. urllib3 already skips a connection the server closed.

One session per thread because ``requests.Session`` is not safe to share between threads;
apprise sends from its own small pool of threads, so there are a handful of sessions, each
holding at most one idle connection per host it sent to recently (urllib3's pools, bounded).

Plain requests (a body, headers, maybe basic auth: what apprise's webhook plugins send) do not
go through the session's requests machinery at all: ``plain_http`` writes them on the session's
own ``http.client`` connections, with the same settings; everything else goes through the session.
A request made by a send running on the event loop (``receiver.delivery.bridge``, switched on by
``receiver.delivery.onloop.install()``) goes out on the loop's connections (``loop_http``) if it is
plain, and otherwise on a sending thread, awaited: nothing here blocks the loop.

Why a patch and not an apprise option: apprise has none. The patch replaces the one function
all of ``requests.get/post/put/...`` go through (``requests.api.request``, and the
``requests.request`` alias), so every plugin that uses them is covered, and plugins that keep
their own session (Matrix) are untouched.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Hashable
from typing import Any, Final
from urllib.parse import urlsplit

import requests
import requests.api

from receiver.delivery import bridge, loop_http, plain_http

__all__ = ["IDLE_SECONDS", "install", "installed"]

IDLE_SECONDS: Final = 30.0
"""A thread's connections unused for longer than this are closed before its next request.

Well under the shortest idle timeout of common middleboxes (Azure load balancer, 4 minutes),
long enough to cover a burst of alerts and its retries.
"""

_ENVIRONMENT_ENTRIES: Final = 64
"""Distinct (scheme, host, arguments) a session remembers; URLs come from the rules file."""


_local = threading.local()


class _Session(requests.Session):
    """A ``requests.Session`` that works out the environment's settings once per scheme, host and arguments.

    It also holds the thread's ``http.client`` connections for the plain requests ``plain_http`` sends.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[Hashable, dict[str, Any]] = {}
        self._netrc: dict[str, tuple[str, str] | None] = {}
        self.plain = plain_http.Connections()

    def close(self) -> None:
        self.plain.close()
        super().close()

    def netrc_auth(self, url: str) -> tuple[str, str] | None:
        """``.netrc``'s credentials for the URL's host, looked up once per host (requests reads the file per call)."""
        host = urlsplit(url).netloc
        if host not in self._netrc:
            if len(self._netrc) >= _ENVIRONMENT_ENTRIES:
                self._netrc.clear()
            self._netrc[host] = requests.utils.get_netrc_auth(url)
        return self._netrc[host]

    def merge_environment_settings(self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        parts = urlsplit(url)
        try:
            key = (parts.scheme, parts.netloc, frozenset((proxies or {}).items()), stream, verify, cert)
            found = self._environment.get(key)
        except TypeError:  # an argument that cannot be a key (a list as cert): worked out every time
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        if found is None:
            found = super().merge_environment_settings(url, dict(proxies or {}), stream, verify, cert)
            if len(self._environment) >= _ENVIRONMENT_ENTRIES:
                self._environment.clear()
            self._environment[key] = found
        return {**found, "proxies": dict(found["proxies"])}


def _session() -> _Session:
    """This thread's session; a new one when the last request was more than IDLE_SECONDS ago."""
    session: _Session | None = getattr(_local, "session", None)
    if session is not None and time.monotonic() - _local.used <= IDLE_SECONDS:
        return session
    if session is not None:
        session.close()  # the idle connections are closed, not left for the garbage collector
    session = _local.session = _Session()
    _local.used = time.monotonic()  # before any request ends: sends on the loop's thread interleave
    return session


def _request(method: str, url: str | bytes, **kwargs: Any) -> requests.Response:
    """``requests.request`` on this thread's reused session (same arguments, same result)."""
    session = _session()
    try:
        if bridge.in_call():
            return _request_on_loop(session, method, url, kwargs)
        response = plain_http.send(session, session.plain, method, url, kwargs)
        if response is not None:
            return response
        return session.request(method=method, url=url, **kwargs)
    finally:
        session.cookies.clear()
        _local.used = time.monotonic()


def _request_on_loop(session: _Session, method: str, url: str | bytes, kwargs: dict[str, Any]) -> requests.Response:
    """In a send running on the event loop: a plain request on the loop's connections, anything else on a thread.

    The loop thread's session only prepares requests (what the environment gives is remembered there
    too); what ``plain_http`` declines, and a redirect to follow, go to a sending thread's own session.
    """
    plain = plain_http.prepare(session, method, url, kwargs)
    if plain is None:
        return bridge.on_thread(functools.partial(_request, method, url, **kwargs))
    response = bridge.await_only(loop_http.exchange(plain, idle_seconds=IDLE_SECONDS))
    if plain.redirected(response):
        return bridge.on_thread(functools.partial(_follow, plain, response))
    return response


def _follow(plain: plain_http.Plain, response: requests.Response) -> requests.Response:
    session = _session()
    try:
        return plain_http.follow(session, plain, response)
    finally:
        session.cookies.clear()
        _local.used = time.monotonic()


def install() -> None:
    """Route ``requests.get/post/put/delete/request`` through per-thread sessions. Idempotent."""
    requests.api.request = _request
    requests.request = _request


def installed() -> bool:
    """Whether ``install()`` is in effect."""
    return requests.api.request is _request and requests.request is _request
