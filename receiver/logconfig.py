"""Logging set-up: structlog for our own lines, and the stdlib loggers (uvicorn, apprise) routed
through the same processors, so the output is one stream in one format.

JSON when stderr is not a terminal (or ``log_format=json``), a readable console format on a
terminal. Called once from ``cli`` or ``create_app``; importing receiver configures nothing.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import sys
import threading
from asyncio import events as asyncio_events
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

from receiver.settings import Settings

__all__ = ["configure_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _StderrLogger:
    """structlog's WriteLogger, writing to whatever ``sys.stderr`` is when a line is written.

    Looked up per write, not kept: the bound loggers are cached for good on first use, and
    whoever swaps ``sys.stderr`` (pytest's capture, a daemon manager) must still get our lines.

    On the event loop, lines are gathered and written once per turn of the loop: after a group
    commit, the answers to a whole batch of webhooks are sent in one turn, and their summary
    lines then cost one write instead of one each (~4 µs apiece). At most that turn's lines wait,
    and ``atexit`` writes whatever is left. Other threads (the store's, apprise's) write at once.
    """

    _lock = threading.Lock()

    def __init__(self) -> None:
        # Per loop: each loop's thread alone appends to its list, and its own next turn writes it.
        self._pending: dict[asyncio.AbstractEventLoop, list[str]] = {}

    def msg(self, message: str) -> None:
        loop = asyncio_events._get_running_loop()
        if loop is None:  # another thread (the store's, apprise's): write now
            self._write(message + "\n")
            return
        pending = self._pending.get(loop)
        if pending is None:
            for ended in [other for other in self._pending if other.is_closed()]:
                self._flush_loop(ended)  # a loop that ended before its turn came (tests run many)
            try:
                loop.call_soon(self._flush_loop, loop)
            except RuntimeError:  # the loop is closing: no later turn will come
                self._write(message + "\n")
                return
            pending = self._pending[loop] = []
        pending.append(message)

    def _flush_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        lines = self._pending.pop(loop, None)
        if lines:
            self._write("\n".join(lines) + "\n")

    def flush(self) -> None:
        """Write every line gathered so far (at exit)."""
        for loop in list(self._pending):
            self._flush_loop(loop)

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
    """One JSON line: orjson (~1 µs for a summary line, against ~5 µs for ``json.dumps``), ``json`` when it can't.

    Anything neither knows becomes its repr, as with structlog's own renderer.
    """
    try:
        return orjson.dumps(event_dict, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError: an int past 64 bits, a str with lone surrogates, ...
        return json.dumps(event_dict, default=repr)


def _add_logger_name(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # The stdlib lines carry their logger's name; ours say where they come from too.
    event_dict.setdefault("logger", "receiver")
    return event_dict


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
    # caller lookup and handler per line, which cost ~10 µs of every webhook (docs/performance.md).
    # The stdlib loggers (uvicorn, apprise) still go through ProcessorFormatter: one stream, one format.
    structlog.configure(
        processors=[*shared, _add_logger_name, structlog.processors.format_exc_info, renderer],
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
    # watchfiles announces every change it sees at INFO; our own rules_reloaded line says what matters.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    # urllib3 at DEBUG logs request paths, which hold Slack tokens and the Workflows sig=.
    for name in ("apprise", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.INFO, _LEVELS[settings.log_level]))
