"""Stage 5, frequency: a rule notifies once ``count`` matches arrive within ``within``. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from receiver.noise.decision import Result
from receiver.noise.plan import Plan, RoutePlan
from receiver.noise.stage import Context, describe_seconds
from receiver.noise.state import Row, StateView

__all__ = ["KIND", "FrequencyState", "count"]

KIND = "frequency"


@dataclass(frozen=True, slots=True)
class FrequencyState:
    """The matches counted in the window (row ``frequency``, the rule, the frequency key).

    Attributes:
        times: their arrival times, oldest first.
    """

    times: tuple[float, ...] = ()

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> FrequencyState:
        """Read the stored ``data``."""
        return cls(tuple(float(t) for t in data.get("times", [])))

    def to_data(self) -> dict[str, Any]:
        """The stored ``data``."""
        return {"times": list(self.times)}


def count(ctx: Context, view: StateView, plan: Plan, rp: RoutePlan, result: Result) -> str | None:
    """Count a match; returns the note for the notification once the count is reached, None while it is not."""
    rule = rp.rule
    frequency = rule.frequency
    key = rp.frequency_key
    if frequency is None or key is None:
        return ""
    ref = plan.ref(KIND, rule, key)
    row = view.get(ref)
    before = FrequencyState() if row is None else FrequencyState.from_data(row.data)
    times = [t for t in before.times if t > plan.at - frequency.within]
    times.append(plan.at)
    window = describe_seconds(frequency.within)
    if len(times) < frequency.count:
        view.put(Row(*ref, FrequencyState(tuple(times)).to_data(), None, plan.at + frequency.within))
        decision = ctx.decide(
            result,
            plan,
            "counted",
            f"frequency of rule {rule.name!r} for key {key!r}: {len(times)} of {frequency.count} within {window}; "
            "no notification yet",
            rule=rule.name,
            key=key,
        )
        ctx.held(plan, rp, decision, result)
        return None
    view.delete(ref)
    since = ctx.time(times[0])
    return f"{len(times)} matching events within {window} (since {since}; rule {rule.name}, key {key or '-'})."
