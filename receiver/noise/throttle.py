"""Stage 7, throttle: one notification per key and ``interval``; the next one tells how many were held back. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from receiver.noise.decision import Result
from receiver.noise.plan import Plan, RoutePlan
from receiver.noise.stage import Context, describe_seconds
from receiver.noise.state import Row, StateView

__all__ = ["KIND", "ThrottleState", "throttled"]

KIND = "throttle"


@dataclass(frozen=True, slots=True)
class ThrottleState:
    """A throttle window (row ``throttle``, the rule, the throttle key).

    Attributes:
        until: when the window ends.
        held: notifications held back in it.
        held_since: when the first of them was held back.
    """

    until: float
    held: int = 0
    held_since: float | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ThrottleState:
        """Read the stored ``data``."""
        since = data.get("held_since")
        return cls(float(data.get("until", 0.0)), int(data.get("held", 0)), None if since is None else float(since))

    def to_data(self) -> dict[str, Any]:
        """The stored ``data``."""
        data: dict[str, Any] = {"until": self.until, "held": self.held}
        if self.held_since is not None:
            data["held_since"] = self.held_since
        return data


def throttled(ctx: Context, view: StateView, plan: Plan, rp: RoutePlan, result: Result, notes: list[str]) -> bool:
    """True when the window holds the notification back (recorded as ``throttled``).

    Otherwise a new window starts, and ``notes`` gets a line about those held back in the last one.
    """
    rule = rp.rule
    throttle = rule.throttle
    key = rp.throttle_key
    if throttle is None or key is None:
        return False
    ref = plan.ref(KIND, rule, key)
    row = view.get(ref)
    state = None if row is None else ThrottleState.from_data(row.data)
    if row is not None and state is not None and state.until > plan.at:
        state = replace(
            state, held=state.held + 1, held_since=plan.at if state.held_since is None else state.held_since
        )
        row.data = state.to_data()
        view.put(row)
        decision = ctx.decide(
            result,
            plan,
            "throttled",
            f"throttled by rule {rule.name!r} for key {key!r}: {state.held} held back until {ctx.time(state.until)}",
            rule=rule.name,
            key=key,
        )
        ctx.held(plan, rp, decision, result)
        return True
    if state is not None and state.held:
        notes.append(
            f"{state.held} more notification(s) of rule {rule.name} for key {key or '-'} were held back since "
            f"{ctx.time(state.held_since)} (throttle {describe_seconds(throttle.interval)})."
        )
    until = plan.at + throttle.interval
    view.put(Row(*ref, ThrottleState(until).to_data(), None, until))
    return False
