"""Every hostile input of the trust review against one real ``receiver serve``, all at once.

The server has a signed source (``uipath``), an ``insecure: true`` one (``robots``) and a
robot-log token. While ``/healthz`` is polled every 50 ms, the test sends: a robot-log message
of 200,000 blank lines through a markdown rule, a 1 MB message against ``*Invoice*Failed*``,
a message that becomes a 10,000-character throttle key, a /logs body of 87,000 entries, a /ui
login with 51 form fields, connections that trickle unsigned bodies, wrong admin tokens, and an
unsigned fault on the insecure source before the signed source's fault of the same process.
Required throughout: ``/healthz`` answers within 1 s; afterwards every accepted event is
processed (nothing accepted is lost or stuck) and the signed source's alert arrived.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import HealthPoller, ServerProcess, Sink, fault, wait_until

pytestmark = pytest.mark.slow

SECRET = "hostile-webhook-secret"
LOGS_TOKEN = "hostile-logs-token"
ADMIN_TOKEN = "hostile-admin-token"


@pytest.fixture
def server(tmp_path: Path, sink: Sink) -> Iterator[ServerProcess]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"""
channels:
  hook: {{url: '{sink.url()}', timeout: 5s}}
sources:
  robots: {{insecure: true}}
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: [hook]
    title: "{{{{ source }}}} {{{{ event_id }}}}"
    throttle: {{interval: 1h, key: "{{{{ process }}}}"}}
  - name: invoice-failed
    match: {{type: robot.log, message: "*Invoice*Failed*"}}
    notify: [hook]
    format: markdown
  - name: long-keys
    match: {{type: robot.log, message: "key:*"}}
    notify: [hook]
    throttle: {{interval: 1h, key: "{{{{ message }}}}"}}
  - name: robot-log
    match: {{type: robot.log}}
    notify: [hook]
    format: markdown
    body: "{{{{ message }}}}"
"""
    )
    env = {
        "RECEIVER_WEBHOOK_SECRET": SECRET,
        "RECEIVER_LOGS_TOKEN": LOGS_TOKEN,
        "RECEIVER_ADMIN_TOKEN": ADMIN_TOKEN,
        "RECEIVER_BODY_TIMEOUT_SECONDS": "2",
        "RECEIVER_AUTH_FAILURES_PER_MINUTE": "1000",  # its own admin calls share an address with the wrong tokens
    }
    process = ServerProcess(rules=rules, database=tmp_path / "r.db", env=env).start()
    yield process
    process.stop()


def _entry(message: str, level: str = "Error") -> dict[str, Any]:
    return {
        "Level": level,
        "ProcessName": "InvoiceProcessing",
        "RobotName": "FIN-UNATT-01",
        "Message": message,
        "TimeStamp": time.strftime("%Y-%m-%dT%H:%M:%S.123Z", time.gmtime()),
    }


def _request(server: ServerProcess, path: str, token: str = ADMIN_TOKEN, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{server.base}{path}",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _trickle(server: ServerProcess, count: int) -> list[socket.socket]:
    """Open ``count`` connections that send a webhook head and a few body bytes, then nothing."""
    sockets = []
    port = int(server.base.rsplit(":", 1)[1])
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(b'POST /webhooks/uipath HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"Type":')
        sockets.append(conn)
    return sockets


def test_every_hostile_input_at_once_leaves_the_server_answering_and_loses_nothing(
    server: ServerProcess, sink: Sink
) -> None:
    """/healthz answers within 1 s throughout; every accepted event ends processed; the signed alert arrives."""
    logs = {"Authorization": f"Bearer {LOGS_TOKEN}"}
    accepted = 0
    held = _trickle(server, 8)
    try:
        with HealthPoller(server.base) as poller:
            for message, level in (
                ("Stack trace follows" + "\n" * 200_000 + "- end of trace", "Error"),
                (("Invoice INV-20931 processed " * 40_000)[:1_000_000], "Error"),
                ("key:" + "k" * 10_000, "Error"),
                ("key:" + "k" * 10_000, "Fatal"),  # another entry, the same long key: throttled, no second alert
            ):
                status, answer = server.post("/logs/uipath", json.dumps(_entry(message, level)).encode(), logs)
                assert 202 == status, answer
                accepted += 1
            flood = json.dumps([{"level": 1}] * 87_000, separators=(",", ":")).encode()  # just under 1 MiB
            status, answer = server.post("/logs/uipath", flood, logs)
            assert (413, "too_many_entries") == (status, answer["error"])
            form = "&".join(f"f{i}=x" for i in range(51)).encode()
            assert 400 == _request(server, "/ui/login", body=form)[0]
            assert {401} == {_request(server, "/api/rules", token=f"wrong-{i}")[0] for i in range(20)}
            assert 202 == server.post("/webhooks/robots", fault("unsigned-1"))[0]
            assert 202 == server.post_signed(fault("signed-1"), SECRET)[0]
            accepted += 2

            deadline = time.monotonic() + 90
            events: list[dict[str, Any]] = []
            while time.monotonic() < deadline and not poller.stalled:
                status, body = _request(server, "/api/events?limit=100")
                events = body["events"] if status == 200 else []
                if len(events) >= accepted and all(e["state"] != "new" for e in events):
                    break
                time.sleep(0.2)
            # The slow connections are still held: /healthz is asked at least five times under them.
            wait_until(lambda: poller.polls >= 5, timeout=10)
    finally:
        for conn in held:
            conn.close()

    assert not poller.failures, poller.failures
    assert poller.slowest < 1.0, f"/healthz took {poller.slowest:.2f} s"
    assert poller.polls >= 5
    assert accepted == len(events), events
    assert {"processed"} == {e["state"] for e in events}, [(e["id"], e["state"], e.get("outcome")) for e in events]
    titles = [r["title"] for r in sink.wait_for(5, timeout=30)]
    assert "uipath signed-1" in titles, titles
    assert "robots unsigned-1" in titles, titles
    # One alert each for the two huge messages and the long key (its twin throttled), and the two faults.
    time.sleep(1)
    assert 5 == len(sink.received), [r["title"] for r in sink.received]


def test_a_regex_rule_on_a_text_made_to_trip_it_leaves_the_server_answering(tmp_path: Path, sink: Sink) -> None:
    """``.*connection.*refused`` on a job Info of repeated ``connection``: /healthz stays under 1 s.

    Python's backtracking engine took 84 s for this 16 KB signed event, in one call that held the
    GIL: no webhook was answered meanwhile. On RE2 the event is decided at once and the next
    rule's alert goes out.
    """
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"""
channels:
  hook: {{url: '{sink.url()}', timeout: 5s}}
rules:
  - name: connection-refused
    match: {{type: job.faulted, job.info: {{regex: ".*connection.*refused"}}}}
    notify: [hook]
  - name: faults
    match: {{type: job.faulted}}
    notify: [hook]
    title: "fault {{{{ event_id }}}}"
"""
    )
    server = ServerProcess(rules=rules, database=tmp_path / "r.db", env={"RECEIVER_WEBHOOK_SECRET": SECRET}).start()
    try:
        body = json.loads(fault("tripwire"))
        body["Job"]["Info"] = "connection " * 1_400
        with HealthPoller(server.base, limit=30) as poller:
            assert 202 == server.post_signed(json.dumps(body).encode(), SECRET)[0]
            arrived = wait_until(lambda: sink.received or poller.stalled, timeout=30)
        assert arrived
        assert not poller.failures, poller.failures
        assert poller.slowest < 1.0, f"/healthz took {poller.slowest:.2f} s"
        assert ["fault tripwire"] == [r["title"] for r in sink.wait_for(1, timeout=10)]
    finally:
        server.stop()
