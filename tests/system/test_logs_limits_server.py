"""``POST /logs/{source}`` limits against a real ``receiver serve``: /healthz stays quick, delivery stays fast."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

from support import ServerProcess, Sink, fault, wait_until
from test_app import LOGS, SECRET
from test_logs_limits import RULES, stored


class _HealthProbe:
    """Polls ``/healthz`` in a thread and keeps the slowest answer (a timeout counts as 10 s)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.slowest = 0.0
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=10) as reply:  # noqa: S310 - loopback
                    reply.read()
                took = time.perf_counter() - started
            except OSError:
                took = 10.0
            self.slowest = max(self.slowest, took)
            self.polls += 1
            self._stop.wait(0.01)

    def __enter__(self) -> _HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def test_a_real_server_keeps_answering_while_full_log_bodies_arrive(tmp_path: Path) -> None:
    """Three ~1 MiB bodies of 1,000 entries and one of 87,000 tiny entries: /healthz answers within 1 s throughout.

    The 87,000-entry body is the one that held the loop ~1.5-3.5 s per request before the cap; now it
    is a 413, and the bodies at the cap are parsed off the loop and every entry is stored.
    """
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {"RECEIVER_WEBHOOK_SECRET": SECRET, "RECEIVER_LOGS_TOKEN": LOGS, "RECEIVER_BODY_TIMEOUT_SECONDS": "30"}
    server = ServerProcess(rules=rules, database=tmp_path / "r.db", env=env).start()
    auth = {"Authorization": f"Bearer {LOGS}"}
    padding = "x" * 990
    full = [
        json.dumps({"logs": [{"Level": "Info", "Message": f"b{b}-{n} {padding}"} for n in range(1000)]}).encode()
        for b in range(3)
    ]
    tiny = ("[" + ",".join(['{"level":1}'] * 87000) + "]").encode()
    try:
        with _HealthProbe(server.base) as probe:
            time.sleep(0.3)
            statuses = [server.post("/logs/uipath", body, auth)[0] for body in full]
            too_many = server.post("/logs/uipath", tiny, auth)
            everything_stored = wait_until(lambda: 3000 == stored(tmp_path), timeout=30)
        assert all(len(body) > 1_000_000 for body in full)
        assert len(tiny) > 1_000_000
        assert [202, 202, 202] == statuses
        assert (413, "too_many_entries") == (too_many[0], too_many[1]["error"])
        assert everything_stored, f"{stored(tmp_path)} of 3000 entries stored"
        assert probe.polls > 10
        assert probe.slowest < 1.0, f"/healthz took {probe.slowest:.2f} s while log bodies arrived"
    finally:
        server.stop()


def test_trickled_unsigned_bodies_do_not_slow_delivery(tmp_path: Path) -> None:
    """Ten connections holding unsigned bodies open: 100 alerts still go out in seconds, not at ~7 a second."""
    sink = Sink().start()
    rules = tmp_path / "rules.yaml"
    channels = f"channels:\n  hook: {{url: '{sink.url()}'}}\n"
    rules.write_text(channels + "rules:\n  - {name: all, match: {}, notify: [hook]}\n")
    env = {"RECEIVER_WEBHOOK_SECRET": SECRET, "RECEIVER_BODY_TIMEOUT_SECONDS": "60"}
    server = ServerProcess(rules=rules, database=tmp_path / "r.db", env=env).start()
    held: list[socket.socket] = []
    try:
        for n in range(10):
            body = fault(f"held-{n}")
            sock = socket.create_connection(("127.0.0.1", server.port))
            head = (
                f"POST /webhooks/uipath HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"X-UiPath-Signature: sha256=bm9wZQ==\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body[:10])
            held.append(sock)
        time.sleep(0.3)
        started = time.monotonic()
        statuses = {server.post_signed(fault(f"alert-{n}"), SECRET)[0] for n in range(100)}
        delivered = sink.wait_for(100, timeout=30)
        took = time.monotonic() - started
    finally:
        for sock in held:
            sock.close()
        server.stop()
        sink.stop()
    assert {202} == statuses
    assert 100 == len(delivered)
    assert took < 5.0, f"100 alerts took {took:.1f} s next to 10 trickled unsigned bodies"
