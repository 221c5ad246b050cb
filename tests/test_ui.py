"""The web page in-process: log in and out, the session cookie, CSRF, every page, the actions."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support import fresh

from receiver.delivery.notifier import SendResult
from receiver.http.app import create_app
from receiver.http.ui import COOKIE, SESSION_SECONDS
from receiver.render import Notification
from receiver.settings import Settings
from receiver.signature import sign

SECRET = "ui-secret"
ADMIN = "ui-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
ORIGIN = {"Origin": "http://testserver"}

RULES = """
timezone: Europe/Berlin
channels:
  ops: "log://"
  pager:
    url: "log://"
    max_attempts: 1
rules:
  - name: faults
    description: Faulted jobs page the team
    match: {type: job.faulted}
    notify: [ops, pager]
  - name: everything-else
    match: {type: "queueItem.*"}
    notify: []
"""


class Notifier:
    """Sends succeed, except to any channel while ``fail`` is set."""

    def __init__(self) -> None:
        self.fail = False
        self.sent: list[Notification] = []

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109 - the Notifier protocol
        if self.fail:
            return SendResult(status="failed", reason="error=502 Bad Gateway", elapsed=0.0, recoverable=True)
        self.sent.append(notification)
        return SendResult(status="sent", reason=None, elapsed=0.0, recoverable=True)


class Clock:
    """Real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


@pytest.fixture
def notifier() -> Notifier:
    return Notifier()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def settings(tmp_path: Path, rules_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "rules": rules_path,
        "database_url": f"sqlite:///{tmp_path / 'r.db'}",
        "webhook_secret": SECRET,
        "admin_token": ADMIN,
        "watch_rules": False,
        "poll_seconds": 0.05,
        **changes,
    }
    return Settings(**values)


@pytest.fixture
def client(tmp_path: Path, rules_path: Path, notifier: Notifier, clock: Clock) -> Iterator[TestClient]:
    app = create_app(settings(tmp_path, rules_path), notifier=notifier, clock=clock)
    with TestClient(app, raise_server_exceptions=True, follow_redirects=False) as test_client:
        yield test_client


def log_in(client: TestClient, token: str = ADMIN, next_path: str = "/ui") -> Any:
    return client.post("/ui/login", data={"token": token, "next": next_path}, headers=ORIGIN)


@pytest.fixture
def browser(client: TestClient) -> TestClient:
    """The client, logged in."""
    assert 303 == log_in(client).status_code
    return client


def csrf(client: TestClient, path: str = "/ui") -> str:
    page = client.get(path)
    assert 200 == page.status_code, page.text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found is not None
    return found.group(1)


def post_event(client: TestClient, body: bytes) -> None:
    reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)})
    assert 202 == reply.status_code


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def api(client: TestClient, path: str) -> Any:
    return client.get(path, headers=AUTH).json()


class TestLogin:
    def test_pages_redirect_to_login_and_back(self, client: TestClient) -> None:
        """A page without a session goes to the login form, which comes back to that page."""
        reply = client.get("/ui/events?type=job.faulted")
        assert 303 == reply.status_code
        assert "/ui/login?next=%2Fui%2Fevents%3Ftype%3Djob.faulted" == reply.headers["location"]
        form = client.get(reply.headers["location"])
        assert 'value="/ui/events?type=job.faulted"' in form.text
        done = log_in(client, next_path="/ui/events?type=job.faulted")
        assert (303, "/ui/events?type=job.faulted") == (done.status_code, done.headers["location"])

    def test_cookie_is_httponly_strict_and_not_the_token(self, client: TestClient) -> None:
        """The session cookie is HttpOnly, SameSite=Strict, scoped to /ui, expires, and is not the token."""
        reply = log_in(client)
        cookie = reply.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Path=/ui" in cookie
        assert f"Max-Age={SESSION_SECONDS}" in cookie
        assert ADMIN not in cookie
        assert 200 == client.get("/ui").status_code

    @pytest.mark.parametrize(
        ("token", "headers"),
        [
            pytest.param("wrong", ORIGIN, id="wrong-token"),
            pytest.param(ADMIN[:-1], ORIGIN, id="prefix"),
            pytest.param("", ORIGIN, id="empty"),
            pytest.param(ADMIN, {"Origin": "https://evil.example"}, id="other-origin"),
        ],
    )
    def test_refused(self, client: TestClient, token: str, headers: dict[str, str]) -> None:
        """A wrong token, or a login posted from another site, gets the form again with 401 and no cookie."""
        reply = client.post("/ui/login", data={"token": token, "next": "/ui"}, headers=headers)
        assert 401 == reply.status_code
        assert "not the admin token" in reply.text
        assert "set-cookie" not in reply.headers

    def test_failed_login_keeps_where_to_go(self, client: TestClient) -> None:
        """After a wrong token, the form still returns to the page that was asked for."""
        reply = log_in(client, token="wrong", next_path="/ui/rules")
        assert 'value="/ui/rules"' in reply.text

    def test_next_never_leaves_the_page(self, client: TestClient) -> None:
        """A next that points elsewhere (another site, another path) lands on /ui."""
        for target in ("//evil.example/ui", "https://evil.example", "/api/events", "/ui\\@evil"):
            assert "/ui" == log_in(client, next_path=target).headers["location"]

    def test_forged_or_expired_session_is_refused(self, client: TestClient, clock: Clock) -> None:
        """A cookie not signed with the token, or past its expiry, sends the person to the login form."""
        client.cookies.set(COOKIE, f"{int(time.time()) + 3600}.{'0' * 64}", path="/ui")
        assert 303 == client.get("/ui").status_code
        client.cookies.clear()
        log_in(client)
        assert 200 == client.get("/ui").status_code
        clock.offset = SESSION_SECONDS + 1
        assert 303 == client.get("/ui").status_code

    def test_logout_ends_the_session(self, browser: TestClient) -> None:
        """Log out removes the cookie: the next page asks for the token again."""
        reply = browser.post("/ui/logout", data={"csrf": csrf(browser)}, headers=ORIGIN)
        assert (303, "/ui/login") == (reply.status_code, reply.headers["location"])
        assert 303 == browser.get("/ui").status_code

    def test_off_without_admin_token(self, tmp_path: Path, rules_path: Path) -> None:
        """No RECEIVER_ADMIN_TOKEN: the page says it is off, and login is impossible."""
        app = create_app(settings(tmp_path, rules_path, admin_token=None), notifier=Notifier())
        with TestClient(app, follow_redirects=False) as client:
            page = client.get("/ui")
            login = log_in(client)
        assert (404, 404) == (page.status_code, login.status_code)
        assert "RECEIVER_ADMIN_TOKEN" in page.text


class TestPages:
    @pytest.mark.parametrize(
        "path",
        [
            "/ui",
            "/ui/events",
            "/ui/events?type=job.*&process=Invoice*&state=processed&since=1h",
            "/ui/deliveries",
            "/ui/deliveries?state=failing",
            "/ui/deliveries?state=dead",
            "/ui/silences",
            "/ui/rules",
        ],
    )
    def test_renders_without_script_and_with_headers(self, browser: TestClient, path: str) -> None:
        """Every page renders, holds no script, and is sent with a CSP that forbids scripts and framing."""
        post_event(browser, fresh("job.faulted.json"))
        reply = browser.get(path)
        assert 200 == reply.status_code, reply.text
        assert "<script" not in reply.text.lower()
        assert "default-src 'none'" in reply.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
        assert "no-store" == reply.headers["cache-control"]

    def test_stylesheet_is_served_from_the_package(self, client: TestClient) -> None:
        """/ui/ui.css needs no session (the login form uses it)."""
        reply = client.get("/ui/ui.css")
        assert (200, "text/css") == (reply.status_code, reply.headers["content-type"].split(";")[0])

    def test_overview_shows_the_event_and_what_became_of_it(self, browser: TestClient) -> None:
        """A posted event appears in the overview with its process, robot, matched rule and channels."""
        post_event(browser, fresh("job.faulted.json"))
        assert wait_until(lambda: "notified" in browser.get("/ui").text)
        page = browser.get("/ui").text
        for text in ("job.faulted", "InvoiceProcessing", "FIN-UNATT-01", "faults", "ops ✓", "pager ✓"):
            assert text in page

    def test_event_page_explains_every_rule(self, browser: TestClient) -> None:
        """The event page shows its deliveries' attempts, each rule's verdict with the reason, and the body."""
        post_event(browser, fresh("job.completed.json"))
        assert wait_until(lambda: api(browser, "/api/events")["events"][0]["state"] == "processed")
        event_id = api(browser, "/api/events")["events"][0]["id"]
        page = browser.get(f"/ui/events/{event_id}").text
        assert "Matched no rule" in page
        assert "type: " in page
        assert "evaluated now against the rules loaded" in page
        assert "41d7a9c3e5f24b60a8c2e4f6b8d0a1c3" in page

    def test_unknown_event_is_404(self, browser: TestClient) -> None:
        """An event id that does not exist gets a page saying so."""
        reply = browser.get("/ui/events/4242")
        assert 404 == reply.status_code
        assert "There is no event" in reply.text

    def test_values_from_events_are_escaped(self, browser: TestClient) -> None:
        """Text from a webhook body is HTML-escaped on every page."""
        raw = json.loads(fresh("job.faulted.json"))
        raw["Job"]["Release"]["ProcessKey"] = "<img src=x onerror=alert(1)>"
        raw["Job"]["Release"]["Name"] = "<img src=x onerror=alert(1)>"
        post_event(browser, json.dumps(raw).encode())
        assert wait_until(lambda: api(browser, "/api/events")["events"][0]["state"] == "processed")
        event_id = api(browser, "/api/events")["events"][0]["id"]
        for path in ("/ui", "/ui/events", f"/ui/events/{event_id}"):
            page = browser.get(path).text
            assert "<img src=x" not in page
            assert "&lt;img src=x onerror=alert(1)&gt;" in page

    def test_an_event_with_a_lone_surrogate_can_be_looked_at(self, browser: TestClient) -> None:
        """JSON allows ``"\\ud800"`` alone; the event page and ``/api/events/{id}`` were a 500 for it.

        Both show U+FFFD in its place: their UTF-8 cannot carry it (and a strict JSON client refuses it escaped).
        """
        body = fresh("job.faulted.json").replace(b'"Info": "', b'"Info": "cut \\ud800 here ')
        post_event(browser, body)
        assert wait_until(lambda: api(browser, "/api/events")["events"][0]["state"] == "processed")
        event_id = api(browser, "/api/events")["events"][0]["id"]
        reply = browser.get(f"/api/events/{event_id}", headers=AUTH)
        assert 200 == reply.status_code, reply.text
        assert reply.json()["body"]["Job"]["Info"].startswith("cut \ufffd here ")
        reply = browser.get("/api/events?explain=1&process=InvoiceProcessing", headers=AUTH)
        assert 200 == reply.status_code, reply.text
        page = browser.get(f"/ui/events/{event_id}")
        assert 200 == page.status_code, page.text
        assert "cut \ufffd here" in page.text

    def test_an_event_with_nan_or_a_huge_number_can_be_looked_at(self, browser: TestClient) -> None:
        """Python's parser reads ``NaN`` and ``1e999`` (accepted, 202); JSON cannot write them back: a 500 was.

        Such a body is shown as the text it was sent as.
        """
        body = fresh("job.faulted.json").replace(b'"TenantId": 1', b'"TenantId": NaN, "Big": 1e999')
        assert b"NaN" in body
        post_event(browser, body)
        assert wait_until(lambda: api(browser, "/api/events")["events"][0]["state"] != "new")
        event_id = api(browser, "/api/events")["events"][0]["id"]
        reply = browser.get(f"/api/events/{event_id}", headers=AUTH)
        assert 200 == reply.status_code, reply.text
        assert body.decode() == reply.json()["body"]
        page = browser.get(f"/ui/events/{event_id}")
        assert 200 == page.status_code, page.text
        assert "&#34;TenantId&#34;: NaN, &#34;Big&#34;: 1e999" in page.text

    def test_event_filter_errors_are_shown(self, browser: TestClient) -> None:
        """An unreadable filter is explained on the page instead of failing."""
        page = browser.get("/ui/events?since=yesterday").text
        assert "is not a time" in page

    def test_rules_page_shows_status_and_masked_channels(self, browser: TestClient, rules_path: Path) -> None:
        """The rules page lists rules in order with what they match, and a failed reload with its problems."""
        page = browser.get("/ui/rules").text
        assert "Faulted jobs page the team" in page
        assert "nobody (swallows)" in page
        rules_path.write_text(RULES.replace("notify: [ops, pager]", "notify: [nowhere]"))
        reply = browser.post("/ui/rules/reload", data={"csrf": csrf(browser)}, headers=ORIGIN)
        assert "/ui/rules?done=reload_failed" == reply.headers["location"]
        page = browser.get(reply.headers["location"]).text
        assert "The reload failed" in page
        assert "nowhere" in page


class TestActions:
    def dead_delivery(self, browser: TestClient, notifier: Notifier) -> dict[str, Any]:
        notifier.fail = True
        post_event(browser, fresh("job.faulted.json"))
        assert wait_until(lambda: len(api(browser, "/api/deliveries?state=dead")["deliveries"]) == 1)
        (dead,) = api(browser, "/api/deliveries?state=dead")["deliveries"]
        notifier.fail = False
        return dict(dead)

    def test_retry_button_redrives_a_dead_delivery(self, browser: TestClient, notifier: Notifier) -> None:
        """Retry on the overview makes the dead delivery due; it is sent, and the page says so."""
        dead = self.dead_delivery(browser, notifier)
        page = browser.get("/ui").text
        assert f'action="/ui/deliveries/{dead["id"]}/retry"' in page
        reply = browser.post(
            f"/ui/deliveries/{dead['id']}/retry", data={"csrf": csrf(browser), "next": "/ui"}, headers=ORIGIN
        )
        assert (303, f"/ui?done=retried&id={dead['id']}") == (reply.status_code, reply.headers["location"])
        assert f"Delivery {dead['id']} is due again" in browser.get(reply.headers["location"]).text
        assert wait_until(lambda: api(browser, f"/api/deliveries/{dead['id']}")["state"] == "sent")

    def test_retry_all_dead(self, browser: TestClient, notifier: Notifier) -> None:
        """Retry all dead re-drives every dead letter."""
        self.dead_delivery(browser, notifier)
        reply = browser.post(
            "/ui/deliveries/retry-dead",
            data={"csrf": csrf(browser), "next": "/ui/deliveries?state=dead"},
            headers=ORIGIN,
        )
        assert "/ui/deliveries?state=dead&done=retried_dead&n=1" == reply.headers["location"]
        assert wait_until(lambda: api(browser, "/api/deliveries?state=dead")["deliveries"] == [])

    @pytest.mark.parametrize(
        ("data", "headers"),
        [
            pytest.param({}, ORIGIN, id="no-csrf"),
            pytest.param({"csrf": "0" * 64}, ORIGIN, id="wrong-csrf"),
            pytest.param(None, {"Origin": "https://evil.example"}, id="other-origin"),
            pytest.param(None, {"Sec-Fetch-Site": "cross-site"}, id="cross-site-fetch"),
        ],
    )
    def test_actions_refuse_cross_site_requests(
        self, browser: TestClient, notifier: Notifier, data: dict[str, str] | None, headers: dict[str, str]
    ) -> None:
        """Without the session's CSRF token, or from another origin, an action does nothing."""
        dead = self.dead_delivery(browser, notifier)
        form = {"csrf": csrf(browser)} if data is None else data
        reply = browser.post(f"/ui/deliveries/{dead['id']}/retry", data=form, headers=headers)
        assert 303 == reply.status_code
        assert reply.headers["location"].startswith("/ui/login")
        time.sleep(0.2)
        assert "dead" == api(browser, f"/api/deliveries/{dead['id']}")["state"]

    def test_behind_a_proxy_that_rewrites_host(self, browser: TestClient, notifier: Notifier) -> None:
        """A browser's Sec-Fetch-Site: same-origin is believed even when the Host no longer matches Origin."""
        dead = self.dead_delivery(browser, notifier)
        reply = browser.post(
            f"/ui/deliveries/{dead['id']}/retry",
            data={"csrf": csrf(browser), "next": "/ui"},
            headers={"Origin": "https://receiver.example.com", "Sec-Fetch-Site": "same-origin"},
        )
        assert f"/ui?done=retried&id={dead['id']}" == reply.headers["location"]

    def test_actions_need_a_session(self, client: TestClient) -> None:
        """A POST without a session is refused like a cross-site one."""
        reply = client.post("/ui/deliveries/retry-dead", data={"csrf": "x"}, headers=ORIGIN)
        assert reply.headers["location"].startswith("/ui/login")

    def test_add_and_expire_a_silence(self, browser: TestClient, clock: Clock) -> None:
        """The form adds a silence that is listed as active; Expire ends it."""
        token = csrf(browser, "/ui/silences")
        reply = browser.post(
            "/ui/silences",
            data={
                "csrf": token,
                "matchers": "process=Invoice* robot=FIN-UNATT-01",
                "duration": "2h",
                "comment": "month-end close",
                "created_by": "ana",
            },
            headers=ORIGIN,
        )
        assert 303 == reply.status_code
        (silence,) = api(browser, "/api/silences")["silences"]
        assert (["process=Invoice*", "robot=FIN-UNATT-01"], "ana", "active") == (
            silence["matchers"],
            silence["created_by"],
            silence["state"],
        )
        page = browser.get(reply.headers["location"]).text
        assert f"Silence {silence['id']} added." in page
        assert "month-end close" in page
        assert '1</div><div class="l">active silences' in browser.get("/ui").text.replace("\n", "")
        expired = browser.post(f"/ui/silences/{silence['id']}/expire", data={"csrf": token}, headers=ORIGIN)
        assert f"/ui/silences?done=expired&id={silence['id']}" == expired.headers["location"]
        assert [] == api(browser, "/api/silences")["silences"]

    def test_silence_problems_are_listed_and_the_form_kept(self, browser: TestClient) -> None:
        """Unreadable matchers, no comment and a bad duration are all reported; typed values stay in the form."""
        reply = browser.post(
            "/ui/silences",
            data={
                "csrf": csrf(browser, "/ui/silences"),
                "matchers": "proces=Invoice*",
                "duration": "soon",
                "comment": "",
                "created_by": "ana",
            },
            headers=ORIGIN,
        )
        assert 400 == reply.status_code
        assert "The silence was not added" in reply.text
        assert "proces" in reply.text
        assert "comment" in reply.text
        assert 'value="proces=Invoice*"' in reply.text
        assert [] == api(browser, "/api/silences")["silences"]

    def test_expire_unknown_silence(self, browser: TestClient) -> None:
        """Expiring a silence that does not exist says so."""
        reply = browser.post("/ui/silences/99/expire", data={"csrf": csrf(browser)}, headers=ORIGIN)
        assert "done=not_found" in reply.headers["location"]
        assert "silence 99 does not exist" in browser.get(reply.headers["location"]).text


CHART_RULES = """
timezone: Europe/Berlin
channels:
  ops: "log://"
  pager: "log://"
silences:
  - name: always-on
    comment: a window that holds all the time
    weekly: [{days: [mon-sun], from: "00:00", to: "24:00"}]
    rules: [quiet-*]
  - name: around-now
    dates: [{from: "%(yesterday)s", to: "%(tomorrow)s"}]
    rules: [quiet-*]
  - name: soon
    dates: [{from: "%(soon)s", to: "%(soon)s"}]
    rules: [quiet-*]
  - name: far-away
    dates: [{from: "%(far)s", to: "%(far)s"}]
    rules: [quiet-*]
rules:
  - name: faults
    match: {type: job.faulted}
    format: html
    notify: [ops, pager]
  - name: payroll-only
    match: {process: "Payroll*"}
    format: markdown
    notify: [ops]
  - name: queue
    match: {type: "queueItem.*"}
    notify: []
"""


class TestCharts:
    @pytest.fixture
    def rules_path(self, tmp_path: Path) -> Path:
        from datetime import datetime, timedelta
        from zoneinfo import ZoneInfo

        today = datetime.now(tz=ZoneInfo("Europe/Berlin")).date()
        days = {
            "yesterday": today - timedelta(days=1),
            "tomorrow": today + timedelta(days=1),
            "soon": today + timedelta(days=3),
            "far": today + timedelta(days=30),
        }
        path = tmp_path / "rules.yaml"
        path.write_text(CHART_RULES % {k: v.isoformat() for k, v in days.items()})
        return path

    def test_overview_draws_events_faults_and_latency(self, browser: TestClient) -> None:
        """After two faults and a completed job, the charts show them: by result, by process and robot, per channel."""
        for n, name in enumerate(("job.faulted.json", "job.faulted.json", "job.completed.json")):
            post_event(browser, fresh(name, EventId=f"chart-{n}"))
        assert wait_until(lambda: 4 == sum(d["state"] == "sent" for d in api(browser, "/api/deliveries")["deliveries"]))
        page = browser.get("/ui").text
        assert 3 <= page.count('<svg class="chart"')
        assert 'role="img"' in page
        assert "Events per hour, last 24 hours, by result</title>" in page
        # The table beside the events chart: the current (last) slot has 2 notified and 1 with nothing to send.
        rows = re.findall(r'<tr><th scope="row">([^<]+)</th>((?:<td class="num">\d+</td>)+)</tr>', page)
        assert 24 == len(rows)
        last = [int(n) for n in re.findall(r"\d+", rows[-1][1])]
        assert [0, 2, 0, 1] == last  # failed, notified, suppressed, nothing to send
        assert '<td>InvoiceProcessing</td><td class="num">2</td>' in page
        assert '<td>FIN-UNATT-01</td><td class="num">2</td>' in page
        assert re.search(r"<td>ops</td><td class=\"num\">2</td>", page)
        assert re.search(r"<td>pager</td><td class=\"num\">2</td>", page)

    def test_seven_day_view(self, browser: TestClient) -> None:
        """?range=7d draws 6-hour slots over the week; an unknown range falls back to 24 hours."""
        page = browser.get("/ui?range=7d").text
        assert "Events per 6 hours, last 7 days, by result</title>" in page
        assert 28 == len(re.findall(r'<tr><th scope="row">', page))
        assert "No events in this range." in page  # nothing arrived: the empty state
        assert "Events per hour, last 24 hours" in browser.get("/ui?range=<b>").text

    def test_overview_shows_windows_in_force_and_upcoming(self, browser: TestClient) -> None:
        """Windows in force count as active silences; the one starting within a week is listed, a later one not."""
        page = browser.get("/ui").text
        flat = page.replace("\n", "")
        assert '2</div><div class="l">active silences (0 ad hoc, 2 maintenance)' in flat
        section = page[page.index("<h2>Maintenance windows") : page.index("<h2>Activity")]
        assert "always-on" in section
        assert "for more than 7 days" in section
        assert "around-now" in section
        assert "until" in section
        assert "soon" in section
        assert "upcoming" in section
        assert "far-away" not in section
        silences = browser.get("/ui/silences").text
        assert "far-away" in silences  # the silences page still lists every window
        assert "next from" in silences

    def test_rules_page_renders_each_rules_message_per_channel(self, browser: TestClient) -> None:
        """Each rule's message for a matching sample, per channel, HTML bodies shown as escaped source."""
        page = browser.get("/ui/rules").text
        section = page[page.index("<h2>Messages") : page.index("<h2>Channels")]
        faults = section[section.index("Message of rule faults") : section.index("Message of rule payroll-only")]
        assert "for a sample job.faulted event" in faults
        assert 2 == faults.count('<pre class="msg-body">')
        assert "to <strong>ops</strong>" in faults
        assert "to <strong>pager</strong>" in faults
        assert "<code>html</code> (shown as source)" in faults
        body = faults[faults.index('<pre class="msg-body">') :]
        body = body[: body.index("</pre>")]
        assert "&lt;" in body  # the HTML body's tags are text on the page
        assert "<b>" not in body
        assert "<br" not in body
        assert "InvoiceProcessing" in body
        payroll = section[section.index("Message of rule payroll-only") : section.index("Message of rule queue")]
        assert "no built-in sample matches this rule" in payroll
        assert "<code>markdown</code>" in payroll
        assert "Notifies nobody" in section[section.index("Message of rule queue") :]


@pytest.mark.timeout(60)  # before the fix the page never answered
def test_a_runaway_template_does_not_hold_the_rules_page(tmp_path: Path, notifier: Notifier) -> None:
    """/ui/rules renders each rule's message under the event budget, off the event loop: a template that
    would run for hours (which `receiver check` cannot see) shows why it cannot be rendered, the page
    answers, and the server keeps answering meanwhile."""
    import threading

    path = tmp_path / "rules.yaml"
    path.write_text(
        'channels:\n  ops: "log://"\nrules:\n'
        "  - name: runaway\n    match: {type: job.faulted}\n    notify: [ops]\n    continue: true\n"
        '    title: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}t"\n'
        "  - name: plain\n    match: {type: job.faulted}\n    notify: [ops]\n"
    )
    app = create_app(settings(tmp_path, path, event_budget_seconds=2.0), notifier=notifier)
    with TestClient(app, follow_redirects=False) as client:
        assert 303 == log_in(client).status_code
        health: list[float] = []

        def probe() -> None:  # while the page renders: the loop still answers
            time.sleep(0.3)
            started = time.monotonic()
            assert 200 == client.get("/healthz").status_code
            health.append(time.monotonic() - started)

        prober = threading.Thread(target=probe)
        prober.start()
        started = time.monotonic()
        page = client.get("/ui/rules")
        took = time.monotonic() - started
        prober.join(timeout=30)
    assert 200 == page.status_code
    assert took < 15, took
    section = page.text[page.text.index("Message of rule runaway") : page.text.index("Message of rule plain")]
    assert "Cannot render: BudgetExceededError: processing the event took longer than its budget of 2 s" in section
    assert "Job faulted: InvoiceProcessing" in page.text[page.text.index("Message of rule plain") :]
    assert 1 == len(health)
    assert health[0] < 1.0, health  # held by the page, it would wait most of the 2 s budget
