"""Retention as plans (see ``receiver.store._plans``), written once for both stores.

An event is pruned as a unit: its attempts, then its deliveries, then its inbox row, in one
transaction. Which events may go is decided by one statement (``_ELIGIBLE``), re-evaluated
inside the deleting transaction, so a delivery re-driven meanwhile keeps its event.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from typing import Any

from receiver.store import STORE_TABLES, PruneCutoffs, PruneStep
from receiver.store._plans import Plan
from receiver.store.sql import Dialect, sql

__all__ = [
    "COUNT_ROWS",
    "noise_log_run",
    "prune_alerts",
    "prune_events",
    "prune_noise_log",
    "prune_silences",
    "timer_inbox_ids",
]

# On the ``inbox_received`` index: each batch reads only the rows it returns, and rows that must
# stay (pending, dead, replay window) are passed over once per run, not once per batch.
_SCAN_EVENTS = sql(
    "SELECT id, received_at FROM inbox WHERE received_at >= :since AND received_at < :bound "
    "AND NOT (received_at = :since AND id <= :last_id) ORDER BY received_at, id LIMIT :limit"
)


def _eligible(d: Dialect, *, dead: bool) -> str:
    final = "(d.state = 'sent' AND coalesce(d.sent_at, d.created_at) < :events_before)"
    if dead:
        final += " OR (d.state = 'dead' AND d.budget_since < :dead_before)"
    return (
        f"SELECT i.id FROM inbox i WHERE {d.in_ids('i.id', 'ids')} AND i.state <> 'new' "
        "AND i.received_at < :events_before AND coalesce(i.processed_at, i.received_at) < :events_before "
        # The replay window: the EventId stays a duplicate while a replay's Timestamp would still pass.
        "AND i.received_at < :dedup_before AND (i.event_time IS NULL OR i.event_time < :dedup_before) "
        f"AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.inbox_id = i.id AND NOT ({final})) "
        "ORDER BY i.id"
    )


# Which of the scanned events may go now (see ``PruneCutoffs``), with and without a bound on dead deliveries.
_ELIGIBLE = {dead: sql(functools.partial(_eligible, dead=dead)) for dead in (False, True)}
# Locked first, so a delivery re-driven meanwhile is seen pending (its event stays) rather than
# deleted after its retry committed. Only where rows can be locked: SQLite's write lock covers all.
_LOCK_DELIVERIES = sql(
    lambda d: (
        f"SELECT 1 FROM deliveries WHERE {d.in_ids('inbox_id', 'ids')} ORDER BY id"
        + (" FOR UPDATE" if d.row_locks else "")
    )
)


def _delete(d: Dialect, *, table: str, verb: str) -> str:
    """Delete (or count, by ``verb``) the rows of ``table`` that belong to the events ``ids``."""
    by_event = d.in_ids("inbox_id", "ids")
    where = {
        "attempts": f"delivery_id IN (SELECT id FROM deliveries WHERE {by_event})",
        "deliveries": by_event,
        "inbox": d.in_ids("id", "ids"),
    }
    return f"{verb} {table} WHERE {where[table]}"


# Attempts, deliveries, then events: in this order, so no foreign key is ever broken inside the transaction.
_DELETE_EVENTS = {
    dry_run: [
        (table, sql(functools.partial(_delete, table=table, verb=verb)))
        for table in ("attempts", "deliveries", "inbox")
    ]
    for dry_run, verb in ((False, "DELETE FROM"), (True, "SELECT count(*) FROM"))
}
_SCAN_NOISE_LOG = sql("SELECT id, recorded_at FROM noise_log WHERE id > :after ORDER BY id LIMIT :limit")
_DELETE_NOISE_LOG = sql(lambda d: f"DELETE FROM noise_log WHERE {d.in_ids('id', 'ids')}")
_ENDED = "SELECT id FROM silences WHERE ends_at < :before ORDER BY ends_at LIMIT :limit"
_COUNT_SILENCES = sql(f"SELECT count(*) FROM ({_ENDED}) s")
_DELETE_SILENCES = sql(f"DELETE FROM silences WHERE id IN ({_ENDED})")
_RESOLVED = "SELECT id FROM alerts WHERE state = 'resolved' AND resolved_at < :before ORDER BY resolved_at LIMIT :limit"
_COUNT_ALERTS = sql(f"SELECT count(*) FROM ({_RESOLVED}) a")
_RESOLVED_IDS = sql(_RESOLVED)
_DELETE_ALERT_EVENTS = sql(lambda d: f"DELETE FROM alert_events WHERE {d.in_ids('alert_id', 'ids')}")
_DELETE_ALERTS = sql(lambda d: f"DELETE FROM alerts WHERE {d.in_ids('id', 'ids')}")
_TIMER_INBOX_IDS = sql(
    lambda d: (
        f"SELECT {d.json_field('data', 'inbox_id')}, {d.json_field('data', 'first_inbox_id')} "
        "FROM noise_state WHERE due_at IS NOT NULL"
    )
)
_ALERT_INBOX_IDS = sql("SELECT inbox_id, last_inbox_id FROM alerts WHERE state <> 'resolved'")
COUNT_ROWS = {table: sql(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT :limit) t") for table in STORE_TABLES}
"""Per table: its rows, counted up to ``limit`` (a bounded count: never a full scan of a big table)."""


def prune_events(
    d: Dialect, cutoffs: PruneCutoffs, after: tuple[float, int] | None, limit: int, dry_run: bool
) -> Plan[PruneStep]:
    """Delete (or count) the events of one batch that may go."""
    since, last_id = after if after is not None else (float("-inf"), 0)
    bound = min(cutoffs.events_before, cutoffs.dedup_before)
    scanned = yield _SCAN_EVENTS, {"since": since, "bound": bound, "last_id": last_id, "limit": limit}
    counts = {"inbox": 0, "deliveries": 0, "attempts": 0}
    if scanned:
        candidates = [int(r[0]) for r in scanned]
        if d.row_locks and not dry_run:
            yield _LOCK_DELIVERIES, {"ids": d.ids(candidates)}
        params = {
            "ids": d.ids([i for i in candidates if i not in cutoffs.keep]),
            "events_before": cutoffs.events_before,
            "dedup_before": cutoffs.dedup_before,
            "dead_before": cutoffs.dead_before,
        }
        ids = [int(r[0]) for r in (yield _ELIGIBLE[cutoffs.dead_before is not None], params)]
        if ids:
            for table, statement in _DELETE_EVENTS[dry_run]:
                done = yield statement, {"ids": d.ids(ids)}
                counts[table] = int(done[0][0]) if dry_run else int(done)
    last = scanned[-1] if len(scanned) >= limit else None
    return PruneStep(counts, None if last is None else (float(last[1]), int(last[0])))


def prune_noise_log(
    d: Dialect, before: float, after: tuple[float, int] | None, limit: int, dry_run: bool
) -> Plan[PruneStep]:
    """Delete (or count) the oldest noise decisions recorded before ``before``, up to ``limit``."""
    rows = yield _SCAN_NOISE_LOG, {"after": 0 if after is None else after[1], "limit": limit}
    ids, more = noise_log_run([(int(i), float(at)) for i, at in rows], before, limit)
    if ids and not dry_run:
        yield _DELETE_NOISE_LOG, {"ids": d.ids(ids)}
    return PruneStep({"noise_log": len(ids)}, (0.0, ids[-1]) if more and ids else None)


def prune_silences(before: float, limit: int, dry_run: bool) -> Plan[int]:
    """Delete (or count) up to ``limit`` silences that ended before ``before``."""
    if dry_run:
        rows = yield _COUNT_SILENCES, {"before": before, "limit": limit}
        return int(rows[0][0])
    return int((yield _DELETE_SILENCES, {"before": before, "limit": limit}))


def prune_alerts(d: Dialect, before: float, limit: int, dry_run: bool) -> Plan[dict[str, int]]:
    """Delete (or count) up to ``limit`` alerts resolved before ``before``, with their trails."""
    if dry_run:
        rows = yield _COUNT_ALERTS, {"before": before, "limit": limit}
        return {"alerts": int(rows[0][0]), "alert_events": 0}
    ids = [str(r[0]) for r in (yield _RESOLVED_IDS, {"before": before, "limit": limit})]
    if not ids:
        return {"alerts": 0, "alert_events": 0}
    params = {"ids": json.dumps(sorted(ids)) if not d.index else sorted(ids)}
    trail = yield _DELETE_ALERT_EVENTS, params
    alerts = yield _DELETE_ALERTS, params
    return {"alerts": int(alerts), "alert_events": int(trail)}


def timer_inbox_ids() -> Plan[set[int]]:
    """The events noise timers and open alerts refer to (a group's first event, an absence's arming event...)."""
    # An open alert's reminders and escalations are deliveries about its events: they stay too.
    return _ids((yield _TIMER_INBOX_IDS, {})) | _ids((yield _ALERT_INBOX_IDS, {}))


def _ids(rows: Iterable[tuple[Any, ...]]) -> set[int]:
    """The integers among the values of ``rows`` (ids read out of JSON)."""
    return {int(v) for row in rows for v in row if isinstance(v, int | float) and not isinstance(v, bool)}


def noise_log_run(rows: Sequence[tuple[int, float]], before: float, limit: int) -> tuple[list[int], bool]:
    """The leading rows (by id) recorded before ``before``, and whether older ones may follow.

    The log is written in order of time, so the first recent row ends the run; rows of a replica
    with a slower clock after it are taken at a later run.
    """
    ids: list[int] = []
    for row_id, recorded_at in rows:
        if recorded_at >= before:
            return ids, False
        ids.append(row_id)
    return ids, len(rows) >= limit
