"""The SQL of both stores, each statement written once, and the dialect that spells it per database.

Statements use named parameters (``:name``) and a few dialect fields in braces (``{least}``,
``{true}``, ``{skip_locked}``). A statement over a set of rows writes each row's values as
``@column`` and puts ``{from_rows}`` where the rows come from (``{order}`` keeps their order):
on SQLite ``@column`` is a parameter and the statement runs once per row (``executemany``), as
plain as a hand-written one; on PostgreSQL the rows are ``unnest`` over one array per column, and
the statement runs once for all of them. ``sql`` renders every statement for both databases
once, at import. Values always travel as parameters; only column and table names, all constants
here, are put into the text.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Collection, Mapping, Sequence
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

    def whole(self, expression: str) -> str:
        """The whole part of a non-negative float ``expression`` as an integer (a time slot's number).

        SQLite's CAST truncates; PostgreSQL's rounds, so it takes ``floor`` first.
        """
        return f"floor({expression})::bigint" if self.index else f"CAST({expression} AS INTEGER)"

    def from_rows(self, columns: Sequence[tuple[str, str]]) -> str:
        """For ``{from_rows}``: where rows with these (name, PostgreSQL type) columns come from."""
        if not self.index:
            return ""  # one row at a time, its values are parameters
        arrays = ", ".join(f"%({name})s::{kind}[]" for name, kind in columns)
        names = ", ".join(name for name, _ in columns)
        return f"FROM unnest({arrays}) WITH ORDINALITY AS r ({names}, n)"

    def row_value(self, name: str) -> str:
        """For ``@name``: the column ``name`` of the current row."""
        return f"r.{name}" if self.index else f":{name}"

    def values(self, select: str) -> str:
        """For ``{values}``: an INSERT's rows, as ``select`` (a list of ``@column``/``:name`` values) spells each."""
        if self.index:
            return f"SELECT {select} {{from_rows}} {{order}}"
        return f"VALUES ({select})"

    def order(self) -> str:
        """For ``{order}``: the rows in the order given (one row at a time needs none)."""
        return "ORDER BY r.n" if self.index else ""


SQLITE: Final = Dialect(index=0, like="LIKE", least="min", true="1", skip_locked="", row_locks=False)
POSTGRES: Final = Dialect(
    index=1, like="ILIKE", least="least", true="true", skip_locked="FOR UPDATE SKIP LOCKED", row_locks=True
)
DIALECTS: Final = (SQLITE, POSTGRES)

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_PERCENT = re.compile(r"%(?!\(\w+\)s)")  # a % that is not already a placeholder (from the dialect)
_ROW_VALUE = re.compile(r"@(\w+)")
_RETURNS = re.compile(r"^\s*(?:SELECT|WITH)\b|\bRETURNING\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Sql:
    """One statement, rendered for each dialect (``texts[dialect.index]``).

    Attributes:
        texts: the SQLite and the PostgreSQL text.
        returns: the statement returns rows (a SELECT or WITH query, or RETURNING): an executor answers with the
            rows, otherwise with the number of rows changed.
        columns: for a statement over a set of rows, their columns; its parameters are then
            ``(rows, shared)``: a list of dicts (one per row) and a dict of the other parameters.
        echo: for an INSERT that returns the new rows (``inserted``): the row columns returned
            after the id. SQLite answers them from ``lastrowid`` and the row: its RETURNING costs
            an ephemeral table per statement, about doubling a one-row insert.
        bind: the SQLite text's parameters as a tuple, from the named ones (its text uses ``?``:
            sqlite3 binds a name by building a string per parameter and call).
    """

    texts: tuple[str, str]
    returns: bool
    columns: tuple[str, ...] | None = None
    echo: tuple[str, ...] = ()
    bind: Callable[[Mapping[str, object]], tuple[object, ...]] | None = None


def sql(
    template: str | Callable[[Dialect], str],
    *,
    rows: Sequence[tuple[str, str]] | None = None,
    values: str = "",
    inserted: Sequence[str] = (),
) -> Sql:
    """Render ``template`` (text, or a function of the dialect) for both databases.

    Args:
        template: the statement with ``:name`` parameters and the dialect fields of the module docstring.
        rows: the columns of ``@column`` values as (name, PostgreSQL type), when the statement runs
            over a set of rows.
        values: for ``{values}``: the values of each inserted row.
        inserted: an INSERT over rows returns, of each row it inserted, ``id`` and these row columns.
    """
    texts = []
    for d in DIALECTS:
        text = template(d) if callable(template) else template
        text = text.replace("{values}", d.values(values))
        if inserted and d.index:
            text += " RETURNING " + ", ".join(("id", *inserted))
        if d.index:  # psycopg's placeholders; a literal % is doubled
            text = _NAMED.sub(r"%(\1)s", _PERCENT.sub("%%", text))
        fields = {"least": d.least, "true": d.true, "skip_locked": d.skip_locked, "order": d.order()}
        if rows is not None:
            fields["from_rows"] = d.from_rows(rows)
            text = _ROW_VALUE.sub(lambda m, d=d: d.row_value(m.group(1)), text)  # type: ignore[misc]
        texts.append(" ".join(text.format(**fields).split()))
    sqlite, postgres = texts
    names = _NAMED.findall(sqlite)
    sqlite = _NAMED.sub("?", sqlite)
    columns = None if rows is None else tuple(name for name, _ in rows)
    returns = bool(inserted) or bool(_RETURNS.search(sqlite))
    return Sql((sqlite, postgres), returns, columns, tuple(inserted), _binder(names))


def _binder(names: Sequence[str]) -> Callable[[Mapping[str, object]], tuple[object, ...]]:
    """The parameters ``names`` (in order, repeats included) of a mapping, as a tuple."""
    if not names:
        return lambda _: ()
    if len(names) == 1:
        name = names[0]
        return lambda params: (params[name],)
    get = operator.itemgetter(*names)
    return lambda params: get(params)


def query(text: str) -> Sql:
    """A SELECT built at run time for one dialect (an admin list's filters), already in its placeholders."""
    return Sql((text, text), True)


NOTIFY: Final = Sql(("", ""), False)
"""Not a statement: its parameter is a list of topics, sent when the transaction commits (see ``Store.listen``)."""
