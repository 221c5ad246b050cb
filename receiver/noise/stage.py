"""What every noise stage shares: the rules, the silences, how a decision is recorded and a message rendered. Pure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from receiver.events import Details, Event
from receiver.noise.decision import Decision, Emitted, Result
from receiver.noise.plan import Plan, RoutePlan
from receiver.noise.silences import Silencer
from receiver.render import Notification, render
from receiver.rules import Inhibit, RuleSet
from receiver.timefmt import local_text

__all__ = ["ENRICH_PENDING", "Context", "channel_names", "describe_seconds", "equal_labels"]

ENRICH_PENDING = Details(unavailable="timeout")
"""The details a message waiting for ``enrich:`` is first written with: what is sent if none arrive in time."""


def describe_seconds(seconds: float) -> str:
    """``90`` -> ``1m30s``, ``3600`` -> ``1h``."""
    total = round(seconds)
    if total <= 0:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts)


def channel_names(channels: Sequence[Any]) -> str:
    """``a, b``, or ``no channels``."""
    names = [c.name for c in channels]
    return ", ".join(names) if names else "no channels"


def equal_labels(inh: Inhibit) -> str:
    """The labels of an inhibition's ``equal`` fields, for its messages."""
    return ", ".join(ref.label for ref in inh.equal)


def _with_details(render_again: Callable[..., Notification], details: Details | None) -> Notification:
    return render_again(details=details)


class Context:
    """The rule set, the silencer and the helpers the stages share for one engine.

    Args:
        ruleset: the rules.
        silencer: the silences in force.
        render_held: also render the notifications a rule held back (for ``receiver test``).
    """

    def __init__(self, ruleset: RuleSet, silencer: Silencer, *, render_held: bool) -> None:
        self.ruleset = ruleset
        self.silencer = silencer
        self.render_held = render_held
        self.events: dict[int, Event] = {}
        """Events parsed during this engine's life, by inbox id (an absence timer fired soon after)."""

    def decide(self, result: Result, plan: Plan, action: str, reason: str, **extra: Any) -> Decision:
        """Record a decision about the plan's event (``inbox_id`` may name another)."""
        decision = Decision(action, reason, inbox_id=extra.pop("inbox_id", plan.inbox_id), at=plan.at, **extra)
        result.decisions.append(decision)
        return decision

    def render(self, plan: Plan, rp: RoutePlan, notes: list[str], *, enrich: bool = True) -> list[Emitted]:
        """The rule's notification of the event, one per channel.

        A rule with ``enrich:`` on a job or queue item event of a source connected to Orchestrator
        gives each a way to render it again once the details are in (the pipeline fetches them);
        ``enrich=False`` for a message kept for later (a group's first event), which never waits for them.
        """
        rule = rp.rule
        ask = rule.enrich if enrich and self._enrichable(plan) else None
        emitted = []
        for channel in rp.route.channels:
            again = partial(render, plan.event, rule, channel, self.ruleset, source=plan.source, notes=notes)
            if ask is None:
                emitted.append(Emitted(plan.inbox_id, rule.name, channel.name, again(), plan.at))
            else:
                first = again(details=ENRICH_PENDING)
                with_details = partial(_with_details, again)
                emitted.append(Emitted(plan.inbox_id, rule.name, channel.name, first, plan.at, ask, with_details))
        return emitted

    def _enrichable(self, plan: Plan) -> bool:
        """Whether Orchestrator can be asked about this event: a job or queue item of a connected source."""
        source = self.ruleset.sources.get(plan.source)
        kind = plan.event.type
        return source is not None and source.orchestrator is not None and kind.startswith(("job.", "queueItem."))

    def held(self, plan: Plan, rp: RoutePlan, decision: Decision, result: Result) -> None:
        """Keep what the rule held back, rendered, when the engine shows it (``receiver test``)."""
        if self.render_held:
            result.held.extend((decision, e) for e in self.render(plan, rp, []))

    def time(self, at: float | None) -> str:
        """A time in the rules' time zone, or ``?``."""
        if at is None:
            return "?"
        return local_text(float(at), self.ruleset.timezone)
