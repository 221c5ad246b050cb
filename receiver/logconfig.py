"""Logging set-up: structlog for our own lines, and the stdlib loggers (uvicorn, apprise) routed
through the same processors, so the output is one stream in one format.

JSON when stderr is not a terminal (or ``log_format=json``), a readable console format on a
terminal. Called once from ``cli`` or ``create_app``; importing receiver configures nothing.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from receiver.settings import Settings

__all__ = ["configure_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(settings: Settings) -> None:
    """Configure structlog and the stdlib root logger from ``settings``.

    Args:
        settings: supplies ``log_format`` (auto/json/console) and ``log_level``.
    """
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[settings.log_level]),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
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
