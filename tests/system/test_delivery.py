"""Delivery through apprise's real json:// plugin to a real loopback endpoint that fails and recovers."""

from __future__ import annotations

import io
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient
from support import Sink, fault, wait_until

from receiver.cli import main
from receiver.http.app import create_app
from receiver.settings import Settings
from receiver.signature import sign

SECRET = "delivery-secret"
ADMIN = "admin"


def rules(sink: Sink, *, max_attempts: int = 8) -> str:
    return f"""
channels:
  hook:
    url: "{sink.url()}"
    timeout: 1s
    max_attempts: {max_attempts}
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: [hook]
    title: "Faulted {{{{ event_id }}}}"
"""


def start(tmp_path: Path, rules_text: str) -> TestClient:
    path = tmp_path / "rules.yaml"
    path.write_text(rules_text)
    settings = Settings(
        rules=path,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret=SECRET,
        admin_token=ADMIN,
        watch_rules=False,
        poll_seconds=0.05,
        retry_initial_seconds=0.1,
        retry_max_seconds=0.4,
    )
    return TestClient(create_app(settings))


def deliveries(client: TestClient) -> list[dict[str, Any]]:
    reply = client.get("/api/deliveries", headers={"Authorization": f"Bearer {ADMIN}"})
    rows: list[dict[str, Any]] = reply.json()["deliveries"]
    return rows


def attempts(client: TestClient) -> int:
    rows = deliveries(client)
    return int(rows[0]["attempts"]) if rows else 0


def attempt_log(client: TestClient) -> list[dict[str, Any]]:
    """The attempts of the one delivery, oldest first."""
    (row,) = deliveries(client)
    reply = client.get(f"/api/deliveries/{row['id']}", headers={"Authorization": f"Bearer {ADMIN}"})
    return list(reply.json()["attempt_log"])


def test_fails_500_refused_stall_then_arrives_once(tmp_path: Path, sink: Sink) -> None:
    """A 500, a refused connection and a stall past the timeout are retried; the message arrives once."""
    sink.behaviour = lambda _: 500
    with start(tmp_path, rules(sink)) as client:
        body = fault("ev-1")
        assert (
            202
            == client.post(
                "/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)}
            ).status_code
        )
        assert wait_until(lambda: attempts(client) >= 1)
        assert "500" in deliveries(client)[0]["last_error"]

        sink.stop()  # nothing listens on the port: connection refused
        assert wait_until(lambda: attempts(client) >= 2)
        refused = deliveries(client)[0]["last_error"]
        assert "500" not in refused

        stalled = Sink(port=sink.port, delay=2.5, behaviour=lambda _: None).start()  # past the 1 s budget
        try:
            # An attempt may still be refused before the stalling endpoint listens: wait for one it held.
            assert wait_until(lambda: stalled.calls >= 1), "no attempt reached the stalling endpoint"
            # That attempt failed when the channel's 1 s timeout ran out, not when the endpoint gave up (2.5 s).
            assert wait_until(lambda: any(0.9 <= a["elapsed"] < 2.4 for a in attempt_log(client))), attempt_log(client)
        finally:
            stalled.stop()

        recovered = Sink(port=sink.port).start()
        try:
            assert wait_until(lambda: deliveries(client)[0]["state"] == "sent")
            time.sleep(0.5)  # nothing more may arrive
            assert 1 == len(recovered.received)
            assert "Faulted ev-1" == recovered.received[0]["title"]
            assert deliveries(client)[0]["attempts"] >= 4  # 500, refused, stall, success (plus any retry between)
        finally:
            recovered.stop()


def test_dead_letter_then_cli_retry(tmp_path: Path, sink: Sink) -> None:
    """Past its attempt budget a delivery is dead; `receiver deliveries retry --dead` sends it."""
    sink.behaviour = lambda _: 503
    with start(tmp_path, rules(sink, max_attempts=2)) as client:
        body = fault("ev-dead")
        client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)})
        assert wait_until(lambda: bool(deliveries(client)) and deliveries(client)[0]["state"] == "dead")
        assert 2 == sink.calls
        assert [] == sink.received

        listing = io.StringIO()
        with redirect_stdout(listing):
            assert 0 == main(["deliveries", "--database", f"sqlite:///{tmp_path / 'r.db'}", "list"])
        assert "dead" in listing.getvalue()
        assert "hook" in listing.getvalue()

        sink.behaviour = lambda _: 200
        with redirect_stdout(io.StringIO()):
            assert 0 == main(["deliveries", "--database", f"sqlite:///{tmp_path / 'r.db'}", "retry", "--dead"])
        assert [] != sink.wait_for(1, timeout=10)
        assert wait_until(lambda: deliveries(client)[0]["state"] == "sent")
        assert ["Faulted ev-dead"] == [r["title"] for r in sink.received]


def test_slow_channel_does_not_delay_another(tmp_path: Path) -> None:
    """A channel whose endpoint stalls does not hold back deliveries to a healthy channel."""
    slow = Sink(delay=3.0).start()
    fast = Sink().start()
    try:
        text = f"""
channels:
  slow: {{url: "{slow.url()}", timeout: 5s, concurrency: 1}}
  fast: "{fast.url()}"
rules:
  - name: all-faults
    match: {{type: job.faulted}}
    notify: [slow, fast]
"""
        with start(tmp_path, text) as client:
            started = time.monotonic()
            for i in range(3):
                body = fault(f"ev-{i}")
                client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)})
            assert 3 == len(fast.wait_for(3, timeout=10))
            fast_done = time.monotonic() - started
            assert fast_done < 2.5, f"fast channel took {fast_done:.1f}s behind a 3s channel"
            assert len(slow.received) <= 1
    finally:
        slow.stop()
        fast.stop()
