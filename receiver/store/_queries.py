"""The admin API's list filters as SQL, shared by both stores (built per call: the filters vary).

Values always travel as parameters; only column names and operators, all constants here, are
put into the text. Name patterns take ``*`` (any text) and ``?`` (one character), in any
casing: SQLite's ``LIKE`` ignores ASCII case, PostgreSQL's ``ILIKE`` all case.
"""

from __future__ import annotations

from collections.abc import Collection

from receiver.store import EventQuery
from receiver.store._text import storable
from receiver.store.sql import Dialect

__all__ = ["delivery_where", "event_where", "filter_name", "like_pattern"]

_NAME_LIMIT = 500


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


def event_where(query: EventQuery | None, d: Dialect) -> tuple[str, dict[str, object]]:
    """`` WHERE ...`` (or nothing) and its named parameters for ``list_events``."""
    params: dict[str, object] = {}
    if query is None:
        return "", params
    parts: list[str] = []

    def bind(value: object) -> str:
        name = f"p{len(params)}"
        params[name] = value
        return d.param(name)

    if query.source is not None:
        parts.append(f"source = {bind(query.source)}")
    if query.types:
        types = [f"type {d.like} {bind(like_pattern(t))} ESCAPE '\\'" for t in query.types]
        parts.append("(" + " OR ".join(types) + ")")
    for column, value in (("process", query.process), ("robot", query.robot)):
        if value is not None:
            parts.append(f"{column} {d.like} {bind(like_pattern(value))} ESCAPE '\\'")
    for sql, bound in (
        ("state = {}", query.state),
        ("received_at >= {}", query.since),
        ("received_at < {}", query.until),
        ("id < {}", query.before),
    ):
        if bound is not None:
            parts.append(sql.format(bind(bound)))
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
) -> tuple[str, dict[str, object]]:
    """`` WHERE ...`` (or nothing) and its named parameters for ``list_deliveries``."""
    parts: list[str] = []
    params: dict[str, object] = {}
    if failing:
        parts.append("state = 'pending' AND attempts > 0")
    for column, value in (("state", state), ("channel", channel), ("rule", rule)):
        if value is not None:
            parts.append(f"{column} = {d.param(column)}")
            params[column] = value
    if before is not None:
        parts.append(f"id < {d.param('before')}")
        params["before"] = before
    if inbox_ids is not None:
        parts.append(d.in_ids("inbox_id", "inbox_ids"))
        params["inbox_ids"] = d.ids(inbox_ids)
    return _where(parts), params
