"""Alert signals: which rule key an event fires, keeps firing or clears. Pure.

An alert is a rule's key that is firing. Its key is the rule's ``recover`` key when it has one
(so that the recovery resolves it), else its ``throttle`` key, else its ``frequency`` key, else
its ``absence`` key, else empty (the rule as a whole), stored per source like the rule's other
state. The stages only report :class:`~receiver.noise.decision.AlertSignal` s; the inbox worker
keeps the alerts (their lifecycle, reminders and escalations) in the store.
"""

from __future__ import annotations

from typing import Literal

from receiver.noise.decision import AlertSignal, Emitted, Result
from receiver.noise.plan import Plan, RoutePlan
from receiver.rules import Rule

__all__ = ["KIND", "alert_key", "fired", "recovered", "touched"]

KIND = "alert"


def alert_key(rp: RoutePlan) -> str:
    """The key of the alert a matched rule fires (see the module docstring)."""
    for key in (rp.recover_key, rp.throttle_key, rp.frequency_key, rp.absence_key):
        if key is not None:
            return key
    return ""


def _signal(
    plan: Plan,
    rule: Rule,
    key: str,
    action: Literal["fire", "touch", "recover"],
    title: str = "",
    emitted: tuple[Emitted, ...] = (),
) -> AlertSignal:
    stored = plan.ref(KIND, rule, key)[2]
    event = plan.event
    process = None if event.process is None else str(event.process)
    robot = None if event.robot is None else str(event.robot)
    return AlertSignal(
        action, rule.name, stored, key, plan.source, plan.inbox_id, plan.at, title, emitted, process, robot, event.type
    )


def fired(plan: Plan, rp: RoutePlan, emitted: list[Emitted], result: Result) -> None:
    """The rule notified for its key: its alert opens, or fires again (not for a rule that notifies nobody)."""
    if not rp.route.channels:
        return
    title = emitted[0].notification.title if emitted else rp.rule.name
    result.alerts.append(_signal(plan, rp.rule, alert_key(rp), "fire", title=title, emitted=tuple(emitted)))


def touched(plan: Plan, rp: RoutePlan, result: Result) -> None:
    """The rule held a notification back: the condition still holds (the alert stays alive)."""
    if not rp.route.channels:
        return
    result.alerts.append(_signal(plan, rp.rule, alert_key(rp), "touch"))


def recovered(plan: Plan, rule: Rule, key: str, result: Result) -> None:
    """An event matched the rule's ``recover``: its alert for ``key`` is resolved."""
    result.alerts.append(_signal(plan, rule, key, "recover"))
