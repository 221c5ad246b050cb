"""Time as receiver reads and writes it: Unix seconds inside, ISO 8601 at the edges, local text for people.

Every module that parses or formats a time goes through these functions, so one rule (a time
without an offset is UTC; what people read is in the rules' time zone) holds everywhere.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, tzinfo
from typing import Any

__all__ = [
    "TIME_FORMAT",
    "UTC_FORMAT",
    "format_local",
    "from_unix",
    "iso_utc",
    "local_text",
    "now_iso_utc",
    "parse_iso",
    "utc_text",
]

TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"
"""How a person reads a time: ``2026-03-01 19:00:00 CET`` (messages, reasons, the web page)."""

UTC_FORMAT = "%Y-%m-%d %H:%M:%S"
"""The CLI's tables, whose column headers say ``(UTC)``."""


def parse_iso(text: str) -> datetime:
    """An ISO 8601 date-time (``Z``, ``z`` or an offset; none means UTC) as an aware datetime.

    Raises:
        ValueError: ``text`` is not an ISO 8601 date or date-time.
    """
    text = text.strip()
    if text.endswith("z"):  # RFC 3339 allows the lower-case form; fromisoformat does not
        text = text[:-1] + "Z"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def from_unix(at: float) -> datetime:
    """Unix seconds as an aware datetime in UTC."""
    return datetime.fromtimestamp(at, tz=UTC)


def iso_utc(at: float) -> str:
    """Unix seconds as ISO 8601 in UTC (``2026-03-01T18:00:00+00:00``), as the JSON answers carry them."""
    return from_unix(at).isoformat()


def utc_text(at: float) -> str:
    """Unix seconds as ``2026-03-01 18:00:00`` in UTC (the CLI's tables)."""
    return from_unix(at).strftime(UTC_FORMAT)


def local_text(at: float, zone: tzinfo, fmt: str = TIME_FORMAT) -> str:
    """Unix seconds as text in ``zone`` (``2026-03-01 19:00:00 CET`` by default)."""
    return from_unix(at).astimezone(zone).strftime(fmt)


def format_local(value: Any, zone: tzinfo, fmt: str = TIME_FORMAT) -> str:
    """A datetime as text in ``zone`` (a naive one is UTC); None as ``""``, anything else as ``str``."""
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(zone).strftime(fmt))


_second: tuple[int, str] = (0, "")
"""The last whole second ``now_iso_utc`` was asked in, and its text up to the seconds."""


def now_iso_utc() -> str:
    """Now in ISO 8601, UTC, to the microsecond (``2026-12-03T12:33:33.004512Z``).

    The text up to the second is formatted once per second: this stamps every summary log line
    (docs/performance.md, "Fast paths").
    """
    global _second
    now = time.time()
    whole = int(now)
    micros = round((now - whole) * 1_000_000)  # rounded as datetime.fromtimestamp rounds
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    second, text = _second
    if whole != second:
        text = from_unix(whole).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, text)  # one tuple: a thread reading it sees both halves of the same second
    return f"{text}.{micros:06d}Z"
