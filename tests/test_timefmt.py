"""receiver.timefmt: the one place times are parsed and formatted."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from receiver.timefmt import format_local, iso_utc, local_text, now_iso_utc, parse_iso, utc_text

AT = 1_772_388_000.0  # 2026-03-01T18:00:00Z


@pytest.mark.parametrize(
    "text",
    ["2026-03-01T18:00:00Z", "2026-03-01T18:00:00z", " 2026-03-01T19:00:00+01:00 ", "2026-03-01T18:00:00"],
)
def test_iso_times_read_as_the_same_moment(text: str) -> None:
    """Z, z, an offset or none (UTC) all name the same moment."""
    assert AT == parse_iso(text).timestamp()


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z", "1772388000"])
def test_what_is_not_iso_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"(?i)isoformat|month"):
        parse_iso(text)


def test_formats() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert "2026-03-01T18:00:00+00:00" == iso_utc(AT)
    assert "2026-03-01 18:00:00" == utc_text(AT)
    assert "2026-03-01 19:00:00 CET" == local_text(AT, berlin)
    assert "19:00" == local_text(AT, berlin, "%H:%M")
    # A naive datetime is UTC; None is empty; other values are their text.
    assert "2026-03-01 19:00:00 CET" == format_local(datetime(2026, 3, 1, 18, 0), berlin)  # noqa: DTZ001 - naive on purpose
    assert "" == format_local(None, berlin)
    assert "42" == format_local(42, berlin)


def test_now_is_utc_to_the_microsecond() -> None:
    before = datetime.now(UTC)
    stamp = now_iso_utc()
    after = datetime.now(UTC)
    assert stamp.endswith("Z")
    assert before <= parse_iso(stamp) <= after
