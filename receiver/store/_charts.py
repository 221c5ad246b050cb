"""The overview's chart queries, written once for both stores: one statement per chart.

Times are Unix seconds on both databases (SQLite REAL, PostgreSQL float8), so a time slot is
the whole part of ``(received_at - since) / width``; only how that whole part is taken differs
(``Dialect.whole``). Each statement reads one time range through indexes and aggregates in the
database, so a page costs one round trip per chart whatever the traffic
(figures in docs/performance.md, "The overview's charts").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from receiver.store import CHART_RESULTS, FAULT_TYPES, ChannelLatency, NameCount, ResultCount
from receiver.store._plans import Plan
from receiver.store.sql import sql

__all__ = ["delivery_latency", "event_counts", "top_names"]

_FAULTS = ", ".join(f"'{t}'" for t in FAULT_TYPES)

# Events per slot and result without a probe per event: most events have no delivery and no
# noise decision, and a probe of deliveries and of noise_log for each one cost 3-5 µs per event
# (seconds for a week of a million events). Instead: the events per slot (an index range count
# per slot), the unparsed ones per slot, and the few events with deliveries or a suppression,
# found from those tables within the range's inbox ids and slotted by their event's arrival.
# ``event_counts`` sums them up: "other" is what is left of the total. The range's ids are read
# as ``id + 0`` so that PostgreSQL reads them through the time index rather than walking the
# primary key up from the oldest event to the first one in range (its min/max shortcut).
_SLOT_RANGE = "received_at >= :since + s.n * :width AND received_at < :since + (s.n + 1) * :width"
_EVENT_COUNTS = sql(
    lambda d: (
        "WITH RECURSIVE s (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < :slots), "
        "span AS (SELECT min(id + 0) AS lo, max(id + 0) AS hi FROM inbox "
        "WHERE received_at >= :since AND received_at < :until), "
        "sent AS (SELECT d.inbox_id, min(CASE WHEN d.state = 'dead' OR (d.state = 'pending' AND d.attempts > 0) "
        "THEN 'failed' ELSE 'notified' END) AS result FROM deliveries d "
        "WHERE d.inbox_id >= (SELECT lo FROM span) AND d.inbox_id <= (SELECT hi FROM span) GROUP BY d.inbox_id), "
        "held AS (SELECT DISTINCT n.inbox_id FROM noise_log n "
        "WHERE n.inbox_id >= (SELECT lo FROM span) AND n.inbox_id <= (SELECT hi FROM span) AND n.suppressed = {true} "
        "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.inbox_id = n.inbox_id)), "
        "marked AS (SELECT inbox_id, result FROM sent UNION ALL SELECT inbox_id, 'suppressed' FROM held) "
        f"SELECT s.n, 'total', (SELECT count(*) FROM inbox WHERE {_SLOT_RANGE}) FROM s "
        "UNION ALL SELECT s.n, 'unparsed', "
        f"(SELECT count(*) FROM inbox WHERE {_SLOT_RANGE} AND state = 'unparsed') FROM s "
        f"UNION ALL SELECT {d.whole('(i.received_at - :since) / :width')}, m.result, count(*) "
        "FROM marked m JOIN inbox i ON i.id = m.inbox_id "
        "WHERE i.received_at >= :since AND i.received_at < :until AND i.state <> 'unparsed' GROUP BY 1, 2"
    )
)
_TOP_NAMES = {
    column: sql(
        f"SELECT {column}, count(*) AS n FROM inbox "
        f"WHERE received_at >= :since AND received_at < :until AND type IN ({_FAULTS}) AND {column} IS NOT NULL "
        f"GROUP BY {column} ORDER BY n DESC, {column} LIMIT :limit"
    )
    for column in ("process", "robot")
}
# Nearest-rank percentiles (the value at rank ceil(p * n)) from one sort per channel: both
# databases have the window functions (one window, so one sort), and integer division rounds the
# rank down on both. Only a sent delivery has a sent_at (a retry resets only unsent ones), so the
# range alone picks them.
_LATENCY = sql(
    "SELECT channel, n, k, latency FROM ("
    "SELECT channel, sent_at - created_at AS latency, "
    "row_number() OVER w AS k, count(*) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS n "
    "FROM deliveries WHERE sent_at >= :since AND sent_at < :until "
    "WINDOW w AS (PARTITION BY channel ORDER BY sent_at - created_at)) AS r "
    "WHERE k = (n * 50 + 99) / 100 OR k = (n * 95 + 99) / 100 OR k = n "
    "ORDER BY channel, k"
)


def event_counts(since: float, width: float, slots: int) -> Plan[list[ResultCount]]:
    """Events per time slot and result (see ``ReadStore.event_counts``).

    A slot ``n`` is ``[since + n * width, since + (n + 1) * width)``; with whole-second ``since``
    and ``width`` (as the overview asks) every part of the statement draws the same boundaries.
    """
    rows = yield _EVENT_COUNTS, {"since": since, "width": width, "slots": slots, "until": since + width * slots}
    found: dict[tuple[int, str], int] = {}
    for slot, kind, n in rows:
        if 0 <= int(slot) < slots:
            found[int(slot), str(kind)] = found.get((int(slot), str(kind)), 0) + int(n)
    counts = []
    for slot in range(slots):
        per = {r: found.get((slot, r), 0) for r in ("failed", "notified", "suppressed")}
        per["failed"] += found.get((slot, "unparsed"), 0)
        per["other"] = max(0, found.get((slot, "total"), 0) - sum(per.values()))
        counts += [ResultCount(slot, r, per[r]) for r in CHART_RESULTS if per[r]]
    return counts


def top_names(column: Literal["process", "robot"], since: float, until: float, limit: int) -> Plan[list[NameCount]]:
    """The processes or robots with the most faults (see ``ReadStore.top_names``)."""
    rows = yield _TOP_NAMES[column], {"since": since, "until": until, "limit": limit}
    return [NameCount(str(name), int(n)) for name, n in rows]


def delivery_latency(since: float, until: float) -> Plan[list[ChannelLatency]]:
    """Per channel, p50, p95 and the maximum of ``sent_at - created_at`` (see ``ReadStore.delivery_latency``)."""
    rows: Sequence[tuple[str, int, int, float]] = yield _LATENCY, {"since": since, "until": until}
    picked: dict[str, dict[int, float]] = {}
    sizes: dict[str, int] = {}
    for channel, n, k, latency in rows:
        picked.setdefault(str(channel), {})[int(k)] = max(0.0, float(latency))
        sizes[str(channel)] = int(n)
    result = []
    for channel, by_rank in picked.items():
        n = sizes[channel]
        result.append(
            ChannelLatency(
                channel,
                n,
                p50=by_rank[_rank(n, 50)],
                p95=by_rank[_rank(n, 95)],
                max=by_rank[n],
            )
        )
    return result


def _rank(n: int, percent: int) -> int:
    """The nearest rank of ``percent`` among ``n`` values, as the statement computes it."""
    return (n * percent + 99) // 100
