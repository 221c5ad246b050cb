"""Ad-hoc silences as the CLI and the admin API create and show them (the glue to the store).

Both ``receiver silence add`` and ``POST /api/silences`` build a silence with
:func:`build_silence`, which checks the matchers with the rules' compiler (unknown fields get a
did-you-mean, enum values are checked) and the time range, so a silence that could never match
is refused when it is made, not discovered when it fails to mute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from receiver.noise import MatcherError, compile_matchers, parse_matchers
from receiver.rules import RuleSet, parse_duration
from receiver.store import NewSilence, SilenceRow
from receiver.timefmt import iso_utc, parse_iso

__all__ = [
    "UPCOMING_SECONDS",
    "SilenceError",
    "WindowState",
    "build_silence",
    "maintenance_windows",
    "parse_time",
    "silence_json",
    "silence_state",
]

UPCOMING_SECONDS = 7 * 86400.0
"""How far ahead the next start of a maintenance window is looked for (and the end of one in force)."""

_MAX_SECONDS = 366 * 86400.0


class SilenceError(ValueError):
    """A silence that cannot be created; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def parse_time(value: Any) -> float:
    """Unix seconds from a number or an ISO 8601 date-time (without an offset: UTC).

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_iso(value).timestamp()
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 date-time, e.g. 2026-03-01T18:00:00Z") from exc
    raise ValueError(f"{value!r} is not a time")


def build_silence(
    matchers: Sequence[str],
    *,
    comment: str,
    created_by: str,
    now: float,
    duration: Any = None,
    starts_at: Any = None,
    ends_at: Any = None,
) -> NewSilence:
    """Check and build a silence.

    Args:
        matchers: ``FIELD=VALUE``-style matchers, one or several per item.
        comment: why (required, as in Alertmanager: the next person on call reads it).
        created_by: who.
        now: the current time.
        duration: how long from its start (``2h``; a duration of rules.yaml), or None with ``ends_at``.
        starts_at: when it starts (default now).
        ends_at: when it ends, instead of ``duration``.

    Raises:
        SilenceError: with every problem found.
    """
    problems: list[str] = []
    written: list[str] = []
    try:
        parsed = parse_matchers(matchers)
        compile_matchers(parsed)
        written = [str(m) for m in parsed]
    except MatcherError as exc:
        problems.extend(exc.problems)
    if not comment.strip():
        problems.append("give a comment: why is this silenced (the next person on call will read it)")
    if not created_by.strip():
        problems.append("give the creator's name")
    start, end = now, None
    try:
        start = now if starts_at is None else parse_time(starts_at)
        if (duration is None) == (ends_at is None):
            problems.append("give either a duration (--for 2h) or an end time (--until), not both")
        elif duration is not None:
            end = start + parse_duration(duration).total_seconds()
        else:
            end = parse_time(ends_at)
    except ValueError as exc:
        problems.append(str(exc))
    if not (0 <= start < _LAST_SECOND) or (end is not None and not end < _LAST_SECOND):
        # Such times cannot be written as dates: stored, one would break every listing of silences.
        problems.append("times must lie between 1970 and the year 9999")
    elif end is not None and end <= max(start, now):
        problems.append("the silence would end before it starts, or is over already")
    if end is not None and end - start > _MAX_SECONDS:
        problems.append("a silence may last a year at most; use a rule with notify: [] for good")
    if problems or end is None:
        raise SilenceError(problems)
    return NewSilence(tuple(written), comment.strip(), created_by.strip(), start, end)


_LAST_SECOND = 253402300800.0  # 10000-01-01T00:00:00Z


def silence_state(row: SilenceRow, now: float) -> str:
    """``pending`` (not started), ``active`` or ``expired``."""
    if now < row.starts_at:
        return "pending"
    return "active" if now < row.ends_at else "expired"


def silence_json(row: SilenceRow, now: float) -> dict[str, Any]:
    """A silence as the admin API and ``receiver silence list --json`` show it."""
    return {
        "id": row.id,
        "matchers": list(row.matchers),
        "comment": row.comment,
        "created_by": row.created_by,
        "created_at": iso_utc(row.created_at),
        "starts_at": iso_utc(row.starts_at),
        "ends_at": iso_utc(row.ends_at),
        "state": silence_state(row, now),
    }


@dataclass(frozen=True, slots=True)
class WindowState:
    """A maintenance window of rules.yaml (``silences:``) as seen at one moment.

    Attributes:
        name: its name.
        when: its schedule in one line.
        rules: the rules it is limited to, or "every rule".
        comment: its comment, or "".
        active: it holds now.
        ends_at: when it stops holding (if active; None: not within the look-ahead).
        starts_at: when it next starts holding (if not active; None: not within the look-ahead).
    """

    name: str
    when: str
    rules: str
    comment: str
    active: bool
    ends_at: float | None
    starts_at: float | None

    @property
    def upcoming(self) -> bool:
        """Not holding now, but starting within the look-ahead."""
        return not self.active and self.starts_at is not None


def maintenance_windows(ruleset: RuleSet, *, now: float, ahead: float = UPCOMING_SECONDS) -> list[WindowState]:
    """Every maintenance window of ``ruleset`` at ``now``: whether it holds, until when, or when it next starts.

    Args:
        ruleset: the rules in force.
        now: the current Unix time.
        ahead: how far ahead to look for an end or a next start, in seconds.
    """
    states = []
    for window in ruleset.silences:
        active = window.schedule.active(now)
        changes = window.schedule.changes(now, now + ahead)
        ends = next((at for at, holds in changes if not holds), None) if active else None
        starts = None if active else next((at for at, holds in changes if holds), None)
        states.append(
            WindowState(
                name=window.name,
                when=window.schedule.describe(),
                rules=", ".join(window.rules) or "every rule",
                comment=window.comment or "",
                active=active,
                ends_at=ends,
                starts_at=starts,
            )
        )
    return states
