"""The digest a group sends instead of one message per event: counts, top names, the first errors. Pure.

A group keeps a bounded summary of its pending events (see :func:`add_item`): counts per
type, process, robot and queue, the worst severity, and the first :data:`SAMPLES` events with
their one-line title and the first line of their error text. The digest is rendered from that
summary alone, so a group flushed after a restart reads the same as one flushed before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from receiver.events import Event
from receiver.render import Notification, default_severity, default_title, escaper, finish
from receiver.rules import TIME_FORMAT, Channel, Rule, RuleSet, Severity, firstlines

__all__ = ["SAMPLES", "TOP", "add_item", "new_group", "render_digest", "worst"]

SAMPLES = 10
"""Events of a group kept with their title and first error line."""

TOP = 5
"""Names listed per count (top processes, robots...)."""

_COUNTED = 200
"""Distinct names counted per kind; more are counted under "other"."""

_RANK: dict[str, int] = {"success": 0, "info": 1, "warning": 2, "failure": 3}


def worst(a: str, b: str) -> str:
    """The worse of two severities (failure > warning > info > success)."""
    return a if _RANK.get(a, 1) >= _RANK.get(b, 1) else b


def new_group(labels: Mapping[str, str], last_flush_at: float | None = None) -> dict[str, Any]:
    """The data of a group with no pending events."""
    return {
        "labels": dict(labels),
        "count": 0,
        "first_at": None,
        "last_at": None,
        "first_inbox_id": None,
        "severity": "success",
        "types": {},
        "processes": {},
        "robots": {},
        "queues": {},
        "samples": [],
        "single": None,
        "last_flush_at": last_flush_at,
    }


def _count(counts: dict[str, int], name: str | None) -> None:
    if not name:
        return
    if name not in counts and len(counts) >= _COUNTED:
        name = "other"
    counts[name] = counts.get(name, 0) + 1


def add_item(
    data: dict[str, Any],
    event: Event,
    rule: Rule,
    *,
    inbox_id: int,
    at: float,
    single: Mapping[str, Notification] | None,
) -> None:
    """Add one event to a group's pending summary (in place).

    ``single`` holds the event's own rendered notifications per channel: kept while it is the
    only pending event, so that a group of one sends the ordinary message, not a digest of one.
    """
    data["count"] += 1
    if data["first_at"] is None:
        data["first_at"] = at
        data["first_inbox_id"] = inbox_id
        data["single"] = None if single is None else {name: _note_json(n) for name, n in single.items()}
    else:
        data["single"] = None
    data["last_at"] = at
    data["severity"] = worst(data["severity"], rule.severity or default_severity(event))
    _count(data["types"], event.type)
    _count(data["processes"], event.process)
    _count(data["robots"], event.robot)
    _count(data["queues"], event.queue)
    if len(data["samples"]) < SAMPLES:
        data["samples"].append(
            {
                "at": at,
                "inbox_id": inbox_id,
                "title": " ".join(default_title(event).split()),
                "message": firstlines(event.message, 1, 200) if event.message else None,
            }
        )


def _note_json(note: Notification) -> dict[str, str]:
    return {"title": note.title, "body": note.body, "severity": note.severity, "format": note.body_format}


def single_notification(data: Mapping[str, Any], channel: str) -> Notification | None:
    """The stored message of a group's only event for ``channel``, or None."""
    single = data.get("single")
    if data.get("count") != 1 or not isinstance(single, dict) or channel not in single:
        return None
    note = single[channel]
    return Notification(note["title"], note["body"], note["severity"], note["format"])


def _top(counts: Mapping[str, int]) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{name} {n}" for name, n in ranked[:TOP])
    return shown + (f", +{len(ranked) - TOP} more" if len(ranked) > TOP else "")


def _when(at: float, ruleset: RuleSet, fmt: str = TIME_FORMAT) -> str:
    return datetime.fromtimestamp(at, tz=UTC).astimezone(ruleset.timezone).strftime(fmt)


def render_digest(data: Mapping[str, Any], rule: Rule, channel: Channel, ruleset: RuleSet) -> Notification:
    """The digest of a group's pending events for one channel.

    Args:
        data: the group's data (see :func:`new_group` and :func:`add_item`).
        rule: the grouping rule (format, severity).
        channel: where it goes (its length limits).
        ruleset: the time zone.
    """
    count = int(data["count"])
    labels: Mapping[str, str] = data["labels"]
    types: Mapping[str, int] = data["types"]
    what = next(iter(types)) if len(types) == 1 else "matching"
    values = ", ".join(v for v in labels.values() if v)
    title = f"{count} {what} events" + (f": {values}" if values else "") + f" ({rule.name})"
    fields: list[tuple[str, str]] = [
        ("Rule", rule.name),
        ("Group", ", ".join(f"{k}={v}" for k, v in labels.items()) or "all matches"),
        ("Events", f"{count}, {_when(data['first_at'], ruleset)} to {_when(data['last_at'], ruleset)}"),
        ("Types", _top(types)),
    ]
    for label, name in (("Processes", "processes"), ("Robots", "robots"), ("Queues", "queues")):
        if data[name]:
            fields.append((label, _top(data[name])))
    samples: list[Mapping[str, Any]] = data["samples"]
    lines = [
        f"{_when(s['at'], ruleset, '%H:%M:%S')} {s['title']}" + (f" — {s['message']}" if s.get("message") else "")
        for s in samples
    ]
    if count > len(samples):
        lines.append(f"… and {count - len(samples)} more")
    body = _body(fields, lines, rule.format)
    severity: Severity = rule.severity or data["severity"]
    return finish(title, body, severity, rule.format, channel)


def _body(fields: list[tuple[str, str]], lines: list[str], fmt: str) -> str:
    esc = escaper("markdown" if fmt == "markdown" else "html" if fmt == "html" else "text")
    if fmt == "markdown":
        head = "\n".join(f"- **{label}:** {esc(value)}" for label, value in fields)
        return head + "\n\n**First events:**\n\n" + "\n".join(f"- {esc(line)}" for line in lines)
    if fmt == "html":
        head = "<br>\n".join(f"<b>{label}:</b> {esc(value)}" for label, value in fields)
        return (
            head + "\n<p><b>First events:</b></p>\n<ul>\n" + "\n".join(f"<li>{esc(x)}</li>" for x in lines) + "\n</ul>"
        )
    head = "\n".join(f"{label}: {esc(value)}" for label, value in fields)
    return head + "\n\nFirst events:\n" + "\n".join(f"- {esc(line)}" for line in lines)
