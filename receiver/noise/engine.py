"""The noise engine: what happens to an event's notifications given the state so far. Pure.

For one event the engine decides, in this order:

1. **Collapse.** The same entity, type and state seen within the ``collapse`` window (one
   webhook per folder of a shared queue) is the same event: nothing else happens.
2. **Follow-ups** (for every event, whichever rule routes it): an event matching a rule's
   ``absence.expect`` cancels that rule's timer for its key (a timer already past its deadline
   fires first); one matching an inhibition's ``until`` clears it; one matching a rule's
   ``recover`` sends that rule's "recovered" message once, if the rule alerted for the key.
3. **Inhibition.** An event matching an active inhibition's ``target`` with equal fields is
   muted for every rule; an event matching an inhibition's ``source`` starts (or extends) it.
4. **Per matched rule**: ``absence`` arms a timer (silences and inhibitions are checked when it
   fires); otherwise silences are checked, then ``frequency`` counts, ``group`` adds the event
   to its group (the digest is sent by the group's timer), and ``throttle`` lets one
   notification per key and interval through, counting the others for the next message.

Keys are per source (an event only meets the state its own source made) unless the rule or the
inhibition says ``share_across_sources: true``; :meth:`Plan.ref` is where a key gets its source.
Every step is recorded as a :class:`Decision` naming the rule, silence or inhibition behind it.
State lives in :class:`~receiver.noise.state.StateView` rows; the caller loads the rows named
by :meth:`Plan.refs` and commits the view's changes together with the deliveries.
Times are Unix seconds given by the caller: an event's arrival time, a timer's due time.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from receiver.errors import EventParseError
from receiver.events import TEXT_LIMIT, Event, cap_strings, parse_event, parse_log_entries
from receiver.noise.digest import add_item, new_group, render_digest, single_notification
from receiver.noise.silences import AdHocSilence, Silencer
from receiver.noise.state import Ref, Row, StateView, state_key
from receiver.render import Notification, default_severity, default_title, render, render_recovered, template_context
from receiver.rules import (
    TIME_FORMAT,
    BudgetExceededError,
    Inhibit,
    KeyTemplate,
    Route,
    Rule,
    RuleSet,
    Subject,
    context_names,
)

__all__ = [
    "SILENT_TYPES",
    "SUPPRESSED",
    "Decision",
    "Emitted",
    "Engine",
    "Plan",
    "Result",
    "describe_seconds",
    "parse_stored",
]

SILENT_TYPES = frozenset({"ping"})
"""Event types that are stored and visible but never notify (Orchestrator's connectivity test)."""

SUPPRESSED = frozenset(
    {"collapsed", "throttled", "grouped", "counted", "armed", "already_armed", "not_armed", "silenced", "inhibited"}
)
"""Decisions that mean: this rule sent nothing for this event (now)."""

FIRING_KEPT = 30 * 86400.0
"""Seconds an alert waits for its recovery before it is forgotten."""


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


def parse_stored(type_: str, body: str | bytes) -> Event:
    """The typed event of a stored body (a webhook body, or one robot log entry for ``robot.log``).

    Every text value is cut at ``TEXT_LIMIT`` characters (``cap_strings``): the event is what rules
    match and templates render, and neither should take longer for a 1 MiB message.

    Raises:
        EventParseError: the body cannot be read as its event type.
    """
    try:
        raw: Any = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise EventParseError("invalid_json", f"stored body is not JSON: {exc}") from exc
    if len(body) > TEXT_LIMIT:  # a shorter body cannot hold a longer text
        raw = cap_strings(raw)
    if type_ == "robot.log":
        entries = parse_log_entries(raw)
        if len(entries) != 1:
            raise EventParseError("invalid_logs", "a stored robot.log row must hold one entry")
        return entries[0]
    if not isinstance(raw, dict):
        raise EventParseError("not_an_object", "stored body is not a JSON object")
    return parse_event(raw)


@dataclass(frozen=True, slots=True)
class Decision:
    """One noise decision, for the event's outcome, the audit log and ``receiver test``.

    Attributes:
        action: notified, throttled, grouped, counted, armed, already_armed, not_armed,
            cancelled, fired, flushed, recovered, silenced, inhibited, inhibiting, cleared,
            collapsed or dropped.
        reason: one sentence naming the rule, silence or inhibition and the key.
        rule: the rule (or inhibition) it is about, or None.
        key: the key inside it, or None.
        inbox_id: the event it is about.
        at: when (the event's arrival, or the timer's due time).
        due_at: for grouped / armed: when the digest or the timer is due.
    """

    action: str
    reason: str
    rule: str | None = None
    key: str | None = None
    inbox_id: int | None = None
    at: float = 0.0
    due_at: float | None = None

    @property
    def suppressed(self) -> bool:
        """True when the rule sent nothing for the event because of this decision."""
        return self.action in SUPPRESSED

    def as_json(self) -> dict[str, Any]:
        """The decision as a JSON object (outcome of an event, ``receiver test --json``)."""
        return {
            "action": self.action,
            "rule": self.rule,
            "key": self.key,
            "reason": self.reason,
            "suppressed": self.suppressed,
            "inbox_id": self.inbox_id,
            "at": self.at,
            "due_at": self.due_at,
        }


@dataclass(frozen=True, slots=True)
class Emitted:
    """A notification to deliver: ``rule`` is the rule's name (``NAME:recovered`` for a recovery)."""

    inbox_id: int
    rule: str
    channel: str
    notification: Notification
    at: float


@dataclass(slots=True)
class Result:
    """What processing an event or firing a timer produced."""

    matched: list[str] = field(default_factory=list)
    emitted: list[Emitted] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    held: list[tuple[Decision, Emitted]] = field(default_factory=list)


@dataclass(slots=True)
class RoutePlan:
    """A matched rule and its keys for one event."""

    route: Route
    throttle_key: str | None = None
    frequency_key: str | None = None
    group_key: str | None = None
    group_labels: dict[str, str] = field(default_factory=dict)
    absence_key: str | None = None
    recover_key: str | None = None

    @property
    def rule(self) -> Rule:
        """The rule."""
        return self.route.rule


@dataclass(slots=True)
class Plan:
    """Everything about one event that does not depend on state: routes, keys, clauses that hold."""

    event: Event
    source: str
    inbox_id: int
    at: float
    body: str
    subject: Subject
    collapse_key: str | None = None
    matched: list[str] = field(default_factory=list)
    routes: list[RoutePlan] = field(default_factory=list)
    cancels: list[tuple[Rule, str]] = field(default_factory=list)
    recoveries: list[tuple[Rule, str]] = field(default_factory=list)
    recovery_clears: dict[str, list[tuple[Inhibit, str]]] = field(default_factory=dict)
    targets: list[tuple[Inhibit, str]] = field(default_factory=list)
    sources: list[tuple[Inhibit, str]] = field(default_factory=list)
    untils: list[tuple[Inhibit, str]] = field(default_factory=list)
    rule_sources: dict[str, list[tuple[Inhibit, str]]] = field(default_factory=dict)

    def touches_state(self) -> bool:
        """True when some rule routes the event or some follow-up, inhibition or source concerns it."""
        return bool(self.routes or self.cancels or self.recoveries or self.targets or self.sources or self.untils)

    def ref(self, kind: str, owner: Rule | Inhibit, key: str, *, unsourced: bool = False) -> Ref:
        """The row of ``kind`` that a rule or an inhibition keeps for ``key`` and this event's source.

        The one place noise keys get their source: state is per source unless the rule or the
        inhibition says ``share_across_sources: true``. ``unsourced`` gives the row as stored
        before keys carried their source.
        """
        shared = unsourced or owner.share_across_sources
        return (kind, owner.name, state_key(key, None if shared else self.source))

    def refs(self) -> set[Ref]:
        """Every row processing this event may read (load them into the view first)."""
        refs: set[Ref] = set()
        if self.collapse_key is not None:
            refs.add(("collapse", "", self.collapse_key))
        for rp in self.routes:
            for kind, key in (
                ("throttle", rp.throttle_key),
                ("frequency", rp.frequency_key),
                ("group", rp.group_key),
                ("absence", rp.absence_key),
                ("firing", rp.recover_key),
            ):
                if key is not None:
                    refs.add(self.ref(kind, rp.rule, key))
        for rule, key in self.cancels:
            refs.add(self.ref("absence", rule, key))
            refs.add(self.ref("absence", rule, key, unsourced=True))
        refs.update(self.ref("firing", rule, key) for rule, key in self.recoveries)
        for pairs in (self.targets, self.sources, self.untils, *self.recovery_clears.values()):
            refs.update(self.ref("inhibit", inh, key) for inh, key in pairs)
        for pairs in self.rule_sources.values():
            refs.update(self.ref("inhibit", inh, key) for inh, key in pairs)
        return refs


class Engine:
    """Decides about events and timers against one rule set and the silences in force.

    Args:
        ruleset: the rules (their noise options, ``silences:``, ``inhibit:``, ``collapse:``).
        silences: the ad-hoc silences that may hold in the period being processed.
        render_held: also render the notifications a rule held back (for ``receiver test``).
    """

    def __init__(self, ruleset: RuleSet, silences: Sequence[AdHocSilence] = (), *, render_held: bool = False) -> None:
        self.ruleset = ruleset
        self.silencer = Silencer(ruleset, silences)
        self.render_held = render_held
        self._absence_rules = tuple(r for r in ruleset.rules if r.absence is not None)
        self._recover_rules = tuple(r for r in ruleset.rules if r.recover is not None)
        self._events: dict[int, Event] = {}

    # --- plans ----------------------------------------------------------------------------

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
        subject = Subject(event, source)
        plan = Plan(event, source, inbox_id, at, body, subject)
        if event.type in SILENT_TYPES:
            plan.matched = [route.rule.name for route in self.ruleset.match(event, source)]
            return plan
        if only_rule is not None:
            route = self.ruleset.route(only_rule)
            routes: Sequence[Route] = () if route is None else (route,)
        else:
            routes = self.ruleset.match(event, source)
            plan.collapse_key = self._collapse_key(event, source)
        plan.routes = [self._route_plan(route, subject) for route in routes]
        plan.matched = [rp.rule.name for rp in plan.routes]
        self._plan_inhibits(plan, follow_ups=only_rule is None)
        if only_rule is None:
            self._plan_follow_ups(plan)
        return plan

    def _plan_inhibits(self, plan: Plan, *, follow_ups: bool) -> None:
        subject = plan.subject
        for inh in self.ruleset.inhibits:
            key = self._inhibit_key(inh, subject)
            if key is None:
                continue
            if inh.target.test(subject):
                plan.targets.append((inh, key))
            if inh.source is not None and inh.source.test(subject):
                plan.sources.append((inh, key))
            if follow_ups and inh.until is not None and inh.until.test(subject):
                plan.untils.append((inh, key))
            if inh.source_rule is not None and any(rp.rule.name == inh.source_rule for rp in plan.routes):
                plan.rule_sources.setdefault(inh.source_rule, []).append((inh, key))

    def _plan_follow_ups(self, plan: Plan) -> None:
        subject = plan.subject
        for rule in self._absence_rules:
            if rule.absence is not None and rule.absence.expect.test(subject):
                plan.cancels.append((rule, self._key(rule.absence.key, rule, subject)))
        for rule in self._recover_rules:
            if rule.recover is None or not rule.recover.clause.test(subject):
                continue
            plan.recoveries.append((rule, self._key(rule.recover.key, rule, subject)))
            pairs = [
                (inh, key)
                for inh in self.ruleset.inhibits
                if inh.source_rule == rule.name and (key := self._inhibit_key(inh, subject)) is not None
            ]
            if pairs:
                plan.recovery_clears[rule.name] = pairs

    def _route_plan(self, route: Route, subject: Subject) -> RoutePlan:
        rule = route.rule
        rp = RoutePlan(route)
        if rule.throttle is not None:
            rp.throttle_key = self._key(rule.throttle.key, rule, subject)
        if rule.frequency is not None:
            rp.frequency_key = self._key(rule.frequency.key, rule, subject)
        if rule.group is not None:
            rp.group_labels = {ref.label: ref.text(subject) or "" for ref in rule.group.by}
            rp.group_key = _safe(",".join(f"{k}={v}" for k, v in rp.group_labels.items()))
        if rule.absence is not None:
            rp.absence_key = self._key(rule.absence.key, rule, subject)
        if rule.recover is not None:
            rp.recover_key = self._key(rule.recover.key, rule, subject)
        return rp

    def _key(self, template: KeyTemplate | None, rule: Rule, subject: Subject) -> str:
        if template is None:
            return ""
        event = subject.event
        severity = rule.severity or default_severity(event)
        names = context_names(template.template)
        context = template_context(event, rule, self.ruleset, source=subject.source, severity=severity, names=names)
        try:
            return _safe(" ".join(template.template.render(context).split()))
        except BudgetExceededError:
            raise
        except Exception as exc:  # noqa: BLE001 - a key that cannot be rendered must not lose the event
            return f"!{type(exc).__name__}"

    @staticmethod
    def _inhibit_key(inh: Inhibit, subject: Subject) -> str | None:
        values = [(ref.label, ref.text(subject)) for ref in inh.equal]
        if any(v is None for _, v in values):
            return None
        return _safe(",".join(f"{label}={value}" for label, value in values))

    def _collapse_key(self, event: Event, source: str) -> str | None:
        collapse = self.ruleset.collapse
        entity = event.entity_key
        if collapse is None or not entity:
            return None
        folded = event.type.casefold()
        if not any(fnmatch.fnmatchcase(folded, pattern) for pattern in collapse.types):
            return None
        item = getattr(event, "queue_item", None)
        parts = [
            source,
            event.type,
            entity,
            _name(event.job_state),
            _name(event.robot_state),
            _name(getattr(item, "status", None)),
            _name(getattr(item, "retry_number", None)),
            _name(event.exception_type),
        ]
        return _safe("|".join(parts))

    # --- events ---------------------------------------------------------------------------

    def process(self, view: StateView, plan: Plan) -> Result:
        """Decide about one event: follow-ups, inhibitions, then each matched rule.

        Args:
            view: the state (every row of ``plan.refs()`` loaded); changed in place.
            plan: the event's plan (see :meth:`plan`).

        Returns:
            The notifications to deliver now and every decision taken.
        """
        result = Result(matched=list(plan.matched))
        if self._collapsed(view, plan, result):
            return result
        notes = self._follow_ups(view, plan, result)
        inhibited = self._inhibited(view, plan)
        for inh, key in plan.sources:
            self._start_inhibit(view, inh, key, plan, result)
        for rp in plan.routes:
            self._route(view, plan, rp, inhibited, notes, result)
        return result

    def _decide(self, result: Result, plan: Plan, action: str, reason: str, **extra: Any) -> Decision:
        decision = Decision(action, reason, inbox_id=extra.pop("inbox_id", plan.inbox_id), at=plan.at, **extra)
        result.decisions.append(decision)
        return decision

    def _collapsed(self, view: StateView, plan: Plan, result: Result) -> bool:
        key = plan.collapse_key
        collapse = self.ruleset.collapse
        if key is None or collapse is None or not plan.touches_state():
            return False
        ref: Ref = ("collapse", "", key)
        row = view.get(ref)
        if row is not None and (row.expires_at or 0.0) > plan.at:
            first = row.data.get("inbox_id")
            self._decide(
                result,
                plan,
                "collapsed",
                f"collapsed into event #{first}: the same {plan.event.type} of the same entity and state arrived "
                f"{describe_seconds(plan.at - float(row.data.get('at', plan.at)))} earlier (folder fan-out, "
                f"window {describe_seconds(collapse.window)})",
                key=key,
            )
            return True
        view.put(Row("collapse", "", key, {"inbox_id": plan.inbox_id, "at": plan.at}, None, plan.at + collapse.window))
        return False

    def _follow_ups(self, view: StateView, plan: Plan, result: Result) -> list[str]:
        """Absence cancellations, inhibitions cleared, recoveries; returns notes for this event's messages."""
        notes: list[str] = []
        for rule, key in plan.cancels:
            self._cancel(view, plan, rule, key, result)
        for inh, key in plan.untils:
            until = inh.until.describe() if inh.until is not None else "?"
            note = self._clear_inhibit(view, inh, key, plan, result, by=f"an event where {until}")
            if note:
                notes.append(note)
        for rule, key in plan.recoveries:
            self._recover(view, plan, rule, key, result, notes)
        return notes

    def _cancel(self, view: StateView, plan: Plan, rule: Rule, key: str, result: Result) -> None:
        absence = rule.absence
        if absence is None:
            return
        ref = plan.ref("absence", rule, key)
        unsourced = plan.ref("absence", rule, key, unsourced=True)
        if unsourced != ref:
            # Armed before keys carried their source: the row names its source, and only that one cancels it.
            old = view.get(unsourced)
            if old is not None and old.data.get("source") == plan.source:
                self._disarm(view, plan, old, key, result)
        if self._disarm(view, plan, view.get(ref), key, result):
            return
        # Orchestrator does not promise order: remember the follow-up, so that an arming event
        # arriving after it (within the same time) does not arm a timer that could only fire.
        data = {"state": "followed", "inbox_id": plan.inbox_id, "at": plan.at, "event_time": _event_time(plan.event)}
        view.put(Row(*ref, data, None, plan.at + absence.within))

    def _disarm(self, view: StateView, plan: Plan, row: Row | None, key: str, result: Result) -> bool:
        """Cancel an armed absence timer (fire it first if it was already due); False when ``row`` is none."""
        if row is None or row.data.get("state") != "armed":
            return False
        if row.due_at is not None and row.due_at <= plan.at:
            self._fire_absence(view, row, row.due_at, result)
            return True
        view.delete(row.ref)
        self._decide(
            result,
            plan,
            "cancelled",
            f"cancelled the absence timer of rule {row.name!r} for key {key!r} (armed by event "
            f"#{row.data.get('inbox_id')}, due {self._time(row.due_at)})",
            rule=row.name,
            key=key,
        )
        return True

    def _recover(self, view: StateView, plan: Plan, rule: Rule, key: str, result: Result, notes: list[str]) -> None:
        ref = plan.ref("firing", rule, key)
        row = view.get(ref)
        if row is None:
            return
        view.delete(ref)
        extra = list(notes)
        for inh, ikey in plan.recovery_clears.get(rule.name, []):
            note = self._clear_inhibit(view, inh, ikey, plan, result, by=f"the recovery of rule {rule.name!r}")
            if note:
                extra.append(note)
        label = f"{rule.name}:recovered"
        silenced = self.silencer.check(plan.subject, rule.name, plan.at)
        if silenced:
            self._decide(
                result, plan, "silenced", f"the recovery message of rule {rule.name!r}: {silenced}", rule=label
            )
            return
        route = self.ruleset.route(rule.name)
        channels = () if route is None else route.channels
        for channel in channels:
            message = render_recovered(
                plan.event,
                rule,
                channel,
                self.ruleset,
                source=plan.source,
                since=float(row.data.get("since", plan.at)),
                count=int(row.data.get("count", 1)),
                alert_title=str(row.data.get("title", rule.name)),
                key=key,
                notes=extra,
            )
            result.emitted.append(Emitted(plan.inbox_id, label, channel.name, message, plan.at))
        self._decide(
            result,
            plan,
            "recovered",
            f"rule {rule.name!r} recovered for key {key!r} (alerting since {self._time(row.data.get('since'))}); "
            f"sent to {_names(channels)}",
            rule=label,
            key=key,
        )

    def _inhibited(self, view: StateView, plan: Plan) -> tuple[Inhibit, str, Row] | None:
        for inh, key in plan.targets:
            row = view.get(plan.ref("inhibit", inh, key))
            if row is None or (row.expires_at or 0.0) <= plan.at or row.data.get("source_inbox_id") == plan.inbox_id:
                continue
            if plan.routes:
                row.data["muted"] = int(row.data.get("muted", 0)) + 1
                view.put(row)
            return inh, key, row
        return None

    def _start_inhibit(self, view: StateView, inh: Inhibit, key: str, plan: Plan, result: Result) -> None:
        ref = plan.ref("inhibit", inh, key)
        row = view.get(ref)
        until = plan.at + inh.duration
        if row is not None and (row.expires_at or 0.0) > plan.at:
            row.expires_at = max(row.expires_at or 0.0, until)
            view.put(row)
            return
        data = {"since": plan.at, "source_inbox_id": plan.inbox_id, "muted": 0}
        view.put(Row(*ref, data, None, until))
        self._decide(
            result,
            plan,
            "inhibiting",
            f"inhibit {inh.name!r} started for {key}: events where {inh.target.describe()} with the same "
            f"{_labels(inh)} are muted until {self._time(until)} at most",
            rule=inh.name,
            key=key,
        )

    def _clear_inhibit(self, view: StateView, inh: Inhibit, key: str, plan: Plan, result: Result, *, by: str) -> str:
        ref = plan.ref("inhibit", inh, key)
        row = view.get(ref)
        if row is None:
            return ""
        view.delete(ref)
        if (row.expires_at or 0.0) <= plan.at:
            return ""
        muted = int(row.data.get("muted", 0))
        self._decide(
            result,
            plan,
            "cleared",
            f"inhibit {inh.name!r} for {key} cleared by {by}; it muted {muted} event(s) since "
            f"{self._time(row.data.get('since'))}",
            rule=inh.name,
            key=key,
        )
        if not muted:
            return ""
        return f"While it lasted, {muted} event(s) for {key} were muted (inhibit {inh.name!r})."

    # --- one matched rule -----------------------------------------------------------------

    def _route(
        self,
        view: StateView,
        plan: Plan,
        rp: RoutePlan,
        inhibited: tuple[Inhibit, str, Row] | None,
        notes: list[str],
        result: Result,
    ) -> None:
        rule = rp.rule
        if rule.absence is not None:
            self._arm(view, plan, rp, result)
            return
        if self._muted(plan, rp, inhibited, result):
            return
        if rule.frequency is not None:
            extra = self._count(view, plan, rp, result)
            if extra is None:
                return
            notes = [*notes, extra]
        if rule.group is not None:
            self._group(view, plan, rp, result)
            return
        self._emit(view, plan, rp, result, notes)

    def _muted(self, plan: Plan, rp: RoutePlan, inhibited: tuple[Inhibit, str, Row] | None, result: Result) -> bool:
        rule = rp.rule
        if inhibited is not None:
            inh, key, row = inhibited
            decision = self._decide(
                result,
                plan,
                "inhibited",
                f"inhibited by {inh.name!r}: {key} is affected since {self._time(row.data.get('since'))} "
                f"(source event #{row.data.get('source_inbox_id')})",
                rule=rule.name,
                key=key,
            )
            self._held(plan, rp, decision, result)
            return True
        silenced = self.silencer.check(plan.subject, rule.name, plan.at)
        if silenced:
            decision = self._decide(result, plan, "silenced", silenced, rule=rule.name)
            self._held(plan, rp, decision, result)
            return True
        return False

    def _count(self, view: StateView, plan: Plan, rp: RoutePlan, result: Result) -> str | None:
        """Count a match for ``frequency``; returns the note of the notification once the count is reached."""
        rule = rp.rule
        frequency = rule.frequency
        key = rp.frequency_key
        if frequency is None or key is None:
            return ""
        ref = plan.ref("frequency", rule, key)
        row = view.get(ref)
        times = [float(t) for t in (row.data.get("times", []) if row else []) if float(t) > plan.at - frequency.within]
        times.append(plan.at)
        window = describe_seconds(frequency.within)
        if len(times) < frequency.count:
            view.put(Row(*ref, {"times": times}, None, plan.at + frequency.within))
            decision = self._decide(
                result,
                plan,
                "counted",
                f"frequency of rule {rule.name!r} for key {key!r}: {len(times)} of {frequency.count} within {window}; "
                "no notification yet",
                rule=rule.name,
                key=key,
            )
            self._held(plan, rp, decision, result)
            return None
        view.delete(ref)
        since = self._time(times[0])
        return f"{len(times)} matching events within {window} (since {since}; rule {rule.name}, key {key or '-'})."

    def _group(self, view: StateView, plan: Plan, rp: RoutePlan, result: Result) -> None:
        rule = rp.rule
        group = rule.group
        key = rp.group_key
        if group is None or key is None:
            return
        ref = plan.ref("group", rule, key)
        row = view.get(ref)
        if row is not None and row.due_at is not None and row.due_at <= plan.at:
            row = self._flush(view, row, row.due_at, result)
        last_flush = None if row is None else row.data.get("last_flush_at")
        if row is None or (row.due_at is None and (last_flush is None or plan.at - last_flush >= group.interval)):
            row = Row(*ref, {**new_group(rp.group_labels, last_flush), "key": key}, plan.at + group.wait, None)
        elif row.due_at is None:
            row.due_at = max(plan.at, float(last_flush or plan.at) + group.interval)
        single = self._render(plan, rp, []) if row.data["count"] == 0 else None
        add_item(
            row.data,
            plan.event,
            rule,
            inbox_id=plan.inbox_id,
            at=plan.at,
            single=None if single is None else {e.channel: e.notification for e in single},
        )
        row.expires_at = None
        view.put(row)
        decision = self._decide(
            result,
            plan,
            "grouped",
            f"grouped into {rule.name!r} [{key or 'all'}]: digest due at {self._time(row.due_at)} "
            f"({row.data['count']} event(s) so far)",
            rule=rule.name,
            key=key,
            due_at=row.due_at,
        )
        self._held(plan, rp, decision, result)
        self._firing(view, plan, rp, None)
        self._start_rule_inhibits(view, plan, rp, result)

    def _arm(self, view: StateView, plan: Plan, rp: RoutePlan, result: Result) -> None:
        rule = rp.rule
        absence = rule.absence
        key = rp.absence_key
        if absence is None or key is None:
            return
        ref = plan.ref("absence", rule, key)
        row = view.get(ref)
        if row is not None and row.data.get("state") == "armed":
            if row.due_at is not None and row.due_at <= plan.at:
                self._fire_absence(view, row, row.due_at, result)
            else:
                decision = self._decide(
                    result,
                    plan,
                    "already_armed",
                    f"the absence timer of rule {rule.name!r} for key {key!r} is already armed by event "
                    f"#{row.data.get('inbox_id')} (due {self._time(row.due_at)})",
                    rule=rule.name,
                    key=key,
                    due_at=row.due_at,
                )
                self._held(plan, rp, decision, result)
                return
        elif row is not None and (row.expires_at or 0.0) > plan.at and _before(plan.event, row.data.get("event_time")):
            decision = self._decide(
                result,
                plan,
                "not_armed",
                f"not armed: key {key!r} was already followed by event #{row.data.get('inbox_id')} at "
                f"{self._time(row.data.get('at'))} (events arrived out of order)",
                rule=rule.name,
                key=key,
            )
            self._held(plan, rp, decision, result)
            return
        due = plan.at + absence.within
        data = {
            "state": "armed",
            "key": key,
            "inbox_id": plan.inbox_id,
            "source": plan.source,
            "type": plan.event.type,
            "body": plan.body,
            "at": plan.at,
        }
        view.put(Row(*ref, data, due, None))
        self._events[plan.inbox_id] = plan.event
        decision = self._decide(
            result,
            plan,
            "armed",
            f"absence timer of rule {rule.name!r} armed for key {key!r}: notifies at {self._time(due)} unless an "
            f"event where {absence.expect.describe()} arrives",
            rule=rule.name,
            key=key,
            due_at=due,
        )
        self._held(plan, rp, decision, result)

    def _emit(
        self,
        view: StateView,
        plan: Plan,
        rp: RoutePlan,
        result: Result,
        notes: list[str],
    ) -> None:
        """Notify the rule's channels about the event, unless its throttle holds the notification back."""
        rule = rp.rule
        notes = list(notes)
        throttle = rule.throttle
        key = rp.throttle_key
        if throttle is not None and key is not None:
            ref = plan.ref("throttle", rule, key)
            row = view.get(ref)
            if row is not None and float(row.data.get("until", 0.0)) > plan.at:
                row.data["held"] = int(row.data.get("held", 0)) + 1
                row.data.setdefault("held_since", plan.at)
                view.put(row)
                decision = self._decide(
                    result,
                    plan,
                    "throttled",
                    f"throttled by rule {rule.name!r} for key {key!r}: {row.data['held']} held back until "
                    f"{self._time(row.data.get('until'))}",
                    rule=rule.name,
                    key=key,
                )
                self._held(plan, rp, decision, result)
                self._firing(view, plan, rp, None)
                return
            held = 0 if row is None else int(row.data.get("held", 0))
            if held:
                since = self._time(row.data.get("held_since")) if row else "?"
                notes.append(
                    f"{held} more notification(s) of rule {rule.name} for key {key or '-'} were held back since "
                    f"{since} (throttle {describe_seconds(throttle.interval)})."
                )
            until = plan.at + throttle.interval
            view.put(Row(*ref, {"until": until, "held": 0}, None, until))
        notes.extend(self._start_rule_inhibits(view, plan, rp, result))
        notes.extend(self._source_notes(view, plan))
        emitted = self._render(plan, rp, notes)
        result.emitted.extend(emitted)
        reason = (
            f"rule {rule.name!r} notified {_names(rp.route.channels)}"
            if rp.route.channels
            else f"rule {rule.name!r} has no channels (notify: []): the event stops here"
        )
        self._decide(result, plan, "notified", reason, rule=rule.name)
        self._firing(view, plan, rp, emitted[0].notification.title if emitted else None)

    def _render(self, plan: Plan, rp: RoutePlan, notes: list[str]) -> list[Emitted]:
        rule = rp.rule
        return [
            Emitted(
                plan.inbox_id,
                rule.name,
                channel.name,
                render(plan.event, rule, channel, self.ruleset, source=plan.source, notes=notes),
                plan.at,
            )
            for channel in rp.route.channels
        ]

    def _held(self, plan: Plan, rp: RoutePlan, decision: Decision, result: Result) -> None:
        if self.render_held:
            result.held.extend((decision, e) for e in self._render(plan, rp, []))

    def _firing(self, view: StateView, plan: Plan, rp: RoutePlan, title: str | None) -> None:
        """Remember that the rule alerted for its recover key (so that a recovery is announced once)."""
        key = rp.recover_key
        if rp.rule.recover is None or key is None:
            return
        ref = plan.ref("firing", rp.rule, key)
        row = view.get(ref)
        if row is None:
            title = title or " ".join(default_title(plan.event).split())
            row = Row(*ref, {"since": plan.at, "count": 0, "title": title})
        row.data["count"] = int(row.data.get("count", 0)) + 1
        row.data["last_at"] = plan.at
        row.expires_at = plan.at + FIRING_KEPT
        view.put(row)

    def _start_rule_inhibits(self, view: StateView, plan: Plan, rp: RoutePlan, result: Result) -> list[str]:
        notes = []
        for inh, key in plan.rule_sources.get(rp.rule.name, []):
            self._start_inhibit(view, inh, key, plan, result)
            notes.append(self._inhibit_note(inh, key, plan))
        return notes

    def _source_notes(self, view: StateView, plan: Plan) -> list[str]:
        notes = []
        for inh, key in plan.sources:
            row = view.get(plan.ref("inhibit", inh, key))
            if row is not None and (row.expires_at or 0.0) > plan.at:
                notes.append(self._inhibit_note(inh, key, plan))
        return notes

    def _inhibit_note(self, inh: Inhibit, key: str, plan: Plan) -> str:
        if inh.note is not None:
            severity = default_severity(plan.event)
            rule = Rule(name=inh.name, index=0, line=0, notify=())
            context = template_context(
                plan.event, rule, self.ruleset, source=plan.source, severity=severity, names=context_names(inh.note)
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
            f"Meanwhile, events where {inh.target.describe()} with the same {_labels(inh)} ({key}) are muted "
            f"(inhibit {inh.name}, at most {describe_seconds(inh.duration)})."
        )

    # --- timers ---------------------------------------------------------------------------

    def timer_plan(self, row: Row) -> Plan | None:
        """The plan of the event an absence timer is about (None for other timers, or an unreadable event)."""
        if row.kind != "absence":
            return None
        try:
            event = self._stored_event(row)
        except EventParseError:
            return None
        return self.plan(
            event,
            str(row.data.get("source", "uipath")),
            inbox_id=int(row.data.get("inbox_id", 0)),
            at=float(row.due_at or 0.0),
            body=str(row.data.get("body", "")),
            only_rule=row.name,
        )

    def _stored_event(self, row: Row) -> Event:
        inbox_id = int(row.data.get("inbox_id", 0))
        cached = self._events.get(inbox_id)
        if cached is not None:
            return cached
        return parse_stored(str(row.data.get("type", "")), str(row.data.get("body", "")))

    def fire(self, view: StateView, row: Row) -> Result:
        """Fire a due timer (a group's digest, an absence deadline) at its due time.

        Args:
            view: the state, holding ``row`` (and, for an absence, the rows of :meth:`timer_plan`).
            row: the timer.
        """
        result = Result()
        at = float(row.due_at or 0.0)
        if row.kind == "group":
            self._flush(view, row, at, result)
        elif row.kind == "absence":
            self._fire_absence(view, row, at, result)
        else:
            view.put(Row(row.kind, row.name, row.key, row.data, None, row.expires_at))
        return result

    def _flush(self, view: StateView, row: Row, at: float, result: Result) -> Row | None:
        """Send a group's digest; returns the group's row after it (None when the rule is gone)."""
        first = row.data.get("first_inbox_id")
        inbox_id = int(first) if first is not None else 0
        route = self.ruleset.route(row.name)
        if route is None or route.rule.group is None:
            view.delete(row.ref)
            result.decisions.append(
                Decision(
                    "dropped",
                    f"group {row.shown_key!r} of rule {row.name!r} dropped: the rule no longer groups "
                    f"({row.data.get('count', 0)} pending event(s))",
                    rule=row.name,
                    key=row.shown_key,
                    inbox_id=inbox_id,
                    at=at,
                )
            )
            return None
        rule, group = route.rule, route.rule.group
        count = int(row.data.get("count", 0))
        if count:
            for channel in route.channels:
                note = single_notification(row.data, channel.name) or render_digest(
                    row.data, rule, channel, self.ruleset
                )
                result.emitted.append(Emitted(inbox_id, rule.name, channel.name, note, at))
            result.decisions.append(
                Decision(
                    "flushed",
                    f"group {row.shown_key or 'all'!r} of rule {rule.name!r}: "
                    + ("its one event" if count == 1 else f"a digest of {count} events")
                    + f" sent to {_names(route.channels)}",
                    rule=rule.name,
                    key=row.shown_key,
                    inbox_id=inbox_id,
                    at=at,
                )
            )
        data = {**new_group(row.data.get("labels", {}), at), "key": row.shown_key}
        after = Row(row.kind, row.name, row.key, data, None, at + group.interval)
        view.put(after)
        return after

    def _fire_absence(self, view: StateView, row: Row, at: float, result: Result) -> None:
        view.delete(row.ref)
        inbox_id = int(row.data.get("inbox_id", 0))
        route = self.ruleset.route(row.name)
        plan = None if route is None or route.rule.absence is None else self.timer_plan(row)
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
        if self._muted(plan, rp, self._inhibited(view, plan), result):
            return
        armed = float(row.data.get("at", at))
        note = (
            f"No event where {absence.expect.describe()} arrived within {describe_seconds(absence.within)} "
            f"(since {self._time(armed)}; rule {rp.rule.name}, key {row.shown_key or '-'})."
        )
        self._decide(
            result,
            plan,
            "fired",
            f"absence timer of rule {rp.rule.name!r} for key {row.shown_key!r} ran out: nothing where "
            f"{absence.expect.describe()} arrived since {self._time(armed)}",
            rule=rp.rule.name,
            key=row.shown_key,
        )
        self._emit(view, plan, rp, result, [note])

    # --- helpers --------------------------------------------------------------------------

    def _time(self, at: Any) -> str:
        if not isinstance(at, int | float):
            return "?"
        return datetime.fromtimestamp(float(at), tz=UTC).astimezone(self.ruleset.timezone).strftime(TIME_FORMAT)


def _names(channels: Sequence[Any]) -> str:
    names = [c.name for c in channels]
    return ", ".join(names) if names else "no channels"


def _labels(inh: Inhibit) -> str:
    return ", ".join(ref.label for ref in inh.equal)


def _event_time(event: Event) -> float | None:
    return None if event.timestamp is None else event.timestamp.timestamp()


def _before(event: Event, other: Any) -> bool:
    """True when ``event`` happened before the time ``other`` (both known): it arrived out of order."""
    mine = _event_time(event)
    return mine is not None and isinstance(other, int | float) and mine < other


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _safe(text: str) -> str:
    """A key as every store keeps it (NUL and lone surrogates become U+FFFD)."""
    return _UNSTORABLE.sub("\ufffd", text)


def _name(value: Any) -> str:
    if value is None:
        return ""
    return str(getattr(value, "name", value))
