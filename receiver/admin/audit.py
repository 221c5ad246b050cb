"""What became of each event, as the admin API and the web page show it.

Both read the same views, so ``GET /api/events`` and ``/ui`` never disagree: an event with the
rules it matched, the noise decisions taken about it and the deliveries it produced; on request,
why every other rule did not match (``RuleSet.explain`` on the stored body, re-parsed, against
the rules in force *now*, which is said in the answer: the rules that processed the event may
have been different); a delivery with its attempt log.

Query values come from URLs: ``parse_time`` reads the time-range bounds (Unix seconds, ISO 8601,
or a duration back from now such as ``90m``), ``event_query`` builds the store's filter and
refuses what it cannot read with :class:`QueryError` (one message per problem).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from receiver.errors import EventParseError
from receiver.events import has_lone_surrogate, map_strings, without_lone_surrogates
from receiver.metrics import ChannelQueue, QueueSnapshot
from receiver.noise import Decision, parse_stored, silent_reason
from receiver.rules import RuleSet
from receiver.store import AttemptRow, DeliveryRow, EventQuery, EventRow, NoiseLogEntry, NoiseLogRow, ReadStore
from receiver.timefmt import parse_iso

__all__ = [
    "DELIVERY_STATES",
    "EVENT_STATES",
    "QueryError",
    "attempt_json",
    "body_json",
    "decision_of",
    "delivery_json",
    "event_json",
    "event_query",
    "explain_event",
    "noise_json",
    "parse_id",
    "parse_time",
    "queue_snapshot",
]

EVENT_STATES = ("new", "processed", "unparsed")
DELIVERY_STATES = ("pending", "failing", "sent", "dead")
"""``failing`` is a filter, not a stored state: pending deliveries with at least one failed attempt."""

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_SECONDS = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_TEXT_LIMIT = 200

MAX_ID = 2**63 - 1
"""The largest row id either store can hold (SQLite INTEGER and PostgreSQL bigint are signed 64-bit)."""


def parse_id(value: str) -> int | None:
    """A row id from a URL: ASCII digits up to :data:`MAX_ID`, else None.

    ``str.isdigit`` alone is not enough: it is true for ``"²"``, which ``int`` refuses, and a
    longer number overflows the database's 64-bit integer. Both reached the store as 500s.
    """
    if not (value.isascii() and value.isdigit()) or len(value) > len(str(MAX_ID)):
        return None
    number = int(value)
    return number if number <= MAX_ID else None


class QueryError(ValueError):
    """Query parameters that cannot be read; ``problems`` names each one."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def parse_time(value: str, *, now: float) -> float:
    """A time bound from a URL: Unix seconds, ISO 8601 (UTC when no offset), or a duration ago.

    Args:
        value: ``1767225600``, ``2026-01-01T00:00:00Z``, ``2026-01-01``, or ``15m`` / ``2h`` / ``7d``.
        now: the current Unix time, for durations.

    Returns:
        Unix seconds.

    Raises:
        ValueError: none of those forms.
    """
    text = value.strip()
    duration = _DURATION.match(text)
    if duration:
        return now - float(duration.group(1)) * _UNITS[duration.group(2)]
    if _SECONDS.match(text):
        # Not float() on anything: it reads "nan", "inf" and "1e400", and a NaN bound matches nothing.
        return float(text)
    try:
        return parse_iso(text).timestamp()
    except ValueError:
        raise ValueError(
            f"{value[:_TEXT_LIMIT]!r} is not a time: use Unix seconds, ISO 8601 (2026-01-31T08:00:00Z) "
            "or a duration back from now (15m, 2h, 7d)"
        ) from None


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    return value[:_TEXT_LIMIT] or None


def event_query(params: Mapping[str, str], types: Sequence[str], *, now: float) -> EventQuery:
    """The store filter of ``GET /api/events`` (and the web page's event filter).

    Args:
        params: the query parameters: ``source``, ``process``, ``robot`` (exact, any casing, ``*``
            as a wildcard), ``state`` (new, processed, unparsed), ``since``/``until`` (see
            :func:`parse_time`), ``before`` (an event id, for the next page).
        types: the ``type`` values (repeated and/or comma-separated; ``*`` as a wildcard).
        now: the current Unix time.

    Raises:
        QueryError: every parameter that cannot be read.
    """
    problems: list[str] = []
    state = _text(params, "state")
    if state is not None and state not in EVENT_STATES:
        problems.append(f"state {state!r} is not one of {', '.join(EVENT_STATES)}")
    bounds: dict[str, float | None] = {}
    for name in ("since", "until"):
        raw = _text(params, name)
        try:
            bounds[name] = None if raw is None else parse_time(raw, now=now)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    before_text = _text(params, "before")
    before = None if before_text is None else parse_id(before_text)
    if before_text is not None and before is None:
        problems.append(f"before {before_text!r} is not an event id")
    if problems:
        raise QueryError(problems)
    names = tuple(dict.fromkeys(t.strip()[:_TEXT_LIMIT] for value in types for t in value.split(",") if t.strip()))
    return EventQuery(
        source=_text(params, "source"),
        types=names,
        process=_text(params, "process"),
        robot=_text(params, "robot"),
        state=state,
        since=bounds["since"],
        until=bounds["until"],
        before=before,
    )


def _outcome(row: EventRow) -> dict[str, Any] | None:
    """The stored outcome, its noise decisions in :meth:`Decision.to_json`'s form (older rows too)."""
    if not row.outcome:
        return None
    try:
        data = json.loads(row.outcome)
    except ValueError:
        return {"detail": row.outcome[:1000]}
    if not isinstance(data, dict):
        return {"detail": data}
    if isinstance(data.get("noise"), list):
        data["noise"] = [d.to_json() for d in _decisions(data["noise"])]
    return data


def _decisions(stored: Iterable[Any]) -> list[Decision]:
    decisions = []
    for item in stored:
        if isinstance(item, dict):
            try:
                decisions.append(Decision.from_json(item))
            except ValueError:
                continue
    return decisions


def _summary(row: EventRow, outcome: dict[str, Any] | None, deliveries: Sequence[DeliveryRow]) -> str:
    """One word for what became of the event: what a person scanning a table wants first."""
    if row.state == "new":
        return "waiting"
    if row.state == "unparsed":
        return "unparsed"
    states = {d.state for d in deliveries}
    if "dead" in states:
        return "dead"
    if any(d.state == "pending" and d.attempts > 0 for d in deliveries):
        return "failing"
    if "pending" in states:
        return "sending"
    if states == {"sent"}:
        return "notified"
    noise = (outcome or {}).get("noise")
    if isinstance(noise, list) and any(d["suppressed"] for d in noise):
        return "suppressed"
    return "matched" if (outcome or {}).get("matched") else "unmatched"


def event_json(row: EventRow, deliveries: Sequence[DeliveryRow] = ()) -> dict[str, Any]:
    """An event as the admin API shows it (without its body).

    ``result`` sums up what became of it: waiting, unparsed, notified, sending, failing, dead,
    suppressed (a matched rule sent nothing because of noise control), matched (a rule matched
    that notifies nobody), unmatched.
    """
    outcome = _outcome(row)
    return {
        "id": row.id,
        "source": row.source,
        "event_id": row.event_id,
        "type": row.type,
        "received_at": row.received_at,
        "event_time": row.event_time,
        "state": row.state,
        "processed_at": row.processed_at,
        "process": row.process,
        "robot": row.robot,
        "result": _summary(row, outcome, deliveries),
        "matched_rules": list((outcome or {}).get("matched") or []),
        "decisions": list((outcome or {}).get("noise") or []),
        "outcome": outcome,
        "deliveries": [delivery_json(d, brief=True) for d in deliveries],
    }


def delivery_json(row: DeliveryRow, *, brief: bool = False) -> dict[str, Any]:
    """A delivery as the admin API shows it (``brief``: inside an event, without the message)."""
    data: dict[str, Any] = {
        "id": row.id,
        "inbox_id": row.inbox_id,
        "rule": row.rule,
        "channel": row.channel,
        "state": row.state,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "next_attempt_at": row.next_attempt_at if row.state == "pending" else None,
        "sent_at": row.sent_at,
    }
    if not brief:
        data.update(title=row.title, severity=row.severity)
    return data


def attempt_json(row: AttemptRow) -> dict[str, Any]:
    """One attempt of a delivery: when, the result (sent, failed, dead), the channel's reason, how long."""
    return {"at": row.at, "status": row.status, "reason": row.reason, "elapsed": row.elapsed}


def body_json(row: EventRow) -> Any:
    """The stored body as JSON, or as text when it is not JSON (an unparsed event is kept whole).

    ``NaN``, ``Infinity`` and numbers past a float (``1e999``) count as not JSON: Python reads
    them (the edge accepts such a body) but no JSON answer can write them back.

    A lone surrogate in it (JSON allows ``"\\ud800"``; a text cut inside a UTF-16 pair ends in one)
    is shown as U+FFFD: the answer and the page are UTF-8, which cannot carry it.
    """
    try:
        decoded = json.loads(row.body, parse_constant=_not_json, parse_float=_finite)
        return map_strings(decoded, has_lone_surrogate, without_lone_surrogates)
    except (ValueError, RecursionError):
        return row.body.decode("utf-8", errors="replace")


def _not_json(name: str) -> Any:
    # NaN, Infinity, -Infinity: json.loads reads them, JSON has none, and the answer could not be written.
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is past a float")
    return value


async def queue_snapshot(store: ReadStore, *, now: float, channels: Iterable[str] = ()) -> QueueSnapshot:
    """The inbox and outbox as ``/metrics`` and the web page show them (ages in seconds from ``now``).

    Args:
        store: where to read them.
        now: the current Unix time.
        channels: channels to report even with nothing queued (the configured ones), so that
            their series exist at 0 instead of appearing only when something goes wrong.
    """
    stats = await store.queue_stats(now=now)
    idle = {name: ChannelQueue() for name in channels}
    return QueueSnapshot(
        inbox_depth=stats.inbox_depth,
        inbox_oldest_age=0.0 if stats.inbox_oldest_at is None else max(0.0, now - stats.inbox_oldest_at),
        channels=idle
        | {
            name: ChannelQueue(
                pending=c.pending,
                dead=c.dead,
                oldest_due_age=0.0 if c.oldest_due_at is None else max(0.0, now - c.oldest_due_at),
            )
            for name, c in stats.channels.items()
        },
        alerts=stats.open_alerts,
        oldest_firing_age=0.0 if stats.oldest_firing_at is None else max(0.0, now - stats.oldest_firing_at),
    )


def decision_of(entry: NoiseLogEntry) -> Decision:
    """The decision a ``noise_log`` row keeps."""
    return Decision(entry.action, entry.reason, rule=entry.rule, key=entry.key, inbox_id=entry.inbox_id, at=entry.at)


def noise_json(row: NoiseLogRow) -> dict[str, Any]:
    """A stored noise decision about an event (including later ones: a digest sent, a timer fired).

    :meth:`Decision.to_json`'s form, with the row's ``id`` and ``recorded_at``.
    """
    return {"id": row.id, "recorded_at": row.recorded_at, **decision_of(row.entry).to_json()}


@dataclass(frozen=True, slots=True)
class _Explained:
    rules: list[dict[str, Any]]
    error: str | None


def _explain_rules(ruleset: RuleSet, row: EventRow) -> _Explained:
    try:
        event = parse_stored(row.type, row.body)
    except EventParseError as exc:
        return _Explained([], f"the stored body cannot be read as {row.type!r}: {exc}")
    decisions = ruleset.explain(event, row.source)
    return _Explained(
        [{"rule": d.rule.name, "matched": d.matched, "evaluated": d.evaluated, "reason": d.reason} for d in decisions],
        None,
    )


def explain_event(ruleset: RuleSet, row: EventRow, *, rules_loaded_at: float) -> dict[str, Any]:
    """Why each rule did or did not match ``row``, evaluated now against ``ruleset``.

    Returns:
        ``{"evaluated_with": "rules in force now", "rules_loaded_at", "note", "rules": [...]}``
        with one entry per rule in file order (``matched``, ``evaluated``, ``reason``), or an
        ``error`` when the stored body cannot be read.
    """
    explained = _explain_rules(ruleset, row)
    data: dict[str, Any] = {
        "evaluated_with": "rules in force now",
        "rules_loaded_at": rules_loaded_at,
        "note": (
            "evaluated now, on the stored body, against the rules loaded at rules_loaded_at; "
            "the event was processed with the rules in force when it arrived, which may differ"
        ),
        "rules": explained.rules,
    }
    silent = silent_reason(row.type)
    if silent is not None:  # a rule may match it, and still nothing is sent
        data["silent"] = silent
    if explained.error is not None:
        data["error"] = explained.error
    return data
