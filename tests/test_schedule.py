"""When a maintenance window starts and stops (``Schedule.changes``), and the windows as the web page shows them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from receiver.admin.silencing import maintenance_windows
from receiver.rules import load_rules

BERLIN = ZoneInfo("Europe/Berlin")
DAY = 86400.0


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def rules_with(tmp_path: Path, silences: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "timezone: Europe/Berlin\nchannels:\n  ops: 'log://'\n"
        f"silences:\n{silences}\nrules:\n  - name: r\n    match: {{type: job.faulted}}\n    notify: [ops]\n"
    )
    return path


def windows(tmp_path: Path, silences: str, now: float) -> dict[str, tuple[bool, float | None, float | None]]:
    ruleset = load_rules(rules_with(tmp_path, silences), environ={})
    return {w.name: (w.active, w.ends_at, w.starts_at) for w in maintenance_windows(ruleset, now=now)}


SUNDAY_NIGHT = "  - name: sunday\n    weekly: [{days: sun, from: '02:00', to: '04:00'}]"
WEEKNIGHTS = "  - name: nights\n    weekly: [{days: mon-fri, from: '22:00', to: '02:00'}]"
ALWAYS = "  - name: always\n    weekly: [{days: [mon-sun], from: '00:00', to: '24:00'}]"


@pytest.mark.parametrize(
    ("silences", "now", "expected"),
    [
        pytest.param(SUNDAY_NIGHT, "2026-12-06T03:00", (True, "2026-12-06T04:00", None), id="in-force-until-its-end"),
        pytest.param(SUNDAY_NIGHT, "2026-12-06T04:00", (False, None, "2026-12-13T02:00"), id="just-ended-next-week"),
        pytest.param(SUNDAY_NIGHT, "2026-12-05T12:00", (False, None, "2026-12-06T02:00"), id="upcoming-tomorrow"),
        pytest.param(WEEKNIGHTS, "2026-12-08T23:30", (True, "2026-12-09T02:00", None), id="overnight-ends-next-day"),
        pytest.param(WEEKNIGHTS, "2026-12-12T10:00", (False, None, "2026-12-14T22:00"), id="after-the-weekend"),
        pytest.param(ALWAYS, "2026-12-08T10:00", (True, None, None), id="never-ends-within-a-week"),
        pytest.param(
            "  - name: dst\n    weekly: [{days: sun, from: '01:00', to: '05:00'}]",
            "2026-03-28T12:00",
            (False, None, "2026-03-29T01:00"),
            id="spring-forward-night",
        ),
    ],
)
def test_window_state(tmp_path: Path, silences: str, now: str, expected: tuple[bool, str | None, str | None]) -> None:
    """In force with its end, or not with its next start, within the 7-day look-ahead."""
    active, ends, starts = expected
    ((_, found),) = windows(tmp_path, silences, at(now)).items()
    assert (active, None if ends is None else at(ends), None if starts is None else at(starts)) == found


def test_date_ranges_and_the_look_ahead(tmp_path: Path) -> None:
    """A date range ends at the end of its last day; one starting beyond 7 days has no next start."""
    silences = (
        "  - name: holidays\n    dates: [{from: 2026-12-24, to: 2026-12-26}]\n"
        "  - name: new-year\n    dates: [{from: 2027-01-01, to: 2027-01-01}]"
    )
    found = windows(tmp_path, silences, at("2026-12-25T10:00"))
    assert (True, at("2026-12-27T00:00"), None) == found["holidays"]
    assert (False, None, at("2027-01-01T00:00")) == found["new-year"]
    assert (False, None, None) == windows(tmp_path, silences, at("2026-12-01T10:00"))["new-year"]


def test_changes_lists_every_start_and_stop(tmp_path: Path) -> None:
    """Over two weeks, a Sunday window starts and stops twice, in order."""
    ruleset = load_rules(rules_with(tmp_path, SUNDAY_NIGHT), environ={})
    (window,) = ruleset.silences
    changes = window.schedule.changes(at("2026-12-01T00:00"), at("2026-12-15T00:00"))
    assert [
        (at("2026-12-06T02:00"), True),
        (at("2026-12-06T04:00"), False),
        (at("2026-12-13T02:00"), True),
        (at("2026-12-13T04:00"), False),
    ] == changes
