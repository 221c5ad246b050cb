"""Follow-up stage, recovery: a rule that alerted for a key sends its "recovered" message once. Pure.

Every notification (or held notification) of a rule with ``recover`` marks the key as alerting
(:func:`mark_firing`); an event matching ``recover`` then sends the recovery message once, and
clears the inhibitions the rule started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from receiver.noise import alerting, inhibit
from receiver.noise.decision import Emitted, Result
from receiver.noise.plan import Plan, RoutePlan
from receiver.noise.stage import Context, channel_names
from receiver.noise.state import Row, StateView
from receiver.render import default_title, render_recovered
from receiver.rules import Rule

__all__ = ["FIRING_KEPT", "KIND", "FiringState", "mark_firing", "recover"]

KIND = "firing"

FIRING_KEPT = 30 * 86400.0
"""Seconds an alert waits for its recovery before it is forgotten."""


@dataclass(frozen=True, slots=True)
class FiringState:
    """A rule alerting for a key (row ``firing``, the rule, the recover key).

    Attributes:
        since: its first alert.
        count: alerts since then.
        title: the first alert's title (named by the recovery message).
        last_at: its last alert.
    """

    since: float | None
    count: int | None
    title: str | None
    last_at: float | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> FiringState:
        """Read the stored ``data``."""
        since, count, title, last_at = (data.get(name) for name in ("since", "count", "title", "last_at"))
        return cls(
            None if since is None else float(since),
            None if count is None else int(count),
            None if title is None else str(title),
            None if last_at is None else float(last_at),
        )

    def to_data(self) -> dict[str, Any]:
        """The stored ``data``."""
        data: dict[str, Any] = {"since": self.since, "count": self.count, "title": self.title}
        if self.last_at is not None:
            data["last_at"] = self.last_at
        return data


def mark_firing(view: StateView, plan: Plan, rp: RoutePlan, title: str | None) -> None:
    """Remember that the rule alerted for its recover key (so that a recovery is announced once)."""
    key = rp.recover_key
    if rp.rule.recover is None or key is None:
        return
    ref = plan.ref(KIND, rp.rule, key)
    row = view.get(ref)
    if row is None:
        title = title or " ".join(default_title(plan.event).split())
        row, state = Row(*ref), FiringState(plan.at, 0, title)
    else:
        state = FiringState.from_data(row.data)
    state = replace(state, count=(state.count or 0) + 1, last_at=plan.at)
    row.data = state.to_data()
    row.expires_at = plan.at + FIRING_KEPT
    view.put(row)


def recover(ctx: Context, view: StateView, plan: Plan, rule: Rule, key: str, result: Result, notes: list[str]) -> None:
    """Send the rule's recovery message for ``key`` if it alerted for it (and clear its inhibitions)."""
    alerting.recovered(plan, rule, key, result)
    ref = plan.ref(KIND, rule, key)
    row = view.get(ref)
    if row is None:
        return
    view.delete(ref)
    state = FiringState.from_data(row.data)
    extra = list(notes)
    for inh, ikey in plan.recovery_clears.get(rule.name, []):
        note = inhibit.clear(ctx, view, inh, ikey, plan, result, by=f"the recovery of rule {rule.name!r}")
        if note:
            extra.append(note)
    label = f"{rule.name}:recovered"
    silenced = ctx.silencer.check(plan.subject, rule.name, plan.at)
    if silenced:
        ctx.decide(result, plan, "silenced", f"the recovery message of rule {rule.name!r}: {silenced}", rule=label)
        return
    route = ctx.ruleset.route(rule.name)
    channels = () if route is None else route.channels
    for channel in channels:
        message = render_recovered(
            plan.event,
            rule,
            channel,
            ctx.ruleset,
            source=plan.source,
            since=plan.at if state.since is None else state.since,
            count=1 if state.count is None else state.count,
            alert_title=rule.name if state.title is None else state.title,
            key=key,
            notes=extra,
        )
        result.emitted.append(Emitted(plan.inbox_id, label, channel.name, message, plan.at))
    ctx.decide(
        result,
        plan,
        "recovered",
        f"rule {rule.name!r} recovered for key {key!r} (alerting since {ctx.time(state.since)}); "
        f"sent to {channel_names(channels)}",
        rule=label,
        key=key,
    )
