"""The noise engine: the order of the stages an event's notifications go through. Pure.

This module only fixes the order; each stage lives in its own module and owns its state kind.
For one event (:meth:`Engine.process`):

1. **Collapse** (:mod:`~receiver.noise.collapse`). The same entity, type and state seen within
   the ``collapse`` window (one webhook per folder of a shared queue) is the same event: nothing
   else happens.
2. **Follow-ups** (for every event, whichever rule routes it): an event matching a rule's
   ``absence.expect`` cancels that rule's timer for its key (:mod:`~receiver.noise.absence`; a
   timer already past its deadline fires first); one matching an inhibition's ``until`` clears
   it (:mod:`~receiver.noise.inhibit`); one matching a rule's ``recover`` sends that rule's
   "recovered" message once, if the rule alerted for the key (:mod:`~receiver.noise.recovery`).
3. **Inhibition** (:mod:`~receiver.noise.inhibit`). An event matching an active inhibition's
   ``target`` with equal fields is muted for every rule; an event matching an inhibition's
   ``source`` starts (or extends) it.
4. **Per matched rule**: ``absence`` arms a timer (:mod:`~receiver.noise.absence`; silences
   and inhibitions are checked when it fires); otherwise the inhibition found in 3 and then the
   silences (:mod:`~receiver.noise.silences`) mute it, ``frequency`` counts
   (:mod:`~receiver.noise.frequency`), ``group`` adds the event to its group
   (:mod:`~receiver.noise.group`; the digest is sent by the group's timer), ``throttle`` lets
   one notification per key and interval through (:mod:`~receiver.noise.throttle`), and
   :mod:`~receiver.noise.notify` renders the message and starts the rule's inhibitions.
5. **Channel budget** (:mod:`~receiver.noise.channel_budget`), last, over every notification the
   steps before produced (timers' included): past a channel's ``budget`` it is held for the
   window's digest.

Before all of them, an event of a source with ``expect`` moves the source's watch
(:mod:`~receiver.noise.quiet`; the event after a "quiet" alert sends "events are back").

A timer (:meth:`Engine.fire`) is a group's digest (:func:`receiver.noise.group.flush`), an
absence deadline (:func:`receiver.noise.absence.fire`, whose event then goes through the
inhibition, silence, throttle and notify stages), a source's watch (:func:`receiver.noise.quiet.fire`)
or a channel budget's digest (:func:`receiver.noise.channel_budget.flush`, never held itself).

Every notification of a rule, every notification its throttle held back and every recovery is
also reported as an :class:`~receiver.noise.decision.AlertSignal` (:mod:`~receiver.noise.alerting`):
the inbox worker keeps the alerts (acknowledgement, reminders, escalation) outside the engine.

Keys are per source (an event only meets the state its own source made) unless the rule or the
inhibition says ``share_across_sources: true``; :meth:`~receiver.noise.plan.Plan.ref` is where a key gets its source.
Every step is recorded as a :class:`~receiver.noise.decision.Decision` naming the rule, silence or inhibition behind it.
State lives in :class:`~receiver.noise.state.StateView` rows; the caller loads the rows named
by :meth:`~receiver.noise.plan.Plan.refs` and commits the view's changes together with the deliveries.
Times are Unix seconds given by the caller: an event's arrival time, a timer's due time.
"""

from __future__ import annotations

from collections.abc import Sequence

from receiver.events import Event
from receiver.noise import (
    absence,
    alerting,
    channel_budget,
    collapse,
    frequency,
    group,
    inhibit,
    quiet,
    recovery,
    silences,
    throttle,
)
from receiver.noise.decision import Result
from receiver.noise.notify import notify
from receiver.noise.plan import Plan, Planner, RoutePlan
from receiver.noise.silences import AdHocSilence, Silencer
from receiver.noise.stage import Context
from receiver.noise.state import Ref, Row, StateView
from receiver.rules import Expect, RuleSet

__all__ = ["Engine"]


class Engine:
    """Decides about events and timers against one rule set and the silences in force.

    Args:
        ruleset: the rules (their noise options, ``silences:``, ``inhibit:``, ``collapse:``).
        silences: the ad-hoc silences that may hold in the period being processed.
        render_held: also render the notifications a rule held back (for ``receiver test``).
    """

    def __init__(self, ruleset: RuleSet, silences: Sequence[AdHocSilence] = (), *, render_held: bool = False) -> None:
        self.ruleset = ruleset
        self._ctx = Context(ruleset, Silencer(ruleset, silences), render_held=render_held)
        self._planner = Planner(ruleset)
        self._budgets = channel_budget.refs(ruleset)

    def plan(
        self, event: Event, source: str, *, inbox_id: int, at: float, body: str = "", only_rule: str | None = None
    ) -> Plan:
        """Match the event and compute every key it needs.

        Args:
            event: the typed event.
            source: the source it came from.
            inbox_id: its inbox row (deliveries and timers refer to it).
            at: its arrival time.
            body: its stored body (kept by absence timers, to notify about it later).
            only_rule: plan the firing of that rule's timer for the event (no matching, no follow-ups).
        """
        plan = self._planner.plan(event, source, inbox_id=inbox_id, at=at, body=body, only_rule=only_rule)
        plan.extra |= self._budgets
        configured = self.ruleset.sources.get(source)
        if only_rule is None and configured is not None and configured.expect is not None:
            plan.extra.add(quiet.ref(source))
        return plan

    @staticmethod
    def watch_ref(source: str) -> Ref:
        """The row of a source's watch (``expect:``)."""
        return quiet.ref(source)

    @staticmethod
    def watch_from(source: str, last_at: float, last_inbox_id: int, expect: Expect) -> Row:
        """A source's watch that last saw an event at ``last_at`` (started from the inbox)."""
        return quiet.watching(source, last_at, last_inbox_id, expect)

    def timer_refs(self, row: Row) -> set[Ref]:
        """Rows firing ``row`` may read besides it and its event's plan (the channels' budgets)."""
        return set(self._budgets)

    def timer_plan(self, row: Row) -> Plan | None:
        """The plan of the event an absence timer is about (None for other timers, or an unreadable event)."""
        return absence.timer_plan(self._ctx, self._planner, row)

    @staticmethod
    def timer_event(row: Row) -> int:
        """The event a timer is about: an absence timer's arming event, a group's first pending event (else 0)."""
        if row.kind == absence.KIND:
            return absence.load(row.data).inbox_id or 0
        if row.kind == group.KIND:
            return group.GroupState.from_data(row.data).first_inbox_id or 0
        if row.kind == channel_budget.KIND:
            return channel_budget.BudgetState.from_data(row.data).first_inbox_id or 0
        if row.kind == quiet.KIND:
            return quiet.SourceWatch.from_data(row.data).last_inbox_id
        return 0

    def process(self, view: StateView, plan: Plan) -> Result:
        """Decide about one event: collapse, follow-ups, inhibitions, then each matched rule.

        Args:
            view: the state (every row of ``plan.refs()`` loaded); changed in place.
            plan: the event's plan (see :meth:`plan`).

        Returns:
            The notifications to deliver now and every decision taken.
        """
        ctx, result = self._ctx, Result(matched=list(plan.matched))
        if quiet.ref(plan.source) in plan.extra:
            quiet.seen(ctx, view, plan.source, plan.inbox_id, plan.at, result)
        if not collapse.collapsed(ctx, view, plan, result):
            notes = self._follow_ups(view, plan, result)
            active = inhibit.inhibited(view, plan)
            for inh, key in plan.sources:
                inhibit.start(ctx, view, inh, key, plan, result)
            for rp in plan.routes:
                self._route(view, plan, rp, active, notes, result)
        channel_budget.hold(ctx, view, result, lambda _: _subject_of(plan))
        return result

    def fire(self, view: StateView, row: Row) -> Result:
        """Fire a due timer (a group's digest, an absence deadline) at its due time.

        Args:
            view: the state, holding ``row`` (and, for an absence, the rows of :meth:`timer_plan`).
            row: the timer.
        """
        result = Result()
        at = float(row.due_at or 0.0)
        if row.kind == channel_budget.KIND:
            channel_budget.flush(self._ctx, view, row, at, result)
            return result  # the digest is the budget's own message: not counted against it
        if row.kind == group.KIND:
            group.flush(self._ctx, view, row, at, result)
        elif row.kind == absence.KIND:
            absence.fire(self._ctx, self._planner, self, view, row, at, result)
        elif row.kind == quiet.KIND:
            quiet.fire(self._ctx, view, row, at, result)
        else:
            view.put(Row(row.kind, row.name, row.key, row.data, None, row.expires_at))
        shown = row.shown_key
        channel_budget.hold(self._ctx, view, result, lambda _: shown)
        return result

    def _follow_ups(self, view: StateView, plan: Plan, result: Result) -> list[str]:
        """Absence cancellations, inhibitions cleared, recoveries; returns notes for this event's messages."""
        ctx, notes = self._ctx, []
        for rule, key in plan.cancels:
            absence.cancel(ctx, self._planner, self, view, plan, rule, key, result)
        for inh, key in plan.untils:
            until = inh.until.describe() if inh.until is not None else "?"
            note = inhibit.clear(ctx, view, inh, key, plan, result, by=f"an event where {until}")
            if note:
                notes.append(note)
        for rule, key in plan.recoveries:
            recovery.recover(ctx, view, plan, rule, key, result, notes)
        return notes

    def _route(
        self,
        view: StateView,
        plan: Plan,
        rp: RoutePlan,
        active: inhibit.Active | None,
        notes: list[str],
        result: Result,
    ) -> None:
        ctx, rule = self._ctx, rp.rule
        if rule.absence is not None:
            absence.arm(ctx, self._planner, self, view, plan, rp, result)
            return
        if inhibit.mutes(ctx, plan, rp, active, result) or silences.silenced(ctx, plan, rp, result):
            return
        if rule.frequency is not None:
            extra = frequency.count(ctx, view, plan, rp, result)
            if extra is None:
                return
            notes = [*notes, extra]
        if rule.group is not None:
            group.group(ctx, view, plan, rp, result)
            return
        self.emit(view, plan, rp, result, notes)

    def mute(self, view: StateView, plan: Plan, rp: RoutePlan, result: Result) -> bool:
        """Inhibition, then silences, for an absence timer's event (see :class:`receiver.noise.absence.Downstream`)."""
        active = inhibit.inhibited(view, plan)
        return inhibit.mutes(self._ctx, plan, rp, active, result) or silences.silenced(self._ctx, plan, rp, result)

    def emit(self, view: StateView, plan: Plan, rp: RoutePlan, result: Result, notes: list[str]) -> None:
        """Throttle, then notify (the rule's last two stages)."""
        notes = list(notes)
        if throttle.throttled(self._ctx, view, plan, rp, result, notes):
            recovery.mark_firing(view, plan, rp, None)
            alerting.touched(plan, rp, result)
            return
        notify(self._ctx, view, plan, rp, result, notes)


def _subject_of(plan: Plan) -> str:
    """What an event's notification is about, for a channel budget's digest: its robot, else its process."""
    event = plan.event
    if event.robot:
        return f"on {event.robot}"
    if event.process:
        return f"of {event.process}"
    return ""
