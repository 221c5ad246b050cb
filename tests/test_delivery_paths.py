"""Delivery paths that had no test: a permanent failure, an age budget running out, a channel removed
from the rules, the ``sha256=<hex>`` signature over HTTP, and ``receiver deliveries retry ID``."""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support import fault, wait_until

from receiver.cli import main
from receiver.delivery.notifier import SendResult
from receiver.http.app import create_app
from receiver.render import Notification
from receiver.settings import Settings
from receiver.signature import sign

SECRET = "paths-secret"
ADMIN = "paths-admin"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
OPS, GONE = "json://127.0.0.1:9/ops", "json://127.0.0.1:9/gone"


class Scripted:
    """A notifier whose answer per URL the test sets (sent unless told otherwise)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.answers: dict[str, Callable[[], SendResult]] = {}

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109
        self.sent.append((url, notification.title))
        answer = self.answers.get(url)
        return answer() if answer else SendResult("sent", None, 0.001, recoverable=False)


def refused() -> SendResult:
    return SendResult("failed", "error=400: the channel refuses this message", 0.001, recoverable=False)


def unavailable() -> SendResult:
    return SendResult("failed", "error=503", 0.001, recoverable=True)


def rules_text(*, gone: bool = True, max_age: str = "24h") -> str:
    channels = f'  ops: {{url: "{OPS}", max_age: {max_age}}}\n' + (f'  gone: "{GONE}"\n' if gone else "")
    notify = "[ops, gone]" if gone else "[ops]"
    return f"""
sources:
  finance:
    secrets: ["finance-secret"]
    accept_hex_signature: true
channels:
{channels}rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: {notify}
"""


@pytest.fixture
def notifier() -> Scripted:
    return Scripted()


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(rules_text())
    return path


def start(tmp_path: Path, rules_path: Path, notifier: Scripted) -> TestClient:
    settings = Settings(
        rules=rules_path,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret=SECRET,
        admin_token=ADMIN,
        watch_rules=False,
        poll_seconds=0.05,
        retry_initial_seconds=0.05,
        retry_max_seconds=0.2,
    )
    return TestClient(create_app(settings, notifier=notifier))


@pytest.fixture
def client(tmp_path: Path, rules_path: Path, notifier: Scripted) -> Iterator[TestClient]:
    with start(tmp_path, rules_path, notifier) as client:
        yield client


def post(client: TestClient, event_id: str) -> None:
    body = fault(event_id)
    reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)})
    assert 202 == reply.status_code, reply.text


def delivery(client: TestClient, channel: str) -> dict[str, Any]:
    """The one delivery of ``channel``, with its attempt log."""
    (row,) = client.get(f"/api/deliveries?channel={channel}", headers=AUTH).json()["deliveries"]
    return dict(client.get(f"/api/deliveries/{row['id']}", headers=AUTH).json())


def settled(client: TestClient, channel: str, state: str) -> Callable[[], bool]:
    def check() -> bool:
        rows = client.get(f"/api/deliveries?channel={channel}", headers=AUTH).json()["deliveries"]
        return len(rows) == 1 and rows[0]["state"] == state

    return check


def test_a_permanent_failure_is_dead_at_once(client: TestClient, notifier: Scripted) -> None:
    """A failure the channel says will not pass on retry is dead after one attempt, with 99 attempts left."""
    notifier.answers[GONE] = refused
    post(client, "permanent")
    assert wait_until(settled(client, "gone", "dead"))
    assert wait_until(settled(client, "ops", "sent"))
    dead = delivery(client, "gone")
    assert 1 == dead["attempts"]
    assert [("dead", "error=400: the channel refuses this message")] == [
        (a["status"], a["reason"]) for a in dead["attempt_log"]
    ]
    assert 1 == [url for url, _ in notifier.sent].count(GONE)


def test_max_age_running_out_dead_letters_before_max_attempts(
    tmp_path: Path, rules_path: Path, notifier: Scripted
) -> None:
    """A channel down longer than its ``max_age`` (1 s): dead after a few retries, long before 100 attempts."""
    rules_path.write_text(rules_text(gone=False, max_age="1s"))
    notifier.answers[OPS] = unavailable
    with start(tmp_path, rules_path, notifier) as client:
        post(client, "aged")
        assert wait_until(settled(client, "ops", "dead"), timeout=30)
        dead = delivery(client, "ops")
    log = dead["attempt_log"]
    assert 2 <= dead["attempts"] < 100, dead
    assert ["failed"] * (len(log) - 1) + ["dead"] == [a["status"] for a in log]


def test_deliveries_of_a_removed_channel_are_dead_lettered(
    client: TestClient, rules_path: Path, notifier: Scripted
) -> None:
    """Rules reloaded without a channel: its pending deliveries go dead saying why, the others go on."""
    notifier.answers[GONE] = unavailable
    post(client, "orphan")
    assert wait_until(settled(client, "gone", "pending"))  # stored, not sent
    assert wait_until(lambda: delivery(client, "gone")["attempts"] >= 1)
    rules_path.write_text(rules_text(gone=False))
    assert 200 == client.post("/api/rules/reload", headers=AUTH).status_code
    assert wait_until(settled(client, "gone", "dead"))
    dead = delivery(client, "gone")
    assert "channel 'gone' is no longer configured" == dead["attempt_log"][-1]["reason"]
    sent_to_gone = [url for url, _ in notifier.sent].count(GONE)
    post(client, "after")
    assert wait_until(lambda: [url for url, _ in notifier.sent].count(OPS) == 2), notifier.sent
    assert sent_to_gone == [url for url, _ in notifier.sent].count(GONE)


@pytest.mark.parametrize("casing", [str.lower, str.upper], ids=["lower-hex", "upper-hex"])
def test_the_hex_signature_form_over_http(client: TestClient, casing: Callable[[str], str]) -> None:
    """``X-UiPath-Signature: sha256=<hex>`` is accepted on a source with ``accept_hex_signature``, not elsewhere."""
    body = fault("hex-form")
    digest = casing(hmac.new(b"finance-secret", body, hashlib.sha256).hexdigest())
    accepted = client.post("/webhooks/finance", content=body, headers={"X-UiPath-Signature": f"sha256={digest}"})
    assert 202 == accepted.status_code, accepted.text
    wrong = casing(hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest())
    refused_reply = client.post("/webhooks/finance", content=body, headers={"X-UiPath-Signature": f"sha256={wrong}"})
    assert (401, "signature_mismatch") == (refused_reply.status_code, refused_reply.json()["error"])
    # The default source does not accept the form, even with its own secret.
    own = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    default = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": f"sha256={own}"})
    assert 401 == default.status_code


def test_cli_retry_of_one_delivery(tmp_path: Path, client: TestClient, notifier: Scripted) -> None:
    """`receiver deliveries retry ID` re-queues one dead delivery, which is then sent."""
    notifier.answers[GONE] = refused
    post(client, "cli-retry")
    assert wait_until(settled(client, "gone", "dead"))
    dead = delivery(client, "gone")
    del notifier.answers[GONE]  # the channel is fixed
    out = io.StringIO()
    with redirect_stdout(out):
        assert 0 == main(["deliveries", "--database", f"sqlite:///{tmp_path / 'r.db'}", "retry", str(dead["id"])])
    assert f"delivery {dead['id']} queued for retry\n" == out.getvalue()
    assert wait_until(settled(client, "gone", "sent"))
    assert ["dead", "sent"] == [a["status"] for a in delivery(client, "gone")["attempt_log"]]
