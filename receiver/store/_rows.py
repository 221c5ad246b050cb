"""The row mappers both stores share: one column list and one mapper per row type."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Any

from receiver.store import (
    AlertEventRow,
    AlertRow,
    AttemptRow,
    DeliveryRow,
    EventRow,
    NewAlertEvent,
    NoiseLogEntry,
    NoiseLogRow,
    NoiseRef,
    NoiseRow,
    SilenceRow,
)
from receiver.store._text import noise_ref

__all__ = [
    "ALERT_COLUMNS",
    "ALERT_EVENT_COLUMNS",
    "ATTEMPT_COLUMNS",
    "DELIVERY_COLUMNS",
    "EVENT_COLUMNS",
    "LOG_COLUMNS",
    "NOISE_COLUMNS",
    "SILENCE_COLUMNS",
    "alert_event_row",
    "alert_row",
    "as_requested",
    "attempt_row",
    "delivery_row",
    "event_row",
    "log_row",
    "noise_refs",
    "noise_row",
    "silence_row",
]

EVENT_COLUMNS = (
    "id, source, event_id, type, body, received_at, event_time, state, processed_at, outcome, process, robot, claims"
)
DELIVERY_COLUMNS = (
    "id, inbox_id, rule, channel, title, body, severity, body_format, state, attempts, created_at, "
    "budget_since, next_attempt_at, last_error, sent_at"
)
ATTEMPT_COLUMNS = "id, delivery_id, at, status, reason, elapsed"
NOISE_COLUMNS = "kind, name, key, data, due_at, expires_at"
SILENCE_COLUMNS = "id, matchers, comment, created_by, created_at, starts_at, ends_at"
ALERT_COLUMNS = (
    "id, rule, source, key, shown_key, state, title, inbox_id, last_inbox_id, process, robot, count, opened_at, "
    "last_at, expires_at, due_at, next_repeat_at, reminders, escalations, acked_at, acked_by, resolved_at, "
    "resolved_by, resolution, event_type"
)
ALERT_EVENT_COLUMNS = "id, alert_id, at, action, actor, via, detail, inbox_id"
LOG_COLUMNS = "id, recorded_at, at, inbox_id, rule, key, action, reason, suppressed"


def event_row(row: tuple[Any, ...]) -> EventRow:
    """An ``inbox`` row (``EVENT_COLUMNS``)."""
    return EventRow(*row)


def delivery_row(row: tuple[Any, ...]) -> DeliveryRow:
    """A ``deliveries`` row (``DELIVERY_COLUMNS``)."""
    return DeliveryRow(*row)


def attempt_row(row: tuple[Any, ...]) -> AttemptRow:
    """An ``attempts`` row (``ATTEMPT_COLUMNS``)."""
    return AttemptRow(*row)


def noise_row(row: tuple[Any, ...]) -> NoiseRow:
    """A ``noise_state`` row (``NOISE_COLUMNS``)."""
    return NoiseRow(*row)


def silence_row(row: tuple[Any, ...]) -> SilenceRow:
    """A ``silences`` row (matchers stored as a JSON list)."""
    id_, matchers, comment, created_by, created_at, starts_at, ends_at = row
    return SilenceRow(
        int(id_),
        tuple(str(m) for m in json.loads(matchers)),
        str(comment),
        str(created_by),
        float(created_at),
        float(starts_at),
        float(ends_at),
    )


def log_row(row: tuple[Any, ...]) -> NoiseLogRow:
    """A ``noise_log`` row."""
    id_, recorded_at, at, inbox_id, rule, key, action, reason, suppressed = row
    entry = NoiseLogEntry(
        at=float(at),
        inbox_id=None if inbox_id is None else int(inbox_id),
        rule=rule,
        key=key,
        action=str(action),
        reason=str(reason),
        suppressed=bool(suppressed),
    )
    return NoiseLogRow(int(id_), float(recorded_at), entry)


def noise_refs(refs: Collection[NoiseRef]) -> dict[NoiseRef, list[NoiseRef]]:
    """The refs to look up as stored (``noise_ref``), each with the refs asked for that it stands for."""
    wanted: dict[NoiseRef, list[NoiseRef]] = {}
    for ref in sorted(set(refs)):
        wanted.setdefault(noise_ref(ref), []).append(ref)
    return wanted


def as_requested(rows: Iterable[NoiseRow], wanted: dict[NoiseRef, list[NoiseRef]]) -> list[NoiseRow]:
    """Stored rows under the refs they were asked for: a long key, stored as a digest, comes back as given."""
    return [
        replace(row, kind=kind, name=name, key=key)
        for row in rows
        for kind, name, key in wanted.get((row.kind, row.name, row.key), ())
    ]


def alert_row(row: tuple[Any, ...]) -> AlertRow:
    """An ``alerts`` row (``ALERT_COLUMNS``)."""
    return AlertRow(*row)


def alert_event_row(row: tuple[Any, ...]) -> AlertEventRow:
    """An ``alert_events`` row (``ALERT_EVENT_COLUMNS``)."""
    id_, alert_id, at, action, actor, via, detail, inbox_id = row
    entry = NewAlertEvent(str(alert_id), float(at), str(action), str(actor), str(via), str(detail), inbox_id)
    return AlertEventRow(int(id_), entry)
