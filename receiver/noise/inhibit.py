"""Stage 3, inhibition: while a source event's inhibition holds, target events with equal fields are muted. Pure.

An inhibition starts with an event matching its ``source`` (or a notification of its
``source_rule``), lasts ``duration`` at most, and is cleared by an event matching ``until`` or
by the recovery of its source rule; a cleared inhibition tells how many events it muted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from receiver.noise.decision import Result
from receiver.noise.plan import Plan, RoutePlan
from receiver.noise.stage import Context, describe_seconds, equal_labels
from receiver.noise.state import Row, StateView
from receiver.render import default_severity, template_context
from receiver.rules import BudgetExceededError, Inhibit, Rule, context_names

__all__ = [
    "KIND",
    "Active",
    "InhibitState",
    "clear",
    "inhibited",
    "mutes",
    "source_notes",
    "start",
    "start_rule_inhibits",
]

KIND = "inhibit"


@dataclass(frozen=True, slots=True)
class InhibitState:
    """An inhibition in force (row ``inhibit``, the inhibition's name, its ``equal`` key).

    Attributes:
        since: when it started.
        source_inbox_id: the event that started it (never muted by it).
        muted: events it muted so far.
    """

    since: float | None
    source_inbox_id: int | None
    muted: int = 0

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> InhibitState:
        """Read the stored ``data``."""
        since, source = data.get("since"), data.get("source_inbox_id")
        return cls(
            None if since is None else float(since),
            None if source is None else int(source),
            int(data.get("muted", 0)),
        )

    def to_data(self) -> dict[str, Any]:
        """The stored ``data``."""
        return {"since": self.since, "source_inbox_id": self.source_inbox_id, "muted": self.muted}


@dataclass(frozen=True, slots=True)
class Active:
    """The inhibition that mutes an event: which, for which key, and its state."""

    inhibit: Inhibit
    key: str
    state: InhibitState


def inhibited(view: StateView, plan: Plan) -> Active | None:
    """The inhibition in force that mutes the event, if any (counting the event as muted when a rule routes it)."""
    for inh, key in plan.targets:
        row = view.get(plan.ref(KIND, inh, key))
        if row is None or (row.expires_at or 0.0) <= plan.at:
            continue
        state = InhibitState.from_data(row.data)
        if state.source_inbox_id == plan.inbox_id:
            continue
        if plan.routes:
            state = replace(state, muted=state.muted + 1)
            row.data = state.to_data()
            view.put(row)
        return Active(inh, key, state)
    return None


def start(ctx: Context, view: StateView, inh: Inhibit, key: str, plan: Plan, result: Result) -> None:
    """Start the inhibition for ``key``, or extend it when it is in force."""
    ref = plan.ref(KIND, inh, key)
    row = view.get(ref)
    until = plan.at + inh.duration
    if row is not None and (row.expires_at or 0.0) > plan.at:
        row.expires_at = max(row.expires_at or 0.0, until)
        view.put(row)
        return
    state = InhibitState(plan.at, plan.inbox_id, 0)
    view.put(Row(*ref, state.to_data(), None, until))
    ctx.decide(
        result,
        plan,
        "inhibiting",
        f"inhibit {inh.name!r} started for {key}: events where {inh.target.describe()} with the same "
        f"{equal_labels(inh)} are muted until {ctx.time(until)} at most",
        rule=inh.name,
        key=key,
    )


def clear(ctx: Context, view: StateView, inh: Inhibit, key: str, plan: Plan, result: Result, *, by: str) -> str:
    """End the inhibition for ``key``; returns a note for the event's messages when it muted something."""
    ref = plan.ref(KIND, inh, key)
    row = view.get(ref)
    if row is None:
        return ""
    view.delete(ref)
    if (row.expires_at or 0.0) <= plan.at:
        return ""
    state = InhibitState.from_data(row.data)
    ctx.decide(
        result,
        plan,
        "cleared",
        f"inhibit {inh.name!r} for {key} cleared by {by}; it muted {state.muted} event(s) since "
        f"{ctx.time(state.since)}",
        rule=inh.name,
        key=key,
    )
    if not state.muted:
        return ""
    return f"While it lasted, {state.muted} event(s) for {key} were muted (inhibit {inh.name!r})."


def start_rule_inhibits(ctx: Context, view: StateView, plan: Plan, rp: RoutePlan, result: Result) -> list[str]:
    """Start the inhibitions whose ``source_rule`` is this rule; returns their notes."""
    notes = []
    for inh, key in plan.rule_sources.get(rp.rule.name, []):
        start(ctx, view, inh, key, plan, result)
        notes.append(_note(ctx, inh, key, plan))
    return notes


def source_notes(ctx: Context, view: StateView, plan: Plan) -> list[str]:
    """Notes for the inhibitions in force that this event is the source of."""
    notes = []
    for inh, key in plan.sources:
        row = view.get(plan.ref(KIND, inh, key))
        if row is not None and (row.expires_at or 0.0) > plan.at:
            notes.append(_note(ctx, inh, key, plan))
    return notes


def _note(ctx: Context, inh: Inhibit, key: str, plan: Plan) -> str:
    if inh.note is not None:
        severity = default_severity(plan.event)
        rule = Rule(name=inh.name, index=0, line=0, notify=())
        context = template_context(
            plan.event, rule, ctx.ruleset, source=plan.source, severity=severity, names=context_names(inh.note)
        )
        try:
            text = " ".join(inh.note.render(context).split())
        except BudgetExceededError:
            raise
        except Exception:  # noqa: BLE001 - the note is a courtesy; the default says the same
            text = ""
        if text:
            return text
    return (
        f"Meanwhile, events where {inh.target.describe()} with the same {equal_labels(inh)} ({key}) are muted "
        f"(inhibit {inh.name}, at most {describe_seconds(inh.duration)})."
    )


def mutes(ctx: Context, plan: Plan, rp: RoutePlan, active: Active | None, result: Result) -> bool:
    """True when an inhibition in force mutes the rule's notification (recorded as ``inhibited``)."""
    if active is None:
        return False
    decision = ctx.decide(
        result,
        plan,
        "inhibited",
        f"inhibited by {active.inhibit.name!r}: {active.key} is affected since {ctx.time(active.state.since)} "
        f"(source event #{active.state.source_inbox_id})",
        rule=rp.rule.name,
        key=active.key,
    )
    ctx.held(plan, rp, decision, result)
    return True
