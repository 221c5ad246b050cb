"""Retention as SQL, shared by both stores (they differ in placeholders and in "column in this list").

An event is pruned as a unit: its attempts, then its deliveries, then its inbox row, in one
transaction. Which events may go is decided by one statement (``eligible_sql``), re-evaluated
inside the deleting transaction, so a delivery re-driven meanwhile keeps its event.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from receiver.store import PruneCutoffs
from receiver.store._queries import Dialect

__all__ = [
    "delete_sql",
    "eligible_sql",
    "noise_log_run",
    "scan_events_params",
    "scan_events_sql",
]


def scan_events_sql(d: Dialect) -> str:
    """Inbox rows old enough to be looked at, after a (received_at, id) position, oldest first.

    On the ``inbox_received`` index: each batch reads only the rows it returns, and rows that
    must stay (pending, dead, replay window) are passed over once per run, not once per batch.
    """
    p = d.param
    return (
        f"SELECT id, received_at FROM inbox WHERE received_at >= {p} AND received_at < {p} "
        f"AND NOT (received_at = {p} AND id <= {p}) ORDER BY received_at, id LIMIT {p}"
    )


def scan_events_params(cutoffs: PruneCutoffs, after: tuple[float, int] | None, limit: int) -> list[object]:
    """The parameters of ``scan_events_sql``."""
    since, last_id = after if after is not None else (float("-inf"), 0)
    return [since, min(cutoffs.events_before, cutoffs.dedup_before), since, last_id, limit]


def eligible_sql(d: Dialect, cutoffs: PruneCutoffs, ids: Collection[int]) -> tuple[str, list[object]]:
    """Of ``ids``, the events that may go now (see ``PruneCutoffs``), and the statement's parameters."""
    p = d.param
    where, ids_param = d.in_list("i.id", [i for i in ids if i not in cutoffs.keep])
    final = f"(d.state = 'sent' AND coalesce(d.sent_at, d.created_at) < {p})"
    params: list[object] = [ids_param, cutoffs.events_before, cutoffs.events_before, cutoffs.dedup_before]
    params += [cutoffs.dedup_before, cutoffs.events_before]
    if cutoffs.dead_before is not None:
        final += f" OR (d.state = 'dead' AND d.budget_since < {p})"
        params.append(cutoffs.dead_before)
    sql = (
        f"SELECT i.id FROM inbox i WHERE {where} AND i.state <> 'new' "
        f"AND i.received_at < {p} AND coalesce(i.processed_at, i.received_at) < {p} "
        # The replay window: the EventId stays a duplicate while a replay's Timestamp would still pass.
        f"AND i.received_at < {p} AND (i.event_time IS NULL OR i.event_time < {p}) "
        f"AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.inbox_id = i.id AND NOT ({final})) "
        "ORDER BY i.id"
    )
    return sql, params


def delete_sql(d: Dialect, ids: Sequence[int], *, dry_run: bool) -> list[tuple[str, str, object]]:
    """(table, statement, its one parameter) that delete (or count) ``ids``' attempts, deliveries and events.

    In this order, so no foreign key is ever broken inside the transaction.
    """
    by_event, param = d.in_list("inbox_id", ids)
    by_id, _ = d.in_list("id", ids)
    targets = [
        ("attempts", f"attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE {by_event})"),
        ("deliveries", f"deliveries WHERE {by_event}"),
        ("inbox", f"inbox WHERE {by_id}"),
    ]
    verb = "SELECT count(*) FROM" if dry_run else "DELETE FROM"
    return [(table, f"{verb} {rest}", param) for table, rest in targets]


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
