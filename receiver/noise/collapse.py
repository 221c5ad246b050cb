"""Stage 1, collapse: the same entity, type and state within the ``collapse`` window is one event. Pure.

Orchestrator sends one webhook per folder of a shared queue; the first one goes on, the others
are recorded as ``collapsed`` and nothing else happens for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from receiver.noise.decision import Result
from receiver.noise.plan import Plan
from receiver.noise.stage import Context, describe_seconds
from receiver.noise.state import Ref, Row, StateView

__all__ = ["KIND", "CollapseState", "collapsed"]

KIND = "collapse"


@dataclass(frozen=True, slots=True)
class CollapseState:
    """The first event of an entity, type and state (row ``collapse``, "", the collapse key).

    Attributes:
        inbox_id: that event.
        at: when it arrived.
    """

    inbox_id: int | None
    at: float | None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CollapseState:
        """Read the stored ``data``."""
        inbox_id, at = data.get("inbox_id"), data.get("at")
        return cls(None if inbox_id is None else int(inbox_id), None if at is None else float(at))

    def to_data(self) -> dict[str, Any]:
        """The stored ``data``."""
        return {"inbox_id": self.inbox_id, "at": self.at}


def collapsed(ctx: Context, view: StateView, plan: Plan, result: Result) -> bool:
    """True when the event repeats one seen within the window (recorded as ``collapsed``)."""
    key = plan.collapse_key
    collapse = ctx.ruleset.collapse
    if key is None or collapse is None or not plan.touches_state():
        return False
    ref: Ref = (KIND, "", key)
    row = view.get(ref)
    if row is not None and (row.expires_at or 0.0) > plan.at:
        first = CollapseState.from_data(row.data)
        ctx.decide(
            result,
            plan,
            "collapsed",
            f"collapsed into event #{first.inbox_id}: the same {plan.event.type} of the same entity and state arrived "
            f"{describe_seconds(plan.at - (plan.at if first.at is None else first.at))} earlier (folder fan-out, "
            f"window {describe_seconds(collapse.window)})",
            key=key,
        )
        return True
    state = CollapseState(plan.inbox_id, plan.at)
    view.put(Row(*ref, state.to_data(), None, plan.at + collapse.window))
    return False
