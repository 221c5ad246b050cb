"""Acknowledging from the admin API, the web page and the message's link stops reminders and
escalations, across a restart (the app closed and built again on the same database), on SQLite
and PostgreSQL; action links: a GET changes nothing, an altered or expired one is refused."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from support import fresh, wait_until

from receiver.delivery.notifier import SendResult
from receiver.http.app import create_app
from receiver.render import Notification
from receiver.settings import Settings
from receiver.signature import sign

SECRET = "alerts-secret"
ADMIN = "alerts-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
ORIGIN = {"Origin": "http://testserver"}
HOUR = 3600.0

RULES = """
channels:
  ops: "log://"
  oncall-sms: "log://"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    recover: {match: {type: job.completed}, key: "{{ process }}"}
    repeat: 1h
    escalate:
      - {after: 15m, notify: [oncall-sms]}
"""


class Recorder:
    """Every notification sent, in order."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109 - the Notifier protocol
        self.sent.append(notification)
        return SendResult(status="sent", reason=None, elapsed=0.001, recoverable=True)


class Clock:
    """Real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Server:
    """The app on one database; ``restart`` builds it again (what a process restart sees)."""

    def __init__(self, tmp_path: Path, url: str, **changes: Any) -> None:
        rules = tmp_path / "rules.yaml"
        rules.write_text(RULES)
        self.settings = Settings(
            rules=rules,
            database_url=url,
            webhook_secret=SECRET,
            admin_token=ADMIN,
            watch_rules=False,
            poll_seconds=0.05,
            public_url="http://testserver",
            link_key="a-link-key-for-tests",
            **changes,
        )
        self.clock = Clock()
        self.notifier = Recorder()
        self.client: TestClient | None = None

    def start(self) -> TestClient:
        app = create_app(self.settings, notifier=self.notifier, clock=self.clock)
        self.client = TestClient(app, raise_server_exceptions=True, follow_redirects=False)
        self.client.__enter__()
        return self.client

    def stop(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.client = None

    def restart(self) -> TestClient:
        self.stop()
        return self.start()

    def titles(self) -> list[str]:
        kinds = ("Reminder", "Escalation")
        return [next((k for k in kinds if n.title.startswith(f"{k}: ")), "alert") for n in self.notifier.sent]


@pytest.fixture
def server(tmp_path: Path, store_url: str) -> Iterator[Server]:
    srv = Server(tmp_path, store_url)
    srv.start()
    yield srv
    srv.stop()


def _fault(client: TestClient, process: str | None = None) -> dict[str, Any]:
    body = fresh("job.faulted.json")
    if process is not None:
        raw = json.loads(body)
        raw["Job"]["Release"]["ProcessKey"] = process
        raw["EventId"] = f"ev-{process}"
        body = json.dumps(raw).encode()
    known = {a["id"] for a in client.get("/api/alerts", headers=AUTH).json()["alerts"]}
    reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)})
    assert 202 == reply.status_code
    found: list[dict[str, Any]] = []

    def opened() -> bool:
        found[:] = [a for a in client.get("/api/alerts", headers=AUTH).json()["alerts"] if a["id"] not in known]
        return bool(found)

    assert wait_until(opened)
    return found[0]


def _link(server: Server, label: str) -> str:
    assert wait_until(lambda: bool(server.notifier.sent))
    body = server.notifier.sent[0].body
    found = re.search(rf"{re.escape(label)}: http://testserver(/act/\S+)", body)
    assert found is not None, body
    return found.group(1)


def _state(client: TestClient, alert_id: str) -> str:
    return str(client.get(f"/api/alerts/{alert_id}", headers=AUTH).json()["alert"]["state"])


def _acknowledge(server: Server, client: TestClient, alert_id: str, via: str) -> None:
    if via == "api":
        reply = client.post(f"/api/alerts/{alert_id}/ack", json={"by": "ana"}, headers=AUTH)
        assert 200 == reply.status_code, reply.text
        assert "ana" == reply.json()["alert"]["acknowledged_by"]
    elif via == "ui":
        assert 303 == client.post("/ui/login", data={"token": ADMIN, "next": "/ui"}, headers=ORIGIN).status_code
        page = client.get("/ui/alerts")
        assert alert_id in page.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf is not None
        reply = client.post(f"/ui/alerts/{alert_id}/ack", data={"csrf": csrf.group(1), "by": "ana"}, headers=ORIGIN)
        assert 303 == reply.status_code
        assert "done=acknowledged" in reply.headers["location"]
    else:
        path = _link(server, "Acknowledge")
        page = client.get(path)
        assert 200 == page.status_code
        assert "Acknowledge this alert?" in page.text
        assert "<script" not in page.text
        assert "firing" == _state(client, alert_id)  # the GET changed nothing
        reply = client.post(path, data={"by": "ana"}, headers=ORIGIN)
        assert 200 == reply.status_code, reply.text
        assert "Acknowledged by ana" in reply.text
    assert "acknowledged" == _state(client, alert_id)


class TestAcknowledgementStopsTimers:
    def test_unacknowledged_it_escalates_and_reminds(self, server: Server) -> None:
        """The control: without an acknowledgement, the SMS and the reminder go out after a restart."""
        client = server.client
        assert client is not None
        _fault(client)
        client = server.restart()
        server.clock.offset = HOUR + 60
        assert wait_until(lambda: {"Escalation", "Reminder"} <= set(server.titles()))

    @pytest.mark.parametrize("via", ["api", "ui", "link"])
    def test_an_acknowledgement_stops_reminders_and_escalations(self, server: Server, via: str) -> None:
        """Acknowledged (by API, page or link) before the 15 min escalation: after a restart and 2 h, nothing more."""
        client = server.client
        assert client is not None
        alert = _fault(client)
        _acknowledge(server, client, alert["id"], via)
        other = _fault(client, process="Payroll")  # left alone: proves the timers ran
        client = server.restart()
        server.clock.offset = 2 * HOUR
        assert wait_until(lambda: 2 == server.titles().count("Reminder"))
        reminded = [n.title for n in server.notifier.sent if n.title.startswith(("Reminder", "Escalation"))]
        assert 3 == len(reminded)  # the other alert's SMS and its two reminders (1 h, 2 h)
        assert all("Payroll" in t or other["title"] in t for t in reminded)
        assert "firing" == _state(client, other["id"])
        trail = client.get(f"/api/alerts/{alert['id']}", headers=AUTH).json()["trail"]
        assert ("acknowledged", "ana", via) == (trail[-1]["action"], trail[-1]["by"], trail[-1]["via"])


class TestLinks:
    def test_an_altered_or_expired_link_is_refused_with_a_page(self, server: Server) -> None:
        """One character changed: 403; past its 24 h: 410; both pages say so and nothing changes."""
        client = server.client
        assert client is not None
        alert = _fault(client)
        path = _link(server, "Acknowledge")
        token = path.removeprefix("/act/")
        altered = "/act/" + token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        for method in ("get", "post"):
            reply = getattr(client, method)(altered, headers=ORIGIN)
            assert 403 == reply.status_code
            assert "This link is not valid" in reply.text
        server.clock.offset = 25 * HOUR
        reply = client.post(path, data={"by": "ana"}, headers=ORIGIN)
        assert 410 == reply.status_code
        assert "This link has expired" in reply.text
        assert alert["state"] == "firing"
        assert _state(client, alert["id"]) in ("firing", "resolved")  # expiry may have resolved it, never an ack

    def test_a_repeated_post_acknowledges_once_and_silence_holds_an_hour(self, server: Server) -> None:
        """The second POST finds nothing to do; the silence link silences the process for 1 h."""
        client = server.client
        assert client is not None
        alert = _fault(client)
        ack = _link(server, "Acknowledge")
        assert "Acknowledged" in client.post(ack, data={"by": "ana"}, headers=ORIGIN).text
        assert "Nothing to acknowledge" in client.post(ack, data={"by": "bob"}, headers=ORIGIN).text
        silence = _link(server, "Silence this process for 1 h")
        assert "Silence for 1 hour?" in client.get(silence).text
        assert [] == client.get("/api/silences", headers=AUTH).json()["silences"]  # the GET did nothing
        reply = client.post(silence, data={"by": "ana"}, headers=ORIGIN)
        assert 200 == reply.status_code
        silences = client.get("/api/silences", headers=AUTH).json()["silences"]
        assert [["process=InvoiceProcessing"]] == [s["matchers"] for s in silences]
        actions = [e["action"] for e in client.get(f"/api/alerts/{alert['id']}", headers=AUTH).json()["trail"]]
        assert ["opened", "acknowledged", "silenced"] == actions
        event = client.get(f"/api/events/{alert['event']}", headers=AUTH).json()
        assert [("opened", "receiver"), ("acknowledged", "ana"), ("silenced", "ana")] == [
            (t["action"], t["by"]) for t in event["alert_trail"]
        ]

    def test_a_replayed_silence_link_makes_no_second_silence_while_its_first_holds(self, server: Server) -> None:
        """Anyone with the message could POST its silence link again and again for 24 h, one silence each.

        Every silence is tested for every notification: a script replaying one leaked link filled
        the table. While the link's silence holds, a replay says so and adds nothing; once it
        was expired, the link silences again (it is valid for its 24 h).
        """
        client = server.client
        assert client is not None
        alert = _fault(client)
        silence = _link(server, "Silence this process for 1 h")
        first = client.post(silence, data={"by": "ana"}, headers=ORIGIN)
        assert 200 == first.status_code
        for name in ("bob", "mallory", "mallory"):
            again = client.post(silence, data={"by": name}, headers=ORIGIN)
            assert 200 == again.status_code, again.text
            assert "already silenced" in again.text
        silences = client.get("/api/silences", headers=AUTH).json()["silences"]
        assert 1 == len(silences), silences
        assert "ana" == silences[0]["created_by"]
        actions = [e["action"] for e in client.get(f"/api/alerts/{alert['id']}", headers=AUTH).json()["trail"]]
        assert 1 == actions.count("silenced"), actions
        assert 200 == client.delete(f"/api/silences/{silences[0]['id']}", headers=AUTH).status_code
        assert "is silenced for 1 hour" in client.post(silence, data={"by": "ana"}, headers=ORIGIN).text
        assert 1 == len(client.get("/api/silences", headers=AUTH).json()["silences"])

    def test_a_post_without_a_name_is_asked_again(self, server: Server) -> None:
        """No name and no trusted proxy: 400, the alert stays firing."""
        client = server.client
        assert client is not None
        alert = _fault(client)
        reply = client.post(_link(server, "Acknowledge"), data={"by": " "}, headers=ORIGIN)
        assert 400 == reply.status_code
        assert "Please give your name" in reply.text
        assert "firing" == _state(client, alert["id"])

    def test_no_retry_link_without_actions_retry(self, server: Server) -> None:
        """The rule does not allow retry: the message offers acknowledge and silence only."""
        client = server.client
        assert client is not None
        _fault(client)
        assert wait_until(lambda: bool(server.notifier.sent))
        assert "Retry the job" not in server.notifier.sent[0].body


class TestTrustedHeader:
    def test_the_proxy_header_names_the_actor_only_from_a_trusted_proxy(self, tmp_path: Path) -> None:
        """From a trusted peer the header is who acts; from any other peer it is ignored."""
        srv = Server(
            tmp_path,
            f"sqlite:///{tmp_path / 't.db'}",
            trusted_user_header="X-Forwarded-User",
            trusted_proxies="10.0.0.0/8",
        )
        client = srv.start()
        try:
            alert = _fault(client)
            path = _link(srv, "Acknowledge")
            page = client.get(path, headers={"X-Forwarded-User": "mallory"})
            assert "mallory" not in page.text  # the test client is no trusted proxy
            reply = client.post(path, data={}, headers={**ORIGIN, "X-Forwarded-User": "mallory"})
            assert 400 == reply.status_code
            assert "firing" == _state(client, alert["id"])
        finally:
            srv.stop()


class TestPageAndApi:
    def test_the_page_lists_open_alerts_first_and_resolves_with_a_name(self, server: Server) -> None:
        """Resolved from the page, an alert moves below the open one; the API refuses to resolve it twice (409)."""
        client = server.client
        assert client is not None
        first = _fault(client)
        second = _fault(client, process="Payroll")
        assert 303 == client.post("/ui/login", data={"token": ADMIN, "next": "/ui"}, headers=ORIGIN).status_code
        page = client.get("/ui/alerts")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf is not None
        nameless = client.post(f"/ui/alerts/{first['id']}/resolve", data={"csrf": csrf.group(1)}, headers=ORIGIN)
        assert "done=name_needed" in nameless.headers["location"]
        reply = client.post(
            f"/ui/alerts/{first['id']}/resolve", data={"csrf": csrf.group(1), "by": "ana"}, headers=ORIGIN
        )
        assert "done=resolved" in reply.headers["location"]
        page = client.get("/ui/alerts").text
        assert page.index(second["id"]) < page.index(first["id"])
        again = client.post(f"/api/alerts/{first['id']}/resolve", headers=AUTH)
        assert 409 == again.status_code
        assert "conflict" == again.json()["error"]
        assert 404 == client.post("/api/alerts/0123abcd/ack", headers=AUTH).status_code
        open_only = client.get("/api/alerts?state=open", headers=AUTH).json()["alerts"]
        assert [second["id"]] == [a["id"] for a in open_only]

    def test_from_a_trusted_proxy_the_header_names_who_acts(self, tmp_path: Path) -> None:
        """Behind a trusted proxy the page says who acts, and the POST needs no typed name."""
        srv = Server(
            tmp_path,
            f"sqlite:///{tmp_path / 'p.db'}",
            trusted_user_header="X-Forwarded-User",
            trusted_proxies="*",
        )
        client = srv.start()
        try:
            alert = _fault(client)
            path = _link(srv, "Acknowledge")
            page = client.get(path, headers={"X-Forwarded-User": "carla"})
            assert "You act as <strong>carla</strong>" in page.text
            reply = client.post(path, data={"by": "someone else"}, headers={**ORIGIN, "X-Forwarded-User": "carla"})
            assert 200 == reply.status_code
            detail = client.get(f"/api/alerts/{alert['id']}", headers=AUTH).json()
            assert ("acknowledged", "carla") == (detail["alert"]["state"], detail["alert"]["acknowledged_by"])
        finally:
            srv.stop()


def _samples(client: TestClient, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one family on /metrics, by their labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for found in text_string_to_metric_families(client.get("/metrics").text)
        if found.name == family
        for sample in found.samples
        if sample.name == family or sample.name == family + "_total"
    }


class TestCounted:
    def test_actions_and_open_alerts_show_on_metrics_and_the_overview(self, server: Server) -> None:
        """Acknowledged by API, silenced from a link, resolved from the page: gauges and counters agree."""
        client = server.client
        assert client is not None
        acked = _fault(client)
        _acknowledge(server, client, acked["id"], "api")
        silenced = _fault(client, process="Payroll")
        resolved = _fault(client, process="Orders")
        assert {(("state", "acknowledged"),): 1, (("state", "firing"),): 2} == _samples(client, "receiver_alerts")

        assert 303 == client.post("/ui/login", data={"token": ADMIN, "next": "/ui"}, headers=ORIGIN).status_code
        overview = client.get("/ui").text
        assert '3</div><div class="l">open alerts (2 firing, 1 acknowledged)' in overview
        assert 'href="/ui/alerts"' in overview
        assert '0</div><div class="l">notifications held by channel budgets' in overview

        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/ui/alerts").text)
        assert csrf is not None
        reply = client.post(
            f"/ui/alerts/{resolved['id']}/resolve", data={"csrf": csrf.group(1), "by": "ana"}, headers=ORIGIN
        )
        assert "done=resolved" in reply.headers["location"]
        links = [n.body for n in server.notifier.sent if "Payroll" in n.body or "Payroll" in n.title]
        found = re.search(r"Silence this process for 1 h: http://testserver(/act/\S+)", links[0])
        assert found is not None
        assert 200 == client.post(found.group(1), data={"by": "bob"}, headers=ORIGIN).status_code
        assert 409 == client.post(f"/api/alerts/{resolved['id']}/resolve", headers=AUTH).status_code  # not counted

        assert {
            (("action", "acknowledged"), ("via", "api")): 1,
            (("action", "resolved"), ("via", "ui")): 1,
            (("action", "silenced"), ("via", "link")): 1,
        } == _samples(client, "receiver_alert_actions")
        assert {(("state", "acknowledged"),): 1, (("state", "firing"),): 1} == _samples(client, "receiver_alerts")
        assert "firing" == _state(client, silenced["id"])  # a silence does not change the alert
