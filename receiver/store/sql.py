"""The SQL of both stores, each statement written once, and the dialect that spells it per database.

Statements use named parameters (``:name``) and a few dialect fields in braces: ``{rows}`` (a set
of rows passed as parameters; ``{order}`` keeps their order), ``{least}``, ``{true}`` and
``{skip_locked}``. ``Sql`` renders every statement for both databases once, at import: on SQLite
``{rows}`` is one row of parameters, run once per row (``executemany``); on PostgreSQL it is
``unnest`` over one array per column, run once for all rows. Values always travel as parameters;
only column and table names, all constants here, are put into the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DIALECTS",
    "NOTIFY",
    "POSTGRES",
    "SQLITE",
    "Dialect",
    "Sql",
    "query",
    "sql",
]


@dataclass(frozen=True, slots=True)
class Dialect:
    """Where SQLite and PostgreSQL differ: parameters, row sets, LIKE, row locks, JSON, ``least``.

    Attributes:
        index: which text of a ``Sql`` is this dialect's (0 SQLite, 1 PostgreSQL).
        like: the case-insensitive LIKE (SQLite's ``LIKE`` ignores ASCII case, ``ILIKE`` all case).
        least: the two-argument minimum.
        true: the literal of a stored true flag (an index's predicate must match it as written).
        skip_locked: appended to a claim's inner SELECT (row locks; SQLite locks the whole file).
        row_locks: whether rows can be locked ahead of a check (``SELECT ... FOR UPDATE``).
    """

    index: int
    like: str
    least: str
    true: str
    skip_locked: str
    row_locks: bool

    def param(self, name: str) -> str:
        """The placeholder of the named parameter ``name``."""
        return f"%({name})s" if self.index else f":{name}"

    def in_ids(self, column: str, name: str) -> str:
        """``column`` is one of the ids of parameter ``name`` (given as ``ids(values)``)."""
        if self.index:
            return f"{column} = ANY({self.param(name)})"
        return f"{column} IN (SELECT value FROM json_each({self.param(name)}))"

    def ids(self, values: Collection[int]) -> object:
        """The value of an ``in_ids`` parameter."""
        return sorted(values) if self.index else json.dumps(sorted(values))

    def json_field(self, column: str, field: str) -> str:
        """The value of ``field`` in the JSON object text ``column`` (numbers come back as numbers)."""
        return f"{column}::jsonb -> '{field}'" if self.index else f"json_extract({column}, '$.{field}')"

    def rows(self, columns: Sequence[tuple[str, str]]) -> str:
        """A row source ``r`` with these (name, PostgreSQL type) columns, for ``{rows}``."""
        if self.index:
            arrays = ", ".join(f"%({name})s::{kind}[]" for name, kind in columns)
            names = ", ".join(name for name, _ in columns)
            return f"unnest({arrays}) WITH ORDINALITY AS r ({names}, n)"
        return "(SELECT " + ", ".join(f":{name} AS {name}" for name, _ in columns) + ") AS r"

    def order(self) -> str:
        """For ``{order}``: the rows of ``{rows}`` in the order given (one row at a time needs none)."""
        return "ORDER BY r.n" if self.index else ""


SQLITE: Final = Dialect(index=0, like="LIKE", least="min", true="1", skip_locked="", row_locks=False)
POSTGRES: Final = Dialect(
    index=1, like="ILIKE", least="least", true="true", skip_locked="FOR UPDATE SKIP LOCKED", row_locks=True
)
DIALECTS: Final = (SQLITE, POSTGRES)

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_PERCENT = re.compile(r"%(?!\(\w+\)s)")  # a % that is not already a placeholder (from the dialect)
_RETURNS = re.compile(r"^\s*SELECT\b|\bRETURNING\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Sql:
    """One statement, rendered for each dialect (``texts[dialect.index]``).

    Attributes:
        texts: the SQLite and the PostgreSQL text.
        returns: the statement returns rows (a SELECT, or RETURNING): an executor answers with the
            rows, otherwise with the number of rows changed.
        columns: for a statement over ``{rows}``, the per-row columns; its parameters are then
            ``(rows, shared)``: a list of dicts (one per row) and a dict of the other parameters.
    """

    texts: tuple[str, str]
    returns: bool
    columns: tuple[str, ...] | None = None

    def text(self, dialect: Dialect) -> str:
        """The text for ``dialect``."""
        return self.texts[dialect.index]


def sql(template: str | Callable[[Dialect], str], *, rows: Sequence[tuple[str, str]] | None = None) -> Sql:
    """Render ``template`` (text, or a function of the dialect) for both databases.

    Args:
        template: the statement with ``:name`` parameters and the dialect fields of the module docstring.
        rows: the columns of ``{rows}`` as (name, PostgreSQL type), when the statement runs over a set of rows.
    """
    texts = []
    for d in DIALECTS:
        text = template(d) if callable(template) else template
        if d.index:  # psycopg's placeholders; a literal % is doubled
            text = _NAMED.sub(r"%(\1)s", _PERCENT.sub("%%", text))
        fields = {"least": d.least, "true": d.true, "skip_locked": d.skip_locked, "order": d.order()}
        if rows is not None:
            fields["rows"] = d.rows(rows)
        texts.append(" ".join(text.format(**fields).split()))
    sqlite, postgres = texts
    columns = None if rows is None else tuple(name for name, _ in rows)
    return Sql((sqlite, postgres), bool(_RETURNS.search(sqlite)), columns)


def query(text: str) -> Sql:
    """A SELECT built at run time for one dialect (an admin list's filters), already in its placeholders."""
    return Sql((text, text), True)


NOTIFY: Final = Sql(("", ""), False)
"""Not a statement: its parameter is a list of topics, sent when the transaction commits (see ``Store.listen``)."""
