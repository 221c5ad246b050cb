"""The overview's chart data (``receiver.admin.charts``): where the slots and their drawn labels fall."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from receiver.admin.charts import RANGES, overview_charts
from receiver.store import open_store

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 6, 7, 14, tzinfo=UTC).timestamp()  # a Sunday morning


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/New_York"])
async def test_drawn_labels_fall_on_round_clock_times(tmp_path: Path, zone: str) -> None:
    """The 7-day view labels local midnights, the 24-hour view the hours that are multiples of 3."""
    store = open_store(f"sqlite:///{tmp_path / 'receiver.db'}")
    await store.open()
    try:
        week = await overview_charts(store, now=NOW, zone=ZoneInfo(zone), chart=RANGES["7d"])
        day = await overview_charts(store, now=NOW, zone=ZoneInfo(zone), chart=RANGES["24h"])
    finally:
        await store.close()
    drawn = week.events.labels[week.events.first_label :: RANGES["7d"].label_every]
    assert 7 == len(drawn)
    assert all(label.endswith(" 00:00") for label in drawn), drawn
    hours = day.events.labels[day.events.first_label :: RANGES["24h"].label_every]
    assert 8 == len(hours)
    assert all(int(label[:2]) % 3 == 0 for label in hours), hours
