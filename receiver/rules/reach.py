"""Which event types the rules can use from a source: what a webhook must subscribe to.

A clause is evaluated with three values (holds, fails, cannot tell) on a stand-in event that
knows only its ``type`` and its ``source``: every other field is "cannot tell". A rule needs a
type unless its clauses surely fail for it. Besides each rule's ``match:``, the events that
cancel an ``absence:`` timer, clear a ``recover:`` and start or end an inhibition are needed too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from receiver.rules.match import AllClause, AnyClause, Clause, FieldClause, NotClause, Subject
from receiver.rules.ruleset import RuleSet

__all__ = ["needed_event_types"]

_PROBE = "receiver.no-such-type"
"""A type no rule names: a rule that may match it matches types this version does not know."""


class _StandIn:
    """The only fields a type is decided on; the rest reads as None and is never consulted."""

    __slots__ = ("type",)

    def __init__(self, event_type: str) -> None:
        self.type = event_type


def _can_hold(clause: Clause, subject: Subject) -> bool | None:
    """True: holds for every such event; False: for none; None: depends on other fields."""
    if isinstance(clause, FieldClause):
        if clause.handle in ("type", "source"):
            return clause.test(subject)
        return None
    if isinstance(clause, AllClause):
        results = [_can_hold(c, subject) for c in clause.children]
        if False in results:
            return False
        return True if all(r is True for r in results) else None
    if isinstance(clause, AnyClause):
        results = [_can_hold(c, subject) for c in clause.children]
        if True in results:
            return True
        return False if all(r is False for r in results) else None
    if isinstance(clause, NotClause):
        inner = _can_hold(clause.child, subject)
        return None if inner is None else not inner
    return None


def _clauses(ruleset: RuleSet) -> Iterator[Clause | None]:
    for rule in ruleset.rules:
        yield rule.clause
        if rule.absence is not None:
            yield rule.absence.expect
        if rule.recover is not None:
            yield rule.recover.clause
    for inhibit in ruleset.inhibits:
        if inhibit.source is not None:
            yield inhibit.source
        if inhibit.until is not None:
            yield inhibit.until


def needed_event_types(ruleset: RuleSet, source: str, known: Iterable[str]) -> frozenset[str] | None:
    """Return the known event types that some rule can use from ``source``.

    Args:
        ruleset: the compiled rules.
        source: the source the events arrive on.
        known: the event types to choose from (receiver.events.EVENT_TYPES).

    Returns:
        The needed types, or None when some rule can use any type at all (even one not in
        ``known``): then the webhook should subscribe to every event.
    """
    clauses = list(_clauses(ruleset))

    def needed(event_type: str) -> bool:
        subject = Subject(_StandIn(event_type), source)  # type: ignore[arg-type]  # only .type is read
        return any(clause is None or _can_hold(clause, subject) is not False for clause in clauses)

    if needed(_PROBE):
        return None
    return frozenset(t for t in known if needed(t))
