"""Stage 6, group: matches are gathered per group (``group.by``) and sent as one digest by the group's timer. Pure.

A group keeps a bounded summary of its pending events (:class:`GroupState`): counts per type,
process, robot and queue, the worst severity, and the first :data:`SAMPLES` events with their
one-line title and the first line of their error text. The digest is rendered from that summary
alone (:mod:`receiver.noise.digest`), so a group flushed after a restart reads the same as one
flushed before it. The first digest waits ``wait``; later ones come at most every ``interval``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from receiver.events import Event
from receiver.noise import inhibit, recovery
from receiver.noise.decision import Decision, Emitted, Result
from receiver.noise.digest import render_digest, worst
from receiver.noise.plan import Plan, RoutePlan
from receiver.noise.stage import Context, channel_names
from receiver.noise.state import Row, StateView
from receiver.render import Notification, default_severity, default_title
from receiver.rules import Rule, firstlines

__all__ = ["COUNTED", "KIND", "SAMPLES", "GroupState", "Sample", "flush", "group"]

KIND = "group"

SAMPLES = 10
"""Events of a group kept with their title and first error line."""

COUNTED = 200
"""Distinct names counted per kind; more are counted under "other"."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One of the first events of a group: when, which, its title and first error line."""

    at: float
    inbox_id: int
    title: str
    message: str | None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Sample:
        """Read a stored sample."""
        message = data.get("message")
        return cls(
            float(data["at"]), int(data["inbox_id"]), str(data["title"]), None if message is None else str(message)
        )

    def to_data(self) -> dict[str, Any]:
        """The stored sample."""
        return {"at": self.at, "inbox_id": self.inbox_id, "title": self.title, "message": self.message}


@dataclass(frozen=True, slots=True)
class GroupState:
    """A group's pending events (row ``group``, the rule, ``label=value,...``); ``due_at`` is its digest.

    Attributes:
        labels: the group's ``by`` labels and values.
        count: pending events.
        first_at: the first pending event's arrival.
        last_at: the last one's.
        first_inbox_id: the first pending event.
        severity: the worst severity among them.
        types: pending events per type (and processes, robots, queues likewise).
        samples: the first :data:`SAMPLES` events.
        single: the first event's own message per channel, while it is the only one.
        last_flush_at: when the last digest went out.
        key: the group's key as rendered (for display).
    """

    labels: dict[str, str]
    count: int = 0
    first_at: float | None = None
    last_at: float | None = None
    first_inbox_id: int | None = None
    severity: str = "success"
    types: dict[str, int] = field(default_factory=dict)
    processes: dict[str, int] = field(default_factory=dict)
    robots: dict[str, int] = field(default_factory=dict)
    queues: dict[str, int] = field(default_factory=dict)
    samples: tuple[Sample, ...] = ()
    single: dict[str, Notification] | None = None
    last_flush_at: float | None = None
    key: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> GroupState:
        """Read the stored ``data``."""
        single = data.get("single")
        key, first_at, last_at = data.get("key"), data.get("first_at"), data.get("last_at")
        first, flushed = data.get("first_inbox_id"), data.get("last_flush_at")
        return cls(
            labels={str(k): str(v) for k, v in data.get("labels", {}).items()},
            count=int(data.get("count", 0)),
            first_at=None if first_at is None else float(first_at),
            last_at=None if last_at is None else float(last_at),
            first_inbox_id=None if first is None else int(first),
            severity=str(data.get("severity", "success")),
            types=_counts(data.get("types")),
            processes=_counts(data.get("processes")),
            robots=_counts(data.get("robots")),
            queues=_counts(data.get("queues")),
            samples=tuple(Sample.from_data(s) for s in data.get("samples", [])),
            single=None
            if not isinstance(single, dict)
            else {
                name: Notification(note["title"], note["body"], note["severity"], note["format"])
                for name, note in single.items()
            },
            last_flush_at=None if flushed is None else float(flushed),
            key=None if key is None else str(key),
        )

    def to_data(self) -> dict[str, Any]:
        """The stored ``data`` (the keys in the order rows have always been written)."""
        data: dict[str, Any] = {
            "labels": dict(self.labels),
            "count": self.count,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "first_inbox_id": self.first_inbox_id,
            "severity": self.severity,
            "types": dict(self.types),
            "processes": dict(self.processes),
            "robots": dict(self.robots),
            "queues": dict(self.queues),
            "samples": [s.to_data() for s in self.samples],
            "single": None if self.single is None else {name: _note_json(n) for name, n in self.single.items()},
            "last_flush_at": self.last_flush_at,
        }
        if self.key is not None:
            data["key"] = self.key
        return data

    def single_notification(self, channel: str) -> Notification | None:
        """The stored message of the group's only event for ``channel``, or None."""
        if self.count != 1 or self.single is None:
            return None
        return self.single.get(channel)

    def add(
        self, event: Event, rule: Rule, *, inbox_id: int, at: float, single: Mapping[str, Notification] | None
    ) -> GroupState:
        """The group with one more pending event.

        ``single`` holds the event's own rendered notifications per channel: kept while it is the
        only pending event, so that a group of one sends the ordinary message, not a digest of one.
        """
        first = self.first_at is None
        samples = self.samples
        if len(samples) < SAMPLES:
            title = " ".join(default_title(event).split())
            message = firstlines(event.message, 1, 200) if event.message else None
            samples = (*samples, Sample(at, inbox_id, title, message))
        return replace(
            self,
            count=self.count + 1,
            first_at=at if first else self.first_at,
            first_inbox_id=inbox_id if first else self.first_inbox_id,
            single=(None if single is None else dict(single)) if first else None,
            last_at=at,
            severity=worst(self.severity, rule.severity or default_severity(event)),
            types=_counted(self.types, event.type),
            processes=_counted(self.processes, event.process),
            robots=_counted(self.robots, event.robot),
            queues=_counted(self.queues, event.queue),
            samples=samples,
        )


def _counts(raw: Any) -> dict[str, int]:
    return {} if not isinstance(raw, dict) else {str(k): int(v) for k, v in raw.items()}


def _counted(counts: dict[str, int], name: str | None) -> dict[str, int]:
    if not name:
        return counts
    if name not in counts and len(counts) >= COUNTED:
        name = "other"
    return {**counts, name: counts.get(name, 0) + 1}


def _note_json(note: Notification) -> dict[str, str]:
    return {"title": note.title, "body": note.body, "severity": note.severity, "format": note.body_format}


def group(ctx: Context, view: StateView, plan: Plan, rp: RoutePlan, result: Result) -> None:
    """Add the event to its group (recorded as ``grouped``); the group's timer sends the digest."""
    rule = rp.rule
    grouping = rule.group
    key = rp.group_key
    if grouping is None or key is None:
        return
    ref = plan.ref(KIND, rule, key)
    row = view.get(ref)
    if row is not None and row.due_at is not None and row.due_at <= plan.at:
        row = flush(ctx, view, row, row.due_at, result)
    state = None if row is None else GroupState.from_data(row.data)
    last_flush = None if state is None else state.last_flush_at
    if (
        row is None
        or state is None
        or (row.due_at is None and (last_flush is None or plan.at - last_flush >= grouping.interval))
    ):
        row, state = (
            Row(*ref, {}, plan.at + grouping.wait, None),
            GroupState(dict(rp.group_labels), last_flush_at=last_flush, key=key),
        )
    elif row.due_at is None:
        row.due_at = max(plan.at, float(last_flush or plan.at) + grouping.interval)
    single = ctx.render(plan, rp, [], enrich=False) if state.count == 0 else None
    state = state.add(
        ctx.ruleset.redactor.value(plan.event),  # its samples are cut short: redact before the cut
        rule,
        inbox_id=plan.inbox_id,
        at=plan.at,
        single=None if single is None else {e.channel: e.notification for e in single},
    )
    row.data = state.to_data()
    row.expires_at = None
    view.put(row)
    decision = ctx.decide(
        result,
        plan,
        "grouped",
        f"grouped into {rule.name!r} [{key or 'all'}]: digest due at {ctx.time(row.due_at)} "
        f"({state.count} event(s) so far)",
        rule=rule.name,
        key=key,
        due_at=row.due_at,
    )
    ctx.held(plan, rp, decision, result)
    recovery.mark_firing(view, plan, rp, None)
    inhibit.start_rule_inhibits(ctx, view, plan, rp, result)


def flush(ctx: Context, view: StateView, row: Row, at: float, result: Result) -> Row | None:
    """Send a group's digest (its timer is due); returns the group's row after it (None when the rule is gone)."""
    state = GroupState.from_data(row.data)
    inbox_id = 0 if state.first_inbox_id is None else state.first_inbox_id
    route = ctx.ruleset.route(row.name)
    if route is None or route.rule.group is None:
        view.delete(row.ref)
        result.decisions.append(
            Decision(
                "dropped",
                f"group {row.shown_key!r} of rule {row.name!r} dropped: the rule no longer groups "
                f"({state.count} pending event(s))",
                rule=row.name,
                key=row.shown_key,
                inbox_id=inbox_id,
                at=at,
            )
        )
        return None
    rule, grouping = route.rule, route.rule.group
    if state.count:
        for channel in route.channels:
            note = state.single_notification(channel.name) or render_digest(state, rule, channel, ctx.ruleset)
            result.emitted.append(Emitted(inbox_id, rule.name, channel.name, note, at))
        result.decisions.append(
            Decision(
                "flushed",
                f"group {row.shown_key or 'all'!r} of rule {rule.name!r}: "
                + ("its one event" if state.count == 1 else f"a digest of {state.count} events")
                + f" sent to {channel_names(route.channels)}",
                rule=rule.name,
                key=row.shown_key,
                inbox_id=inbox_id,
                at=at,
            )
        )
    after = Row(
        row.kind,
        row.name,
        row.key,
        GroupState(dict(state.labels), last_flush_at=at, key=row.shown_key).to_data(),
        None,
        at + grouping.interval,
    )
    view.put(after)
    return after
