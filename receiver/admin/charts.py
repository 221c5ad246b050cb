"""The overview's charts as data: events per time slot by result, the top faulting processes and
robots, and the delivery latency per channel, over the last 24 hours or 7 days.

One store query per chart (``ReadStore.event_counts``, ``top_names``, ``delivery_latency``).
Slots are aligned on the rule set's time zone (hours; 6-hour blocks starting at local midnight),
the last one holding now, so the chart's labels are the clock times people on call read. The
results are those of ``receiver.store.CHART_RESULTS``. Delivery latency is the time from a
delivery's creation (the event processed) to the channel accepting it, retries included, for the
deliveries sent in the range: p50 and p95 by nearest rank over each channel's most recent
``LATENCY_SAMPLE`` of them (``ReadStore.delivery_latency``).

What the charts read is kept for ``max_age`` seconds (:class:`ChartCache`): on a store of a
million events the 7-day query takes a while (docs/performance.md), and the page may be
reloaded often.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import tzinfo

from receiver.store import CHART_RESULTS, ChannelLatency, NameCount, ReadStore
from receiver.timefmt import from_unix, local_text

__all__ = ["RANGES", "ChartCache", "ChartRange", "EventChart", "OverviewCharts", "overview_charts"]


@dataclass(frozen=True, slots=True)
class ChartRange:
    """A time range of the overview: its name (``?range=``), slot width, number of slots, label format."""

    name: str
    title: str
    width: float
    slots: int
    label: str
    label_every: int


RANGES: dict[str, ChartRange] = {
    "24h": ChartRange("24h", "last 24 hours", 3600.0, 24, "%H:%M", 3),
    "7d": ChartRange("7d", "last 7 days", 6 * 3600.0, 28, "%a %H:%M", 4),
}
TOP_LIMIT = 8


@dataclass(frozen=True, slots=True)
class EventChart:
    """Events per slot and result: ``counts[result][i]`` for the slot starting at ``starts[i]``.

    ``first_label``: the first slot whose label is drawn (then every ``label_every``-th), so that
    the drawn labels fall on round clock times (midnight for the 7-day view).
    """

    starts: list[float]
    labels: list[str]
    counts: dict[str, list[int]]
    first_label: int = 0

    @property
    def total(self) -> int:
        """Events in the range."""
        return sum(sum(values) for values in self.counts.values())


@dataclass(frozen=True, slots=True)
class OverviewCharts:
    """Everything the overview draws for one range."""

    range: ChartRange
    since: float
    until: float
    events: EventChart
    processes: list[NameCount]
    robots: list[NameCount]
    latency: list[ChannelLatency]
    read_at: float


def _first_slot(now: float, chart: ChartRange, zone: tzinfo) -> float:
    """The start of the first slot, so that the last one holds ``now`` and slots begin on local clock times."""
    from_local = _utc_offset(now, zone)
    current = math.floor((now + from_local) / chart.width) * chart.width - from_local
    return current - (chart.slots - 1) * chart.width


def _first_label(starts: list[float], chart: ChartRange, zone: tzinfo) -> int:
    """The first slot that starts on a multiple of ``label_every`` slots after local midnight."""
    step = chart.width * chart.label_every
    for i, start in enumerate(starts[: chart.label_every]):
        if (start + _utc_offset(start, zone)) % step == 0:
            return i
    return 0


def _utc_offset(now: float, zone: tzinfo) -> float:
    offset = from_unix(now).astimezone(zone).utcoffset()
    return 0.0 if offset is None else offset.total_seconds()


async def overview_charts(store: ReadStore, *, now: float, zone: tzinfo, chart: ChartRange) -> OverviewCharts:
    """Read the overview's charts for ``chart``'s range ending now.

    Args:
        store: where to read.
        now: the current Unix time.
        zone: the time zone of the slot labels and boundaries (the rule set's).
        chart: which range (``RANGES``).

    Raises:
        StoreError: the store could not be read.
    """
    since = _first_slot(now, chart, zone)
    rows = await store.event_counts(since=since, width=chart.width, slots=chart.slots)
    counts = {result: [0] * chart.slots for result in CHART_RESULTS}
    for row in rows:
        counts[row.result][row.slot] += row.count
    starts = [since + i * chart.width for i in range(chart.slots)]
    labels = [local_text(s, zone, chart.label) for s in starts]
    events = EventChart(starts, labels, counts, _first_label(starts, chart, zone))
    # The lists cover the same span as the slots: from the first slot's start to now.
    processes = await store.top_names("process", since=since, until=now, limit=TOP_LIMIT)
    robots = await store.top_names("robot", since=since, until=now, limit=TOP_LIMIT)
    latency = await store.delivery_latency(since=since, until=now)
    return OverviewCharts(chart, since, now, events, processes, robots, latency, now)


class ChartCache:
    """The overview's charts per range, read at most once per ``max_age`` seconds; callers share one read."""

    def __init__(self, *, max_age: float = 60.0) -> None:
        self._max_age = max_age
        self._charts: dict[str, tuple[float, OverviewCharts]] = {}
        self._lock = asyncio.Lock()

    async def get(self, store: ReadStore, *, now: float, zone: tzinfo, chart: ChartRange) -> OverviewCharts:
        """The charts of ``chart``'s range, read again when older than ``max_age``.

        Raises:
            StoreError: the store could not be read.
        """
        async with self._lock:
            kept = self._charts.get(chart.name)
            if kept is None or time.monotonic() - kept[0] >= self._max_age:
                kept = (time.monotonic(), await overview_charts(store, now=now, zone=zone, chart=chart))
                self._charts[chart.name] = kept
            return kept[1]
