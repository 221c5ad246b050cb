"""What an event needs from noise control before any state is read: its routes, keys and follow-ups. Pure.

:class:`Planner` matches the event and renders every key (throttle, frequency, group, absence,
recover, inhibit, collapse); :class:`Plan` names the state rows the stages may read
(:meth:`Plan.refs`), which the caller loads before :meth:`receiver.noise.engine.Engine.process`.
Keys are per source unless the rule or the inhibition says ``share_across_sources: true``;
:meth:`Plan.ref` is where a key gets its source.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from receiver.errors import EventParseError
from receiver.events import TEXT_LIMIT, Event, cap_strings, parse_event, parse_log_entries
from receiver.noise.state import Ref, state_key
from receiver.render import default_severity, template_context
from receiver.rules import BudgetExceededError, Inhibit, KeyTemplate, Route, Rule, RuleSet, Subject, context_names

__all__ = ["SILENT_TYPES", "Plan", "Planner", "RoutePlan", "parse_stored", "safe_key", "silent_reason"]

SILENT_TYPES = frozenset({"ping"})
"""Event types that are stored and visible but never notify (Orchestrator's connectivity test)."""


def silent_reason(event_type: str) -> str | None:
    """Why an event of ``event_type`` notifies nobody whatever rules match it, or None when it may notify."""
    if event_type not in SILENT_TYPES:
        return None
    return f"{event_type} never notifies: it is Orchestrator's connectivity test (stored and shown, never sent)"


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
    extra: set[Ref] = field(default_factory=set)
    """Rows of the last stages the engine adds (channel budgets, the source's watch)."""

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
        refs: set[Ref] = set(self.extra)
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


class Planner:
    """Matches events against one rule set and renders their keys.

    Args:
        ruleset: the rules (their noise options, ``inhibit:``, ``collapse:``).
    """

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self._absence_rules = tuple(r for r in ruleset.rules if r.absence is not None)
        self._recover_rules = tuple(r for r in ruleset.rules if r.recover is not None)

    def plan(
        self, event: Event, source: str, *, inbox_id: int, at: float, body: str = "", only_rule: str | None = None
    ) -> Plan:
        """Match the event and compute every key it needs (see :meth:`receiver.noise.engine.Engine.plan`)."""
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
            key = _inhibit_key(inh, subject)
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
                if inh.source_rule == rule.name and (key := _inhibit_key(inh, subject)) is not None
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
            rp.group_key = safe_key(",".join(f"{k}={v}" for k, v in rp.group_labels.items()))
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
            return safe_key(" ".join(template.template.render(context).split()))
        except BudgetExceededError:
            raise
        except Exception as exc:  # noqa: BLE001 - a key that cannot be rendered must not lose the event
            return f"!{type(exc).__name__}"

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
        return safe_key("|".join(parts))


def _inhibit_key(inh: Inhibit, subject: Subject) -> str | None:
    """The key of an inhibition for an event (its ``equal`` fields), or None when one is missing."""
    values = [(ref.label, ref.text(subject)) for ref in inh.equal]
    if any(v is None for _, v in values):
        return None
    return safe_key(",".join(f"{label}={value}" for label, value in values))


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def safe_key(text: str) -> str:
    """A key as every store keeps it (NUL and lone surrogates become U+FFFD)."""
    return _UNSTORABLE.sub("\ufffd", text)


def _name(value: Any) -> str:
    if value is None:
        return ""
    return str(getattr(value, "name", value))
