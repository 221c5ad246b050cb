"""The last stage, notify: render the rule's message for each of its channels and record ``notified``. Pure."""

from __future__ import annotations

from receiver.noise import alerting, inhibit, recovery
from receiver.noise.decision import Result
from receiver.noise.plan import Plan, RoutePlan
from receiver.noise.stage import Context, channel_names
from receiver.noise.state import StateView

__all__ = ["notify"]


def notify(ctx: Context, view: StateView, plan: Plan, rp: RoutePlan, result: Result, notes: list[str]) -> None:
    """Send the rule's notification (with the notes of the stages before), starting the rule's inhibitions."""
    rule = rp.rule
    notes = [*notes, *inhibit.start_rule_inhibits(ctx, view, plan, rp, result)]
    notes.extend(inhibit.source_notes(ctx, view, plan))
    emitted = ctx.render(plan, rp, notes)
    result.emitted.extend(emitted)
    reason = (
        f"rule {rule.name!r} notified {channel_names(rp.route.channels)}"
        if rp.route.channels
        else f"rule {rule.name!r} has no channels (notify: []): the event stops here"
    )
    ctx.decide(result, plan, "notified", reason, rule=rule.name)
    recovery.mark_firing(view, plan, rp, emitted[0].notification.title if emitted else None)
    alerting.fired(plan, rp, emitted, result)
