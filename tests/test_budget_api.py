"""A notification held by a channel budget, as the admin API and the web page show it."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support import fault, wait_until

from receiver.delivery.notifier import SendResult
from receiver.http.app import create_app
from receiver.render import Notification
from receiver.settings import Settings
from receiver.signature import sign

SECRET = "budget-secret"
ADMIN = "budget-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
RULES = """
channels:
  ops: {url: "log://", budget: {max: 1, per: 1h}}
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
"""


class Notifier:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109 - the Notifier protocol
        self.sent.append(notification)
        return SendResult(status="sent", reason=None, elapsed=0.0, recoverable=True)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = Settings(
        rules=rules,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret=SECRET,
        admin_token=ADMIN,
        watch_rules=False,
        poll_seconds=0.05,
    )
    with TestClient(create_app(settings, notifier=Notifier()), follow_redirects=False) as test_client:
        yield test_client


def events(client: TestClient) -> list[dict[str, Any]]:
    return list(client.get("/api/events", headers=AUTH).json()["events"])


def test_the_held_event_says_held_by_channel_budget_in_the_api_and_on_the_page(client: TestClient) -> None:
    """Of two faults on a channel with a budget of one, the second is held: its event page says why."""
    for n in range(2):
        body = fault(f"budget-{n}")
        reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)})
        assert 202 == reply.status_code
    assert wait_until(lambda: len(events(client)) == 2 and all(e["state"] == "processed" for e in events(client)))
    newest = events(client)[0]
    detail = client.get(f"/api/events/{newest['id']}", headers=AUTH).json()
    held = [d for d in detail["decisions"] if d["action"] == "held"]
    assert 1 == len(held), detail
    assert held[0]["reason"].startswith("held by channel budget: 'ops' sent its 1 notification(s) of the 1h window")
    assert [] == detail["deliveries"]
    login = client.post("/ui/login", data={"token": ADMIN, "next": "/ui"}, headers={"Origin": "http://testserver"})
    assert 303 == login.status_code
    page = html.unescape(client.get(f"/ui/events/{newest['id']}").text)
    assert "held by channel budget: 'ops'" in page
