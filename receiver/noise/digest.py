"""The digest a group sends instead of one message per event: counts, top names, the first errors. Pure.

It is rendered from the group's bounded summary alone (:class:`receiver.noise.group.GroupState`),
so a group flushed after a restart reads the same as one flushed before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from receiver.render import Notification, escaper, finish
from receiver.rules import Channel, Rule, RuleSet, Severity
from receiver.timefmt import local_text

if TYPE_CHECKING:  # the group stage imports the digest
    from receiver.noise.group import GroupState

__all__ = ["TOP", "render_digest", "worst"]

TOP = 5
"""Names listed per count (top processes, robots...)."""

_RANK: dict[str, int] = {"success": 0, "info": 1, "warning": 2, "failure": 3}


def worst(a: str, b: str) -> str:
    """The worse of two severities (failure > warning > info > success)."""
    return a if _RANK.get(a, 1) >= _RANK.get(b, 1) else b


def _top(counts: Mapping[str, int]) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{name} {n}" for name, n in ranked[:TOP])
    return shown + (f", +{len(ranked) - TOP} more" if len(ranked) > TOP else "")


def render_digest(group: GroupState, rule: Rule, channel: Channel, ruleset: RuleSet) -> Notification:
    """The digest of a group's pending events for one channel.

    Args:
        group: the group's pending summary.
        rule: the grouping rule (format, severity).
        channel: where it goes (its length limits).
        ruleset: the time zone and the redaction.
    """
    count = group.count
    labels = group.labels
    types = group.types
    what = next(iter(types)) if len(types) == 1 else "matching"
    values = ", ".join(v for v in labels.values() if v)
    title = f"{count} {what} events" + (f": {values}" if values else "") + f" ({rule.name})"
    first_at = group.first_at if group.first_at is not None else 0.0
    last_at = group.last_at if group.last_at is not None else first_at
    fields: list[tuple[str, str]] = [
        ("Rule", rule.name),
        ("Group", ", ".join(f"{k}={v}" for k, v in labels.items()) or "all matches"),
        ("Events", f"{count}, {local_text(first_at, ruleset.timezone)} to {local_text(last_at, ruleset.timezone)}"),
        ("Types", _top(types)),
    ]
    for label, counts in (("Processes", group.processes), ("Robots", group.robots), ("Queues", group.queues)):
        if counts:
            fields.append((label, _top(counts)))
    lines = [
        f"{local_text(s.at, ruleset.timezone, '%H:%M:%S')} {s.title}" + (f" — {s.message}" if s.message else "")
        for s in group.samples
    ]
    if count > len(group.samples):
        lines.append(f"… and {count - len(group.samples)} more")
    redactor = ruleset.redactor  # labels and samples come from event text
    title = redactor.text(title)
    fields = [(label, redactor.text(value)) for label, value in fields]
    body = _body(fields, redactor.value(lines), rule.format)
    severity: Severity = rule.severity or cast("Severity", group.severity)
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
