"""The web page end to end, in a real headless Chromium against a real ``receiver serve`` process.

Chromium is Debian's package (``/usr/bin/chromium``), driven by the ``playwright`` Python package
(never ``playwright install``: no browser is downloaded). ``.ci/run`` installs it; when it is
missing the test is skipped with the reason, except in CI (``CI`` set), where it fails.

What a person in a hurry does: log in, find the event just posted, retry a dead delivery, silence
the noisy process. Screenshots of each page go to the test's ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ServerProcess, free_port, fresh

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
