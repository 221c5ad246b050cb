"""Value specs: what a field's values are tested against, compiled once at load.

A value spec is a scalar (equal, case-insensitively for text; enums by meaning), a glob, a
regex, a substring, a comparison, ``exists``, ``not`` or a list / mapping of those. Each
spec that tests one value at a time exposes ``per_value``; the field holds when any of its
values passes (a path through a list yields several). ``describe`` and ``why_not`` produce
the words ``receiver test`` shows (``Successful is not one of [Faulted, Stopped]``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from enum import Enum
from typing import Any

import re2

from receiver.events import without_lone_surrogates
from receiver.timefmt import parse_iso

__all__ = [
    "CMP",
    "AllOf",
    "AnyOf",
    "Cmp",
    "Contains",
    "Eq",
    "Exists",
    "Glob",
    "GlobPattern",
    "Not",
    "Regex",
    "Spec",
    "as_bool",
    "as_datetime",
    "as_number",
    "compile_glob",
    "compile_regex",
    "is_plain_glob",
    "show_values",
]


# --- showing values in reasons -------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    first = text.split("\n", 1)[0].strip()
    if len(first) > 60:
        return first[:57] + "..."
    return first + (" ..." if first != text.strip() else "")


def show_values(values: Sequence[Any]) -> str:
    """The values of a field as ``receiver test`` shows them."""
    if len(values) == 1:
        return _show(values[0])
    return "[" + ", ".join(_show(v) for v in values) + "]"


def _text(value: Any) -> str:
    """The string form a glob, regex or substring test reads (enum members give their name)."""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# --- scalar coercion ---------------------------------------------------------------------


def as_number(raw: Any) -> float | int | None:
    """A rule value as a number, or None (booleans are not numbers)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        # Most rule values are names: skip the exceptions of int()/float() for them.
        if not text or not (text[0].isdigit() or text[0] in "+-."):
            return None
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return None
    return None


def as_datetime(raw: Any) -> datetime | None:
    """A rule value as an aware datetime (naive: UTC; a date: midnight UTC), or None."""
    if isinstance(raw, datetime):
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)
    if isinstance(raw, date):
        return datetime.combine(raw, time(), tzinfo=UTC)
    if isinstance(raw, str):
        text = raw.strip()
        if not text[:4].isdigit():
            return None
        try:
            return parse_iso(text)
        except ValueError:
            return None
    return None


def as_bool(raw: Any) -> bool | None:
    """A rule value as a boolean (``true``/``false``/``yes``/``no``), or None."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        return {"true": True, "false": False, "yes": True, "no": False}.get(raw.strip().lower())
    return None


class _EnumReader:
    """Reads a rule value as a member of whatever enum the event's value has (cached per enum)."""

    __slots__ = ("_cache", "raw")

    def __init__(self, raw: Any, static: Mapping[type[Enum], Enum] | None = None) -> None:
        self.raw = raw
        self._cache: dict[type[Enum], Enum | None] = dict(static or {})

    def member(self, enum: type[Enum]) -> Enum | None:
        try:
            return self._cache[enum]
        except KeyError:
            pass
        parse = getattr(enum, "parse", None)
        found: Enum | None = None
        if parse is not None:
            try:
                found = parse(self.raw)
            except ValueError:
                found = None
        self._cache[enum] = found
        return found


# --- value specs -------------------------------------------------------------------------


class Spec:
    """A compiled value spec: tests the values a field yields.

    ``per_value`` is set for specs that test one value at a time (the field holds when any
    of its values passes); it is None for specs over the whole set (``exists``, ``not``).
    """

    per_value: Callable[[Any], bool] | None = None

    def test(self, values: Sequence[Any]) -> bool:
        """Return True when the spec holds for ``values`` (every value the field yields)."""
        pv = self.per_value
        if pv is None:
            raise NotImplementedError("a set-level spec overrides test()")
        return any(pv(v) for v in values)

    def describe(self) -> str:
        """A short positive description (``Faulted``, ``one of [A, B]``, ``>= Error``)."""
        raise NotImplementedError

    def negative(self) -> str:
        """The phrase after the value when the spec fails (``is not Faulted``)."""
        return f"is not {self.describe()}"

    def why_not(self, values: Sequence[Any]) -> str:
        """Why the spec fails for ``values`` (only called when it does)."""
        if not values:
            return f"not set (expected {self.describe()})"
        return f"{show_values(values)} {self.negative()}"


class Eq(Spec):
    """Equal to a value: text ignoring case, enums by meaning, numbers, booleans and times."""

    def __init__(self, raw: Any, enums: Mapping[type[Enum], Enum] | None = None) -> None:
        self.raw = raw
        self.shown = str(next(iter(enums.values()))) if enums else _show(raw)
        self._enum = _EnumReader(raw, enums)
        self._cf = ("true" if raw else "false") if isinstance(raw, bool) else str(raw).casefold()
        self._num = as_number(raw)
        self._bool = as_bool(raw)
        self._dt = as_datetime(raw)
        names = {str(m).casefold() for m in (enums or {}).values()}
        self._names = frozenset(names | {self._cf})
        self.per_value = self._test

    def _test(self, actual: Any) -> bool:
        if isinstance(actual, Enum):
            return self._enum.member(type(actual)) is actual
        if isinstance(actual, str):
            return actual.casefold() in self._names
        if isinstance(actual, bool):
            return self._bool is actual
        if isinstance(actual, int | float):
            return self._num is not None and actual == self._num
        if isinstance(actual, datetime):
            return self._dt is not None and actual == self._dt
        return False

    def describe(self) -> str:
        return self.shown


class Glob(Spec):
    """The whole value (its text; an enum by name) matches a glob, ignoring case."""

    def __init__(self, glob: GlobPattern) -> None:
        self.pattern = glob.pattern
        self._glob = glob
        self.per_value = self._test

    def _test(self, actual: Any) -> bool:
        return self._glob.matches(_text(actual))

    def describe(self) -> str:
        return self.pattern

    def negative(self) -> str:
        return f"does not match {self.pattern}"


def compile_regex(pattern: str) -> Any:
    """``pattern`` compiled by RE2, which searches in time linear in the text whatever the pattern.

    Event text is untrusted: Python's backtracking engine took cubic time for ``.*a.*b`` and
    exponential time for ``(a+)+$`` on a text made for it, in one C call that holds the GIL (the
    whole server stood still, and no time budget can stop it).

    Raises:
        ValueError: RE2 refuses the pattern (bad syntax, a backreference, lookaround, a
            repetition count over 1000); the message gives RE2's reason.
    """
    options = re2.Options()
    options.log_errors = False  # the loader reports a bad pattern, not stderr
    options.max_mem = 8 << 20  # past it RE2 uses its slower engine, still linear
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"{reason} (regexes run on RE2, in time linear in the text: no backreferences, "
            "no lookahead or lookbehind, repetition counts up to 1000)"
        ) from None


class Regex(Spec):
    """A regular expression (RE2, see :func:`compile_regex`) matches somewhere in the value's text."""

    def __init__(self, rx: Any) -> None:
        self._rx = rx
        self.per_value = self._test

    def _test(self, actual: Any) -> bool:
        text = _text(actual)
        try:
            return self._rx.search(text) is not None
        except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800"): RE2 reads UTF-8
            return self._rx.search(without_lone_surrogates(text)) is not None

    def describe(self) -> str:
        return f"regex {self._rx.pattern!r}"

    def negative(self) -> str:
        return f"does not match regex {self._rx.pattern!r}"


class Contains(Spec):
    """The text contains a substring, ignoring case (other values: equal)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._cf = str(raw).casefold()
        self._eq = Eq(raw)
        self.per_value = self._test

    def _test(self, actual: Any) -> bool:
        if isinstance(actual, str):
            return self._cf in actual.casefold()
        return self._eq._test(actual)

    def describe(self) -> str:
        return f"containing {self.raw!r}"

    def negative(self) -> str:
        return f"does not contain {self.raw!r}"


CMP: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "gte": (">=", operator.ge),
    "gt": (">", operator.gt),
    "lte": ("<=", operator.le),
    "lt": ("<", operator.lt),
}


class Cmp(Spec):
    """An ordered comparison: enums by number, numbers, times."""

    def __init__(self, op: str, raw: Any, enums: Mapping[type[Enum], Enum] | None = None) -> None:
        self.symbol, self._op = CMP[op]
        self.shown = str(next(iter(enums.values()))) if enums else _show(raw)
        self._enum = _EnumReader(raw, enums)
        self._num = as_number(raw)
        self._dt = as_datetime(raw)
        self.per_value = self._test

    def _test(self, actual: Any) -> bool:
        if isinstance(actual, Enum):
            bound = self._enum.member(type(actual))
            return bound is not None and self._op(actual.value, bound.value)
        if isinstance(actual, bool):
            return False
        if isinstance(actual, int | float):
            return self._num is not None and self._op(actual, self._num)
        if isinstance(actual, datetime):
            return self._dt is not None and self._op(actual, self._dt)
        return False

    def describe(self) -> str:
        return f"{self.symbol} {self.shown}"


class Exists(Spec):
    """The field yields a value (``exists: true``) or none (``exists: false``, ``null``)."""

    def __init__(self, flag: bool) -> None:
        self.flag = flag

    def test(self, values: Sequence[Any]) -> bool:
        return bool(values) is self.flag

    def describe(self) -> str:
        return "set" if self.flag else "not set"

    def why_not(self, values: Sequence[Any]) -> str:
        return "not set" if self.flag else f"is set ({show_values(values)})"


class Not(Spec):
    """The inner spec does not hold for the field's values."""

    def __init__(self, inner: Spec) -> None:
        self.inner = inner

    def test(self, values: Sequence[Any]) -> bool:
        return not self.inner.test(values)

    def describe(self) -> str:
        return f"not {self.inner.describe()}"

    def why_not(self, values: Sequence[Any]) -> str:
        shown = show_values(values) if values else "(not set)"
        return f"{shown} must not be {self.inner.describe()}"


class AnyOf(Spec):
    """Any of the items holds (a list)."""

    def __init__(self, items: Sequence[Spec]) -> None:
        self.items = tuple(items)
        fns = [s.per_value for s in self.items]
        if all(fn is not None for fn in fns):
            pvs: tuple[Callable[[Any], bool], ...] = tuple(fn for fn in fns if fn is not None)
            self.per_value = lambda v: any(fn(v) for fn in pvs)
        else:
            self.per_value = None

    def test(self, values: Sequence[Any]) -> bool:
        if self.per_value is not None:
            return super().test(values)
        return any(s.test(values) for s in self.items)

    def describe(self) -> str:
        if all(isinstance(s, Eq) for s in self.items):
            return "one of [" + ", ".join(s.describe() for s in self.items) + "]"
        return "any of [" + ", ".join(s.describe() for s in self.items) + "]"

    def negative(self) -> str:
        if all(isinstance(s, Eq) for s in self.items):
            return f"is not {self.describe()}"
        return "matches none of [" + ", ".join(s.describe() for s in self.items) + "]"


class AllOf(Spec):
    """All of the items hold (several operators in one mapping; per value when possible)."""

    def __init__(self, items: Sequence[Spec]) -> None:
        self.items = tuple(items)
        fns = [s.per_value for s in self.items]
        if all(fn is not None for fn in fns):
            pvs: tuple[Callable[[Any], bool], ...] = tuple(fn for fn in fns if fn is not None)
            # Per-value specs hold together for one value: {gte: Warn, lte: Error} is a range.
            self.per_value = lambda v: all(fn(v) for fn in pvs)
        else:
            self.per_value = None

    def test(self, values: Sequence[Any]) -> bool:
        if self.per_value is not None:
            return super().test(values)
        return all(s.test(values) for s in self.items)

    def describe(self) -> str:
        return " and ".join(s.describe() for s in self.items)

    def why_not(self, values: Sequence[Any]) -> str:
        for s in self.items:
            if not s.test(values):
                return s.why_not(values)
        return f"{show_values(values)} is not {self.describe()}"


# --- globs -------------------------------------------------------------------------------


def _glob_tokens(pattern: str, *, classes: bool) -> list[str | None]:
    """The glob as tokens: None for ``*``, else a regex that matches exactly one character.

    Raises:
        ValueError: an unclosed or empty ``[...]`` class.
    """
    out: list[str | None] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append(None)
        elif ch == "?":
            out.append(".")
        elif ch == "[" and classes:
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                raise ValueError(f"unclosed '[' at position {i + 1}")
            body = pattern[i + 1 : end]
            if body in ("", "!"):
                raise ValueError(f"empty character class at position {i + 1}")
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return out


class GlobPattern:
    """A compiled glob, matched against a whole text, ignoring case, in time linear in the text.

    The pattern is cut at its ``*`` into segments of single-character tokens, each segment a
    regex of fixed length without repetition. The first segment must match at the start, the
    last at the end, and the ones between are found left to right, each at its leftmost place:
    with fixed-length segments the leftmost place is never worse than a later one, so nothing is
    ever tried twice (a regex ``.*a.*b.*`` backtracks over the text once per ``a``).

    Attributes:
        pattern: the glob as written.
    """

    __slots__ = ("_head", "_middle", "_starred", "_tail", "pattern")

    def __init__(self, pattern: str, *, classes: bool) -> None:
        self.pattern = pattern
        segments: list[list[str]] = [[]]
        for token in _glob_tokens(pattern, classes=classes):
            if token is None:
                segments.append([])
            else:
                segments[-1].append(token)
        self._starred = len(segments) > 1
        compiled = [(_segment(s), len(s)) for s in segments]
        self._head = compiled[0]
        self._tail = compiled[-1] if self._starred else (None, 0)
        self._middle = tuple((rx, size) for rx, size in compiled[1:-1] if rx is not None)

    def matches(self, text: str) -> bool:
        """True when the whole of ``text`` matches the glob."""
        head, head_size = self._head
        if not self._starred:
            return text == "" if head is None else head.fullmatch(text) is not None
        tail, tail_size = self._tail
        end = len(text) - tail_size
        if end < head_size:
            return False
        if head is not None and head.match(text) is None:
            return False
        if tail is not None and tail.match(text, end) is None:
            return False
        pos = head_size
        for rx, _ in self._middle:
            found = rx.search(text, pos, end)
            if found is None:
                return False
            pos = found.end()
        return True

    def __repr__(self) -> str:
        return f"GlobPattern({self.pattern!r})"


def _segment(tokens: list[str]) -> re.Pattern[str] | None:
    if not tokens:
        return None
    try:
        return re.compile("".join(tokens), re.IGNORECASE | re.DOTALL)
    except re.error as exc:  # a class such as [z-a]
        raise ValueError(f"bad character class: {exc.msg}") from exc


def compile_glob(pattern: str, *, classes: bool) -> GlobPattern:
    """Compile a glob (``*``, ``?``, and ``[...]`` when ``classes``) matched whole and ignoring case.

    Raises:
        ValueError: an unclosed, empty or bad (``[z-a]``) ``[...]`` class.
    """
    return GlobPattern(pattern, classes=classes)


def is_plain_glob(value: Any) -> bool:
    """True for a plain text value that is a glob (it has ``*`` or ``?``)."""
    return isinstance(value, str) and ("*" in value or "?" in value)
