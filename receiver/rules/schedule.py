"""Time windows of maintenance silences: weekly schedules and date ranges in a time zone. Pure.

A window is written in ``rules.yaml`` under a silence::

    timezone: Europe/Berlin
    weekly:
      - days: [sat, sun]            # or "mon-fri", or a list mixing names and ranges
        from: "00:00"
        to: "24:00"
      - days: mon-fri
        from: "22:00"
        to: "02:00"                 # ends the next day: 22:00 Monday to 02:00 Tuesday, ...
    dates:
      - from: 2024-12-24            # a date: from its start
        to: 2024-12-26              # a date: to its end (inclusive)
      - from: "2024-11-02T20:00"    # a local date-time (or one with an offset)
        to: "2024-11-03T04:00"

Local times follow the zone's daylight-saving rules, as people on call read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from receiver.timefmt import format_local, from_unix

__all__ = [
    "DAY_NAMES",
    "DateRange",
    "Schedule",
    "WeeklyWindow",
    "parse_clock",
    "parse_days",
    "parse_hours",
    "parse_moment",
]

_SCAN_LIMIT = 15 * 24 * 60
"""Minutes a walk over a schedule looks at, at most (every weekly window recurs within a week)."""

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LONG_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def _day(name: str) -> int:
    folded = name.strip().lower()
    for names in (DAY_NAMES, _LONG_NAMES):
        if folded in names:
            return names.index(folded)
    raise ValueError(f"{name!r} is not a day; write mon, tue, wed, thu, fri, sat, sun (or a range like mon-fri)")


def parse_days(value: Any) -> frozenset[int]:
    """Read ``mon``, ``mon-fri``, ``sat,sun`` or a list of those into weekday numbers (Monday 0).

    A range wraps over the week end (``fri-mon`` is Friday to Monday).

    Raises:
        ValueError: an unknown day name, or an empty list.
    """
    items = value if isinstance(value, list) else [value]
    days: set[int] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a day name")
        for part in item.split(","):
            first, sep, last = part.partition("-")
            if not sep:
                days.add(_day(first))
                continue
            start, end = _day(first), _day(last)
            day = start
            days.add(day)
            while day != end:
                day = (day + 1) % 7
                days.add(day)
    if not days:
        raise ValueError("give at least one day")
    return frozenset(days)


def parse_clock(value: Any) -> int:
    """Read ``HH:MM`` (``00:00`` to ``24:00``) into minutes after midnight.

    Raises:
        ValueError: anything else.
    """
    m = _CLOCK.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"{value!r} is not a time of day; write HH:MM, e.g. 22:00 (quote it in YAML)")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{value!r} is not a time of day between 00:00 and 24:00")
    return hours * 60 + minutes


def parse_moment(value: Any, zone: ZoneInfo, *, end: bool) -> datetime:
    """Read a date or an ISO 8601 date-time as an aware datetime.

    A date is the start of that day in ``zone``, or with ``end`` the start of the next day
    (date ranges include their last day). A date-time without an offset is local to ``zone``.

    Raises:
        ValueError: anything else.
    """
    moment: date | datetime
    if isinstance(value, datetime | date):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a date (2024-12-24) or date-time (2024-12-24T18:00)") from exc
    else:
        raise ValueError(f"{value!r} is not a date (2024-12-24) or date-time (2024-12-24T18:00)")
    if not isinstance(moment, datetime):
        day = moment + timedelta(days=1) if end else moment
        return datetime(day.year, day.month, day.day, tzinfo=zone)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def parse_hours(value: Any) -> tuple[frozenset[int], int, int]:
    """Read ``mon-fri 07:00-19:00`` (or ``07:00-19:00`` for every day) into (days, start, end minutes).

    Raises:
        ValueError: anything else.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a time window; write e.g. 'mon-fri 07:00-19:00'")
    *days_part, hours = value.split()
    start_text, sep, end_text = hours.partition("-")
    if not sep:
        raise ValueError(f"{value!r}: write the hours as HH:MM-HH:MM, e.g. 'mon-fri 07:00-19:00'")
    days = parse_days("".join(days_part)) if days_part else frozenset(range(7))
    start, end = parse_clock(start_text), parse_clock(end_text)
    return days, start % 1440, end if end != start else start + 1440


@dataclass(frozen=True, slots=True)
class WeeklyWindow:
    """Every listed weekday from ``start`` to ``end`` minutes after local midnight.

    ``end <= start`` means the window ends the next day (``22:00`` to ``02:00``; ``00:00`` to
    ``00:00`` is the whole day).
    """

    days: frozenset[int]
    start: int
    end: int

    def active(self, local: datetime) -> bool:
        """True when ``local`` (a time in the schedule's zone) is inside the window."""
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        yesterday = (weekday - 1) % 7
        return (weekday in self.days and minute >= self.start) or (yesterday in self.days and minute < self.end)

    def describe(self) -> str:
        """``sat,sun 00:00-24:00``."""
        days = ",".join(DAY_NAMES[d] for d in sorted(self.days)) if len(self.days) < 7 else "every day"
        return f"{days} {_clock(self.start)}-{_clock(self.end)}"


@dataclass(frozen=True, slots=True)
class DateRange:
    """From ``start`` (included) to ``end`` (excluded), both aware."""

    start: datetime
    end: datetime

    def active(self, moment: datetime) -> bool:
        """True when ``moment`` is inside the range."""
        return self.start <= moment < self.end

    def describe(self, zone: ZoneInfo) -> str:
        """``2024-12-24 00:00 to 2024-12-27 00:00``, in ``zone``."""
        fmt = "%Y-%m-%d %H:%M"
        return f"{format_local(self.start, zone, fmt)} to {format_local(self.end, zone, fmt)}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a maintenance silence holds: any weekly window or any date range, in ``zone``."""

    zone: ZoneInfo
    weekly: tuple[WeeklyWindow, ...] = ()
    dates: tuple[DateRange, ...] = ()

    def active(self, at: float) -> bool:
        """True when the Unix time ``at`` falls into a window of the schedule."""
        moment = from_unix(at)
        if any(r.active(moment) for r in self.dates):
            return True
        if not self.weekly:
            return False
        local = moment.astimezone(self.zone)
        return any(w.active(local) for w in self.weekly)

    def active_seconds(self, start: float, end: float) -> float:
        """Seconds of ``[start, end)`` inside the schedule, counted by the minute (its windows' resolution)."""
        total, at = 0.0, start
        for _ in range(_SCAN_LIMIT):
            if at >= end:
                break
            step = min(end, (at // 60 + 1) * 60)
            if self.active(at):
                total += step - at
            at = step
        else:
            total += end - at  # past the scan: beyond any weekly pattern, count it whole
        return total

    def after_active(self, start: float, seconds: float) -> float:
        """The moment at which ``seconds`` inside the schedule have passed since ``start``."""
        left, at = seconds, start
        for _ in range(_SCAN_LIMIT + int(seconds // 60) + 1):
            step = (at // 60 + 1) * 60
            if self.active(at):
                if step - at >= left:
                    return at + left
                left -= step - at
            at = step
        return at + left  # a schedule never active in the scan: count from its end

    def changes(self, at: float, until: float) -> list[tuple[float, bool]]:
        """When the schedule starts or stops holding after ``at`` and up to ``until``: (Unix time, holds after).

        The schedule can change only at a window's edge, so only those are looked at: each weekly
        window's start and end on every local day of the span (both readings of a local time that
        a daylight-saving change makes ambiguous), and each date range's ends.
        """
        edges: set[float] = set()
        for r in self.dates:
            edges.update((r.start.timestamp(), r.end.timestamp()))
        if self.weekly:
            first = from_unix(at).astimezone(self.zone).date() - timedelta(days=1)
            last = from_unix(until).astimezone(self.zone).date() + timedelta(days=1)
            day = first
            while day <= last:
                for w in self.weekly:
                    for minute in (w.start, w.end):
                        local = datetime(day.year, day.month, day.day, tzinfo=self.zone) + timedelta(minutes=minute)
                        naive = local.replace(tzinfo=None)
                        for fold in (0, 1):
                            edges.add(naive.replace(tzinfo=self.zone, fold=fold).timestamp())
                day += timedelta(days=1)
        found: list[tuple[float, bool]] = []
        holds = self.active(at)
        for edge in sorted(e for e in edges if at < e <= until):
            now_holds = self.active(edge)
            if now_holds != holds:
                found.append((edge, now_holds))
                holds = now_holds
        return found

    def describe(self) -> str:
        """One line: ``weekly sat,sun 00:00-24:00; dates 2024-12-24 00:00 to ... (Europe/Berlin)``."""
        parts: list[str] = []
        if self.weekly:
            parts.append("weekly " + ", ".join(w.describe() for w in self.weekly))
        if self.dates:
            parts.append("dates " + ", ".join(r.describe(self.zone) for r in self.dates))
        return "; ".join(parts) + f" ({self.zone.key})"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
