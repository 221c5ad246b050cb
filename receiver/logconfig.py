"""Logging set-up: structlog for our own lines, and the stdlib loggers (uvicorn, apprise) routed
through the same processors, so the output is one stream in one format.

JSON when stderr is not a terminal (or ``log_format=json``), a readable console format on a
terminal. Called once from ``cli`` or ``create_app``; importing receiver configures nothing.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
import time  # noqa: F401 - the clock of now_iso_utc, which tests reach as logconfig.time
from asyncio import events as asyncio_events
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from receiver.jsonfmt import dumps_text
from receiver.settings import Settings
from receiver.timefmt import now_iso_utc

__all__ = ["configure_logging", "log_summary"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _StderrLogger:
    """structlog's WriteLogger, writing to whatever ``sys.stderr`` is when a line is written.

    Looked up per write, not kept: the bound loggers are cached for good on first use, and
    whoever swaps ``sys.stderr`` (pytest's capture, a daemon manager) must still get our lines.

    On the event loop, lines are gathered and written once per turn of the loop: after a group
    commit, the answers to a whole batch of webhooks are sent in one turn, and their summary
    lines then cost one write instead of one each (docs/performance.md, "Fast paths"). At most
    that turn's lines wait, and ``atexit`` writes whatever is left. Other threads (the store's,
    apprise's) write at once.
    """

    _lock = threading.Lock()

    def __init__(self) -> None:
        # Per thread running a loop: that loop and the lines its next turn writes. Keyed by thread
        # id, because asyncio's own lookup of the running loop costs a getpid() system call.
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, list[str]]] = {}

    def msg(self, message: str) -> None:
        gathered = self._pending.get(threading.get_ident())
        if gathered is not None and gathered[0].is_running():
            gathered[1].append(message)
            return
        self._gather(message)

    def _gather(self, message: str) -> None:
        """The first line of a turn: schedule the write on the running loop, or write now without one."""
        thread = threading.get_ident()
        self._flush_thread(thread)  # left over from a loop that stopped before its turn came
        loop = asyncio_events._get_running_loop()
        if loop is None:  # another thread (the store's, apprise's): write now
            self._write(message + "\n")
            return
        try:
            loop.call_soon(self._flush_thread, thread)
        except RuntimeError:  # the loop is closing: no later turn will come
            self._write(message + "\n")
            return
        self._pending[thread] = (loop, [message])

    def _flush_thread(self, thread: int) -> None:
        gathered = self._pending.pop(thread, None)
        if gathered is not None and gathered[1]:
            self._write("\n".join(gathered[1]) + "\n")

    def flush(self) -> None:
        """Write every line gathered so far (at exit)."""
        for thread in list(self._pending):
            self._flush_thread(thread)

    def _write(self, text: str) -> None:
        with self._lock:
            stream = sys.stderr
            stream.write(text)
            stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = failure = err = log = msg


_STDERR_LOGGER = _StderrLogger()
atexit.register(_STDERR_LOGGER.flush)


def _stderr_logger(*_: Any) -> _StderrLogger:
    return _STDERR_LOGGER


def _dumps(event_dict: EventDict, **_: Any) -> str:
    """One JSON line; anything JSON does not know becomes its repr, as with structlog's own renderer."""
    return dumps_text(event_dict, default=repr, non_str_keys=True)


def _add_logger_name(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # The stdlib lines carry their logger's name; ours say where they come from too.
    event_dict.setdefault("logger", "receiver")
    return event_dict


def log_summary(level: str, event: str, fields: dict[str, Any]) -> None:
    """One of the lines written once per webhook, event or send, at ``level``: the one way to write them.

    Those are a request's summary (``webhook_received``, ``webhook_refused``, ...), an event's
    ``event_processed`` and a send's ``notification_sent``. Once ``configure_logging`` chose JSON,
    it is rendered here with the keys structlog's chain gives every line (``event``, ``level``,
    ``timestamp``, ``logger``) but without running the chain, which is most of a line's cost
    (docs/performance.md, "Fast paths"). Otherwise structlog writes it.
    """
    minimum = _summary_minimum
    if minimum is None or structlog.get_config()["processors"] is not _summary_chain:
        # Not configured for JSON, or structlog's chain was swapped since (capture_logs in tests).
        getattr(_summary_log, level)(event, **fields)
        return
    if _LEVELS[level] < minimum:
        return
    line = dict(fields)
    line["event"] = event
    line["level"] = level
    line["timestamp"] = now_iso_utc()
    line["logger"] = "receiver"
    _STDERR_LOGGER.msg(_dumps(line))


_summary_log = structlog.get_logger()
_summary_minimum: int | None = None
_summary_chain: list[Any] = []
"""The level below which summary lines are dropped, when they are rendered by ``log_summary``; None: by structlog."""


def configure_logging(settings: Settings) -> None:
    """Configure structlog and the stdlib root logger from ``settings``.

    Args:
        settings: supplies ``log_format`` (auto/json/console) and ``log_level``.
    """
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(_dumps)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # Our own lines are rendered by structlog and written to stderr directly: no stdlib LogRecord,
    # caller lookup and handler per line (docs/performance.md, "Fast paths").
    # The stdlib loggers (uvicorn, apprise) still go through ProcessorFormatter: one stream, one format.
    global _summary_minimum, _summary_chain
    _summary_minimum = _LEVELS[settings.log_level] if as_json else None
    _summary_chain = [*shared, _add_logger_name, structlog.processors.format_exc_info, renderer]
    structlog.configure(
        processors=_summary_chain,
        logger_factory=_stderr_logger,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[settings.log_level]),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[settings.log_level])
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn installs its own handlers; drop them so its lines come through ours.
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The access log duplicates our per-webhook summary line.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # apprise at DEBUG prints full webhook URLs with their tokens: never below INFO.
    # urllib3 at DEBUG logs request paths, which hold Slack tokens and the Workflows sig=.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, _LEVELS[settings.log_level]))
    # apprise's INFO lines ("Notifying 1 service(s) asynchronously.", "Sent Slack notification.")
    # repeat our notification_sent line, two per send through the stdlib formatter (docs/performance.md,
    # "Fast paths"). Its warnings and errors (why a send failed) stay; at log level debug its INFO
    # lines come back, for troubleshooting.
    apprise_level = logging.INFO if settings.log_level == "debug" else max(logging.WARNING, _LEVELS[settings.log_level])
    logging.getLogger("apprise").setLevel(apprise_level)
