"""The loaded rule set: first-match-wins evaluation over an index of the rules.

Matching must not cost more per event as the file grows, so the rules are indexed by the
event types they can match and, inside a type, by the process names they can match:

- exact types (``type: job.faulted`` or a list of names) go to a dict keyed by the type;
- globs (``type: "queueItem.*"``) are bucketed by their literal prefix (``queueitem.``); an
  event looks up each prefix length present, so a glob is only tried for types it can match;
- inside each bucket, rules with exact ``process:`` names are keyed by the name, rules with
  process globs by the glob's literal prefix (the same way as type globs), the others are kept
  in a small list;
- rules with no usable ``type`` (or a glob starting with a wildcard) form a residual bucket
  that every event visits.

The index only narrows the candidates (a superset of the rules that can match); every
candidate is still tested in full, in file order, so results equal a linear scan.
Candidate lists are cached per (type, process).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

from receiver.events import Event
from receiver.rules.match import AllClause, Clause, FieldClause, Subject
from receiver.rules.model import Channel, Collapse, Inhibit, Route, Rule, RuleDecision, Silence, Source
from receiver.rules.redact import Redactor
from receiver.rules.values import AnyOf, Eq, Glob, Spec

__all__ = ["RuleIndex", "RuleSet"]

_WILDCARD = re.compile(r"[*?\[]")
_CACHE_LIMIT = 4096


@dataclass(slots=True)
class _Bucket:
    """Rules of one type key, split by the process names they can match."""

    by_process: dict[str, list[int]] = field(default_factory=dict)
    by_prefix: dict[str, list[int]] = field(default_factory=dict)
    other: list[int] = field(default_factory=list)
    lengths: tuple[int, ...] = ()

    def add(self, index: int, processes: tuple[frozenset[str], frozenset[str]] | None) -> None:
        if processes is None:
            _append(self.other, index)
            return
        names, prefixes = processes
        for name in names:
            _append(self.by_process.setdefault(name, []), index)
        for prefix in prefixes:
            _append(self.by_prefix.setdefault(prefix, []), index)
        self.lengths = tuple(sorted({len(p) for p in self.by_prefix}))

    def collect(self, process: str | None, into: list[list[int]]) -> None:
        if self.other:
            into.append(self.other)
        if process is None:
            return
        found = self.by_process.get(process)
        if found:
            into.append(found)
        for length in self.lengths:
            if length > len(process):
                break
            found = self.by_prefix.get(process[:length])
            if found:
                into.append(found)


def _append(items: list[int], index: int) -> None:
    if not items or items[-1] != index:
        items.append(index)


def _top_clauses(clause: Clause | None) -> tuple[Clause, ...]:
    if clause is None:
        return ()
    if isinstance(clause, AllClause):
        return tuple(c for child in clause.children for c in _top_clauses(child))
    return (clause,)


def _names_and_globs(spec: Spec) -> tuple[set[str], set[str]] | None:
    """(exact names, glob prefixes) of a type/process spec, or None when it cannot be indexed."""
    items = spec.items if isinstance(spec, AnyOf) else (spec,)
    names: set[str] = set()
    prefixes: set[str] = set()
    for item in items:
        if isinstance(item, Eq) and isinstance(item.raw, str):
            names.add(item.raw.casefold())
        elif isinstance(item, Glob):
            prefixes.add(_WILDCARD.split(item.pattern, 1)[0].casefold())
        else:
            return None
    return names, prefixes


def _index_keys(
    rule: Rule,
) -> tuple[set[str] | None, set[str], tuple[frozenset[str], frozenset[str]] | None]:
    """(exact types or None for any, type glob prefixes, (process names, process glob prefixes) or None)."""
    types: set[str] | None = None
    prefixes: set[str] = set()
    processes: tuple[frozenset[str], frozenset[str]] | None = None
    for clause in _top_clauses(rule.clause):
        if not isinstance(clause, FieldClause):
            continue
        if clause.handle == "type" and types is None:
            got = _names_and_globs(clause.spec)
            if got is not None and "" not in got[1]:
                types, prefixes = got
        elif clause.handle == "process" and processes is None:
            got = _names_and_globs(clause.spec)
            if got is not None and "" not in got[1]:
                processes = (frozenset(got[0]), frozenset(got[1]))
    return types, prefixes, processes


class RuleIndex:
    """Candidate rules per (event type, process), in file order.

    Args:
        rules: the rules, in file order (their position is their index).
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._exact: dict[str, _Bucket] = {}
        self._prefix: dict[str, _Bucket] = {}
        self._any = _Bucket()
        self._cache: dict[tuple[str, str | None], tuple[int, ...]] = {}
        for i, rule in enumerate(rules):
            types, prefixes, processes = _index_keys(rule)
            if types is None:
                self._any.add(i, processes)
                continue
            for name in types:
                self._exact.setdefault(name, _Bucket()).add(i, processes)
            for prefix in prefixes:
                self._prefix.setdefault(prefix, _Bucket()).add(i, processes)
        self._lengths = tuple(sorted({len(p) for p in self._prefix}))

    def candidates(self, type_folded: str, process_folded: str | None) -> tuple[int, ...]:
        """Indexes of the rules that may match an event of this (case-folded) type and process."""
        key = (type_folded, process_folded)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        lists: list[list[int]] = []
        bucket = self._exact.get(type_folded)
        if bucket is not None:
            bucket.collect(process_folded, lists)
        for length in self._lengths:
            if length > len(type_folded):
                break
            bucket = self._prefix.get(type_folded[:length])
            if bucket is not None:
                bucket.collect(process_folded, lists)
        self._any.collect(process_folded, lists)
        if not lists:
            result: tuple[int, ...] = ()
        elif len(lists) == 1:
            result = tuple(lists[0])
        else:
            result = tuple(sorted({i for items in lists for i in items}))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = result
        return result


@dataclass(frozen=True, eq=False)
class RuleSet:
    """A loaded, checked ``rules.yaml``. Immutable: a reload builds a new one and swaps it in.

    Attributes:
        rules: the rules in file order.
        channels: channel name -> channel.
        sources: source name -> source (as written in the file; the default ``uipath`` source
            is completed from the environment by the app).
        orchestrator_url: base URL of Orchestrator for links in messages, or None.
        timezone: the zone times are shown in (default UTC).
        path: the file the rules came from.
        silences: the maintenance windows (``silences:``).
        inhibits: the inhibitions (``inhibit:``).
        collapse: the folder fan-out collapse, or None when it is off.
        redactor: what ``redact:`` cuts out of message text (empty: nothing).
    """

    rules: tuple[Rule, ...]
    channels: Mapping[str, Channel]
    sources: Mapping[str, Source]
    orchestrator_url: str | None = None
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    path: Path = field(default_factory=lambda: Path("rules.yaml"))
    silences: tuple[Silence, ...] = ()
    inhibits: tuple[Inhibit, ...] = ()
    collapse: Collapse | None = None
    redactor: Redactor = field(default_factory=Redactor)
    _index: RuleIndex = field(init=False, repr=False)
    _routes: tuple[tuple[Channel, ...], ...] = field(init=False, repr=False)
    _by_name: Mapping[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", MappingProxyType(dict(self.channels)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))
        object.__setattr__(self, "_index", RuleIndex(self.rules))
        routes = tuple(tuple(self.channels[name] for name in rule.notify) for rule in self.rules)
        object.__setattr__(self, "_routes", routes)
        object.__setattr__(self, "_by_name", MappingProxyType({rule.name: i for i, rule in enumerate(self.rules)}))

    def web_url(self, source: str) -> str | None:
        """The Orchestrator web UI that messages about ``source``'s events link to, or None (no link).

        The source's ``orchestrator.web_url``, else the file's ``orchestrator_url``, else the
        source's ``orchestrator.url`` (on Automation Cloud and standalone the API base is also the web UI's).
        """
        link = None if (found := self.sources.get(source)) is None else found.orchestrator
        if link is not None and link.web_url:
            return link.web_url
        return self.orchestrator_url or (None if link is None else link.url)

    def route(self, name: str) -> Route | None:
        """The rule called ``name`` with its channels, or None when the file has no such rule."""
        i = self._by_name.get(name)
        return None if i is None else Route(self.rules[i], self._routes[i])

    def match(self, event: Event, source: str) -> tuple[Route, ...]:
        """Return the routes for ``event``: every matching rule in order, until one without ``continue``.

        Args:
            event: the typed event.
            source: the name of the source it came from (``uipath``...).

        Returns:
            (rule, channels) for each matching rule, in file order; empty when none matches.
        """
        subject = Subject(event, source)
        process = subject.handle("process")
        candidates = self._index.candidates(
            event.type.casefold(), process.casefold() if isinstance(process, str) else None
        )
        routes: list[Route] = []
        rules = self.rules
        for i in candidates:
            rule = rules[i]
            if rule.test(subject):
                routes.append(Route(rule, self._routes[i]))
                if not rule.continue_:
                    break
        return tuple(routes)

    def match_linear(self, event: Event, source: str) -> tuple[Route, ...]:
        """Like :meth:`match` without the index (a reference for tests and benchmarks)."""
        subject = Subject(event, source)
        routes: list[Route] = []
        for i, rule in enumerate(self.rules):
            if rule.test(subject):
                routes.append(Route(rule, self._routes[i]))
                if not rule.continue_:
                    break
        return tuple(routes)

    def explain(self, event: Event, source: str) -> list[RuleDecision]:
        """Say for every rule whether it matched, and if not, which clause failed and why.

        Rules after a match without ``continue`` are reported as not evaluated.

        Args:
            event: the typed event.
            source: the name of the source it came from.

        Returns:
            One decision per rule, in file order.
        """
        subject = Subject(event, source)
        decisions: list[RuleDecision] = []
        stopped_by: str | None = None
        for rule in self.rules:
            if stopped_by is not None:
                skipped = f"not evaluated: stopped by rule {stopped_by!r}"
                decisions.append(RuleDecision(rule, matched=False, evaluated=False, reason=skipped))
                continue
            reason = None if rule.clause is None else rule.clause.explain(subject)
            decisions.append(RuleDecision(rule, matched=reason is None, reason=reason))
            if reason is None and not rule.continue_:
                stopped_by = rule.name
        return decisions
