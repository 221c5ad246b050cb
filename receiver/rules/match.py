"""Compiling ``match:`` blocks into predicates, and explaining why one did not hold.

A ``match:`` block is a mapping of clauses that must all hold. A clause is a field (a handle
shortcut such as ``process`` or ``job.state``, or a dotted path into the typed event) with a
value spec, or a combinator (``all`` / ``any`` / ``not``) over nested blocks. A value spec is
a scalar, a list (any of) or a mapping of operators (all of)::

    match:
      type: [job.faulted, job.stopped]
      process: "Invoice*"
      level: {gte: Error}
      any:
        - robot: {regex: "^FIN-"}
        - queue_item.processing_exception.type: ApplicationException

Everything is compiled once, at load: enum values are parsed with the field's enum, regexes
and globs are compiled, and each clause becomes a closure. At run time a :class:`Subject`
wraps the event and caches each handle and path it reads, so rules sharing a field read it
once per event.

Semantics chosen where the issue was silent (docs/rules.md has the user-facing version):

- String comparison (scalar, ``glob``, ``contains``) ignores case; ``regex`` is an RE2 search
  as written (unanchored; anchor with ``^...$``, ignore case with ``(?i)``), linear in the text.
- A plain string with ``*`` or ``?`` is a glob; ``[...]`` classes need the ``glob`` operator.
- A path that crosses a list yields every element's value; a value test holds if it holds
  for any of them; ``not`` negates the whole test, ``exists`` asks whether any value is set.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from typing import Any, ClassVar

from pydantic import BaseModel

from receiver.events import Event
from receiver.rules.budget import check_budget
from receiver.rules.fields import HANDLE_TYPES, SHORTCUTS, norm, resolve_path, static_path
from receiver.rules.values import (
    CMP,
    AllOf,
    AnyOf,
    Cmp,
    Contains,
    Eq,
    Exists,
    Glob,
    Not,
    Regex,
    Spec,
    as_bool,
    as_datetime,
    as_number,
    compile_glob,
    compile_regex,
    is_plain_glob,
)

__all__ = [
    "COMBINATORS",
    "OPERATORS",
    "AllClause",
    "AnyClause",
    "Clause",
    "Compiler",
    "FieldClause",
    "FieldRef",
    "NotClause",
    "Subject",
]

COMBINATORS = ("all", "any", "not")
OPERATORS = ("eq", "glob", "regex", "contains", "not", "exists", "gte", "gt", "lte", "lt")

Report = Callable[[tuple[str | int, ...], str, bool], None]
"""Callback of the compiler for one problem: (path in the YAML document, message, at the key?)."""

_MISSING = object()


class Subject:
    """One event being matched, with a per-event cache of the handles and paths read."""

    __slots__ = ("_cache", "event", "source")

    def __init__(self, event: Event, source: str) -> None:
        self.event = event
        self.source = source
        self._cache: dict[object, Any] = {}

    def handle(self, name: str) -> Any:
        """Return the handle ``name`` (``source`` is the source name), cached."""
        value = self._cache.get(name, _MISSING)
        if value is _MISSING:
            check_budget()
            value = self.source if name == "source" else getattr(self.event, name, None)
            self._cache[name] = value
        return value

    def path(self, segments: tuple[str, ...]) -> list[Any]:
        """Return the values a folded dotted path reaches, cached."""
        value = self._cache.get(segments, _MISSING)
        if value is _MISSING:
            check_budget()
            value = resolve_path(self.event, segments)
            self._cache[segments] = value
        return value  # type: ignore[no-any-return]


# --- clauses -----------------------------------------------------------------------------


class Clause:
    """A compiled clause: ``test`` is the fast predicate, ``explain`` says why it failed."""

    test: Callable[[Subject], bool]

    def explain(self, subject: Subject) -> str | None:
        """Return None when the clause holds for ``subject``, else the reason it does not."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short description of what the clause requires."""
        raise NotImplementedError


class FieldClause(Clause):
    """A field (handle or dotted path) and the value spec it must satisfy.

    Attributes:
        label: the key as written in the file (``job.state``).
        handle: the handle it reads (``type``, ``process``, ``source``...), or None for a path.
        segments: the folded path segments when it is a path.
        spec: the compiled value spec.
    """

    def __init__(self, label: str, handle: str | None, segments: tuple[str, ...], spec: Spec) -> None:
        self.label = label
        self.handle = handle
        self.segments = segments
        self.spec = spec
        self.test = self._build()

    def _build(self) -> Callable[[Subject], bool]:
        spec, pv, name, segments = self.spec, self.spec.per_value, self.handle, self.segments
        if name is not None and pv is not None:

            def test_handle(s: Subject) -> bool:
                value = s.handle(name)
                return value is not None and pv(value)

            return test_handle
        if name is not None:
            return lambda s: spec.test(self.values(s))
        return lambda s: spec.test(s.path(segments))

    def values(self, subject: Subject) -> list[Any]:
        """Every value the field yields for ``subject`` (empty when it is not set)."""
        if self.handle is not None:
            value = subject.handle(self.handle)
            return [] if value is None else [value]
        return subject.path(self.segments)

    def explain(self, subject: Subject) -> str | None:
        values = self.values(subject)
        if self.spec.test(values):
            return None
        return f"{self.label}: {self.spec.why_not(values)}"

    def describe(self) -> str:
        return f"{self.label} is {self.spec.describe()}"


class AllClause(Clause):
    """All of the children must hold (a ``match:`` block, or ``all: [...]``)."""

    def __init__(self, children: Sequence[Clause]) -> None:
        self.children = tuple(children)
        tests = tuple(c.test for c in self.children)
        if len(tests) == 1:
            self.test = tests[0]
        elif len(tests) == 2:
            a, b = tests
            self.test = lambda s: a(s) and b(s)
        elif len(tests) == 3:
            a, b, c = tests
            self.test = lambda s: a(s) and b(s) and c(s)
        else:
            self.test = lambda s: all(t(s) for t in tests)

    def explain(self, subject: Subject) -> str | None:
        for child in self.children:
            reason = child.explain(subject)
            if reason is not None:
                return reason
        return None

    def describe(self) -> str:
        if len(self.children) == 1:
            return self.children[0].describe()
        return "(" + " and ".join(c.describe() for c in self.children) + ")"


class AnyClause(Clause):
    """At least one child must hold (``any: [...]``)."""

    def __init__(self, children: Sequence[Clause]) -> None:
        self.children = tuple(children)
        tests = tuple(c.test for c in self.children)
        self.test = lambda s: any(t(s) for t in tests)

    def explain(self, subject: Subject) -> str | None:
        reasons = []
        for child in self.children:
            reason = child.explain(subject)
            if reason is None:
                return None
            reasons.append(reason)
        return "any: none held (" + "; ".join(reasons) + ")"

    def describe(self) -> str:
        return "(" + " or ".join(c.describe() for c in self.children) + ")"


class NotClause(Clause):
    """The child must not hold (``not: {...}``)."""

    def __init__(self, child: Clause) -> None:
        self.child = child
        inner = child.test
        self.test = lambda s: not inner(s)

    def explain(self, subject: Subject) -> str | None:
        if not self.child.test(subject):
            return None
        return f"not: {self.child.describe()} holds"

    def describe(self) -> str:
        return f"not {self.child.describe()}"


class FieldRef:
    """A field named outside a clause (``group: {by: [...]}``, ``inhibit: {equal: [...]}``).

    Attributes:
        label: the name as written.
        handle: the handle it reads, or None for a dotted path.
        segments: the folded path segments when it is a path.
    """

    __slots__ = ("handle", "label", "segments")

    def __init__(self, label: str, handle: str | None, segments: tuple[str, ...]) -> None:
        self.label = label
        self.handle = handle
        self.segments = segments

    def text(self, subject: Subject) -> str | None:
        """The field's (first) value as text, or None when the event does not have it."""
        if self.handle is not None:
            value = subject.handle(self.handle)
        else:
            values = subject.path(self.segments)
            value = values[0] if values else None
        if value is None:
            return None
        if isinstance(value, Enum):
            return value.name
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)

    def __repr__(self) -> str:
        return f"FieldRef({self.label!r})"


# --- the compiler ------------------------------------------------------------------------


class Compiler:
    """Compiles ``match:`` blocks, reporting every problem through ``report``.

    Args:
        report: called with (YAML path, message) for each problem found.
        classes: the event classes that dotted paths are checked against.
    """

    _SCALARS: ClassVar[tuple[type, ...]] = (str, int, float, bool, date, datetime)

    def __init__(self, report: Report, classes: Sequence[type[BaseModel]]) -> None:
        self._report_at = report
        self._classes = tuple(classes)

    def _report(self, path: tuple[str | int, ...], message: str, *, at_key: bool = False) -> None:
        self._report_at(path, message, at_key)

    def compile(self, block: Any, path: tuple[str | int, ...]) -> Clause | None:
        """Compile a ``match:`` block; None when it is empty (the rule matches every event)."""
        if block is None:
            return None
        clauses = self._block(block, path)
        if not clauses:
            return None
        return AllClause(clauses)

    def _block(self, block: Any, path: tuple[str | int, ...]) -> list[Clause]:
        if not isinstance(block, Mapping):
            self._report(path, f"expected a mapping of clauses, got {_kind(block)}")
            return []
        clauses: list[Clause] = []
        for key, value in block.items():
            clause = self._clause(str(key), value, (*path, str(key)))
            if clause is not None:
                clauses.append(clause)
        return clauses

    def _clause(self, key: str, value: Any, path: tuple[str | int, ...]) -> Clause | None:
        if key in ("all", "any"):
            items = value if isinstance(value, list) else [value]
            if not items:
                self._report(path, f"'{key}' needs at least one block")
                return None
            children: list[Clause] = []
            for i, item in enumerate(items):
                sub = self._block(item, (*path, i) if isinstance(value, list) else path)
                if sub:
                    children.append(AllClause(sub))
            if len(children) != len(items):
                return None
            return AllClause(children) if key == "all" else AnyClause(children)
        if key == "not":
            items = value if isinstance(value, list) else [value]
            subs: list[Clause] = []
            for i, item in enumerate(items):
                subs.extend(self._block(item, (*path, i) if isinstance(value, list) else path))
            return NotClause(AllClause(subs)) if subs else None
        return self._field(key, value, path)

    def field_ref(self, key: Any, path: tuple[str | int, ...]) -> FieldRef | None:
        """Compile a field name used outside a clause (a handle or a dotted path); None when unknown."""
        if not isinstance(key, str):
            self._report(path, f"expected a field name, got {_kind(key)}")
            return None
        parts = key.split(".")
        if not key or any(not p.strip() for p in parts):
            self._report(path, f"invalid field name {key!r}")
            return None
        folded = ".".join(norm(p) for p in parts)
        handle = SHORTCUTS.get(folded)
        if handle is not None:
            return FieldRef(key, handle, ())
        segments = tuple(norm(p) for p in parts)
        info = static_path(segments, self._classes)
        if not info.found:
            self._report(path, self._unknown_field(parts, info.depth, info.suggestion))
            return None
        return FieldRef(key, None, segments)

    def _field(self, key: str, value: Any, path: tuple[str | int, ...]) -> Clause | None:
        parts = key.split(".")
        if not key or any(not p.strip() for p in parts):
            self._report(path, f"invalid field name {key!r}")
            return None
        folded = ".".join(norm(p) for p in parts)
        handle = SHORTCUTS.get(folded)
        enums: tuple[type[Enum], ...] = ()
        kind: type | None = None
        segments: tuple[str, ...] = ()
        if handle is not None:
            kind = HANDLE_TYPES.get(handle, str)
            if isinstance(kind, type) and issubclass(kind, Enum):
                enums = (kind,)
        else:
            segments = tuple(norm(p) for p in parts)
            info = static_path(segments, self._classes)
            if not info.found:
                self._report(path, self._unknown_field(parts, info.depth, info.suggestion), at_key=True)
                return None
            enums = info.enums
            leaf = set(info.leaf_types)
            if len(leaf) == 1:
                kind = next(iter(leaf))
        spec = self._spec(value, path, key, enums, kind)
        if spec is None:
            return None
        return FieldClause(key, handle, segments, spec)

    def _unknown_field(self, parts: list[str], depth: int, name: str | None) -> str:
        key = ".".join(parts)
        suggestion = None
        if name is not None:
            # Written in the user's style: Job.Relase.ProcessKey -> Job.Release.ProcessKey.
            written = parts[depth]
            if "_" not in written and written[:1].isupper():
                name = "".join(word.capitalize() for word in name.split("_"))
            suggestion = ".".join([*parts[:depth], name, *parts[depth + 1 :]])
        if len(parts) == 1:
            close = difflib.get_close_matches(norm(key), [*SHORTCUTS, *COMBINATORS], n=1, cutoff=0.6)
            suggestion = close[0] if close else suggestion
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        return f"unknown field {key!r}: no event has it{hint}"

    # value specs

    def _spec(
        self, raw: Any, path: tuple[str | int, ...], label: str, enums: tuple[type[Enum], ...], kind: type | None
    ) -> Spec | None:
        if raw is None:
            return Exists(False)
        if isinstance(raw, list):
            if not raw:
                self._report(path, f"{label}: an empty list matches nothing")
                return None
            items = [self._spec(item, (*path, i), label, enums, kind) for i, item in enumerate(raw)]
            good = [s for s in items if s is not None]
            if len(good) != len(items):
                return None
            return good[0] if len(good) == 1 else AnyOf(good)
        if isinstance(raw, Mapping):
            return self._operators(raw, path, label, enums, kind)
        if not isinstance(raw, self._SCALARS):
            self._report(path, f"{label}: unsupported value {_kind(raw)}")
            return None
        if is_plain_glob(raw):
            return self._glob(str(raw), path, label, classes=False)
        return self._eq(raw, path, label, enums, kind)

    def _operators(
        self,
        raw: Mapping[Any, Any],
        path: tuple[str | int, ...],
        label: str,
        enums: tuple[type[Enum], ...],
        kind: type | None,
    ) -> Spec | None:
        if not raw:
            self._report(path, f"{label}: empty operator mapping; valid operators: {', '.join(OPERATORS)}")
            return None
        specs: list[Spec] = []
        ok = True
        for op_key, arg in raw.items():
            op = str(op_key)
            where = (*path, op)
            spec: Spec | None = None
            if op == "not":
                inner = self._spec(arg, where, label, enums, kind)
                spec = None if inner is None else Not(inner)
            elif op == "exists":
                if isinstance(arg, bool):
                    spec = Exists(arg)
                else:
                    self._report(where, f"{label}: exists takes true or false, got {arg!r}")
            elif op in ("eq", "glob", "regex", "contains"):
                spec = self._each(op, arg, where, label, enums, kind)
            elif op in CMP:
                spec = self._cmp(op, arg, where, label, enums, kind)
            else:
                close = difflib.get_close_matches(op, OPERATORS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                valid = ", ".join(OPERATORS)
                self._report(where, f"{label}: unknown operator {op!r}; {hint}valid operators: {valid}", at_key=True)
            if spec is None:
                ok = False
            else:
                specs.append(spec)
        if not ok:
            return None
        return specs[0] if len(specs) == 1 else AllOf(specs)

    def _each(
        self,
        op: str,
        arg: Any,
        path: tuple[str | int, ...],
        label: str,
        enums: tuple[type[Enum], ...],
        kind: type | None,
    ) -> Spec | None:
        items = arg if isinstance(arg, list) else [arg]
        if not items:
            self._report(path, f"{label}: {op} needs at least one value")
            return None
        specs: list[Spec | None] = []
        for i, item in enumerate(items):
            where = (*path, i) if isinstance(arg, list) else path
            if not isinstance(item, self._SCALARS):
                self._report(where, f"{label}: {op} takes a value or a list of values, got {_kind(item)}")
                specs.append(None)
            elif op == "eq":
                specs.append(self._eq(item, where, label, enums, kind))
            elif op == "glob":
                specs.append(self._glob(str(item), where, label, classes=True))
            elif op == "regex":
                specs.append(self._regex(str(item), where, label))
            else:
                specs.append(Contains(item))
        good = [s for s in specs if s is not None]
        if len(good) != len(specs):
            return None
        return good[0] if len(good) == 1 else AnyOf(good)

    def _glob(self, pattern: str, path: tuple[str | int, ...], label: str, *, classes: bool) -> Spec | None:
        if not pattern:
            self._report(path, f"{label}: empty glob pattern")
            return None
        try:
            glob = compile_glob(pattern, classes=classes)
        except ValueError as exc:
            self._report(path, f"{label}: bad glob {pattern!r}: {exc}")
            return None
        return Glob(glob)

    def _regex(self, pattern: str, path: tuple[str | int, ...], label: str) -> Spec | None:
        try:
            rx = compile_regex(pattern)
        except ValueError as exc:
            self._report(path, f"{label}: bad regex {pattern!r}: {exc}")
            return None
        return Regex(rx)

    def _members(
        self, raw: Any, path: tuple[str | int, ...], label: str, enums: tuple[type[Enum], ...]
    ) -> dict[type[Enum], Enum] | None:
        """Read ``raw`` with each enum of the field; report when no enum knows it."""
        found: dict[type[Enum], Enum] = {}
        first_error = ""
        for enum in enums:
            try:
                found[enum] = enum.parse(raw)  # type: ignore[attr-defined]
            except ValueError as exc:
                first_error = first_error or str(exc)
        if not found:
            self._report(path, f"{label}: {first_error}")
            return None
        return found

    def _eq(
        self, raw: Any, path: tuple[str | int, ...], label: str, enums: tuple[type[Enum], ...], kind: type | None
    ) -> Spec | None:
        if enums:
            members = self._members(raw, path, label, enums)
            return None if members is None else Eq(raw, members)
        if kind in (int, float) and as_number(raw) is None:
            self._report(path, f"{label}: {raw!r} is not a number ({label} holds a number)")
            return None
        if kind is datetime and as_datetime(raw) is None:
            self._report(path, f"{label}: {raw!r} is not an ISO 8601 date-time")
            return None
        if kind is bool and as_bool(raw) is None:
            self._report(path, f"{label}: {raw!r} is not true or false")
            return None
        return Eq(raw)

    def _cmp(
        self,
        op: str,
        arg: Any,
        path: tuple[str | int, ...],
        label: str,
        enums: tuple[type[Enum], ...],
        kind: type | None,
    ) -> Spec | None:
        if not isinstance(arg, self._SCALARS) or isinstance(arg, bool):
            self._report(path, f"{label}: {op} takes one number, date-time or enum value, got {_kind(arg)}")
            return None
        if enums:
            members = self._members(arg, path, label, enums)
            return None if members is None else Cmp(op, arg, members)
        if as_number(arg) is None and as_datetime(arg) is None:
            self._report(path, f"{label}: {op} needs a number or an ISO 8601 date-time, got {arg!r}")
            return None
        if kind in (int, float) and as_number(arg) is None:
            self._report(path, f"{label}: {arg!r} is not a number ({label} holds a number)")
            return None
        if kind is datetime and as_datetime(arg) is None:
            self._report(path, f"{label}: {arg!r} is not an ISO 8601 date-time")
            return None
        return Cmp(op, arg)


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"
