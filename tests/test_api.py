"""The admin API in-process: event filters, explanations, deliveries with their attempt logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support import fresh, sample, wait_until

from receiver.delivery.notifier import SendResult
from receiver.http.app import create_app
from receiver.render import Notification
from receiver.settings import Settings
from receiver.signature import sign

SECRET = "api-secret"
ADMIN = "api-admin-token"
LOGS = "api-logs-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}

RULES = """
channels:
  ops: "log://"
  flaky:
    url: "log://"
    max_attempts: 2
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops, flaky]
  - name: robot-errors
    match: {type: robot.log, level: {gte: Error}}
    notify: [ops]
  - name: queue-failures
    match: {type: queueItem.transactionFailed, process: Nothing*}
    notify: [ops]
"""


class ScriptedNotifier:
    """Sends succeed except to the ``flaky`` channel's URL while ``fail_flaky`` is set."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.fail = False

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109 - the Notifier protocol
        if self.fail:
            return SendResult(status="failed", reason="error=503 Service Unavailable", elapsed=0.01, recoverable=True)
        self.sent.append(notification)
        return SendResult(status="sent", reason=None, elapsed=0.01, recoverable=True)


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


@pytest.fixture
def notifier() -> ScriptedNotifier:
    return ScriptedNotifier()


@pytest.fixture
def client(tmp_path: Path, rules_path: Path, notifier: ScriptedNotifier) -> Iterator[TestClient]:
    settings = Settings(
        rules=rules_path,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret=SECRET,
        admin_token=ADMIN,
        logs_token=LOGS,
        watch_rules=False,
        poll_seconds=0.05,
        retry_initial_seconds=0.05,
        retry_max_seconds=0.05,
    )
    with TestClient(create_app(settings, notifier=notifier), raise_server_exceptions=False) as test_client:
        yield test_client


def post(client: TestClient, body: bytes) -> None:
    reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)})
    assert 202 == reply.status_code, reply.text


def get(client: TestClient, path: str, status: int = 200) -> Any:
    reply = client.get(path, headers=AUTH)
    assert status == reply.status_code, reply.text
    return reply.json()


def processed(client: TestClient, count: int) -> list[dict[str, Any]]:
    """Wait until ``count`` events are processed and their deliveries settled; the events, newest first."""

    def settled() -> bool:
        events = get(client, "/api/events")["events"]
        return len(events) == count and all(
            e["state"] != "new" and all(d["state"] != "pending" or d["attempts"] for d in e["deliveries"])
            for e in events
        )

    assert wait_until(settled), get(client, "/api/events")
    return list(get(client, "/api/events")["events"])


@pytest.fixture
def four_events(client: TestClient) -> list[dict[str, Any]]:
    """job.faulted, job.completed, ping, queueItem.transactionFailed, then one robot error log."""
    for name in ("job.faulted.json", "job.completed.json", "ping.json", "queueItem.transactionFailed.json"):
        post(client, fresh(name))
    reply = client.post(
        "/logs/uipath", content=sample("robot-log-error.json"), headers={"Authorization": f"Bearer {LOGS}"}
    )
    assert 202 == reply.status_code
    return processed(client, 5)


def types(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e["type"] for e in events)


class TestEventList:
    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            pytest.param("type=job.faulted", ["job.faulted"], id="type"),
            pytest.param("type=JOB.FAULTED", ["job.faulted"], id="type-any-casing"),
            pytest.param("type=job.*", ["job.completed", "job.faulted"], id="type-glob"),
            pytest.param("type=job.faulted,ping", ["job.faulted", "ping"], id="types-comma"),
            pytest.param("type=job.faulted&type=ping", ["job.faulted", "ping"], id="types-repeated"),
            pytest.param("process=InvoiceProcessing", ["job.completed", "job.faulted", "robot.log"], id="process"),
            pytest.param("process=invoice*", ["job.completed", "job.faulted", "robot.log"], id="process-glob"),
            pytest.param("robot=FIN-UNATT-01", ["job.faulted", "queueItem.transactionFailed"], id="robot"),
            pytest.param("robot=FIN-UNATT-01&type=job.*", ["job.faulted"], id="robot-and-type"),
            pytest.param("state=processed&type=ping", ["ping"], id="state"),
            pytest.param("state=unparsed", [], id="state-none"),
            pytest.param("source=uipath&since=1h", None, id="since-duration"),
            pytest.param("since=2999-01-01T00:00:00Z", [], id="since-future"),
            pytest.param("until=2000-01-01", [], id="until-past"),
        ],
    )
    def test_filters(
        self, client: TestClient, four_events: list[dict[str, Any]], query: str, expected: list[str] | None
    ) -> None:
        """Each filter (type, process, robot, state, source, time range) narrows the list as documented."""
        got = types(get(client, f"/api/events?{query}")["events"])
        assert (expected if expected is not None else types(four_events)) == got

    @pytest.mark.parametrize(
        "query",
        [
            pytest.param("state=done", id="state"),
            pytest.param("since=yesterday", id="since"),
            pytest.param("until=12x", id="until"),
            pytest.param("before=abc", id="before"),
        ],
    )
    def test_unreadable_filter_is_400(self, client: TestClient, query: str) -> None:
        """A filter that cannot be read is refused with invalid_query naming it."""
        reply = get(client, f"/api/events?{query}", status=400)
        assert "invalid_query" == reply["error"]
        assert query.split("=")[0] in reply["detail"]

    def test_pages_with_before(self, client: TestClient, four_events: list[dict[str, Any]]) -> None:
        """limit and next_before page through every event once, newest first."""
        seen: list[int] = []
        path = "/api/events?limit=2"
        while True:
            page = get(client, path)
            seen.extend(e["id"] for e in page["events"])
            if page["next_before"] is None:
                break
            path = f"/api/events?limit=2&before={page['next_before']}"
        assert [e["id"] for e in four_events] == seen

    def test_each_event_says_what_became_of_it(self, client: TestClient, four_events: list[dict[str, Any]]) -> None:
        """Matched rules, deliveries and a one-word result per event; process and robot read from the body."""
        by_type = {e["type"]: e for e in four_events}
        faulted = by_type["job.faulted"]
        assert ["faults"] == faulted["matched_rules"]
        assert "notified" == faulted["result"]
        assert [("faults", "ops", "sent"), ("faults", "flaky", "sent")] == [
            (d["rule"], d["channel"], d["state"]) for d in faulted["deliveries"]
        ]
        assert ("InvoiceProcessing", "FIN-UNATT-01") == (faulted["process"], faulted["robot"])
        assert "unmatched" == by_type["job.completed"]["result"]
        assert [] == by_type["ping"]["matched_rules"]
        assert "notified" == by_type["robot.log"]["result"]
        assert "explain" not in faulted

    def test_explain_says_why_each_rule_did_not_match(
        self, client: TestClient, four_events: list[dict[str, Any]]
    ) -> None:
        """explain=1 adds, per rule, matched or the failing clause, and says the rules are today's."""
        (event,) = get(client, "/api/events?type=queueItem.transactionFailed&explain=1")["events"]
        explain = event["explain"]
        assert "rules in force now" == explain["evaluated_with"]
        assert "may differ" in explain["note"]
        reasons = {r["rule"]: r for r in explain["rules"]}
        assert ["faults", "robot-errors", "queue-failures"] == [r["rule"] for r in explain["rules"]]
        assert not any(r["matched"] for r in explain["rules"])
        assert reasons["faults"]["reason"].startswith("type:")
        assert reasons["queue-failures"]["reason"].startswith("process:")

    def test_explanation_uses_the_rules_in_force_now(
        self, client: TestClient, four_events: list[dict[str, Any]], rules_path: Path
    ) -> None:
        """After a reload the explanation follows the new rules; the recorded matches stay as they were."""
        rules_path.write_text(RULES.replace(", process: Nothing*", ""))
        assert 200 == client.post("/api/rules/reload", headers=AUTH).status_code
        (event,) = get(client, "/api/events?type=queueItem.transactionFailed&explain=1")["events"]
        assert [] == event["matched_rules"]
        assert {"rule": "queue-failures", "matched": True, "evaluated": True, "reason": None} in event["explain"][
            "rules"
        ]


class TestWhyNot:
    def test_silenced_event_says_which_silence(self, client: TestClient, notifier: ScriptedNotifier) -> None:
        """An event a silence held back reads "suppressed", with the silence named in its decisions."""
        reply = client.post(
            "/api/silences",
            json={"matchers": "process=Invoice*", "comment": "month-end", "created_by": "ana", "for": "1h"},
            headers=AUTH,
        )
        assert 201 == reply.status_code
        post(client, fresh("job.faulted.json"))
        (event,) = processed(client, 1)
        assert ("suppressed", ["faults"], []) == (event["result"], event["matched_rules"], event["deliveries"])
        (decision,) = [d for d in event["decisions"] if d["suppressed"]]
        assert "silenced" == decision["action"]
        assert "month-end" in decision["reason"]
        detail = get(client, f"/api/events/{event['id']}")
        assert any(n["action"] == "silenced" for n in detail["noise_log"])
        assert [] == notifier.sent

    def test_a_decision_reads_the_same_in_the_outcome_the_log_and_the_suppressions(
        self, client: TestClient, notifier: ScriptedNotifier
    ) -> None:
        """One decision, one JSON form: the event's decisions, its noise log and /api/suppressions agree."""
        reply = client.post(
            "/api/silences",
            json={"matchers": "process=Invoice*", "comment": "month-end", "created_by": "ana", "for": "1h"},
            headers=AUTH,
        )
        assert 201 == reply.status_code
        post(client, fresh("job.faulted.json"))
        (event,) = processed(client, 1)
        (decision,) = event["decisions"]
        assert {"action", "rule", "key", "reason", "suppressed", "event", "at", "due_at"} == set(decision)
        assert ("silenced", "faults", True, event["id"]) == (
            decision["action"],
            decision["rule"],
            decision["suppressed"],
            decision["event"],
        )
        (logged,) = get(client, f"/api/events/{event['id']}")["noise_log"]
        (listed,) = get(client, "/api/suppressions")["suppressions"]
        for row in (logged, listed):
            assert {"id", "recorded_at"} == set(row) - set(decision)
            assert decision == {name: row[name] for name in decision}


class TestEventDetail:
    def test_has_body_deliveries_attempts_and_explanation(
        self, client: TestClient, four_events: list[dict[str, Any]]
    ) -> None:
        """GET /api/events/{id}: the stored body, each delivery's attempt log, and why each rule (not) matched."""
        faulted = next(e for e in four_events if e["type"] == "job.faulted")
        detail = get(client, f"/api/events/{faulted['id']}")
        assert faulted["event_id"] == detail["body"]["EventId"]
        assert [["sent"], ["sent"]] == [[a["status"] for a in d["attempt_log"]] for d in detail["deliveries"]]
        assert [True, False, False] == [r["matched"] for r in detail["explain"]["rules"]]
        assert [True, False, False] == [r["evaluated"] for r in detail["explain"]["rules"]]
        assert "stopped by rule 'faults'" in detail["explain"]["rules"][1]["reason"]

    def test_unparsed_event_is_explained_as_unreadable(self, client: TestClient) -> None:
        """An event whose body cannot be read as its type says so instead of explaining rules."""
        post(client, json.dumps({"Type": "job.faulted", "EventId": "bad", "Job": {"Id": {"x": 1}}}).encode())
        (event,) = processed(client, 1)
        detail = get(client, f"/api/events/{event['id']}")
        assert ("unparsed", "unparsed") == (detail["state"], detail["result"])
        assert "cannot be read" in detail["explain"]["error"]

    @pytest.mark.parametrize(
        ("path", "status", "code"),
        [
            pytest.param("/api/events/999", 404, "not_found", id="missing"),
            pytest.param("/api/events/abc", 400, "invalid_id", id="not-an-id"),
        ],
    )
    def test_unknown_event(self, client: TestClient, path: str, status: int, code: str) -> None:
        """A missing event is 404, a non-number 400."""
        assert code == get(client, path, status=status)["error"]


class TestDeliveries:
    def test_failing_and_dead_with_attempt_logs(self, client: TestClient, notifier: ScriptedNotifier) -> None:
        """Failing deliveries list their errors; the attempt log keeps every try; dead ones can be retried."""
        notifier.fail = True
        post(client, fresh("job.faulted.json"))
        assert wait_until(lambda: len(get(client, "/api/deliveries?state=dead")["deliveries"]) == 1)
        (dead,) = get(client, "/api/deliveries?state=dead")["deliveries"]
        assert ("flaky", 2, "error=503 Service Unavailable") == (dead["channel"], dead["attempts"], dead["last_error"])
        failing = get(client, "/api/deliveries?state=failing")["deliveries"]
        assert ["ops"] == [d["channel"] for d in failing]
        detail = get(client, f"/api/deliveries/{dead['id']}")
        assert ["failed", "dead"] == [a["status"] for a in detail["attempt_log"]]
        assert detail["body"]
        assert detail["title"]
        notifier.fail = False
        assert 200 == client.post(f"/api/deliveries/{dead['id']}/retry", headers=AUTH).status_code
        assert wait_until(lambda: get(client, f"/api/deliveries/{dead['id']}")["state"] == "sent")
        log = get(client, f"/api/deliveries/{dead['id']}")["attempt_log"]
        assert ["failed", "dead", "sent"] == [a["status"] for a in log]

    @pytest.mark.parametrize(
        ("query", "channels"),
        [
            pytest.param("channel=ops", ["ops"], id="channel"),
            pytest.param("rule=faults", ["flaky", "ops"], id="rule"),
            pytest.param("rule=nothing", [], id="rule-none"),
            pytest.param("state=sent&channel=flaky", ["flaky"], id="state-and-channel"),
        ],
    )
    def test_filters(
        self, client: TestClient, four_events: list[dict[str, Any]], query: str, channels: list[str]
    ) -> None:
        """Deliveries filter by channel, rule and state."""
        rows = get(client, f"/api/deliveries?{query}")["deliveries"]
        assert channels == sorted(d["channel"] for d in rows if d["rule"] == "faults")

    def test_of_one_event(self, client: TestClient, four_events: list[dict[str, Any]]) -> None:
        """event=ID lists the deliveries of that event only."""
        faulted = next(e for e in four_events if e["type"] == "job.faulted")
        rows = get(client, f"/api/deliveries?event={faulted['id']}")["deliveries"]
        assert {faulted["id"]} == {d["inbox_id"] for d in rows}
        assert 2 == len(rows)

    @pytest.mark.parametrize(
        ("path", "status"),
        [
            pytest.param("/api/deliveries?state=lost", 400, id="state"),
            pytest.param("/api/deliveries?event=x", 400, id="event"),
            pytest.param("/api/deliveries/77", 404, id="missing"),
            pytest.param("/api/deliveries/x", 400, id="not-an-id"),
        ],
    )
    def test_bad_requests(self, client: TestClient, path: str, status: int) -> None:
        """Unknown states and ids are refused with the JSON error shape."""
        assert {"error", "detail"} == set(get(client, path, status=status))


class TestRules:
    def test_rules_status_shows_details_with_masked_urls(self, client: TestClient) -> None:
        """GET /api/rules: names, what each rule matches, its channels, and channel URLs in privacy form."""
        status = get(client, "/api/rules")
        assert ["faults", "robot-errors", "queue-failures"] == status["rules"]
        (faults, *_) = status["rule_details"]
        assert (["ops", "flaky"], False) == (faults["notify"], faults["continue"])
        assert "type" in faults["match"]
        assert {"flaky": 2, "ops": 100} == {c["name"]: c["max_attempts"] for c in status["channel_details"]}
        assert [] == status["last_reload_problems"]


class TestAccess:
    @pytest.mark.parametrize(
        "path", ["/api/events", "/api/events/1", "/api/deliveries", "/api/deliveries/1", "/api/rules"]
    )
    def test_every_admin_route_needs_the_token(self, client: TestClient, path: str) -> None:
        """Without the bearer token every admin route answers 401."""
        assert 401 == client.get(path).status_code
        assert 401 == client.get(path, headers={"Authorization": f"Bearer {ADMIN}-"}).status_code
