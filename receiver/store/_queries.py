"""The admin API's list filters as SQL, shared by both stores (they differ in placeholders and LIKE).

Values always travel as parameters; only column names and operators, all constants here, are
put into the text. Name patterns take ``*`` (any text) and ``?`` (one character), in any
casing: SQLite's ``LIKE`` ignores ASCII case, PostgreSQL's ``ILIKE`` all case.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

from receiver.store import EventQuery
from receiver.store._text import storable

__all__ = ["POSTGRES", "SQLITE", "Dialect", "delivery_where", "event_where", "filter_name", "like_pattern"]

_NAME_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells a parameter, a case-insensitive LIKE, and "column in this list"."""

    param: str
    like: str
    json_list: bool

    def in_list(self, column: str, values: Collection[int]) -> tuple[str, object]:
        """``column`` is one of ``values``: the SQL and its one parameter."""
        if self.json_list:
            return f"{column} IN (SELECT value FROM json_each({self.param}))", json.dumps(sorted(values))
        return f"{column} = ANY({self.param})", sorted(values)


SQLITE = Dialect(param="?", like="LIKE", json_list=True)
POSTGRES = Dialect(param="%s", like="ILIKE", json_list=False)


def filter_name(value: str | None) -> str | None:
    """A process or robot name as kept on the inbox row for filtering (storable text, bounded)."""
    return None if value is None else storable(str(value))[:_NAME_LIMIT]


def like_pattern(text: str) -> str:
    """A name pattern (``*`` any text, ``?`` one character) as a LIKE pattern escaped with ``\\``."""
    out = []
    for char in text:
        if char in "\\%_":
            out.append("\\" + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


def _where(parts: list[str]) -> str:
    return f" WHERE {' AND '.join(parts)}" if parts else ""


def event_where(query: EventQuery | None, d: Dialect) -> tuple[str, list[object]]:
    """`` WHERE ...`` (or nothing) and its parameters for ``list_events``."""
    if query is None:
        return "", []
    parts: list[str] = []
    params: list[object] = []
    like = f"{d.like} {d.param} ESCAPE '\\'"
    if query.source is not None:
        parts.append(f"source = {d.param}")
        params.append(query.source)
    if query.types:
        parts.append("(" + " OR ".join(f"type {like}" for _ in query.types) + ")")
        params.extend(like_pattern(t) for t in query.types)
    for column, value in (("process", query.process), ("robot", query.robot)):
        if value is not None:
            parts.append(f"{column} {like}")
            params.append(like_pattern(value))
    for sql, bound in (
        ("state = {}", query.state),
        ("received_at >= {}", query.since),
        ("received_at < {}", query.until),
        ("id < {}", query.before),
    ):
        if bound is not None:
            parts.append(sql.format(d.param))
            params.append(bound)
    return _where(parts), params


def delivery_where(
    d: Dialect,
    *,
    state: str | None,
    failing: bool,
    channel: str | None,
    rule: str | None,
    inbox_ids: Collection[int] | None,
    before: int | None,
) -> tuple[str, list[object]]:
    """`` WHERE ...`` (or nothing) and its parameters for ``list_deliveries``."""
    parts: list[str] = []
    params: list[object] = []
    if failing:
        parts.append("state = 'pending' AND attempts > 0")
    for sql, value in (
        ("state = {}", state),
        ("channel = {}", channel),
        ("rule = {}", rule),
        ("id < {}", before),
    ):
        if value is not None:
            parts.append(sql.format(d.param))
            params.append(value)
    if inbox_ids is not None:
        sql, param = d.in_list("inbox_id", inbox_ids)
        parts.append(sql)
        params.append(param)
    return _where(parts), params
