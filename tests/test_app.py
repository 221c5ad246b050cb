"""The HTTP edge in-process: signatures, body checks, replies, robot logs, admin API, pipeline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from support import DATA, fresh, sample, wait_until

from receiver.delivery.notifier import SendResult
from receiver.errors import ConfigError
from receiver.http import app as app_module
from receiver.http.app import create_app
from receiver.http.runtime import resolve_sources
from receiver.render import Notification
from receiver.rules import load_rules
from receiver.settings import Settings
from receiver.signature import sign

SECRET = "test-secret-Δ"
ADMIN = "admin-token"
LOGS = "logs-token"

RULES = """
channels:
  ops: "log://"
  mail: "log://"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops, mail]
  - name: robot-errors
    match: {type: robot.log, level: {gte: Error}}
    notify: [ops]
"""


class FakeNotifier:
    """Records what would be sent; answers with a scripted outcome."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Notification]] = []
        self.outcome = "sent"

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109 - the Notifier protocol
        self.sent.append((url, notification))
        if self.outcome == "sent":
            return SendResult(status="sent", reason=None, elapsed=0.001, recoverable=True)
        return SendResult(status="failed", reason="error=500", elapsed=0.001, recoverable=True)


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def make_settings(tmp_path: Path, rules_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "rules": rules_path,
        "database_url": f"sqlite:///{tmp_path / 'r.db'}",
        "webhook_secret": SECRET,
        "admin_token": ADMIN,
        "logs_token": LOGS,
        "watch_rules": False,
        "poll_seconds": 0.05,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def notifier() -> FakeNotifier:
    return FakeNotifier()


@pytest.fixture
def client(tmp_path: Path, rules_path: Path, notifier: FakeNotifier) -> Iterator[TestClient]:
    app = create_app(make_settings(tmp_path, rules_path), notifier=notifier)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def post(client: TestClient, body: bytes, *, secret: str | None = SECRET, source: str = "uipath", **headers: str):
    if secret is not None:
        headers["X-UiPath-Signature"] = sign(body, secret)
    return client.post(f"/webhooks/{source}", content=body, headers=headers)


def admin_get(client: TestClient, path: str) -> Any:
    reply = client.get(path, headers={"Authorization": f"Bearer {ADMIN}"})
    assert 200 == reply.status_code, reply.text
    return reply.json()


class TestWebhook:
    @pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.json") if not p.name.startswith("robot-log")))
    def test_every_sample_is_accepted(self, client: TestClient, name: str) -> None:
        """Each signed sample gets 202 with its EventId."""
        body = fresh(name)
        reply = post(client, body)
        assert 202 == reply.status_code, reply.text
        assert {"status": "accepted", "event_id": json.loads(body)["EventId"]} == reply.json()

    def test_an_unexpected_failure_is_a_logged_json_500(
        self, client: TestClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bug on the webhook path (answered ahead of Starlette's middleware) still gets the JSON 500."""
        store = client.app.state.runtime.store  # type: ignore[attr-defined]

        async def broken(_: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(store, "accept", broken)
        with structlog.testing.capture_logs() as captured:
            reply = post(client, fresh("job.faulted.json"))
        assert (500, "internal_error") == (reply.status_code, reply.json()["error"])
        assert "a bug" not in reply.text
        assert any(e["event"] == "request_failed" and e["log_level"] == "error" for e in captured)
        monkeypatch.undo()
        assert 202 == post(client, fresh("job.faulted.json")).status_code

    def test_repeat_is_a_duplicate(self, client: TestClient) -> None:
        """The same EventId again is answered 202 duplicate and stored once."""
        body = fresh("job.faulted.json")
        assert "accepted" == post(client, body).json()["status"]
        again = post(client, body)
        assert (202, "duplicate") == (again.status_code, again.json()["status"])
        assert 1 == len(admin_get(client, "/api/events")["events"])

    @pytest.mark.parametrize(
        ("headers", "secret", "code"),
        [
            pytest.param({}, None, "signature_missing", id="missing"),
            pytest.param({}, "wrong-secret", "signature_mismatch", id="wrong-secret"),
            pytest.param({"X-UiPath-Signature": "garbage"}, None, "signature_malformed", id="garbage"),
        ],
    )
    def test_bad_signature_is_401(
        self, client: TestClient, headers: dict[str, str], secret: str | None, code: str
    ) -> None:
        """A missing, wrong or malformed signature is refused with 401 and a JSON error."""
        reply = post(client, fresh("job.faulted.json"), secret=secret, **headers)
        assert (401, code) == (reply.status_code, reply.json()["error"])

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            pytest.param(b"", "invalid_json", id="empty"),
            pytest.param(b"{not json", "invalid_json", id="not-json"),
            pytest.param(b'{"Type": "job.faulted", "x": "\xff"}', "invalid_json", id="invalid-utf8"),
            pytest.param(b"[1, 2]", "not_an_object", id="array"),
            pytest.param(b'"job.faulted"', "not_an_object", id="string"),
            pytest.param(b'{"EventId": "x"}', "missing_type", id="no-type"),
            pytest.param(b'{"Type": 5}', "missing_type", id="type-not-string"),
            pytest.param(b'{"Type": "  "}', "missing_type", id="blank-type"),
            pytest.param(b"[" * 100_000 + b"]" * 100_000, "invalid_json", id="nested-100k"),
        ],
    )
    def test_bad_body_is_400(self, client: TestClient, body: bytes, code: str) -> None:
        """A signed body that is not a JSON object with a Type gets 400 with the reason."""
        reply = post(client, body)
        assert (400, code) == (reply.status_code, reply.json()["error"])

    def test_stale_timestamp_is_refused_as_replay(self, client: TestClient) -> None:
        """An event older than the replay window is refused with stale_event."""
        reply = post(client, sample("job.faulted.json"))
        assert (400, "stale_event") == (reply.status_code, reply.json()["error"])

    def test_unknown_source_is_404(self, client: TestClient) -> None:
        """A source that is not configured is a 404 that ends the connection (its body is never read)."""
        reply = post(client, fresh("ping.json"), source="nope")
        assert (404, "unknown_source") == (reply.status_code, reply.json()["error"])
        assert "close" == reply.headers.get("connection")

    def test_body_over_limit_is_413(self, tmp_path: Path, rules_path: Path) -> None:
        """Bodies over the limit are refused with and without Content-Length (chunked)."""
        app = create_app(make_settings(tmp_path, rules_path, max_body_bytes=1000), notifier=FakeNotifier())
        big = json.dumps({"Type": "custom", "EventData": "x" * 2000}).encode()
        with TestClient(app) as client:
            declared = post(client, big)
            chunked = client.post(
                "/webhooks/uipath",
                content=iter([big[:600], big[600:]]),
                headers={"X-UiPath-Signature": sign(big, SECRET)},
            )
        assert (413, "body_too_large") == (declared.status_code, declared.json()["error"])
        assert (413, "body_too_large") == (chunked.status_code, chunked.json()["error"])

    def test_unknown_type_is_accepted_and_kept(self, client: TestClient) -> None:
        """A Type Orchestrator added later is accepted and stored, not refused."""
        body = json.dumps({"Type": "robot.teleported", "EventId": "u1", "Whatever": {"x": 1}}).encode()
        reply = post(client, body)
        assert (202, "accepted") == (reply.status_code, reply.json()["status"])
        assert wait_until(lambda: admin_get(client, "/api/events")["events"][0]["state"] == "processed")

    def test_wrong_field_types_are_accepted_and_marked_unparsed(self, client: TestClient) -> None:
        """A known Type whose fields cannot be read is kept whole and shown as unparsed, never refused."""
        body = json.dumps({"Type": "job.faulted", "EventId": "bad1", "Job": {"Id": {"nested": "dict"}}}).encode()
        assert 202 == post(client, body).status_code
        assert wait_until(lambda: admin_get(client, "/api/events")["events"][0]["state"] == "unparsed")
        outcome = admin_get(client, "/api/events")["events"][0]["outcome"]
        assert (False, "invalid_fields") == (outcome["parsed"], outcome["error"])

    def test_a_slash_at_the_end_of_the_url_is_the_same_route(self, client: TestClient) -> None:
        """``/webhooks/uipath/`` (a URL pasted with a slash) is answered, not redirected: Orchestrator's client
        does not follow an https request to the http Location the receiver builds behind a proxy."""
        body = fresh(EventId="slash-1")
        headers = {"X-UiPath-Signature": sign(body, SECRET)}
        reply = client.post("/webhooks/uipath/", content=body, headers=headers, follow_redirects=False)
        assert (202, "accepted") == (reply.status_code, reply.json()["status"])
        auth = {"Authorization": f"Bearer {LOGS}"}
        entry = sample("robot-log-error.json")
        logs = client.post("/logs/uipath/", content=entry, headers=auth, follow_redirects=False)
        assert (202, 1) == (logs.status_code, logs.json()["accepted"])
        nowhere = client.post("/webhooks/nowhere/", content=body, headers=headers, follow_redirects=False)
        assert (404, "unknown_source") == (nowhere.status_code, nowhere.json()["error"])

    def test_method_and_route_errors_are_json(self, client: TestClient) -> None:
        """A wrong method or path gets the JSON error shape, not HTML."""
        assert "method_not_allowed" == client.get("/webhooks/uipath").json()["error"]
        assert "not_found" == client.get("/nowhere").json()["error"]


class TestPipeline:
    def test_faulted_job_reaches_both_channels(self, client: TestClient, notifier: FakeNotifier) -> None:
        """A matched event becomes one delivery per channel, sent and recorded as sent."""
        assert 202 == post(client, fresh("job.faulted.json")).status_code
        assert wait_until(lambda: len(notifier.sent) == 2)
        assert wait_until(lambda: len(admin_get(client, "/api/deliveries?state=sent")["deliveries"]) == 2)
        title = "Job faulted: InvoiceProcessing on FIN-UNATT-01"  # the default title of the sample
        assert [("log://", title)] * 2 == [(url, n.title) for url, n in notifier.sent]
        event = admin_get(client, "/api/events")["events"][0]
        assert ["faults"] == event["outcome"]["matched"]

    def test_the_explanation_of_a_ping_says_it_never_notifies(self, client: TestClient) -> None:
        """A rule matching every type "matches" a ping, which sends nothing: the event's explanation says why."""
        assert 202 == post(client, fresh("ping.json", EventId="ping-explained")).status_code
        assert wait_until(lambda: admin_get(client, "/api/events")["events"][0]["state"] == "processed")
        inbox_id = admin_get(client, "/api/events")["events"][0]["id"]
        explain = admin_get(client, f"/api/events/{inbox_id}")["explain"]
        assert "ping never notifies" in explain["silent"]

    def test_ping_and_unmatched_send_nothing(self, client: TestClient, notifier: FakeNotifier) -> None:
        """Ping and unmatched events are stored and visible but notify nobody."""
        post(client, fresh("ping.json"))
        post(client, fresh("job.completed.json"))
        assert wait_until(lambda: all(e["state"] == "processed" for e in admin_get(client, "/api/events")["events"]))
        time.sleep(0.2)
        assert [] == notifier.sent
        assert 2 == len(admin_get(client, "/api/events")["events"])

    def test_failed_delivery_is_recorded_with_reason(self, client: TestClient, notifier: FakeNotifier) -> None:
        """A failing channel leaves the delivery pending with apprise's reason and a later attempt time."""
        notifier.outcome = "failed"
        post(client, fresh("job.faulted.json"))
        assert wait_until(lambda: len(notifier.sent) >= 2)
        assert wait_until(
            lambda: all(d["last_error"] == "error=500" for d in admin_get(client, "/api/deliveries")["deliveries"])
        )
        rows = admin_get(client, "/api/deliveries?state=pending")["deliveries"]
        assert 2 == len(rows)
        assert all(r["next_attempt_at"] > time.time() for r in rows)


class TestLogs:
    def auth(self, token: str = LOGS) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def test_entries_are_accepted_and_deduplicated(self, client: TestClient, notifier: FakeNotifier) -> None:
        """An array of entries is stored one event each; the same entries again are duplicates."""
        entry = json.loads(sample("robot-log-error.json"))
        body = json.dumps({"logs": [entry, {**entry, "Message": "second"}]}).encode()
        first = client.post("/logs/uipath", content=body, headers=self.auth())
        again = client.post("/logs/uipath", content=body, headers=self.auth())
        assert (202, 2, 0) == (first.status_code, first.json()["accepted"], first.json()["duplicates"])
        assert (0, 2) == (again.json()["accepted"], again.json()["duplicates"])
        assert wait_until(lambda: len(notifier.sent) == 2)

    @pytest.mark.parametrize(
        ("headers", "status"),
        [pytest.param({}, 401, id="no-token"), pytest.param({"Authorization": "Bearer nope"}, 401, id="wrong-token")],
    )
    def test_token_is_required(self, client: TestClient, headers: dict[str, str], status: int) -> None:
        """Without the right bearer token the log route refuses."""
        reply = client.post("/logs/uipath", content=sample("robot-log-error.json"), headers=headers)
        assert (status, "unauthorized") == (reply.status_code, reply.json()["error"])

    def test_no_token_configured_means_no_route(self, tmp_path: Path, rules_path: Path) -> None:
        """With no logs token the log route does not exist for the source."""
        app = create_app(make_settings(tmp_path, rules_path, logs_token=None), notifier=FakeNotifier())
        with TestClient(app) as client:
            reply = client.post("/logs/uipath", content=sample("robot-log-error.json"), headers=self.auth())
        assert 404 == reply.status_code

    def test_a_message_cut_inside_a_surrogate_pair_is_stored_and_notified(
        self, client: TestClient, notifier: FakeNotifier
    ) -> None:
        """A message cut at 10,000 UTF-16 units can end in half an emoji: JSON's ``\\ud83d``, a lone surrogate.

        The entry, and the others posted with it, are stored and notified, not answered with a 500.
        """
        body = b'[{"Level": "Error", "Message": "first"}, {"Level": "Error", "Message": "cut \\ud83d"}]'
        reply = client.post("/logs/uipath", content=body, headers=self.auth())
        assert (202, 2) == (reply.status_code, reply.json()["accepted"]), reply.text
        assert wait_until(lambda: len(notifier.sent) == 2)
        assert any("cut" in n.body for _, n in notifier.sent)

    @pytest.mark.parametrize(
        ("bad", "said"),
        [
            pytest.param({"ProcessName": "x"}, "log entry 2 has no Message, Level or RawMessage", id="empty"),
            pytest.param({"Message": "m", "TenantId": "abc"}, "log entry 2 has fields that cannot be read", id="field"),
            pytest.param(5, "log entry 2 must be an object, got int", id="not-an-object"),
        ],
    )
    def test_a_bad_entry_in_a_batch_is_named_by_its_place(self, client: TestClient, bad: Any, said: str) -> None:
        """In a batch of a thousand, the 400 must say which entry is wrong (it said "log entry 0" for every one)."""
        good = {"Level": "Error", "Message": "fine"}
        body = json.dumps({"logs": [good, {**good, "Message": "also fine"}, bad]}).encode()
        reply = client.post("/logs/uipath", content=body, headers=self.auth())
        assert (400, "invalid_logs") == (reply.status_code, reply.json()["error"])
        assert reply.json()["detail"].startswith(said), reply.json()["detail"]

    def test_bad_log_body_is_400(self, client: TestClient) -> None:
        """A log body that is not entries gets a 400 with a code."""
        reply = client.post("/logs/uipath", content=b"42", headers=self.auth())
        assert 400 == reply.status_code


_ORIGIN = {"Origin": "http://testserver"}


class TestAdmin:
    def test_refuses_without_token(self, client: TestClient) -> None:
        """The admin API needs the bearer token."""
        assert 401 == client.get("/api/events").status_code
        assert 401 == client.get("/api/events", headers={"Authorization": "Bearer wrong"}).status_code

    def test_off_without_configured_token(self, tmp_path: Path, rules_path: Path) -> None:
        """No admin token configured: the admin API is off."""
        app = create_app(make_settings(tmp_path, rules_path, admin_token=None), notifier=FakeNotifier())
        with TestClient(app) as client:
            reply = client.get("/api/events", headers={"Authorization": "Bearer x"})
        assert (404, "admin_api_disabled") == (reply.status_code, reply.json()["error"])

    def test_reload_keeps_rules_when_file_is_broken(self, client: TestClient, rules_path: Path) -> None:
        """A broken rules file is reported by reload and readyz and the running rules stay."""
        rules_path.write_text(RULES.replace("notify: [ops]", "notify: [nowhere]"))
        reply = client.post("/api/rules/reload", headers={"Authorization": f"Bearer {ADMIN}"})
        assert 422 == reply.status_code
        assert any("nowhere" in p for p in reply.json()["problems"])
        # The error body every refusal has, besides the problems.
        assert ("invalid_rules", "failed") == (reply.json()["error"], reply.json()["status"])
        assert "1 problem; the running rules stay" in reply.json()["detail"]
        assert ["faults", "robot-errors"] == admin_get(client, "/api/rules")["rules"]
        ready = client.get("/readyz", headers={"Authorization": f"Bearer {ADMIN}"}).json()
        assert ready["rules"]["last_reload_problems"]
        rules_path.write_text(RULES.replace("name: faults", "name: all-faults"))
        ok = client.post("/api/rules/reload", headers={"Authorization": f"Bearer {ADMIN}"})
        assert (200, "reloaded") == (ok.status_code, ok.json()["status"])
        assert ["all-faults", "robot-errors"] == admin_get(client, "/api/rules")["rules"]

    def test_an_event_with_a_lone_surrogate_can_be_shown(self, client: TestClient) -> None:
        """A job's Info cut inside a UTF-16 pair (``\\ud83d``): the event's page and API answer show it (U+FFFD)."""
        raw = json.loads(fresh(EventId="cut-1"))
        raw["Job"]["Info"] = "Cannot find CUT"
        body = json.dumps(raw).encode().replace(b"CUT", b"\\ud83d")
        assert 202 == post(client, body).status_code
        assert wait_until(lambda: admin_get(client, "/api/events")["events"][0]["state"] == "processed")
        inbox_id = admin_get(client, "/api/events")["events"][0]["id"]
        shown = admin_get(client, f"/api/events/{inbox_id}")["body"]["Job"]["Info"]
        assert "Cannot find \ufffd" == shown
        login = client.post("/ui/login", data={"token": ADMIN, "next": "/ui"}, headers=_ORIGIN, follow_redirects=False)
        assert 303 == login.status_code
        page = client.get(f"/ui/events/{inbox_id}")
        assert 200 == page.status_code
        assert "Cannot find \ufffd" in page.text

    def test_an_event_with_nan_is_shown_as_text(self, client: TestClient) -> None:
        """NaN is not JSON but json.dumps writes it: such an event is kept, and its page shows the body as sent."""
        body = b'{"Type": "custom", "EventId": "nan-1", "EventData": {"Ratio": NaN, "Max": Infinity}}'
        assert 202 == post(client, body).status_code
        assert wait_until(lambda: admin_get(client, "/api/events")["events"][0]["state"] != "new")
        inbox_id = admin_get(client, "/api/events")["events"][0]["id"]
        assert body.decode() == admin_get(client, f"/api/events/{inbox_id}")["body"]

    def test_health_and_ready(self, client: TestClient) -> None:
        """healthz is always ok; readyz says ok when the store answers."""
        assert {"status": "ok"} == client.get("/healthz").json()
        assert "ok" == client.get("/readyz").json()["status"]

    def test_ready_answers_503_when_the_store_does_not_answer(
        self, client: TestClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A store that hangs (a database host gone) makes /readyz 503 at its bound, not at the pool's 10 s."""

        async def hangs() -> None:
            await asyncio.sleep(3600)

        rt = client.app.state.runtime  # type: ignore[attr-defined]
        monkeypatch.setattr(rt.store, "ping", hangs)
        monkeypatch.setattr(app_module, "_READY_PING_SECONDS", 0.2)  # the shipped 1.5 s, shortened for the test
        reply = client.get("/readyz", headers={"Authorization": f"Bearer {ADMIN}"})
        assert 503 == reply.status_code
        assert "did not answer within 0.2 s" in reply.json()["problems"]["store"]  # cut at the bound


class TestSources:
    def test_default_source_without_secret_refuses_to_start(self, rules_path: Path, tmp_path: Path) -> None:
        """No RECEIVER_WEBHOOK_SECRET and no insecure flag: the server will not start."""
        ruleset = load_rules(rules_path, environ={})
        with pytest.raises(ConfigError, match="'uipath'"):
            resolve_sources(ruleset, make_settings(tmp_path, rules_path, webhook_secret=None))

    def test_insecure_source_accepts_unsigned(self, tmp_path: Path) -> None:
        """A source marked insecure accepts unsigned webhooks."""
        path = tmp_path / "rules.yaml"
        path.write_text(RULES + "sources:\n  uipath:\n    insecure: true\n")
        app = create_app(make_settings(tmp_path, path, webhook_secret=None), notifier=FakeNotifier())
        with TestClient(app) as client:
            reply = post(client, fresh("ping.json"), secret=None)
        assert 202 == reply.status_code

    def test_extra_source_with_rotated_secrets(self, tmp_path: Path) -> None:
        """A source from rules.yaml verifies with any of its secrets and refuses others."""
        path = tmp_path / "rules.yaml"
        path.write_text(RULES + 'sources:\n  finance:\n    secrets: ["new-s", "${OLD_S}"]\n')
        import os

        os.environ["OLD_S"] = "old-s"
        try:
            app = create_app(make_settings(tmp_path, path), notifier=FakeNotifier())
            with TestClient(app) as client:
                codes = [
                    post(client, fresh("ping.json"), secret=s, source="finance").status_code
                    for s in ("new-s", "old-s", "x")
                ]
        finally:
            del os.environ["OLD_S"]
        assert [202, 202, 401] == codes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.sampled_from(["Type", "EventId", "Job", "Timestamp", "x"]), inner, max_size=5)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_arbitrary_signed_bodies_never_5xx(client: TestClient, body: bytes) -> None:
    """Whatever is signed and posted, the answer is a 2xx or a 4xx with a JSON error."""
    reply = post(client, body)
    assert reply.status_code < 500
    if reply.status_code >= 400:
        assert {"error", "detail"} == set(reply.json())
