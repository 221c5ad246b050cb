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

from receiver.store import CHART_RESULTS, FAULT_TYPES, LATENCY_SAMPLE, ChannelLatency, NameCount, ResultCount
from receiver.store._plans import Plan
from receiver.store.sql import sql

__all__ = ["delivery_latency", "event_counts", "top_names"]

_FAULTS = ", ".join(f"'{t}'" for t in FAULT_TYPES)

# Events per slot and result without a probe per event: most events have no delivery and no
# noise decision. The events per slot are counted over the time index (a range count per slot,
# the cheapest read there is), the unparsed ones over their partial index, and only the events
# with deliveries or a suppression are slotted one by one: found in those tables from the range's
# first inbox id on, then looked up in ``inbox_arrival`` (id, received_at: a narrow index, not the
# wide rows) for their arrival. Which of them failed is read through the partial indexes of dead
# and pending deliveries (few rows), not from every delivery's state. ``event_counts`` sums it up:
# "other" is what is left of the total. The range's first id is read as ``min(id + 0)`` so that
# PostgreSQL reads it through the time index rather than walking the primary key up from the
# oldest event (its min/max shortcut); ``inbox_id + 0`` keeps the dead and failing deliveries on
# their partial indexes; SQLite is told the narrow index by name (it would look the id up in the
# table, whose rows hold the bodies).
_SLOT_RANGE = "received_at >= :since + s.n * :width AND received_at < :since + (s.n + 1) * :width"
_EVENT_COUNTS = sql(
    lambda d: (
        "WITH RECURSIVE s (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < :slots), "
        "span AS (SELECT min(id + 0) AS lo FROM inbox WHERE received_at >= :since AND received_at < :until), "
        "failing AS (SELECT inbox_id FROM deliveries WHERE state = 'dead' AND inbox_id + 0 >= (SELECT lo FROM span) "
        "UNION SELECT inbox_id FROM deliveries "
        "WHERE state = 'pending' AND attempts > 0 AND inbox_id + 0 >= (SELECT lo FROM span)), "
        "sent AS (SELECT DISTINCT inbox_id FROM deliveries WHERE inbox_id >= (SELECT lo FROM span)), "
        "held AS (SELECT DISTINCT n.inbox_id FROM noise_log n "
        "WHERE n.suppressed = {true} AND n.inbox_id >= (SELECT lo FROM span) "
        "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.inbox_id = n.inbox_id)), "
        "unparsed AS (SELECT id FROM inbox "
        "WHERE state = 'unparsed' AND received_at >= :since AND received_at < :until), "
        "marked AS (SELECT inbox_id, "
        "CASE WHEN inbox_id IN (SELECT inbox_id FROM failing) THEN 'failed' ELSE 'notified' END AS result FROM sent "
        "UNION ALL SELECT inbox_id, 'suppressed' FROM held) "
        f"SELECT s.n, 'total', (SELECT count(*) FROM inbox WHERE {_SLOT_RANGE}) FROM s "
        "UNION ALL SELECT s.n, 'unparsed', "
        f"(SELECT count(*) FROM inbox WHERE {_SLOT_RANGE} AND state = 'unparsed') FROM s "
        f"UNION ALL SELECT {d.whole('(i.received_at - :since) / :width')}, m.result, count(*) "
        f"FROM marked m JOIN inbox i {'' if d.index else 'INDEXED BY inbox_arrival'} ON i.id = m.inbox_id "
        "WHERE i.received_at >= :since AND i.received_at < :until "
        "AND m.inbox_id NOT IN (SELECT id FROM unparsed) GROUP BY 1, 2"
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
# Per channel (found by a skip scan of ``deliveries_latency``: one index seek per channel): the
# count and the slowest of the range, exact (index range reads); p50 and p95 by nearest rank (the
# value at rank ceil(p * n), integer division rounding down on both databases) over the channel's
# most recent ``:sample`` sent deliveries of the range (those sent at or after the sample-th newest
# one's time), ranked with one window over at most that many rows per channel: ranking all of a
# week's deliveries cost 3 µs each. With fewer in the range than the sample, the figures are exact.
_CHANNEL_RANGE = "d.channel = ch.channel AND d.sent_at >= :since AND d.sent_at < :until"
_LATENCY = sql(
    "WITH RECURSIVE ch (channel) AS ("
    "SELECT min(channel) FROM deliveries WHERE sent_at IS NOT NULL "
    "UNION ALL SELECT (SELECT min(d.channel) FROM deliveries d WHERE d.sent_at IS NOT NULL AND d.channel > ch.channel) "
    "FROM ch WHERE ch.channel IS NOT NULL), "
    "per AS (SELECT ch.channel, "
    f"(SELECT count(*) FROM deliveries d WHERE {_CHANNEL_RANGE}) AS n, "
    f"(SELECT max(d.sent_at - d.created_at) FROM deliveries d WHERE {_CHANNEL_RANGE}) AS slowest, "
    f"coalesce((SELECT d.sent_at FROM deliveries d WHERE {_CHANNEL_RANGE} "
    "ORDER BY d.sent_at DESC LIMIT 1 OFFSET :skip), :since) AS cut "
    "FROM ch WHERE ch.channel IS NOT NULL), "
    "sample AS (SELECT d.channel, d.sent_at - d.created_at AS latency FROM per JOIN deliveries d "
    "ON d.channel = per.channel AND d.sent_at >= per.cut AND d.sent_at < :until WHERE per.n > 0) "
    "SELECT r.channel, per.n, per.slowest, r.m, r.k, r.latency FROM ("
    "SELECT channel, latency, row_number() OVER w AS k, "
    "count(*) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS m "
    "FROM sample WINDOW w AS (PARTITION BY channel ORDER BY latency)) AS r JOIN per ON per.channel = r.channel "
    "WHERE r.k = (r.m * 50 + 99) / 100 OR r.k = (r.m * 95 + 99) / 100 "
    "ORDER BY r.channel, r.k"
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


def delivery_latency(since: float, until: float, sample: int = LATENCY_SAMPLE) -> Plan[list[ChannelLatency]]:
    """Per channel, p50, p95 and the maximum of ``sent_at - created_at`` (see ``ReadStore.delivery_latency``)."""
    rows: Sequence[tuple[str, int, float, int, int, float]] = yield (
        _LATENCY,
        {"since": since, "until": until, "skip": max(0, sample - 1)},
    )
    picked: dict[str, dict[int, float]] = {}
    sizes: dict[str, tuple[int, float, int]] = {}
    for channel, n, slowest, m, k, latency in rows:
        picked.setdefault(str(channel), {})[int(k)] = max(0.0, float(latency))
        sizes[str(channel)] = (int(n), max(0.0, float(slowest)), int(m))
    result = []
    for channel, by_rank in picked.items():
        n, slowest, m = sizes[channel]
        result.append(ChannelLatency(channel, n, p50=by_rank[_rank(m, 50)], p95=by_rank[_rank(m, 95)], max=slowest))
    return result


def _rank(n: int, percent: int) -> int:
    """The nearest rank of ``percent`` among ``n`` values, as the statement computes it."""
    return (n * percent + 99) // 100
