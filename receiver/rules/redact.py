"""Redaction (``redact:``): personal data cut out of untrusted text before it is rendered. Pure.

A :class:`Redactor` holds the patterns of the file: the built-ins ``email``, ``iban`` (checked
with the IBAN's mod-97 check digits) and ``card`` (13 to 19 digits starting with 2 to 6, spaces
or dashes between them, Luhn-checked), and the user's regexes. :meth:`Redactor.value` returns a
copy of any value a message is rendered from (an event model, a template context, enriched text)
with every string in it redacted; the stored event is never touched.

Every pattern runs on RE2 (``google-re2``): an automaton without backtracking, so one search
costs time linear in the text whatever the pattern (backreferences and lookaround, which would
break that, are refused at load). Finding *all* matches can still read ahead past each match
(``a.*z|a`` reads to the end of the text at every ``a``), so a user's pattern stops after
:data:`MAX_MATCHES` matches in one text and withholds the rest of that text: the work per text
is at most ``(MAX_MATCHES + 1)`` passes over it, and event texts are capped at 16,384 characters.
The built-ins need no such stop: an ``iban`` or ``card`` candidate is at most 64 characters, and
an ``email`` scan past a match ends at the next character no address holds, before the next ``@``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import re2
from markupsafe import Markup
from pydantic import BaseModel

from receiver.events import without_lone_surrogates
from receiver.rules.budget import check_budget

__all__ = [
    "BUILTIN_PATTERNS",
    "DEFAULT_REPLACEMENT",
    "MAX_MATCHES",
    "MAX_PATTERN_CHARS",
    "RedactPattern",
    "Redactor",
    "builtin_pattern",
    "compile_user_pattern",
]

DEFAULT_REPLACEMENT = "[redacted:{name}]"
"""What a match becomes; ``{name}`` is the pattern's name."""

MAX_MATCHES = 256
"""Matches of one pattern in one text; past them the rest of the text is withheld (see the module doc)."""

MAX_PATTERN_CHARS = 1_000
"""The longest user regex accepted."""

_KEPT = frozenset({int, float, bool, bytes, datetime, date, timedelta, ZoneInfo})
"""Types that hold no text to redact (checked by exact type: the common values of an event)."""

_WITHHELD = " [rest withheld: more than {limit} matches of {name!r}]"
_T = TypeVar("_T")


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a bad user pattern is reported by the loader, not on stderr
    options.max_mem = 8 << 20  # RE2 falls back to its slower (still linear) engine past this
    return options


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_BASE36 = {ch: str(int(ch, 36)) for ch in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def _iban_valid(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    return int("".join(map(_BASE36.__getitem__, rearranged))) % 97 == 1


def _valid_prefix(text: str, separators: str, keep: Callable[[str], bool]) -> int:
    """Length of the longest prefix of ``text`` ending at a group boundary that ``keep`` accepts; 0 if none.

    A match may run on into a following group (``4111 1111 1111 1111 2024``): the valid
    number is its longest prefix that ends at a group boundary. A built-in's match is short
    (at most 64 characters), so trying each boundary costs a constant.
    """
    kept: list[str] = []
    ends: list[tuple[int, int]] = []  # (end in text, characters kept before it)
    for i, ch in enumerate(text):
        if ch not in separators:
            kept.append(ch)
        elif i and text[i - 1] not in separators:
            ends.append((i, len(kept)))
    compact = "".join(kept)
    for end, size in ((len(text), len(compact)), *reversed(ends)):
        if keep(compact[:size]):
            return end
    return 0


def _card(compact: str) -> bool:
    return 13 <= len(compact) <= 19 and _luhn(compact)


def _iban(compact: str) -> bool:
    return 15 <= len(compact) <= 34 and _iban_valid(compact)


# RE2 syntax (\pL: any letter). None of them nests an unbounded repetition in another.
_BUILTINS: dict[str, tuple[str, Callable[[str], int]] | tuple[str, None]] = {
    # local part, @, labels, a dot and a top-level domain of two letters or more
    "email": (r"[\pL\pN._%+-]+@[\pL\pN-]+(?:\.[\pL\pN-]+)*\.\pL{2,}", None),
    # two letters, two check digits, 11 to 30 letters or digits, spaces allowed between them
    "iban": (r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b", lambda text: _valid_prefix(text, " ", _iban)),
    # a payment card's first digit (2-6), 12 to 18 more, one space or dash allowed between two
    "card": (r"\b[2-6](?:[ -]?[0-9]){12,18}\b", lambda text: _valid_prefix(text, " -", _card)),
}

BUILTIN_PATTERNS: tuple[str, ...] = tuple(_BUILTINS)
"""The names of the built-in patterns."""


@dataclass(frozen=True, slots=True, eq=False)
class RedactPattern:
    """One compiled pattern of ``redact:``.

    Attributes:
        name: the built-in's name, or the user's name for the regex.
        source: the regex as written (for a built-in, RE2 syntax of its candidates).
        replacement: what each match becomes (``{name}`` already filled in).
        regex: the compiled RE2 regex.
        check: for ``iban`` and ``card``, the length of a match's valid prefix (0: not a number of that kind).
        max_matches: matches in one text before the rest is withheld; None for the built-ins, whose
            scans never read far past a match (their candidates are bounded, or end at the next ``@``).
    """

    name: str
    source: str
    replacement: str
    regex: Any = field(repr=False)
    check: Callable[[str], int] | None = field(default=None, repr=False)
    max_matches: int | None = MAX_MATCHES

    def apply(self, text: str) -> str:
        """``text`` with every match replaced; past ``max_matches`` matches the rest is withheld."""
        pieces: list[str] = []
        end = 0
        limit = self.max_matches
        for count, match in enumerate(self.regex.finditer(text), start=1):
            start, stop = match.span()
            if limit is not None and count > limit:
                pieces.append(text[end:start])
                pieces.append(_WITHHELD.format(limit=limit, name=self.name))
                return "".join(pieces)
            found = text[start:stop]
            if self.check is None:
                pieces.append(text[end:start])
                pieces.append(self.replacement)
            else:
                valid = self.check(found)
                pieces.append(text[end:start])
                pieces.append(self.replacement + found[valid:] if valid else found)
            end = stop
        if not pieces:
            return text
        pieces.append(text[end:])
        return "".join(pieces)


def _replacement(template: str, name: str) -> str:
    return template.replace("{name}", name)


def builtin_pattern(name: str, replacement: str = DEFAULT_REPLACEMENT) -> RedactPattern:
    """The built-in pattern ``name`` (one of :data:`BUILTIN_PATTERNS`).

    Raises:
        KeyError: not a built-in.
    """
    source, check = _BUILTINS[name]
    compiled = re2.compile(source, _options())
    return RedactPattern(name, source, _replacement(replacement, name), compiled, check, max_matches=None)


def compile_user_pattern(name: str, regex: str, replacement: str = DEFAULT_REPLACEMENT) -> RedactPattern | str:
    """A user's regex compiled by RE2, or the reason it cannot be (a sentence for ``receiver check``)."""
    if len(regex) > MAX_PATTERN_CHARS:
        return f"the regex is {len(regex)} characters long; at most {MAX_PATTERN_CHARS} are accepted"
    if not regex:
        return "the regex is empty"
    try:
        compiled = re2.compile(regex, _options())
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return (
            f"the regex {regex!r} is not accepted: {reason} (redaction runs on RE2, in time linear in the text: "
            "no backreferences, no lookahead or lookbehind, repetition counts up to 1000)"
        )
    if compiled.search(""):
        return f"the regex {regex!r} matches the empty text; it would redact nothing but cost a search per character"
    return RedactPattern(name, regex, _replacement(replacement, name), compiled)


class Redactor:
    """The ``redact:`` section compiled: applies its patterns to text and to whole values.

    An empty redactor (no ``redact:`` in the file) returns every value as it is, at no cost.
    """

    __slots__ = ("_any", "_last", "patterns")

    def __init__(self, patterns: tuple[RedactPattern, ...] = ()) -> None:
        self.patterns = patterns
        self._last: tuple[object, object] | None = None
        # One search for all patterns first: most texts hold nothing to redact.
        self._any: Any = None
        if len(patterns) > 1:
            try:
                self._any = re2.compile("|".join(f"(?:{p.regex.pattern})" for p in patterns), _options())
            except re2.error:  # past RE2's memory bound together: each pattern searches on its own
                self._any = None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __repr__(self) -> str:
        return f"Redactor({[p.name for p in self.patterns]!r})"

    def text(self, text: str) -> str:
        """``text`` with every pattern applied, in the order written.

        A lone surrogate (JSON's ``"\\ud83d"``: a text cut inside a UTF-16 pair) becomes U+FFFD first:
        RE2 reads UTF-8, which cannot hold one, and raised; the event then notified nobody.
        """
        check_budget()
        text = without_lone_surrogates(text)
        if self._any is not None and self._any.search(text) is None:
            return text
        for pattern in self.patterns:
            text = pattern.apply(text)
        return text

    def value(self, value: _T) -> _T:
        """A copy of ``value`` with each string in it redacted (the same object when nothing changed).

        Strings, lists, tuples, dicts (keys and values), pydantic models (field by field) and
        dataclasses are walked; numbers, times, enums and :class:`~markupsafe.Markup` (text the
        renderer built from quoted parts, e.g. the Orchestrator link) are kept. The last model
        redacted is remembered, so an event rendered for several channels is walked once.
        """
        if not self.patterns:
            return value
        result = self._walk(value)
        if isinstance(value, BaseModel):  # models are frozen: the same object gives the same copy
            self._last = (value, result)
        return result  # type: ignore[no-any-return]

    def _walk(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if value is None or kind in _KEPT or isinstance(value, Markup | Enum):
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, BaseModel):
            last = self._last
            if last is not None and (last[0] is value or last[1] is value):  # already redacted (a fixed point)
                return last[1]
            return self._model(value)
        if isinstance(value, list | tuple):
            return self._sequence(value)
        if isinstance(value, dict | Mapping):
            pairs = [(self._walk(k), self._walk(v)) for k, v in value.items()]
            if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(pairs, value.items(), strict=True)):
                return value
            return dict(pairs)
        if is_dataclass(value) and not isinstance(value, type):
            changes = self._changes(value, [f.name for f in fields(value) if f.init])
            return replace(value, **changes) if changes else value
        return value

    def _sequence(self, value: list[Any] | tuple[Any, ...]) -> Any:
        items = [self._walk(item) for item in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        if isinstance(value, list):
            return items
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)  # a NamedTuple takes its fields

    def _changes(self, obj: object, names: list[str]) -> dict[str, Any]:
        changes = {}
        for name in names:
            old = getattr(obj, name)
            new = self._walk(old)
            if new is not old:
                changes[name] = new
        return changes

    def _model(self, model: BaseModel) -> BaseModel:
        changes = self._changes(model, list(type(model).model_fields))
        return model.model_copy(update=changes) if changes else model
