"""What the alert methods of both stores do in the database (see ``receiver.store._plans`` for the form)."""

from __future__ import annotations

from collections.abc import Collection, Generator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from receiver.store import AlertChange, AlertEventRow, AlertRow, NewAlertEvent
from receiver.store._rows import ALERT_COLUMNS, ALERT_EVENT_COLUMNS, alert_event_row, alert_row
from receiver.store._text import storable, stored_key
from receiver.store.sql import Sql, sql

__all__ = [
    "acknowledge_alert",
    "alert_trail",
    "alert_trail_of_event",
    "due_alerts",
    "expire_alerts",
    "get_alert",
    "list_alerts",
    "next_alert_time",
    "open_alerts",
    "record_alert_event",
    "resolve_alert",
    "trail_params",
    "write_alerts",
    "write_trail",
]

_T = TypeVar("_T")
Plan = Generator[tuple[Sql, Any], Any, _T]

_NAMES = [c.strip() for c in ALERT_COLUMNS.split(",")]

_INSERT_ALERT = sql(
    f"INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ({', '.join(':' + c for c in _NAMES)}) ON CONFLICT DO NOTHING"
)
_TOUCH_ALERT = sql(
    "UPDATE alerts SET last_inbox_id = :last_inbox_id, last_at = :last_at, count = :count, "
    "expires_at = :expires_at, next_repeat_at = :next_repeat_at, "
    "due_at = CASE WHEN state = 'firing' THEN CAST(:due_at AS DOUBLE PRECISION) ELSE NULL END "
    "WHERE id = :id AND state <> 'resolved'"
)
_RESOLVE_CHANGE = sql(
    "UPDATE alerts SET last_inbox_id = :last_inbox_id, last_at = :last_at, count = :count, state = 'resolved', "
    "due_at = NULL, resolved_at = :resolved_at, resolved_by = :resolved_by, resolution = :resolution "
    "WHERE id = :id AND state <> 'resolved'"
)
_TRAIL = sql(
    "INSERT INTO alert_events (alert_id, at, action, actor, via, detail, inbox_id) "
    "VALUES (:alert_id, :at, :action, :actor, :via, :detail, :inbox_id)"
)
_TRAIL_ONCE = sql(
    "INSERT INTO alert_events (alert_id, at, action, actor, via, detail, inbox_id) "
    "VALUES (:alert_id, :at, :action, :actor, :via, :detail, :inbox_id) ON CONFLICT DO NOTHING"
)
_OPEN_ALERTS = sql(
    f"SELECT {ALERT_COLUMNS} FROM alerts WHERE state <> 'resolved' "
    "AND (rule, key) IN (SELECT @rule, @key {from_rows})",
    rows=[("rule", "text"), ("key", "text")],
)
_LIST_ALERTS = sql(
    f"SELECT {ALERT_COLUMNS} FROM alerts ORDER BY CASE WHEN state = 'resolved' THEN 1 ELSE 0 END, "
    "CASE WHEN state = 'resolved' THEN -last_at ELSE opened_at END, id LIMIT :limit"
)
_LIST_OPEN = sql(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE state <> 'resolved' ORDER BY opened_at, id LIMIT :limit")
_GET_ALERT = sql(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = :id")
_ALERT_TRAIL = sql(f"SELECT {ALERT_EVENT_COLUMNS} FROM alert_events WHERE alert_id = :id ORDER BY id")
_EVENT_TRAIL = sql(f"SELECT {ALERT_EVENT_COLUMNS} FROM alert_events WHERE inbox_id = :inbox_id ORDER BY id")
_ACKNOWLEDGE = sql(
    "UPDATE alerts SET state = 'acknowledged', acked_at = :now, acked_by = :actor, due_at = NULL "
    f"WHERE id = :id AND state = 'firing' RETURNING {ALERT_COLUMNS}"
)
_RESOLVE = sql(
    "UPDATE alerts SET state = 'resolved', resolved_at = :now, resolved_by = :actor, resolution = 'by_hand', "
    f"due_at = NULL WHERE id = :id AND state <> 'resolved' RETURNING {ALERT_COLUMNS}"
)
_DUE_ALERTS = sql(
    f"SELECT {ALERT_COLUMNS} FROM alerts WHERE due_at IS NOT NULL AND due_at <= :until ORDER BY due_at, id LIMIT :limit"
)
_EXPIRE = sql(
    "UPDATE alerts SET state = 'resolved', resolved_at = expires_at, resolved_by = 'expiry', "
    "resolution = 'expired', due_at = NULL WHERE id IN (SELECT id FROM alerts WHERE state <> 'resolved' "
    f"AND expires_at <= :now ORDER BY expires_at LIMIT :limit) RETURNING {ALERT_COLUMNS}"
)
_NEXT_TIMES = sql(
    "SELECT (SELECT min(due_at) FROM alerts WHERE due_at IS NOT NULL), "
    "(SELECT min(expires_at) FROM alerts WHERE state <> 'resolved')"
)
TIMER = sql(
    "UPDATE alerts SET due_at = :due_at, next_repeat_at = :next_repeat_at, reminders = :reminders, "
    "escalations = :escalations WHERE id = :id AND state = 'firing' AND due_at = :was_due"
)
"""A fired reminder or escalation: written only while the alert is firing and its timer is as it was read."""


def _params(alert: AlertRow) -> dict[str, Any]:
    values = {name: getattr(alert, name) for name in _NAMES}
    for name in ("rule", "source", "shown_key", "title", "acked_by", "resolved_by", "process", "robot", "event_type"):
        if values[name] is not None:
            values[name] = storable(values[name])[:1000]
    values["key"] = stored_key(alert.key)
    return values


def trail_params(entry: NewAlertEvent) -> dict[str, Any]:
    """The parameters of one trail entry."""
    return {
        "alert_id": entry.alert_id,
        "at": entry.at,
        "action": entry.action,
        "actor": storable(entry.actor)[:200],
        "via": entry.via,
        "detail": storable(entry.detail)[:2000],
        "inbox_id": entry.inbox_id,
    }


def write_trail(entries: Sequence[NewAlertEvent]) -> Plan[None]:
    """Add entries to alerts' trails (inside the caller's transaction)."""
    for entry in entries:
        yield _TRAIL, trail_params(entry)


def write_alerts(changes: Sequence[AlertChange]) -> Plan[None]:
    """The inbox worker's alert changes, inside its transaction; a trail entry only where its change applied."""
    for change in changes:
        values = _params(change.alert)
        statement: Sql = {"open": _INSERT_ALERT, "touch": _TOUCH_ALERT, "resolve": _RESOLVE_CHANGE}[change.kind]
        changed = yield statement, values
        if changed:
            yield from write_trail(change.trail)
        elif change.reopen is not None:
            # Resolved by hand since the batch read it: the notification opens a new alert (one per key at most,
            # the unique partial index alerts_open keeps it so).
            yield from write_alerts([change.reopen])


def open_alerts(keys: Collection[tuple[str, str]]) -> Plan[list[AlertRow]]:
    """The open alerts of these (rule, key) pairs, under the key as asked for."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for rule, key in sorted(set(keys)):
        wanted.setdefault((storable(rule), stored_key(key)), []).append(key)
    if not wanted:
        return []
    rows = yield _OPEN_ALERTS, ([{"rule": r, "key": k} for r, k in wanted], {})
    found = [alert_row(r) for r in rows]
    return [replace(a, key=key) for a in found for key in wanted.get((a.rule, a.key), ())]


def list_alerts(limit: int, open_only: bool) -> Plan[list[AlertRow]]:
    """Open alerts first (oldest first), then resolved ones (latest first)."""
    rows = yield (_LIST_OPEN if open_only else _LIST_ALERTS), {"limit": limit}
    return [alert_row(r) for r in rows]


def get_alert(alert_id: str) -> Plan[AlertRow | None]:
    """One alert, or None."""
    rows = yield _GET_ALERT, {"id": alert_id}
    return alert_row(rows[0]) if rows else None


def alert_trail(alert_id: str) -> Plan[list[AlertEventRow]]:
    """One alert's trail, in order."""
    rows = yield _ALERT_TRAIL, {"id": alert_id}
    return [alert_event_row(r) for r in rows]


def alert_trail_of_event(inbox_id: int) -> Plan[list[AlertEventRow]]:
    """The trail entries about one event."""
    rows = yield _EVENT_TRAIL, {"inbox_id": inbox_id}
    return [alert_event_row(r) for r in rows]


def acknowledge_alert(alert_id: str, actor: str, via: str, now: float) -> Plan[AlertRow | None]:
    """Acknowledge a firing alert, with its trail entry; None when it is not firing."""
    rows = yield _ACKNOWLEDGE, {"id": alert_id, "now": now, "actor": storable(actor)[:200]}
    if not rows:
        return None
    alert = alert_row(rows[0])
    yield _TRAIL, trail_params(NewAlertEvent(alert_id, now, "acknowledged", actor, via, "", alert.inbox_id))
    return alert


def resolve_alert(alert_id: str, actor: str, via: str, now: float) -> Plan[AlertRow | None]:
    """Resolve an open alert by hand, with its trail entry; None when it is not open."""
    rows = yield _RESOLVE, {"id": alert_id, "now": now, "actor": storable(actor)[:200]}
    if not rows:
        return None
    alert = alert_row(rows[0])
    entry = NewAlertEvent(alert_id, now, "resolved", actor, via, "resolved by hand", alert.inbox_id)
    yield _TRAIL, trail_params(entry)
    return alert


def record_alert_event(entry: NewAlertEvent, once: bool) -> Plan[bool]:
    """Add one trail entry; with ``once``, only the first of its action (False when one existed)."""
    changed = yield (_TRAIL_ONCE if once else _TRAIL), trail_params(entry)
    return bool(changed)


def due_alerts(until: float, limit: int) -> Plan[list[AlertRow]]:
    """Firing alerts whose timer is due, earliest first."""
    rows = yield _DUE_ALERTS, {"until": until, "limit": limit}
    return [alert_row(r) for r in rows]


def next_alert_time() -> Plan[float | None]:
    """The earliest reminder, escalation or expiry of an open alert (None: none)."""
    rows = yield _NEXT_TIMES, {}
    times = [float(t) for t in (rows[0] if rows else ()) if t is not None]
    return min(times) if times else None


def expire_alerts(now: float, limit: int) -> Plan[list[AlertRow]]:
    """Resolve the open alerts past their expiry, each with a trail entry."""
    rows = yield _EXPIRE, {"now": now, "limit": limit}
    expired = [alert_row(r) for r in rows]
    for alert in expired:
        detail = "nothing notified for it since it was last seen: resolved by expiry"
        entry = NewAlertEvent(alert.id, alert.expires_at, "expired", "expiry", "timer", detail, alert.inbox_id)
        yield _TRAIL, trail_params(entry)
    return expired
