"""Stage 4 (and a follow-up), absence: a matching event arms a timer that notifies unless a follow-up arrives. Pure.

An event routed to a rule with ``absence`` arms a timer for its key (the rule sends nothing
now); an event matching ``absence.expect`` cancels it (a timer already past its deadline fires
first). Orchestrator does not promise order, so a follow-up with no timer to cancel is
remembered, and an arming event that happened before it does not arm. When the timer runs
out, the stored event goes through the silence, inhibition, throttle and notify stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from receiver.errors import EventParseError
from receiver.events import Event
from receiver.noise.decision import Decision, Result
from receiver.noise.plan import Plan, Planner, RoutePlan, parse_stored
from receiver.noise.stage import Context, describe_seconds
from receiver.noise.state import Row, StateView
from receiver.rules import Rule

__all__ = ["KIND", "Armed", "Downstream", "Followed", "arm", "cancel", "fire", "load", "timer_plan"]

KIND = "absence"


@dataclass(frozen=True, slots=True)
class Armed:
    """An armed timer (row ``absence``, the rule, the absence key; ``due_at`` is its deadline).

    Attributes:
        key: the key as rendered (for display).
        inbox_id: the event that armed it.
        source: that event's source.
        type: its type, and ``body`` its stored body (to notify about it when the timer runs out).
        at: when it was armed.
    """

    key: str | None
    inbox_id: int
    source: str | None
    type: str
    body: str
    at: float | None

    def to_data(self) -> dict[str, Any]:
        """The stored ``data``."""
        return {
            "state": "armed",
            "key": self.key,
            "inbox_id": self.inbox_id,
            "source": self.source,
            "type": self.type,
            "body": self.body,
            "at": self.at,
        }


@dataclass(frozen=True, slots=True)
class Followed:
    """A follow-up that found no timer to cancel (kept ``within``, for an arming event arriving late).

    Attributes:
        inbox_id: the follow-up event.
        at: when it arrived.
        event_time: when it happened (its ``Timestamp``), if known.
    """

    inbox_id: int | None
    at: float | None
    event_time: float | None

    def to_data(self) -> dict[str, Any]:
        """The stored ``data``."""
        return {"state": "followed", "inbox_id": self.inbox_id, "at": self.at, "event_time": self.event_time}


def load(data: Mapping[str, Any]) -> Armed | Followed:
    """Read the stored ``data`` of an absence row."""
    inbox_id, at = data.get("inbox_id"), data.get("at")
    if data.get("state") == "armed":
        key, source = data.get("key"), data.get("source")
        return Armed(
            None if key is None else str(key),
            int(inbox_id or 0),
            None if source is None else str(source),
            str(data.get("type", "")),
            str(data.get("body", "")),
            None if at is None else float(at),
        )
    event_time = data.get("event_time")
    return Followed(
        None if inbox_id is None else int(inbox_id),
        None if at is None else float(at),
        float(event_time) if isinstance(event_time, int | float) else None,
    )


class Downstream(Protocol):
    """The stages an absence timer's event goes through when it runs out (the engine fixes them)."""

    def mute(self, view: StateView, plan: Plan, rp: RoutePlan, result: Result) -> bool:
        """True when an inhibition or a silence holds the notification back."""

    def emit(self, view: StateView, plan: Plan, rp: RoutePlan, result: Result, notes: list[str]) -> None:
        """Throttle, then notify."""


def timer_plan(ctx: Context, planner: Planner, row: Row) -> Plan | None:
    """The plan of the event an absence timer is about (None for other rows, or an unreadable event)."""
    if row.kind != KIND:
        return None
    state = load(row.data)
    if not isinstance(state, Armed):
        state = Armed(None, state.inbox_id or 0, None, "", "", state.at)
    event = ctx.events.get(state.inbox_id)
    try:
        event = event if event is not None else parse_stored(state.type, state.body)
    except EventParseError:
        return None
    return planner.plan(
        event,
        state.source if state.source is not None else "uipath",
        inbox_id=state.inbox_id,
        at=float(row.due_at or 0.0),
        body=state.body,
        only_rule=row.name,
    )


def cancel(
    ctx: Context, planner: Planner, down: Downstream, view: StateView, plan: Plan, rule: Rule, key: str, result: Result
) -> None:
    """A follow-up: cancel the rule's timer for ``key``, or remember the follow-up when none is armed."""
    absence = rule.absence
    if absence is None:
        return
    ref = plan.ref(KIND, rule, key)
    unsourced = plan.ref(KIND, rule, key, unsourced=True)
    if unsourced != ref:
        # Armed before keys carried their source: the row names its source, and only that one cancels it.
        old = view.get(unsourced)
        if old is not None:
            state = load(old.data)
            if isinstance(state, Armed) and state.source == plan.source:
                _disarm(ctx, planner, down, view, plan, old, key, result)
    if _disarm(ctx, planner, down, view, plan, view.get(ref), key, result):
        return
    # Orchestrator does not promise order: remember the follow-up, so that an arming event
    # arriving after it (within the same time) does not arm a timer that could only fire.
    followed = Followed(plan.inbox_id, plan.at, _event_time(plan.event))
    view.put(Row(*ref, followed.to_data(), None, plan.at + absence.within))


def _disarm(
    ctx: Context,
    planner: Planner,
    down: Downstream,
    view: StateView,
    plan: Plan,
    row: Row | None,
    key: str,
    result: Result,
) -> bool:
    """Cancel an armed timer (fire it first if it was already due); False when ``row`` is none or not armed."""
    if row is None:
        return False
    state = load(row.data)
    if not isinstance(state, Armed):
        return False
    if row.due_at is not None and row.due_at <= plan.at:
        fire(ctx, planner, down, view, row, row.due_at, result)
        return True
    view.delete(row.ref)
    ctx.decide(
        result,
        plan,
        "cancelled",
        f"cancelled the absence timer of rule {row.name!r} for key {key!r} (armed by event "
        f"#{state.inbox_id}, due {ctx.time(row.due_at)})",
        rule=row.name,
        key=key,
    )
    return True


def arm(
    ctx: Context, planner: Planner, down: Downstream, view: StateView, plan: Plan, rp: RoutePlan, result: Result
) -> None:
    """Arm the rule's timer for the event's key (unless it is armed, or a later follow-up came first)."""
    rule = rp.rule
    absence = rule.absence
    key = rp.absence_key
    if absence is None or key is None:
        return
    ref = plan.ref(KIND, rule, key)
    row = view.get(ref)
    state = None if row is None else load(row.data)
    if row is not None and isinstance(state, Armed):
        if row.due_at is not None and row.due_at <= plan.at:
            fire(ctx, planner, down, view, row, row.due_at, result)
        else:
            decision = ctx.decide(
                result,
                plan,
                "already_armed",
                f"the absence timer of rule {rule.name!r} for key {key!r} is already armed by event "
                f"#{state.inbox_id} (due {ctx.time(row.due_at)})",
                rule=rule.name,
                key=key,
                due_at=row.due_at,
            )
            ctx.held(plan, rp, decision, result)
            return
    elif (
        row is not None
        and isinstance(state, Followed)
        and (row.expires_at or 0.0) > plan.at
        and _before(plan.event, state.event_time)
    ):
        decision = ctx.decide(
            result,
            plan,
            "not_armed",
            f"not armed: key {key!r} was already followed by event #{state.inbox_id} at "
            f"{ctx.time(state.at)} (events arrived out of order)",
            rule=rule.name,
            key=key,
        )
        ctx.held(plan, rp, decision, result)
        return
    due = plan.at + absence.within
    armed = Armed(key, plan.inbox_id, plan.source, plan.event.type, plan.body, plan.at)
    view.put(Row(*ref, armed.to_data(), due, None))
    ctx.events[plan.inbox_id] = plan.event
    decision = ctx.decide(
        result,
        plan,
        "armed",
        f"absence timer of rule {rule.name!r} armed for key {key!r}: notifies at {ctx.time(due)} unless an "
        f"event where {absence.expect.describe()} arrives",
        rule=rule.name,
        key=key,
        due_at=due,
    )
    ctx.held(plan, rp, decision, result)


def fire(
    ctx: Context, planner: Planner, down: Downstream, view: StateView, row: Row, at: float, result: Result
) -> None:
    """The timer ran out: notify about the event that armed it (through the stages after absence)."""
    view.delete(row.ref)
    state = load(row.data)
    inbox_id = state.inbox_id or 0
    route = ctx.ruleset.route(row.name)
    plan = None if route is None or route.rule.absence is None else timer_plan(ctx, planner, row)
    if plan is None or not plan.routes:
        result.decisions.append(
            Decision(
                "dropped",
                f"absence timer of rule {row.name!r} for key {row.shown_key!r} dropped: the rule no longer "
                "waits for a follow-up, or the event cannot be read",
                rule=row.name,
                key=row.shown_key,
                inbox_id=inbox_id,
                at=at,
            )
        )
        return
    plan.at = at
    rp = plan.routes[0]
    absence = rp.rule.absence
    if absence is None:
        return
    if down.mute(view, plan, rp, result):
        return
    armed = at if state.at is None else state.at
    note = (
        f"No event where {absence.expect.describe()} arrived within {describe_seconds(absence.within)} "
        f"(since {ctx.time(armed)}; rule {rp.rule.name}, key {row.shown_key or '-'})."
    )
    ctx.decide(
        result,
        plan,
        "fired",
        f"absence timer of rule {rp.rule.name!r} for key {row.shown_key!r} ran out: nothing where "
        f"{absence.expect.describe()} arrived since {ctx.time(armed)}",
        rule=rp.rule.name,
        key=row.shown_key,
    )
    down.emit(view, plan, rp, result, [note])


def _event_time(event: Event) -> float | None:
    return None if event.timestamp is None else event.timestamp.timestamp()


def _before(event: Event, other: float | None) -> bool:
    """True when ``event`` happened before the time ``other`` (both known): it arrived out of order."""
    mine = _event_time(event)
    return mine is not None and other is not None and mine < other
