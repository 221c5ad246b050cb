"""The overview's chart queries, written once for both stores: one aggregate statement per chart.

Times are Unix seconds on both databases (SQLite REAL, PostgreSQL float8), so a time slot is
the whole part of ``(received_at - since) / width``; only how that whole part is taken differs
(``Dialect.whole``). Each statement reads one time range through an index on its time column
and aggregates in the database, so a page costs one round trip per chart whatever the traffic
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

# The result of one inbox row, in CHART_RESULTS's order of precedence: its deliveries (one probe
# of deliveries_inbox), then a suppression in the noise log (one probe of noise_log_inbox).
_RESULT = (
    "CASE WHEN i.state = 'unparsed' THEN 'failed' "
    "ELSE coalesce((SELECT min(CASE WHEN d.state = 'dead' OR (d.state = 'pending' AND d.attempts > 0) "
    "THEN 'failed' ELSE 'notified' END) FROM deliveries d WHERE d.inbox_id = i.id), "
    "CASE WHEN EXISTS (SELECT 1 FROM noise_log n WHERE n.inbox_id = i.id AND n.suppressed = {true}) "
    "THEN 'suppressed' ELSE 'other' END) END"
)
_EVENT_COUNTS = sql(
    lambda d: (
        "SELECT slot, result, count(*) FROM ("
        f"SELECT {d.whole('(i.received_at - :since) / :width')} AS slot, {_RESULT} AS result "
        "FROM inbox i WHERE i.received_at >= :since AND i.received_at < :until) AS e "
        "GROUP BY slot, result"
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
    """Events per time slot and result (see ``ReadStore.event_counts``)."""
    rows = yield _EVENT_COUNTS, {"since": since, "width": width, "until": since + width * slots}
    counts = [ResultCount(int(slot), str(result), int(n)) for slot, result, n in rows]
    # A float's rounding can put a row received just before ``until`` into slot ``slots``.
    return sorted(
        (c for c in counts if 0 <= c.slot < slots and c.result in CHART_RESULTS),
        key=lambda c: (c.slot, CHART_RESULTS.index(c.result)),
    )


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
