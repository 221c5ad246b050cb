"""The OData query subset of the fake Orchestrator (tests/fake_orchestrator.py).

Follows /work/shared/reference/orchestrator-api.md §4 and §9.4: ``$filter`` with ``eq ne gt ge lt le``,
``and``/``or``/``not``, parentheses, ``in (...)``, ``contains``/``startswith``/``endswith``, ``/``
navigation (``Robot/Id eq 749``), string literals (``'it''s'``), unquoted ISO-8601 dates
(``EndTime ge 2024-01-01T00:00:00Z``), bare GUIDs and ``guid'...'``, typed enum literals
(``UiPath.Core.Enums.LogLevel'Fatal'``), numbers, ``true``/``false``/``null``; ``$orderby`` with
``asc``/``desc`` (at most 5 clauses); ``$select``. At most 100 expressions per filter (§4 table).
Parsing is one regex scan plus a recursive descent bounded in depth: linear in the filter's length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["MAX_FILTER_EXPRESSIONS", "MAX_ORDERBY", "ODataError", "compile_filter", "order", "parse_datetime", "select"]

MAX_FILTER_EXPRESSIONS = 100  # §4 "`$filter` max 100 expressions"
MAX_ORDERBY = 5  # §4 "`$orderby` max 5"
_MAX_FILTER_CHARS = 8000
_MAX_DEPTH = 32

Row = Mapping[str, Any]
Predicate = Callable[[Row], bool]


class ODataError(ValueError):
    """A query option the fake (like Orchestrator, errorCode 1000) refuses."""


@dataclass(frozen=True)
class _Guid:
    text: str


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<string>'(?:[^']|'')*')
    |(?P<typed>[A-Za-z_][\w.]*'(?:[^']|'')*')
    |(?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![\w-]))
    |(?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})?)?(?![\w-]))
    |(?P<number>-?\d+(?:\.\d+)?(?![\w-]))
    |(?P<punct>[(),])
    |(?P<name>[A-Za-z_]\w*(?:/[A-Za-z_]\w*)*)
    """,
    re.VERBOSE,
)
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"contains", "startswith", "endswith"}
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", *_COMPARISONS}


def parse_datetime(text: str) -> datetime:
    """An ISO-8601 instant as Orchestrator writes it (``Z``, up to 7 fraction digits), as an aware datetime.

    Args:
        text: e.g. ``2024-05-06T08:15:30.1234567Z`` or ``2024-05-06``.

    Returns:
        The instant in UTC (a date alone is its midnight UTC).

    Raises:
        ValueError: when ``text`` is not such a date.
    """
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2})?)?)(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?", text)
    if match is None:
        raise ValueError(f"not an ISO-8601 date: {text!r}")
    base, fraction, zone = match.groups()
    value = datetime.fromisoformat(base + (f".{fraction[:6].ljust(6, '0')}" if fraction else ""))
    if zone and zone != "Z":
        return value.replace(tzinfo=datetime.strptime(zone.replace(":", ""), "%z").tzinfo).astimezone(UTC)
    return value.replace(tzinfo=UTC)


def _tokenize(text: str) -> list[_Token]:
    if len(text) > _MAX_FILTER_CHARS:
        raise ODataError(f"$filter is longer than {_MAX_FILTER_CHARS} characters")
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ODataError(f"$filter: unexpected character {text[position]!r} at position {position}")
        kind = match.lastgroup or ""
        if kind != "ws":
            word = match.group()
            if kind == "name" and word.lower() in _KEYWORDS:
                kind = word.lower()
            elif kind == "punct":
                kind = word
            tokens.append(_Token(kind, word))
        position = match.end()
    return tokens


def _literal(token: _Token) -> Any:
    if token.kind == "string":
        return token.text[1:-1].replace("''", "'")
    if token.kind == "typed":
        prefix, _, rest = token.text.partition("'")
        value = rest[:-1].replace("''", "'")
        if prefix.lower() == "guid":
            return _Guid(value.lower())
        if prefix.lower() in {"datetime", "datetimeoffset"}:
            return parse_datetime(value)
        return value  # an enum literal such as UiPath.Core.Enums.LogLevel'Fatal' compares as its name
    if token.kind == "guid":
        return _Guid(token.text.lower())
    if token.kind == "datetime":
        return parse_datetime(token.text)
    if token.kind == "number":
        return float(token.text) if "." in token.text else int(token.text)
    return {"true": True, "false": False, "null": None}[token.kind]


def _field(row: Row, path: str) -> Any:
    value: Any = row
    for part in path.split("/"):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _coerce(value: Any, like: Any) -> Any:
    """``value`` (a JSON field) in the type of the literal it is compared with."""
    if value is None:
        return None
    if isinstance(like, datetime):
        try:
            return parse_datetime(str(value))
        except ValueError:
            return None
    if isinstance(like, _Guid):
        return _Guid(str(value).lower())
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        if isinstance(left, _Guid):
            left, right = left.text, right.text
        return bool({"gt": left > right, "ge": left >= right, "lt": left < right, "le": left <= right}[op])
    except TypeError:
        return False


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.expressions = 0

    def peek(self) -> str:
        return self.tokens[self.index].kind if self.index < len(self.tokens) else "end"

    def take(self, kind: str | None = None) -> _Token:
        if self.index >= len(self.tokens):
            raise ODataError("$filter ends too early")
        token = self.tokens[self.index]
        if kind is not None and token.kind != kind:
            raise ODataError(f"$filter: expected {kind!r}, found {token.text!r}")
        self.index += 1
        return token

    def count(self) -> None:
        self.expressions += 1
        if self.expressions > MAX_FILTER_EXPRESSIONS:
            raise ODataError(f"$filter has more than {MAX_FILTER_EXPRESSIONS} expressions")

    def expression(self, depth: int = 0) -> Predicate:
        if depth > _MAX_DEPTH:
            raise ODataError("$filter is nested too deeply")
        terms = [self.conjunction(depth)]
        while self.peek() == "or":
            self.take()
            terms.append(self.conjunction(depth))
        return terms[0] if len(terms) == 1 else lambda row: any(term(row) for term in terms)

    def conjunction(self, depth: int) -> Predicate:
        terms = [self.negation(depth)]
        while self.peek() == "and":
            self.take()
            terms.append(self.negation(depth))
        return terms[0] if len(terms) == 1 else lambda row: all(term(row) for term in terms)

    def negation(self, depth: int) -> Predicate:
        if self.peek() == "not":
            self.take()
            inner = self.negation(depth + 1)
            return lambda row: not inner(row)
        if self.peek() == "(":
            self.take()
            inner = self.expression(depth + 1)
            self.take(")")
            return inner
        return self.comparison()

    def operand(self) -> tuple[str | None, Any]:
        """A property path (name, None) or a literal (None, value)."""
        token = self.take()
        if token.kind == "name":
            return token.text, None
        if token.kind in {"string", "typed", "guid", "datetime", "number", "true", "false", "null"}:
            return None, _literal(token)
        raise ODataError(f"$filter: unexpected {token.text!r}")

    def comparison(self) -> Predicate:
        self.count()
        if self.peek() == "name" and self.tokens[self.index].text.lower() in _FUNCTIONS:
            return self.function()
        path, _ = self.operand()
        if path is None:
            raise ODataError("$filter: a comparison starts with a property name")
        op = self.take().kind
        if op == "in":
            self.take("(")
            choices = [self.literal_value()]
            while self.peek() == ",":
                self.take()
                choices.append(self.literal_value())
            self.take(")")
            return lambda row: any(_coerce(_field(row, path), c) == c for c in choices)
        if op not in _COMPARISONS:
            raise ODataError(f"$filter: unsupported operator {op!r}")
        other, literal = self.operand()
        if other is not None:
            raise ODataError("$filter: compare a property with a literal")
        return lambda row: _compare(op, _coerce(_field(row, path), literal), literal)

    def literal_value(self) -> Any:
        path, value = self.operand()
        if path is not None:
            raise ODataError("$filter: 'in' takes literals")
        return value

    def function(self) -> Predicate:
        name = self.take().text.lower()
        self.take("(")
        path, _ = self.operand()
        self.take(",")
        needle = self.literal_value()
        self.take(")")
        if path is None or not isinstance(needle, str):
            raise ODataError(f"$filter: {name}(Property, 'text')")
        test: Callable[[str, str], bool] = {
            "contains": lambda text, part: part in text,
            "startswith": str.startswith,
            "endswith": str.endswith,
        }[name]
        return lambda row: isinstance(value := _field(row, path), str) and test(value, needle)


def compile_filter(text: str) -> Predicate:
    """A ``$filter`` expression as a predicate over JSON rows.

    Args:
        text: the ``$filter`` value (already URL-decoded).

    Returns:
        A function telling whether a row matches.

    Raises:
        ODataError: on a syntax error or an expression outside the supported subset.
    """
    parser = _Parser(_tokenize(text))
    predicate = parser.expression()
    if parser.peek() != "end":
        raise ODataError(f"$filter: unexpected {parser.tokens[parser.index].text!r}")
    return predicate


def _sort_key(value: Any) -> tuple[int, Any]:
    # NULLs first in ascending order (SQL Server's order); ISO dates compare as instants.
    if value is None:
        return (0, 0)
    if isinstance(value, str):
        try:
            return (2, parse_datetime(value))
        except ValueError:
            return (3, value)
    if isinstance(value, bool | int | float):
        return (1, value)
    return (3, str(value))


def order(rows: list[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    """Rows sorted by ``$orderby`` (``Field [asc|desc], ...``), by ``Id`` when there is none.

    Raises:
        ODataError: more than 5 clauses or a malformed one.
    """
    clauses = [part.split() for part in (text or "Id").split(",")]
    if len(clauses) > MAX_ORDERBY:
        raise ODataError(f"$orderby has more than {MAX_ORDERBY} clauses")
    result = list(rows)
    for words in reversed(clauses):
        if not 1 <= len(words) <= 2 or (len(words) == 2 and words[1].lower() not in {"asc", "desc"}):
            raise ODataError(f"$orderby: bad clause {' '.join(words)!r}")
        path = words[0]
        result.sort(
            key=lambda row: _sort_key(_field(row, path)), reverse=len(words) == 2 and words[1].lower() == "desc"
        )
    return result


def select(rows: Sequence[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    """Rows cut down to the ``$select`` properties (all of them without one)."""
    if not text:
        return list(rows)
    names = [name.strip() for name in text.split(",") if name.strip()]
    return [{name: row.get(name) for name in names} for row in rows]
