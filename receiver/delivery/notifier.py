"""Delivery through apprise: check a channel URL, mask it for logs, send one notification to it.

The only module that imports apprise (layer 3). Everything apprise-specific stays here, so the
rest of receiver sees four things:

* ``check_url(url) -> str | None``: validates an apprise URL without sending; ``None`` when it
  loads, else a message that names the scheme and never echoes the URL's secrets. The retired
  Office 365 connector (``msteams://``, ``https://outlook.office.com/webhook/…``) gets a message
  pointing at ``workflows://``.
* ``mask_url(url) -> str``: the form safe for logs, the CLI and the API (apprise's
  ``url(privacy=True)`` with every custom header, parameter and payload value and every
  token-like path segment it leaves readable replaced by ``***``, or ``<scheme>://***``).
* ``Notifier`` (a Protocol) and ``AppriseNotifier``: ``await send(url, notification, timeout=…)``
  returns a ``SendResult`` and never raises for a delivery problem (bad URL, HTTP error, refused
  connection, stall, an exception inside apprise). ``recoverable`` says whether trying the same
  message again later may succeed.
* ``send_test(url, notifier)``: the message ``receiver send-test`` sends.

Importing this module registers the built-in ``log://`` channel (apprise's custom-notification
decorator), which writes each notification to the structured log as ``notification_logged``,
and puts a filter on the ``apprise`` logger that drops everything below INFO, because apprise's
DEBUG lines carry raw webhook tokens.

How a send runs, and why:

* One ``Apprise`` object per channel URL, built on first use and reused, concurrently too
  (docs/performance.md, "Fast paths"). Each call still gets its own result (apprise keeps
  per-call state in contextvars; 200 sends from 16 threads on one object were all delivered
  once, reference §7). The state a plugin does keep is its pacing timestamp, zeroed below, and lookup caches
  (Slack's e-mail to user id), which are safe to share.
* ``request_rate_per_sec`` is zeroed on that plugin: apprise would otherwise sleep 1.2 s (Slack)
  to 5.5 s (Teams, e-mail) between the requests of one send, for example one message per e-mail
  recipient. Pacing against a channel's rate limits is the dispatcher's per-channel concurrency.
* Unless the URL sets them, HTTP connect/read timeouts default to ``cto=4``/``rto=10`` (e-mail
  keeps apprise's 15 s per SMTP operation) and are clamped to the call budget, so a stalled
  endpoint fails with apprise's reason before the budget runs out, and a worker thread apprise
  abandons at the budget ends soon after instead of holding one of its few pool threads.
* A URL without apprise's ``retry=``, ``optional=`` or ``emojis=`` is sent by calling its plugin's ``notify()``
  in one of receiver's threads (or on the event loop, below), not through ``Apprise.async_notify``: the
  same preparation of the message (apprise designed the plugin call to match ``Apprise.notify``), without apprise's
  per-call machinery (call state, log capture handlers, retry runner, result objects, two more
  tasks and a hop through its coordinator; docs/performance.md, "Fast paths"). The failure
  reason is the plugin's own WARNING/ERROR lines, collected per send. URLs with those options take apprise's path, which
  implements them.
* HTTP connections are reused once ``receiver.delivery.keepalive.install()`` ran (the application
  factory and ``receiver send-test`` call it): each of apprise's sending threads gets one
  ``requests.Session`` (cookies cleared after every call, connections idle 30 s closed), and a
  plain webhook request is written on that thread's ``http.client`` connection (``plain_http``).
* Once ``receiver.delivery.onloop.install()`` ran (the same callers), a direct send of a common
  webhook plugin (json://, Slack, Teams Workflows, ... : ``onloop.ON_LOOP``) runs on the event loop
  instead of a thread (``bridge``), its requests on the loop's connections (``loop_http``).
* ``body_format`` is always explicit: apprise's default (``None``) skips escaping and lets
  ``<!channel>`` through to Slack.

Duplicates: a ``timeout`` (and an ``rto`` expiry) does not say whether the channel got the
message, and apprise cannot stop a request already running, so a retry after either may deliver
twice. A URL that fans out (several e-mail recipients, several Slack channels) is retried as a
whole, so the targets that had accepted get the message again.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import logging
import math
import re
import smtplib
import socket
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

import structlog
from apprise import (
    LOGGER_NAME,
    Apprise,
    AppriseAsset,
    AppriseResult,
    AppriseResultStatus,
    NotificationManager,
    NotifyBase,
    NotifyFormat,
    NotifyType,
    URLBase,
)
from apprise.decorators import notify  # the custom-notification hook for log://

from receiver import __version__
from receiver.delivery import bridge, onloop
from receiver.render import Notification
from receiver.timefmt import utc_text

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_SEND_TIMEOUT",
    "TEST_TITLE",
    "AppriseNotifier",
    "Notifier",
    "SendResult",
    "check_url",
    "mask_url",
    "send_test",
]

log = structlog.get_logger()

DEFAULT_CONNECT_TIMEOUT: Final = 4.0
"""Seconds to open an HTTP connection when the URL sets no ``cto`` (apprise's own default).

Short is safe: nothing has been sent when a connect times out.
"""

DEFAULT_READ_TIMEOUT: Final = 10.0
"""Seconds to wait for each read of an HTTP response when the URL sets no ``rto``.

Above apprise's 4 s because a read timeout comes after the request went out, so the channel may
have the message and a retry may duplicate it: a slow but working endpoint should not get there.
Below the send budget, so that a stall ends as a failure with apprise's reason, not a bare timeout.
"""

DEFAULT_SEND_TIMEOUT: Final = 30.0
"""A whole-send budget that fits one stalled HTTP request (``cto + rto`` = 14 s) with room to spare."""

TEST_TITLE: Final = "receiver test notification"
"""The title of the message ``receiver send-test`` sends."""

_SERVICE_TIMEOUT: Final = 300.0
"""Apprise's per-service ceiling; the per-send ``timeout`` binds first.

Apprise's default is 60 s, which would silently cut a longer per-channel budget.
"""

_LOG_SCHEME: Final = "log"
_LOG_SERVICE_NAME: Final = "receiver structured log"

_FORMATS: Final = {"text": NotifyFormat.TEXT, "markdown": NotifyFormat.MARKDOWN, "html": NotifyFormat.HTML}
_TYPES: Final = {
    "info": NotifyType.INFO,
    "success": NotifyType.SUCCESS,
    "warning": NotifyType.WARNING,
    "failure": NotifyType.FAILURE,
}

# RFC 3986 scheme syntax, bounded so that a pasted token without "://" is never taken for a scheme.
_SCHEME_RE: Final = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]{0,31})://")
# Apprise's HTTP plugins end their failure line with "error=<status>.".
_HTTP_STATUS_RE: Final = re.compile(r"\berror=(\d{3})\b")
# A mail server's reply as _notify_plugin adds it: a 5xx refusal is permanent (RFC 5321 §4.2.1),
# a 4xx one (greylisting, a full disk) may pass later.
_SMTP_REPLY_RE: Final = re.compile(r"\bSMTP ([245]\d\d)\b")
# The same request will be refused again: bad payload, bad or revoked token, deleted webhook or
# channel (Slack 404 no_service, 410 channel_is_archived), message too large. 408, 409, 425 and
# 429 are left recoverable because they say "not now", not "never".
_PERMANENT_HTTP_STATUSES: Final = frozenset({400, 401, 403, 404, 405, 410, 413, 414, 415, 422})
# Shorter values are option values ("yes", "text") or ids, not secrets; a shorter password
# would scrub ordinary words out of the reason.
_MIN_TOKEN_LENGTH: Final = 8
_MIN_PASSWORD_LENGTH: Final = 6
_EMAIL_RE: Final = re.compile(r"[^@\s/]+@[^@\s/]+\.[A-Za-z]{2,}")
# URL options that say where a message goes or how it looks, never a credential.
_PUBLIC_OPTIONS: Final = frozenset(
    {"to", "from", "cc", "bcc", "reply", "name", "smtp", "port", "mode", "format", "overflow", "image", "footer"}
    | {"timestamp", "blocks", "verify", "retry", "wait", "cto", "rto", "optional", "method", "pa", "wrap", "route"}
)

_CONNECTOR_REMOVED: Final = (
    "Microsoft Teams {what} URLs (the Office 365 connector) no longer work: Microsoft retired the "
    "connectors and apprise removed them in 1.11. In Teams, create a 'Post to a channel when a "
    "webhook request is received' workflow (Power Automate Workflows) and use its URL as "
    "'workflows://HOST/WORKFLOW_ID/SIGNATURE/' or paste the https://…logic.azure.com/workflows/… URL as is"
)


# --- apprise's logger ---------------------------------------------------------------------------

# apprise's plugin registry (a singleton); the first lookup loads every plugin module (~0.2 s).
_PLUGINS: Final[NotificationManager] = NotificationManager()  # type: ignore[no-untyped-call]

_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("receiver_notifier_quiet", default=False)


class _AppriseLogGuard(logging.Filter):
    """Keeps secrets out of the log stream that apprise writes to.

    Drops every record below INFO (apprise's DEBUG lines print raw webhook URLs, whatever
    level someone sets), and every record while this context validates a URL: apprise's load
    errors echo URLs of unknown schemes verbatim (``Unparseable URL foo://user:secret@host``).
    The flag is a context variable, so sends running in other threads keep their log lines.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO and not _quiet.get()


def _install_log_guard() -> None:
    apprise_logger = logging.getLogger(LOGGER_NAME)
    if not any(type(f).__name__ == _AppriseLogGuard.__name__ for f in apprise_logger.filters):
        apprise_logger.addFilter(_AppriseLogGuard())


_captured: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("receiver_notifier_captured", default=None)


class _SendLines(logging.Handler):
    """Collects apprise's WARNING and ERROR lines for the direct send running in this context.

    They are the failure reason (``Failed to send JSON notification: Internal Server Error.,
    error=500.``). One permanent handler reading a context variable: apprise's own capture adds
    and removes a handler per call, under the logging module's lock.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        lines = _captured.get()
        # apprise marks lines that must not reach results (local secrets) with apprise_capture=False.
        if lines is not None and getattr(record, "apprise_capture", True):
            lines.append(record.getMessage())


def _install_send_lines() -> None:
    apprise_logger = logging.getLogger(LOGGER_NAME)
    if not any(type(h).__name__ == _SendLines.__name__ for h in apprise_logger.handlers):
        apprise_logger.addHandler(_SendLines())


@contextmanager
def _quietly() -> Iterator[None]:
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


# --- the log:// channel -------------------------------------------------------------------------


def _log_notification(body: str, title: str, notify_type: str, *args: object, **kwargs: object) -> bool:
    """Writes one notification to the structured log (apprise calls this in its worker thread)."""
    log.info("notification_logged", title=title, severity=notify_type, body=body)
    return True


def _register_log_channel() -> None:
    with warnings.catch_warnings():
        # This first lookup imports every apprise plugin, and apprise's PGP shim imports the
        # stdlib's deprecated imghdr (Python 3.11/3.12): harmless, but an error under the test
        # suite's filterwarnings=error.
        warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)
        registered = _LOG_SCHEME in _PLUGINS
    # apprise refuses (with a warning) a second registration of a scheme, e.g. after a reload.
    if not registered:
        notify(on=_LOG_SCHEME, name=_LOG_SERVICE_NAME)(_log_notification)  # type: ignore[no-untyped-call]


# --- the mail server's reply ---------------------------------------------------------------------

_smtp_replies: contextvars.ContextVar[list[tuple[int, str]] | None] = contextvars.ContextVar(
    "receiver_notifier_smtp_replies", default=None
)
_SMTP_TEXT: Final = 300


def _smtp_reply(exc: smtplib.SMTPException) -> tuple[int, str] | None:
    """The code and text of the reply behind a refusal (the first refused recipient's), bounded."""
    code: object
    text: object
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = list(exc.recipients.values())
        code, text = refused[0] if refused else (0, b"")
    elif isinstance(exc, smtplib.SMTPResponseException):
        code, text = exc.smtp_code, exc.smtp_error
    else:
        return None
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return (code, " ".join(words.split())[:_SMTP_TEXT]) if isinstance(code, int) and 200 <= code < 600 else None


def _recording(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def recorded(self: smtplib.SMTP, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except smtplib.SMTPException as exc:
            replies = _smtp_replies.get()
            reply = _smtp_reply(exc) if replies is not None else None
            if replies is not None and reply is not None:
                replies.append(reply)
            raise

    recorded.__receiver_records__ = True  # type: ignore[attr-defined]
    return recorded


def _install_smtp_replies() -> None:
    """Keep the reply of a refused login or message for the send running in this context.

    apprise catches smtplib's exception and logs its text at DEBUG only, which never reaches
    receiver's log (it prints secrets): the reason would be 'Sending email to "…" failed.' for a
    rejected recipient, a spam refusal and a full mailbox alike. The wrapped methods behave as
    before and record nothing outside a direct send.
    """
    for name in ("login", "sendmail"):
        method = getattr(smtplib.SMTP, name)
        if not getattr(method, "__receiver_records__", False):
            setattr(smtplib.SMTP, name, _recording(method))


_install_log_guard()
_install_send_lines()
_install_smtp_replies()
_register_log_channel()


_CACHE_SIZE: Final = 512
"""Prepared channel URLs kept by a notifier (far more than a rules file holds)."""


# --- URL checks ---------------------------------------------------------------------------------

# What mask_url puts in place of a secret value or path segment.
_MASK: Final = "***"
# apprise's prefixes for free-form entries: custom HTTP headers (+), query parameters (-) and
# payload fields (:); their values are the caller's own, so any of them may be a credential.
_CUSTOM_PREFIXES: Final = ("+", "-", ":")
# Option names that usually hold a credential (substrings: "api_key", "X-Auth-Token", "sig").
_SECRET_NAME_RE: Final = re.compile(
    r"token|secret|pass|pwd|auth|key|sig|code|cred|session|cookie|bearer|private|jwt|hmac", re.IGNORECASE
)

# Only the asset's secure_logging matters while validating, and it is on by default.
_CHECK_ASSET: Final = AppriseAsset(secure_logging=True)


def _scheme(url: str) -> str | None:
    match = _SCHEME_RE.match(url)
    return match.group(1).lower() if match else None


def _load(url: str, asset: AppriseAsset) -> NotifyBase | None:
    """Returns apprise's plugin for ``url``, or None; apprise logs nothing about the URL."""
    with _quietly():
        try:
            return Apprise.instantiate(url, asset=asset)
        except Exception:  # noqa: BLE001  # apprise's parser must not take the caller down; such a URL is just bad
            return None


def _connector_kind(url: str, scheme: str | None) -> str | None:
    """Names the retired Office 365 connector form of ``url``, or None when it is not one."""
    if scheme == "msteams":
        return "'msteams://'"
    if scheme not in ("http", "https"):
        return None
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if host in ("outlook.office.com", "outlook.office365.com") and parts.path.lower().startswith("/webhook"):
        return f"'https://{host}/webhook/…'"
    if host.endswith(".webhook.office.com"):
        return "'https://….webhook.office.com/webhookb2/…'"
    return None


def _load_failure(scheme: str | None) -> str:
    """Explains why apprise could not load a URL, from its scheme alone (the rest may be secret)."""
    if scheme is None:
        return "not an apprise URL: expected SCHEME://…, e.g. 'slack://…', 'mailtos://…', 'workflows://…' or 'log://'"
    if scheme in ("http", "https"):
        return (
            f"apprise does not recognise this {scheme + '://'!r} URL as a service webhook (it takes Slack "
            "'https://hooks.slack.com/services/…' and Teams Workflows 'https://….logic.azure.com/workflows/…' "
            "URLs as they are); for another HTTP endpoint use 'json://' or 'jsons://'"
        )
    if scheme not in _PLUGINS:
        return f"unknown apprise URL scheme {scheme + '://'!r}: no apprise service handles it"
    plugin = _PLUGINS[scheme]
    name = getattr(plugin, "service_name", scheme)
    docs = getattr(plugin, "setup_url", None) or getattr(plugin, "service_url", None)
    message = (
        f"apprise could not load this {name} URL ({scheme + '://…'!r}): "
        "a token, address or option is missing or malformed"
    )
    return f"{message}; see {docs}" if docs else message


def check_url(url: str) -> str | None:
    """Validates an apprise URL without sending anything and without logging it.

    Args:
        url: the channel's apprise URL, secrets included.

    Returns:
        None when apprise can load the URL, else a message naming its scheme (never the
        secret parts) that says what to do.
    """
    scheme = _scheme(url)
    connector = _connector_kind(url, scheme)
    if connector is not None:
        return _CONNECTOR_REMOVED.format(what=connector)
    if _load(url, _CHECK_ASSET) is not None:
        return None
    return _load_failure(scheme)


def _masked(plugin: NotifyBase) -> str:
    privacy_form = str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]
    return _hide_secrets(privacy_form) or _fallback_mask(privacy_form)


def _hide_secrets(privacy_form: str) -> str | None:
    """Masks what apprise's privacy form leaves readable and may be secret; None if it is no URL.

    apprise masks the tokens and passwords it knows of, but copies custom headers (``+Name=``),
    custom query parameters (``-name=``), payload fields (``:name=``) and the free path of the
    generic HTTP plugins (``json://``, ``form://``, ``xml://``) verbatim. Names stay readable so
    that the options set can be seen; values and token-like segments become ``***``. Each part
    of the string is looked at once (linear time).
    """
    base, question, query = privacy_form.partition("?")
    scheme, separator, rest = base.partition("://")
    if not separator:
        return None
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        userinfo = _hide_segment(user) + (f":{_MASK}" if password else colon)
    if not hostport.startswith("["):  # an IPv6 literal is an address, never a token
        host, colon, port = hostport.partition(":")
        # A dotted host is a DNS name or an IP; schemes like discord:// put a token where the host goes.
        hostport = (host if "." in host else _hide_segment(host)) + colon + port
    path = "/".join(_hide_segment(segment) for segment in path.split("/"))
    hidden = f"{scheme}://{userinfo}{at}{hostport}{slash}{path}"
    if question:
        hidden += "?" + "&".join(_hide_option(item) for item in query.split("&"))
    return hidden


def _hide_segment(segment: str) -> str:
    text = unquote(segment)
    # Channels (#ops), users (@lead) and e-mail recipients say where a message goes, not how to get in.
    if text.startswith(("#", "@")) or _EMAIL_RE.fullmatch(text):
        return segment
    return _MASK if _looks_like_token(text) else segment


def _hide_option(item: str) -> str:
    name, equals, value = item.partition("=")
    if not (equals and value):
        return item
    key = unquote_plus(name)
    if key.startswith(_CUSTOM_PREFIXES) or _SECRET_NAME_RE.search(key):
        return f"{name}={_MASK}"
    if key.lower() not in _PUBLIC_OPTIONS and _looks_like_token(unquote_plus(value)):
        return f"{name}={_MASK}"  # a plugin option apprise did not mask but that reads like a token
    return item


def _fallback_mask(url: str) -> str:
    scheme = _scheme(url)
    return f"{scheme}://***" if scheme else "***"


def mask_url(url: str) -> str:
    """Returns a form of ``url`` that is safe to log, print and store.

    Args:
        url: the channel's apprise URL, secrets included.

    Returns:
        Apprise's privacy form (tokens shortened to their first and last character), with
        ``***`` for the password, for the value of every custom header (``+Name``), query
        parameter (``-name``) and payload field (``:name``), for options whose name suggests a
        credential (``token``, ``key``, ``auth``, ``sig``…) or whose value reads like a token,
        and for token-like path or host segments (8+ characters with a digit or mixed case;
        ``#channel``, ``@user`` and e-mail addresses stay). Option names, the scheme, a dotted
        host and apprise's own options (``format=``, ``to=``…) stay readable.
        ``<scheme>://***`` when apprise cannot load the URL.
    """
    plugin = _load(url, _CHECK_ASSET)
    return _masked(plugin) if plugin is not None else _fallback_mask(url)


def _looks_like_token(text: str) -> bool:
    # Tokens and signatures mix digits or cases; words such as "workflows" or "rpa-alerts" do not.
    mixed = any(c.isdigit() for c in text) or (text.lower() != text and text.upper() != text)
    return len(text) >= _MIN_TOKEN_LENGTH and mixed


def _secret_fragments(url: str) -> tuple[str, ...]:
    """The parts of ``url`` that may be secrets, longest first, to scrub from apprise's messages.

    The password, plus every token-like host, path segment and option value, except e-mail
    addresses and the values of options that address or format a message (``to=``, ``smtp=``…).
    A host with a dot is a DNS name or an IP; schemes such as ``slack://TOKA/…`` put a token
    where the host goes, and tokens have no dots.
    """
    try:
        parts = urlsplit(url.strip())
        password = unquote(parts.password or "")
    except ValueError:
        return ()
    host = parts.netloc.rpartition("@")[2].partition(":")[0]  # as written: .hostname lower-cases
    candidates = [parts.username or ""] + ([] if "." in host else [host])
    candidates += [s for s in parts.path.split("/") if not _EMAIL_RE.fullmatch(unquote(s))]
    candidates += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in _PUBLIC_OPTIONS]
    fragments = {f for c in candidates for f in (c, unquote(c)) if _looks_like_token(f)}
    if len(password) >= _MIN_PASSWORD_LENGTH:
        fragments |= {password, parts.password or ""}
    return tuple(sorted(fragments, key=len, reverse=True))


def _scrub(text: str, url: str) -> str:
    # apprise's secure_logging masks the lines we use; this is the backstop for any plugin that does not.
    for fragment in _secret_fragments(url):
        text = text.replace(fragment, "***")
    return text


# --- sending ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one send to one channel URL.

    Attributes:
        status: ``sent``; ``failed`` (apprise reported failure, or the URL does not load);
            ``timeout`` (the budget ran out: the channel may or may not have the message).
        reason: apprise's WARNING/ERROR lines of the last attempt, joined, with secrets
            scrubbed, e.g. ``Failed to send to Slack: Internal server error., error=500.``;
            None when sent.
        elapsed: seconds the send took, loading the URL included.
        recoverable: True when trying the same message again later may succeed; False when
            sent, for a URL apprise cannot load, a message apprise cannot prepare, and an HTTP
            answer that will not change (400, 401, 403, 404, 410, 413, 422…).
    """

    status: Literal["sent", "failed", "timeout"]
    reason: str | None
    elapsed: float
    recoverable: bool

    @property
    def ok(self) -> bool:
        """True when the channel accepted the notification."""
        return self.status == "sent"


class Notifier(Protocol):
    """Sends one notification to one channel URL (a fake in the dispatcher's tests)."""

    # apprise enforces the budget itself and reports TIMEOUT apart from FAILURE, so it takes a number.
    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109
        """Sends ``notification`` to ``url`` within ``timeout`` seconds; never raises for a delivery problem."""
        ...


def _reason(result: AppriseResult) -> str | None:
    """Apprise's WARNING/ERROR lines for the last attempt of each service that did not succeed."""
    entries = [
        entry
        for service in result
        if service.status != AppriseResultStatus.SUCCESS and service.attempts
        for entry in service.attempts[-1].logs
    ]
    if not entries:
        # Nothing was attempted (a message apprise could not prepare): the reason is call-level.
        entries = list(result.call_logs())
    messages = [e.message for e in entries if logging.getLevelName(e.level) in (logging.WARNING, logging.ERROR)]
    return _joined(messages)


def _joined(lines: list[str]) -> str | None:
    # A plugin that fans out logs the same line once per target; once is enough here.
    return " ".join(dict.fromkeys(lines)) or None


def _failed(raw: str | None, url: str, elapsed: float, *, otherwise: str) -> SendResult:
    """A delivery apprise tried and the channel did not take: its lines, scrubbed, as the reason."""
    reason = _scrub(raw, url) if raw else otherwise
    smtp = _SMTP_REPLY_RE.findall(raw or "")
    permanent = _http_status(raw) in _PERMANENT_HTTP_STATUSES or (bool(smtp) and smtp[-1].startswith("5"))
    return SendResult("failed", reason, elapsed, recoverable=not permanent)


def _raised(plugin: NotifyBase, exc: Exception, started: float) -> SendResult:
    """An exception out of apprise: named by its type only (its message may hold the URL)."""
    log.warning("apprise_raised", channel=_masked(plugin), error_type=type(exc).__name__)
    return SendResult("failed", f"apprise raised {type(exc).__name__}", time.monotonic() - started, recoverable=False)


def _http_status(reason: str | None) -> int | None:
    statuses = _HTTP_STATUS_RE.findall(reason or "")
    return int(statuses[-1]) if statuses else None


_ABANDON_GRACE: Final = 0.5
"""Seconds past the budget a direct send is still waited for before it is reported ``timeout``.

A read timeout clamped to the budget starts only once the request is out (after a pool thread
took the send and connected), so it ends a stalled send a little after the budget, as a failure
with apprise's reason. apprise waits 0.1 s past the budget (``_ABANDON_GRACE_SECONDS``); on a
loaded 2-CPU machine that lost the race now and then, and the send became a bare timeout."""

_send_pools: collections.OrderedDict[str, ThreadPoolExecutor] = collections.OrderedDict()
_pools_lock = threading.Lock()


def _pool(url: str) -> ThreadPoolExecutor:
    """The sending threads of one channel URL, made on first use.

    One pool per URL, not one for all: a send cannot be stopped once its thread runs, and a
    server that stalls (a mail server that never greets holds each thread for its timeouts, and
    a thread given up at the budget keeps running) would otherwise take every thread, and the
    other channels' messages would wait behind it. Each pool has the standard size (CPUs + 4, at
    most 32, as apprise's own pool had); threads start only when sends overlap, and each keeps
    its own connections (receiver.delivery.keepalive). At most ``_CACHE_SIZE`` pools (URLs come
    from the rules file); the oldest is let go when a reload brought more.
    """
    with _pools_lock:
        pool = _send_pools.get(url)
        if pool is None:
            pool = _send_pools[url] = ThreadPoolExecutor(thread_name_prefix="receiver-send")
            while len(_send_pools) > _CACHE_SIZE:
                _, oldest = _send_pools.popitem(last=False)
                oldest.shutdown(wait=False)  # its threads end with the sends they are in
        else:
            _send_pools.move_to_end(url)
        return pool


def _sends_directly(plugin: NotifyBase) -> bool:
    """Whether a plugin can be called directly.

    apprise's call layer, not the plugin, implements the URL options ``retry=``, ``optional=`` and
    ``emojis=``: a URL that sets one of them is sent through it.
    """
    return not (getattr(plugin, "retry", 0) or getattr(plugin, "optional", False) or plugin.interpret_emojis)


def _notify_plugin(plugin: NotifyBase, notification: Notification) -> tuple[bool, list[str]]:
    """Send through the plugin in this thread: (accepted, apprise's WARNING/ERROR lines meanwhile).

    A mail server's refusal adds its reply, ``SMTP <code> <text>``.
    """
    lines: list[str] = []
    replies: list[tuple[int, str]] = []
    token, smtp_token = _captured.set(lines), _smtp_replies.set(replies)
    try:
        ok = plugin.notify(
            body=notification.body,
            title=notification.title,
            notify_type=_TYPES[notification.severity],
            body_format=_FORMATS[notification.body_format],
        )
    finally:
        _smtp_replies.reset(smtp_token)
        _captured.reset(token)
    if not ok:
        lines += [f"SMTP {code} {text}" for code, text in replies]
    return bool(ok), lines


def _remember_urls(plugin: NotifyBase) -> None:
    """Make ``plugin.url(...)`` compute each distinct call once.

    apprise rebuilds the plugin's masked URL for the result of every send (``service_metadata``:
    URL parameters, formats, escaping), about a sixth of its CPU per send on the event loop. The
    URL depends only on the plugin's settings, which nothing changes once ``_prepare`` has run.
    """
    compute = plugin.url
    known: dict[tuple[Any, ...], Any] = {}

    def url(*args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        try:
            return known[key]
        except KeyError:
            value = known[key] = compute(*args, **kwargs)  # type: ignore[no-untyped-call]
            return value
        except TypeError:  # an argument that cannot be a key: computed every time
            return compute(*args, **kwargs)  # type: ignore[no-untyped-call]

    vars(plugin)["url"] = url  # an instance attribute shadows the method for this object only


class AppriseNotifier:
    """Sends through apprise: one ``Apprise`` object per channel URL, pacing off, one result per send.

    Args:
        app_id: the application name apprise shows (Slack footer, e-mail ``X-Application``,
            HTTP ``User-Agent``).
        connect_timeout: HTTP connect timeout (``cto``) for URLs that set none.
        read_timeout: HTTP read timeout (``rto``) for URLs that set none.
    """

    def __init__(
        self,
        app_id: str = "receiver",
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self._asset = AppriseAsset(app_id=app_id, secure_logging=True, service_timeout=_SERVICE_TIMEOUT)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._cache: dict[tuple[str, float], tuple[Apprise, NotifyBase]] = {}

    def _loaded(self, url: str, timeout: float) -> tuple[Apprise, NotifyBase] | None:
        """The ``Apprise`` object holding ``url``'s prepared plugin, built once per URL and timeout.

        Loading a URL costs more than a send to a nearby endpoint (docs/performance.md, "Fast paths").
        Reuse is safe: apprise keeps per-call state (attempts, logs) in
        contextvars and the result is per call, and ``_prepare`` zeroed the one thing a reused
        plugin remembers between sends, its pacing. Bounded: URLs come from the rules file, so
        only a reload brings new ones, and a full cache is simply started again.
        """
        key = (url, timeout)
        loaded = self._cache.get(key)
        if loaded is None:
            plugin = _load(url, self._asset)
            if plugin is None:
                return None
            self._prepare(plugin, url, timeout)
            apobj = Apprise(asset=self._asset)
            apobj.add(plugin)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            loaded = self._cache[key] = (apobj, plugin)
        return loaded

    def _prepare(self, plugin: NotifyBase, url: str, timeout: float) -> None:
        """Sets the per-send timeouts and turns off apprise's pacing on a freshly loaded plugin."""
        try:
            options = {key.lower() for key, _ in parse_qsl(urlsplit(url.strip()).query)}
        except ValueError:
            options = set()
        if "cto" not in options:
            # A plugin with its own default (e-mail: 15 s per SMTP operation) was tuned for its protocol.
            own = type(plugin).socket_connect_timeout
            default = self._connect_timeout if own == URLBase.socket_connect_timeout else own
            plugin.socket_connect_timeout = min(default, timeout)
        if "rto" not in options:
            own = type(plugin).socket_read_timeout
            default = self._read_timeout if own == URLBase.socket_read_timeout else own
            plugin.socket_read_timeout = min(default, timeout)
        plugin.request_rate_per_sec = 0
        _remember_urls(plugin)

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109
        """Sends one notification to one apprise URL.

        Args:
            url: the channel's apprise URL, secrets included.
            notification: what to send; its ``body_format`` is passed to apprise as is.
            timeout: the whole-send budget in seconds; past it the result is ``timeout``.

        Returns:
            The outcome; delivery problems never raise.

        Raises:
            ValueError: ``timeout`` is not a positive finite number (a caller bug, not a
                delivery problem).
        """
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"send timeout must be a positive number of seconds, got {timeout!r}")
        started = time.monotonic()
        loaded = self._loaded(url, timeout)
        if loaded is None:
            reason = check_url(url) or _load_failure(_scheme(url))
            return SendResult("failed", reason, time.monotonic() - started, recoverable=False)
        apobj, plugin = loaded
        if _sends_directly(plugin):
            return await self._send_directly(plugin, notification, url, timeout, started)
        try:
            result = await apobj.async_notify(
                body=notification.body,
                title=notification.title,
                notify_type=_TYPES[notification.severity],
                body_format=_FORMATS[notification.body_format],
                timeout=timeout,
            )
        except Exception as exc:  # noqa: BLE001  # every outcome is a SendResult
            return _raised(plugin, exc, started)
        with result:
            return self._outcome(result, url, time.monotonic() - started)

    @staticmethod
    async def _send_directly(
        plugin: NotifyBase,
        notification: Notification,
        url: str,
        timeout: float,  # noqa: ASYNC109 - the whole-send budget, as in send()
        started: float,
    ) -> SendResult:
        """Send through the plugin's ``notify()`` on the event loop or in a receiver thread, within ``timeout`` seconds.

        On the loop (``onloop.runs_on_loop``): past the budget the send is cancelled where it waits,
        and its connection closed. In a thread: past the budget the send is abandoned, as apprise
        does: a thread already sending cannot be stopped, and ends at the latest when its socket
        timeouts (clamped to the budget) do.
        """
        sending: Awaitable[tuple[bool, list[str]]]
        if onloop.runs_on_loop(plugin):
            # No thread hand-off per send (docs/performance.md, "Fast paths").
            sending = bridge.run(_notify_plugin, plugin, notification, executor=_pool(url))
        else:
            call = functools.partial(_notify_plugin, plugin, notification)
            sending = asyncio.wrap_future(_pool(url).submit(contextvars.copy_context().run, call))
        try:
            async with asyncio.timeout(timeout + _ABANDON_GRACE):
                ok, lines = await sending
        except TimeoutError:
            reason = f"no answer from {plugin.service_name} within the send budget of {timeout:g} s"
            return SendResult("timeout", reason, time.monotonic() - started, recoverable=True)
        except Exception as exc:  # noqa: BLE001  # every outcome is a SendResult
            return _raised(plugin, exc, started)
        elapsed = time.monotonic() - started
        if ok:
            return SendResult("sent", None, elapsed, recoverable=False)
        return _failed(_joined(lines), url, elapsed, otherwise=f"{plugin.service_name} reported a failure")

    @staticmethod
    def _outcome(result: AppriseResult, url: str, elapsed: float) -> SendResult:
        if result.status == AppriseResultStatus.SUCCESS:
            return SendResult("sent", None, elapsed, recoverable=False)
        raw = _reason(result)
        failed = _failed(raw, url, elapsed, otherwise=f"apprise reported {result.status.name}")
        if result.status == AppriseResultStatus.TIMEOUT:
            return SendResult("timeout", failed.reason, elapsed, recoverable=True)
        if len(result) == 0:
            # NOMATCH or a message apprise could not prepare: the same input fails the same way.
            return SendResult("failed", failed.reason, elapsed, recoverable=False)
        # FAILURE, or PARTIAL (impossible with one service, but not a success either).
        return failed


async def send_test(url: str, notifier: Notifier, *, timeout: float = DEFAULT_SEND_TIMEOUT) -> SendResult:  # noqa: ASYNC109
    """Sends the ``receiver send-test`` message to one channel URL.

    Args:
        url: the channel's apprise URL.
        notifier: what sends it (``AppriseNotifier`` in the CLI).
        timeout: the whole-send budget in seconds.

    Returns:
        The outcome, with apprise's reason when it failed.
    """
    sent_at = utc_text(time.time()) + " UTC"
    body = (
        f"This is a test notification from receiver {__version__} on host {socket.gethostname()!r}, "
        f"sent at {sent_at} by 'receiver send-test'. If you can read it, this channel works."
    )
    notification = Notification(title=TEST_TITLE, body=body, severity="info", body_format="text")
    return await notifier.send(url, notification, timeout=timeout)
