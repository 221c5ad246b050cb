"""The noise state the engine reads and changes: rows keyed by (kind, name, key), and a view over them.

Every window, counter, group, timer and flag is one row:

========== ============== ============================ ==========================================
kind       name           key                          data
========== ============== ============================ ==========================================
throttle   rule           the throttle key             ``until``, ``held``, ``held_since``
frequency  rule           the frequency key            ``times`` (the matches in the window)
group      rule           ``process=X,robot=Y``        pending items, counts, ``last_flush_at``
absence    rule           the absence key              ``state`` armed (a timer) or followed
firing     rule           the recover key              ``since``, ``count``, ``title``
collapse   (empty)        type, entity, state          ``inbox_id``, ``at``
inhibit    inhibit name   ``machine=RPAVM01``          ``since``, ``source_inbox_id``, ``muted``
budget     channel        (empty)                      ``since``, ``sent``, ``held``, ``counts``
quiet      source         (empty)                      ``last_at``, ``inbox_id``, ``quiet``
========== ============== ============================ ==========================================

Each kind's ``data`` is a typed payload (a frozen dataclass) owned by its stage module, read and
written there only (``from_data``/``to_data``): ``ThrottleState`` (throttle), ``FrequencyState``
(frequency), ``GroupState`` (group), ``absence.Armed``/``absence.Followed`` (absence),
``FiringState`` (recovery), ``CollapseState`` (collapse), ``InhibitState`` (inhibit),
``BudgetState`` (budget, in ``channel_budget``), ``SourceWatch`` (quiet).

Rules and inhibitions keep their state per source: the stored key of such a row is
``source|key`` (see :func:`state_key`), so that an event of one source never meets another
source's window, counter, timer, alert flag or inhibition. A rule or an inhibition with
``share_across_sources: true`` stores the bare key, one row for every source. Rows written
before keys carried their source (bare keys) are read by rules that share, and otherwise expire
on their own (an armed absence timer of such a row is still cancelled by its own source).

``due_at`` makes a row a timer (a group's next digest, an absence deadline, a channel budget's
digest, a source's watch): the inbox worker
fires it once the time has come. ``expires_at`` tells when a row without a timer can be
forgotten. The store keeps the rows; :class:`StateView` is the engine's working copy of those
an event may touch, and records what changed so the caller can commit it with the event.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["SOURCE_SEPARATOR", "Ref", "Row", "StateView", "UnknownRefError", "state_key"]

Ref = tuple[str, str, str]
"""(kind, name, key) of a row."""

SOURCE_SEPARATOR = "|"
"""Between the source and the key of a per-source row; source names cannot contain it."""


def state_key(key: str, source: str | None) -> str:
    """The key a row is stored under: ``source|key`` for state kept per source, ``key`` when shared.

    Args:
        key: the rendered key (of a throttle, a group, an inhibition...).
        source: the source whose state it is, or None for state every source shares.
    """
    return key if source is None else f"{source}{SOURCE_SEPARATOR}{key}"


@dataclass(slots=True)
class Row:
    """One piece of noise state.

    Attributes:
        kind: throttle, frequency, group, absence, firing, collapse or inhibit.
        name: the rule or inhibition it belongs to ("" for collapse).
        key: the key inside that rule (a rendered key template, or field values), as stored:
            prefixed by its source unless the rule shares its state across sources.
        data: the JSON-able state (a timer's ``key`` is the key as rendered, for display).
        due_at: when the worker must act on it (a timer), or None.
        expires_at: when it may be forgotten (when it has no timer), or None to keep it.
    """

    kind: str
    name: str
    key: str
    data: dict[str, Any] = field(default_factory=dict)
    due_at: float | None = None
    expires_at: float | None = None

    @property
    def ref(self) -> Ref:
        """(kind, name, key)."""
        return (self.kind, self.name, self.key)

    @property
    def shown_key(self) -> str:
        """The key as the rule rendered it, without the source it is stored under (for messages)."""
        shown = self.data.get("key")
        return shown if isinstance(shown, str) else self.key


class UnknownRefError(LookupError):
    """The engine read a row the caller did not load: a bug in the caller's list of refs."""


class StateView:
    """The rows one batch of events may touch, and what the engine changed in them.

    Args:
        rows: the rows as stored.
        fetched: the refs the caller looked up (found or not); reading any other ref raises
            :class:`UnknownRefError`. None means the view holds every row there is (the dry run).
    """

    def __init__(self, rows: Iterable[Row] = (), *, fetched: Iterable[Ref] | None = None) -> None:
        self._rows: dict[Ref, Row] = {row.ref: row for row in rows}
        self._fetched: set[Ref] | None = None if fetched is None else set(fetched) | set(self._rows)
        self._put: set[Ref] = set()
        self._deleted: set[Ref] = set()

    def get(self, ref: Ref) -> Row | None:
        """A copy of the row (change it, then :meth:`put` it), or None when there is none."""
        if self._fetched is not None and ref not in self._fetched:
            raise UnknownRefError(f"noise state {ref!r} was not loaded")
        row = self._rows.get(ref)
        return None if row is None else replace(row, data=copy.deepcopy(row.data))

    def put(self, row: Row) -> None:
        """Write a row (new or changed)."""
        self._rows[row.ref] = replace(row, data=copy.deepcopy(row.data))
        self._put.add(row.ref)
        self._deleted.discard(row.ref)
        if self._fetched is not None:
            self._fetched.add(row.ref)

    def delete(self, ref: Ref) -> None:
        """Remove a row."""
        self._rows.pop(ref, None)
        self._put.discard(ref)
        self._deleted.add(ref)

    def add(self, rows: Iterable[Row], refs: Iterable[Ref]) -> None:
        """Load more rows as stored (``refs`` were looked up; ``rows`` are those that exist)."""
        for row in rows:
            if row.ref not in self._put and row.ref not in self._deleted:
                self._rows[row.ref] = row
        if self._fetched is not None:
            self._fetched.update(refs)

    def checkpoint(self) -> tuple[dict[Ref, Row], set[Ref], set[Ref]]:
        """A token to :meth:`rollback` to (when processing one event failed half-way)."""
        return dict(self._rows), set(self._put), set(self._deleted)

    def rollback(self, token: tuple[dict[Ref, Row], set[Ref], set[Ref]]) -> None:
        """Forget every change made since :meth:`checkpoint` returned ``token``."""
        rows, put, deleted = token
        self._rows, self._put, self._deleted = dict(rows), set(put), set(deleted)

    def changes(self) -> tuple[list[Row], list[Ref]]:
        """The rows written and the refs deleted since the view was made."""
        return [self._rows[ref] for ref in sorted(self._put)], sorted(self._deleted)

    def due(self, until: float) -> list[Row]:
        """Timers due at or before ``until``, earliest first (for views holding every row)."""
        rows = [r for r in self._rows.values() if r.due_at is not None and r.due_at <= until]
        return sorted(rows, key=lambda r: (r.due_at or 0.0, r.ref))

    def next_due(self) -> float | None:
        """The earliest timer, or None when there is none."""
        times = [r.due_at for r in self._rows.values() if r.due_at is not None]
        return min(times) if times else None

    def rows(self) -> list[Row]:
        """Every row the view holds."""
        return list(self._rows.values())
