"""The heartbeat against a real ``receiver serve`` and the fake Orchestrator (issue #21, items 2 and 3).

Periods are short (``every: 2s``): a disabled webhook, a secret changed on Orchestrator's side and
an API that answers 429 and 500 for a while are each seen by the receiver, alerted once on the
sink (the configured channel), and the path comes back ("restored") where it can.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_orchestrator import FakeOrchestrator
from support import ServerProcess, Sink, wait_until

pytestmark = pytest.mark.slow  # also set by tests/system/conftest.py

SECRET = "hb-s3cret"
ADMIN = "hb-admin-token"
EVERY = 2.0
REQUESTS = 'receiver_orchestrator_requests_total{{outcome="{}",source="uipath"}}'


@pytest.fixture
def orch() -> Iterator[FakeOrchestrator]:
    with FakeOrchestrator(org="acme", tenant="DefaultTenant") as fake:
        fake.add_client("hb-app", "hb-app-secret", scopes="OR.Webhooks")
        yield fake


def _server(
    tmp_path: Path, sink: Sink, orch: FakeOrchestrator, *, auto_enable: bool = False, health_every: str = "1s"
) -> ServerProcess:
    env = {"RECEIVER_ADMIN_TOKEN": ADMIN}
    server = ServerProcess(rules=tmp_path / "rules.yaml", database=tmp_path / "r.db", env=env)
    flag = str(auto_enable).lower()
    public_url = f"{server.base}/webhooks/uipath"
    server.rules.write_text(
        f"""
channels:
  ops: {{url: '{sink.url()}', timeout: 5s}}
sources:
  uipath:
    secrets: ['{SECRET}']
    orchestrator:
      url: '{orch.orchestrator_url}'
      client_id: hb-app
      client_secret: hb-app-secret
      public_url: '{public_url}'
      heartbeat: {{every: {EVERY}s, within: 1s, notify: [ops], health_every: {health_every}, auto_enable: {flag}}}
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: [ops]
"""
    )
    return server


def _get(server: ServerProcess, path: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{server.base}{path}", headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:  # noqa: S310 - loopback
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _path(server: ServerProcess) -> dict[str, Any]:
    status, body = _get(server, "/readyz", ADMIN)
    assert status == 200, body  # a deaf path is degraded, never a readiness failure
    return dict(json.loads(body).get("webhook_path", {}).get("uipath", {}))


def _metric(server: ServerProcess, name: str) -> float | None:
    _, body = _get(server, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _overview(server: ServerProcess) -> str:
    """The web page's overview, after logging in with the admin token."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    form = urllib.parse.urlencode({"token": ADMIN, "next": "/ui"}).encode()
    login = urllib.request.Request(f"{server.base}/ui/login", data=form, headers={"Origin": server.base})  # noqa: S310
    opener.open(login, timeout=5).read()
    with opener.open(f"{server.base}/ui", timeout=5) as reply:
        return str(reply.read().decode())


def _messages(sink: Sink) -> list[str]:
    return [f"{m.get('title', '')}\n{m.get('message', '')}" for m in sink.received]


def test_heartbeat_runs_and_a_disabled_webhook_is_alerted_within_two_periods(
    tmp_path: Path, sink: Sink, orch: FakeOrchestrator
) -> None:
    server = _server(tmp_path, sink, orch)
    # Subscribed to ping only: the rules need job.faulted too (a warning, not an outage).
    hook = orch.add_webhook(f"{server.base}/webhooks/uipath", secret=SECRET, events=["ping"])
    server.start()
    try:
        assert wait_until(lambda: _path(server).get("state") == "up", timeout=20), server.log()
        state = _path(server)
        assert state["roundtrip_seconds"] is not None
        assert state["roundtrip_seconds"] < 1.0
        assert state["missing_event_types"] == ["job.faulted"]
        assert _metric(server, 'receiver_webhook_path_up{source="uipath"}') == 1.0
        assert _metric(server, 'receiver_webhook_path_roundtrip_seconds{source="uipath"}') is not None
        status, body = _get(server, "/readyz")  # without the token: names only
        assert status == 200
        assert json.loads(body)["degraded"] == ["webhook_path:uipath"]
        assert "webhook_path" not in json.loads(body)
        page = _overview(server)
        assert "webhook path of uipath, round trip" in page
        assert "does not subscribe to job.faulted" in page
        assert sink.received == []

        orch.edit_webhook(hook["Id"], Enabled=False)
        disabled_at = time.monotonic()
        alerts = sink.wait_for(1, timeout=3 * EVERY + 5)
        assert alerts, server.log()
        assert time.monotonic() - disabled_at <= 2 * EVERY + 3  # two periods, plus the dispatcher's send
        assert "is down" in alerts[0]["title"]
        assert "disabled" in alerts[0]["message"]
        assert _path(server)["state"] == "down"
        assert _metric(server, 'receiver_webhook_path_up{source="uipath"}') == 0.0
        time.sleep(3 * EVERY)
        assert len(sink.received) == 1, _messages(sink)  # one alert per outage, not one per period
    finally:
        server.stop()


@pytest.mark.parametrize("change", ["disabled", "deleted"])
def test_between_health_reads_a_disabled_or_deleted_webhook_is_named(
    tmp_path: Path, sink: Sink, orch: FakeOrchestrator, change: str
) -> None:
    """The webhook read every 60 s, pinged every 2 s: a person disabling or deleting it in between is
    named as such at once, not as Orchestrator's suspension ("nothing arrived") or a refused Ping."""
    server = _server(tmp_path, sink, orch, health_every="60s")
    hook = orch.add_webhook(f"{server.base}/webhooks/uipath", secret=SECRET, events=["ping", "job.faulted"])
    server.start()
    try:
        assert wait_until(lambda: _path(server).get("state") == "up", timeout=20), server.log()
        if change == "disabled":
            orch.edit_webhook(hook["Id"], Enabled=False)
        else:
            with orch._lock:  # deleted in the web UI
                del orch._webhooks[hook["Id"]]
        alerts = sink.wait_for(1, timeout=3 * EVERY + 5)
        assert alerts, server.log()
        expected = "disabled" if change == "disabled" else "no webhook in Orchestrator has the URL"
        assert expected in alerts[0]["message"], alerts[0]["message"]
    finally:
        server.stop()


def test_auto_enable_enables_the_webhook_again_and_one_restored_message_follows(
    tmp_path: Path, sink: Sink, orch: FakeOrchestrator
) -> None:
    server = _server(tmp_path, sink, orch, auto_enable=True)
    hook = orch.add_webhook(f"{server.base}/webhooks/uipath", secret=SECRET, events=["ping", "job.faulted"])
    server.start()
    try:
        assert wait_until(lambda: _path(server).get("state") == "up", timeout=20), server.log()
        orch.edit_webhook(hook["Id"], Enabled=False)
        received = sink.wait_for(2, timeout=4 * EVERY + 5)
        assert len(received) == 2, (_messages(sink), server.log())
        assert "is down" in received[0]["title"]
        assert "disabled" in received[0]["message"]
        assert "enabled it again" in received[0]["message"]
        assert "restored" in received[1]["title"]
        assert "was down for" in received[1]["message"]
        assert orch.webhook(hook["Id"])["Enabled"] is True
        time.sleep(2 * EVERY)
        assert len(sink.received) == 2, _messages(sink)
        assert _path(server)["state"] == "up"
    finally:
        server.stop()


@pytest.mark.parametrize("hidden", ["null", "masked"])
def test_auto_enable_keeps_the_secret_when_orchestrator_does_not_show_it(
    tmp_path: Path, sink: Sink, orch: FakeOrchestrator, hidden: str
) -> None:
    """Orchestrator reads the webhook back without its Secret (null or masked, §7): enabling it again must not
    send that back in place of the secret, or every later event arrives unsigned or mis-signed."""
    server = _server(tmp_path, sink, orch, auto_enable=True)
    hook = orch.add_webhook(f"{server.base}/webhooks/uipath", secret=SECRET, events=["ping", "job.faulted"])
    orch.secret_on_read = hidden  # type: ignore[assignment]
    server.start()
    try:
        assert wait_until(lambda: _path(server).get("state") == "up", timeout=20), server.log()
        orch.edit_webhook(hook["Id"], Enabled=False)
        assert wait_until(lambda: orch.webhook(hook["Id"])["Enabled"], timeout=4 * EVERY + 5), server.log()
        assert SECRET == orch.webhook(hook["Id"])["Secret"]
        received = sink.wait_for(2, timeout=4 * EVERY + 5)
        assert ["down", "restored"] == [
            "down" if "is down" in m["title"] else "restored" if "restored" in m["title"] else m["title"]
            for m in received
        ], _messages(sink)
    finally:
        server.stop()


def test_a_secret_changed_on_orchestrators_side_is_alerted_as_a_signature_mismatch(
    tmp_path: Path, sink: Sink, orch: FakeOrchestrator
) -> None:
    server = _server(tmp_path, sink, orch)
    hook = orch.add_webhook(f"{server.base}/webhooks/uipath", secret=SECRET, events=["ping", "job.faulted"])
    server.start()
    try:
        assert wait_until(lambda: _path(server).get("state") == "up", timeout=20), server.log()
        orch.edit_webhook(hook["Id"], Secret="rotated-on-one-side")
        alerts = sink.wait_for(1, timeout=3 * EVERY + 5)
        assert alerts, server.log()
        assert "signature" in alerts[0]["message"]
        assert "secret" in alerts[0]["message"]
    finally:
        server.stop()


def test_orchestrator_answering_429_and_500_for_a_while_backs_off_and_recovers(
    tmp_path: Path, sink: Sink, orch: FakeOrchestrator
) -> None:
    server = _server(tmp_path, sink, orch)
    orch.add_webhook(f"{server.base}/webhooks/uipath", secret=SECRET, events=["ping", "job.faulted"])
    server.start()
    try:
        assert wait_until(lambda: _path(server).get("state") == "up", timeout=20), server.log()
        orch.fail_next(4, status=429, retry_after=0.5)
        orch.fail_for(6.0, status=500)
        started = time.monotonic()
        while time.monotonic() - started < 7.0:  # the server stays responsive all along
            t0 = time.monotonic()
            status, _ = _get(server, "/healthz")
            assert status == 200
            assert time.monotonic() - t0 < 1.0
            time.sleep(0.5)
        assert server.process is not None
        assert server.process.poll() is None
        assert wait_until(lambda: '"orchestrator_request_retried"' in server.log(), timeout=5)
        assert (_metric(server, REQUESTS.format("rate_limited")) or 0) > 0
        assert (_metric(server, REQUESTS.format("server_error")) or 0) > 0
        # Recovery: the circuit's pause fits the period, and the path is proven again.
        assert wait_until(
            lambda: (
                _metric(server, 'receiver_webhook_path_up{source="uipath"}') == 1.0
                and _path(server).get("state") == "up"
            ),
            timeout=30,
        ), server.log()
        messages = _messages(sink)
        if messages:  # an outage long enough to alert ends with one "restored"
            assert "api" in messages[0].lower()
            assert "restored" in messages[-1]
    finally:
        server.stop()


def test_strangers_sending_badly_signed_webhooks_do_not_take_the_path_down(
    tmp_path: Path, sink: Sink, orch: FakeOrchestrator
) -> None:
    """Anyone can reach the webhook URL: a request with a wrong signature while a ping is awaited ended
    the wait at once as ``signature_mismatch``, so a stranger kept the path "down" (and its alert
    sent) while Orchestrator's pings arrived fine. A mismatch now names the cause only when no
    ping arrived in time.
    """
    import threading

    server = _server(tmp_path, sink, orch)
    orch.add_webhook(f"{server.base}/webhooks/uipath", secret=SECRET, events=["ping", "job.faulted"])
    orch.delivery_delay = 0.3  # Orchestrator's webhook service posts the ping a moment after the API call
    server.start()
    stop = threading.Event()
    sent = [0]

    def stranger() -> None:
        body = b'{"Type": "ping", "EventId": "not-from-orchestrator"}'
        while not stop.is_set():
            request = urllib.request.Request(  # noqa: S310 - loopback
                f"{server.base}/webhooks/uipath",
                data=body,
                headers={"X-UiPath-Signature": "ct0MZsQvUZSoSGK+fBS/cvvMZ/nkYE7qngo9ZIBb1zg="},
            )
            try:
                urllib.request.urlopen(request, timeout=5).read()  # noqa: S310 - loopback
            except urllib.error.HTTPError:
                sent[0] += 1
            stop.wait(0.002)

    try:
        assert wait_until(lambda: _path(server).get("state") == "up", timeout=20), server.log()
        thread = threading.Thread(target=stranger, daemon=True)
        thread.start()
        time.sleep(4 * EVERY)
        stop.set()
        thread.join(timeout=10)
        assert sent[0] > 100
        assert [] == _messages(sink)
        assert "up" == _path(server)["state"]
    finally:
        stop.set()
        server.stop()
