"""The web page end to end, in a real headless Chromium against a real ``receiver serve`` process.

Chromium is Debian's package (``/usr/bin/chromium``), driven by the ``playwright`` Python package
(never ``playwright install``: no browser is downloaded). ``.ci/run`` installs it; when it is
missing the test is skipped with the reason, except in CI (``CI`` set), where it fails.

What a person in a hurry does: log in, find the event just posted, retry a dead delivery, silence
the noisy process. Screenshots of each page go to the test's ``tmp_path``.

The overview's charts on a store filled with a few thousand events
(``test_overview_charts_of_a_filled_store``): the SQLite file is filled through the store's own
methods before ``receiver serve`` starts, with events over the last 7 days and mixed results
(notified, failed, suppressed, nothing to send, unparsed), faulting processes and robots with a
skew, and deliveries sent after known latencies on two channels that the rules do not name (so the
running dispatcher leaves them as they are). The test reads the charts as a person would see them:
each hour's bars hold the seeded counts and their heights are proportional to them, the top
processes come in order, the latency chart has each channel's nearest-rank p50 and p95, and the
page logs no error (a Content-Security-Policy violation would be one). Screenshots of the overview
(24 h and ``?range=7d``) go to ``tmp_path`` (their paths are printed); with
``RECEIVER_UPDATE_SCREENSHOTS=1`` the top of each also replaces ``docs/images/overview-24h.png``
and ``overview-7d.png``, the pictures the docs show.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import shutil
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import ServerProcess, free_port, fresh

from receiver.store import InboxItem, NewDelivery, NoiseLogEntry, NoiseWrite, Processed, open_store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECRET = "browser-secret"
ADMIN = "browser-admin-token-5d1f"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _unavailable(reason: str) -> None:
    """Skip with the reason, or fail in CI, where the browser test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's Chromium (``.ci/run`` installs it)."""
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is missing (install it: apt-get install -y chromium chromium-driver)")
    return CHROMIUM


@pytest.fixture(scope="session")
def playwright_api() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing: pip install -e '.[test]'")
    return sync_playwright


RULES = """
timezone: UTC
channels:
  ops: "log://"
  pager:
    url: "json://127.0.0.1:{closed_port}/hook"
    max_attempts: 1
    timeout: 5s
rules:
  - name: faulted-jobs
    description: A job faulted
    match: {{type: job.faulted}}
    notify: [ops, pager]
  - name: ignore-completed
    match: {{type: job.completed}}
    notify: []
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(closed_port=free_port()))
    process = ServerProcess(
        rules=rules,
        database=tmp_path / "receiver.db",
        env={"RECEIVER_WEBHOOK_SECRET": SECRET, "RECEIVER_ADMIN_TOKEN": ADMIN, "RECEIVER_WATCH_RULES": "false"},
    ).start()
    yield process
    process.stop()


def admin_get(server: ServerProcess, path: str) -> Any:
    request = urllib.request.Request(f"{server.base}{path}", headers={"Authorization": f"Bearer {ADMIN}"})  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback
        return json.loads(reply.read())


def wait_until(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_log_in_see_event_retry_dead_delivery_and_silence(
    server: ServerProcess, chromium: str, playwright_api: Any, tmp_path: Path
) -> None:
    """Log in with the token, see the event just posted, retry its dead delivery, add a silence."""
    assert 202 == server.post_signed(fresh("job.faulted.json"), SECRET)[0]
    assert 202 == server.post_signed(fresh("job.completed.json"), SECRET)[0]
    assert wait_until(lambda: len(admin_get(server, "/api/deliveries?state=dead")["deliveries"]) == 1), server.log()
    (dead,) = admin_get(server, "/api/deliveries?state=dead")["deliveries"]

    with playwright_api() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.goto(f"{server.base}/ui")
            assert page.url.startswith(f"{server.base}/ui/login")
            page.screenshot(path=str(tmp_path / "login.png"))
            page.fill("#token", "not-the-token")
            page.click("button[type=submit]")
            assert "not the admin token" in page.inner_text("main")
            page.fill("#token", ADMIN)
            page.click("button[type=submit]")
            assert f"{server.base}/ui" == page.url

            # The event just posted, and what became of it.
            recent = page.locator("table:not(.store)").last  # the recent events, above the store's rows
            assert "job.faulted" in recent.inner_text()
            assert "InvoiceProcessing" in recent.inner_text()
            assert "dead" in recent.inner_text()
            page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

            # The charts: inline SVG, drawn and styled under the CSP (a violation is a console error).
            charts = page.locator("svg.chart")
            assert 4 == charts.count()
            events_chart = charts.first
            assert "Events per hour, last 24 hours, by result" == events_chart.locator("title").first.text_content()
            bars = [t.text_content() or "" for t in events_chart.locator("rect > title").all()]
            assert any(t.endswith(": 1 failed") for t in bars), bars  # the fault whose pager delivery died
            assert any(t.endswith(": 1 nothing to send") for t in bars), bars  # the completed job
            fill = events_chart.locator("rect.s-notified, rect.s-other").first.evaluate("e => getComputedStyle(e).fill")
            assert fill not in ("", "none", "rgb(0, 0, 0)"), fill  # coloured by the stylesheet
            assert "InvoiceProcessing" in charts.nth(1).text_content()
            assert [] == [m for m in console if "Content Security Policy" in m], console

            # The event page explains it.
            page.click("text=job.faulted")
            assert "faulted-jobs" in page.inner_text("main")
            assert "Why each rule did or did not match" in page.inner_text("main")
            page.screenshot(path=str(tmp_path / "event.png"), full_page=True)

            # Retry the dead delivery from the overview.
            page.click("nav >> text=Overview")
            page.click(f"[aria-label='Retry delivery {dead['id']}']")
            assert f"Delivery {dead['id']} is due again" in page.inner_text(".flash")
            assert wait_until(lambda: len(admin_get(server, f"/api/deliveries/{dead['id']}")["attempt_log"]) == 2), (
                server.log()
            )

            # Silence the process.
            page.click("nav >> text=Silences")
            page.fill("input[name=matchers]", "process=InvoiceProcessing")
            page.fill("input[name=duration]", "2h")
            page.fill("input[name=comment]", "month-end close, known issue")
            page.fill("input[name=created_by]", "ana")
            page.click("text=Add silence")
            assert "added" in page.inner_text(".flash")
            assert "process=InvoiceProcessing" in page.inner_text("table")
            page.screenshot(path=str(tmp_path / "silences.png"), full_page=True)

            page.click("nav >> text=Events")
            page.fill("input[name=type]", "job.*")
            page.click("text=Filter")
            assert "job.completed" in page.inner_text("table")
            assert "job.faulted" in page.inner_text("table")
            page.screenshot(path=str(tmp_path / "events.png"), full_page=True)

            page.click("nav >> text=Deliveries")
            page.click("nav.tabs >> text=Dead")
            dead_rows = page.locator("table tbody tr")
            assert 1 == dead_rows.count(), page.inner_text("main")  # retried, failed again: dead once more
            assert "pager" in dead_rows.first.inner_text()
            assert "ops" not in dead_rows.first.inner_text()
            page.screenshot(path=str(tmp_path / "deliveries.png"), full_page=True)
            page.click("nav >> text=Rules")
            rules_page = page.inner_text("main")
            assert "faulted-jobs" in rules_page
            assert "A job faulted" in rules_page
            assert "ignore-completed" in rules_page
            page.screenshot(path=str(tmp_path / "rules.png"), full_page=True)
            assert [] == [m for m in console if "Content Security Policy" in m], console
        finally:
            browser.close()

    (silence,) = admin_get(server, "/api/silences")["silences"]
    assert (["process=InvoiceProcessing"], "ana", "active") == (
        silence["matchers"],
        silence["created_by"],
        silence["state"],
    )
    assert ADMIN not in server.log()


HOUR = 3600.0
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
CHART_RULES = """
timezone: UTC
channels:
  ops: "log://"
rules:
  - name: faulted-jobs
    match: {type: job.faulted}
    notify: [ops]
"""
# Faults per process: the top list must come out in this order (most first).
PROCESSES = ["InvoiceProcessing", "PayrollRun", "VendorOnboarding", "ClaimsIntake", "StockSync"]
ROBOTS = ["ROBOT-FIN-01", "ROBOT-FIN-02", "ROBOT-HR-01"]
CHANNELS = {"slack-ops": 0.2, "teams-oncall": 1.5}  # channel: its fastest latency in seconds


@dataclass(frozen=True)
class Event:
    at: float
    result: str  # failed, notified, suppressed, other, unparsed
    process: str


def _events(now: float) -> list[Event]:
    """A few thousand events over 7 days, more in the last 24 hours, each hour's count different."""
    rng = random.Random(24)  # noqa: S311 - made-up data, the same every run
    skew = [12, 7, 4, 2, 1]
    events = []
    current = now // HOUR * HOUR
    for hours_ago in range(1, 7 * 24 - 7):  # whole past hours, clear of the 7-day view's first slot
        start = current - hours_ago * HOUR
        count = 20 + (hours_ago * 37) % 55 if hours_ago < 23 else 4 + hours_ago % 9
        for n in range(count):
            at = start + 60 + (HOUR - 120) * n / count  # clear of the hour's edges
            result = rng.choices(["notified", "failed", "suppressed", "other", "unparsed"], [45, 8, 15, 30, 2])[0]
            events.append(Event(at, result, rng.choices(PROCESSES, skew)[0]))
    return sorted(events, key=lambda e: e.at)  # stored oldest first, as they would arrive


async def _fill(database: Path, events: list[Event]) -> list[tuple[str, float, float]]:
    """Store each event and what became of it, through the store's own methods; (channel, sent_at, latency) sent."""
    sent = []
    store = open_store(f"sqlite:///{database}")
    await store.open()
    try:
        for first in range(0, len(events), 200):
            chunk = events[first : first + 200]
            ids = [
                (await store.accept(InboxItem("uipath", f"ev-{first + n}", _type(e), b"{}", received_at=e.at))).inbox_id
                for n, e in enumerate(chunk)
            ]
            await store.claim_inbox(limit=len(chunk), now=chunk[-1].at, lease=600)
            processed, log = [], []
            for inbox_id, e in zip(ids, chunk, strict=True):
                deliveries = [] if e.result in ("other", "suppressed", "unparsed") else _deliveries(e)
                state = "unparsed" if e.result == "unparsed" else "processed"
                robot = ROBOTS[inbox_id % len(ROBOTS)]
                processed.append(Processed(inbox_id, state, "{}", deliveries, process=e.process, robot=robot))
                if e.result == "suppressed":
                    log.append(NoiseLogEntry(e.at, inbox_id, "faulted-jobs", e.process, "throttled", "3 in 10m", True))
            await store.finish_inbox(processed, now=chunk[-1].at + 1, noise=NoiseWrite(log=log))
            for d in await store.list_deliveries(inbox_ids=ids, limit=1000):
                if events[first + ids.index(d.inbox_id)].result == "failed":
                    await store.mark_failed(d.id, now=d.created_at + 5, reason="502", elapsed=0.1, next_attempt_at=None)
                else:
                    latency = CHANNELS[d.channel] * (1 + (d.id % 20) ** 2 / 40) + 0.013  # clear of rounding edges
                    await store.mark_sent(d.id, now=d.created_at + latency, elapsed=0.1)
                    sent.append((d.channel, d.created_at + latency, latency))
    finally:
        await store.close()
    return sent


def _nearest_rank(values: list[float], percent: int) -> float:
    return sorted(values)[math.ceil(len(values) * percent / 100) - 1]


def _seconds(value: float) -> str:
    """As the page writes a latency."""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _type(e: Event) -> str:
    return "job.completed" if e.result == "other" else "job.faulted"


def _deliveries(e: Event) -> list[NewDelivery]:
    return [NewDelivery("faulted-jobs", channel, "Job faulted", "b", "failure", "text") for channel in CHANNELS]


def _expected_per_slot(events: list[Event], width: float, label: str) -> dict[str, Counter[str]]:
    """Per slot label, the count of each result word as the chart titles its bars."""
    words = {"failed": "failed", "unparsed": "failed", "notified": "notified", "suppressed": "suppressed"}
    slots: dict[str, Counter[str]] = {}
    for e in events:
        start = e.at // width * width
        slots.setdefault(datetime.fromtimestamp(start, UTC).strftime(label), Counter())[
            words.get(e.result, "nothing to send")
        ] += 1
    return slots


_BAR_TITLE = re.compile(r"^(?P<slot>.+): (?P<count>\d+) (?P<result>failed|notified|suppressed|nothing to send)$")


def _bars(chart: Any) -> list[tuple[str, int, str, float]]:
    """(slot label, count, result word, height in px) of every bar of a stacked chart."""
    found = []
    for rect in chart.locator("rect:has(> title)").all():
        match = _BAR_TITLE.match(rect.locator("title").text_content() or "")
        assert match, rect.locator("title").text_content()
        found.append((match["slot"], int(match["count"]), match["result"], float(rect.get_attribute("height") or 0)))
    return found


def _check_event_chart(chart: Any, events: list[Event], now: float, width: float, label: str) -> int:
    """The bars match the seeded counts per slot, and each bar's height is proportional to its count."""
    bars = _bars(chart)
    drawn: dict[str, Counter[str]] = {}
    for slot, count, result, _ in bars:
        drawn.setdefault(slot, Counter())[result] += count
    first = (now // width - (24 if width == HOUR else 28) + 1) * width  # the chart's first slot
    shown = [e for e in events if e.at >= first]
    assert _expected_per_slot(shown, width, label) == drawn
    scale = sum(height for *_, height in bars) / sum(count for _, count, _, _ in bars)
    off = [(slot, count, height) for slot, count, _, height in bars if abs(height - count * scale) > 0.15]
    assert [] == off, scale  # heights are written to 0.1 px
    return len(bars)


def _screenshot(page: Any, path: Path) -> None:
    """The top of the page (the charts) at ``path``, the whole page beside it."""
    page.screenshot(path=str(path))
    page.screenshot(path=str(path.with_name(f"{path.stem}-full.png")), full_page=True)
    print(f"screenshots of the overview: {path} and {path.stem}-full.png")  # noqa: T201 - where to look
    if os.environ.get("RECEIVER_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / path.name)
        print(f"copied to {DOCS_IMAGES / path.name}")  # noqa: T201


def test_overview_charts_of_a_filled_store(chromium: str, playwright_api: Any, tmp_path: Path) -> None:
    """Bars per hour as seeded, top processes in order, both channels' latency, no CSP error; screenshots."""
    now = time.time()
    if now % HOUR > HOUR - 120:  # the hour turns during the test: the slots would move under it
        time.sleep(HOUR - now % HOUR + 1)
        now = time.time()
    events = _events(now)
    database = tmp_path / "receiver.db"
    sent = asyncio.run(_fill(database, events))
    rules = tmp_path / "rules.yaml"
    rules.write_text(CHART_RULES)
    server = ServerProcess(
        rules=rules,
        database=database,
        env={
            "RECEIVER_WEBHOOK_SECRET": "charts-secret",
            "RECEIVER_ADMIN_TOKEN": ADMIN,
            "RECEIVER_WATCH_RULES": "false",
        },
    ).start()
    try:
        with playwright_api() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 900})
                console: list[str] = []
                page.on("console", lambda m: console.append(f"{m.type}: {m.text} at {m.location.get('url')}"))
                page.goto(f"{server.base}/ui")
                page.fill("#token", ADMIN)
                page.click("button[type=submit]")
                assert f"{server.base}/ui" == page.url

                charts = page.locator("svg.chart")
                assert 4 == charts.count()
                hours = [t for t in charts.first.locator("text.axis").all_text_contents() if ":" in t]
                assert 8 == len(hours), hours  # every third hour, on the clock's multiples of 3
                assert all(int(t[:2]) % 3 == 0 for t in hours), hours
                day = [e for e in events if e.at >= now - 24 * HOUR]
                assert _check_event_chart(charts.first, day, now, HOUR, "%H:%M") >= 22 * 3  # several results an hour
                faults = Counter(
                    e.process for e in events if e.at >= now // HOUR * HOUR - 23 * HOUR and e.result != "other"
                )
                top = [name for name, _ in sorted(faults.items(), key=lambda kv: (-kv[1], kv[0]))]
                assert PROCESSES == top  # the seed's skew holds: the test's own premise
                drawn_processes = [t.text_content() for t in charts.nth(1).locator("text.axis").all()]
                assert top == drawn_processes
                robots = [t.text_content() for t in charts.nth(2).locator("text.axis").all()]
                assert sorted(ROBOTS) == sorted(robots)
                latency = charts.nth(3)
                assert ["slack-ops p50", "slack-ops p95", "teams-oncall p50", "teams-oncall p95"] == [
                    t.text_content() for t in latency.locator("text.axis").all()
                ]
                first = now // HOUR * HOUR - 23 * HOUR
                expected = []
                for channel in CHANNELS:
                    values = [latency for c, at, latency in sent if c == channel and at >= first]
                    expected += [_seconds(_nearest_rank(values, 50)), _seconds(_nearest_rank(values, 95))]
                assert expected == [t.text_content() for t in latency.locator("text.value").all()]
                _screenshot(page, tmp_path / "overview-24h.png")

                page.goto(f"{server.base}/ui?range=7d")
                charts = page.locator("svg.chart")
                assert (
                    "Events per 6 hours, last 7 days, by result" == charts.first.locator("title").first.text_content()
                )
                _check_event_chart(charts.first, events, now, 6 * HOUR, "%a %H:%M")
                days = [t for t in charts.first.locator("text.axis").all_text_contents() if ":" in t]
                assert 7 == len(days), days  # one label a day, at midnight
                assert all(t.endswith(" 00:00") for t in days), days
                _screenshot(page, tmp_path / "overview-7d.png")
                # The browser's own request for /favicon.ico (there is none) is the only error allowed.
                assert [] == [m for m in console if m.startswith("error") and not m.endswith("/favicon.ico")], console
            finally:
                browser.close()
    finally:
        server.stop()
