"""Reloading rules under webhook traffic: SIGHUP and file changes swap whole rule sets, drop nothing."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from support import ServerProcess, Sink, fault, wait_until

pytestmark = pytest.mark.slow

SECRET = "reload-secret"


def rules_text(sink: Sink, version: str) -> str:
    # Two rules per version: a half-applied reload would show a title from one version and a
    # body from the other.
    return f"""
channels:
  hook: {{url: "{sink.url()}", concurrency: 8}}
rules:
  - name: faults-{version}
    match: {{type: job.faulted}}
    notify: [hook]
    title: "{version} {{{{ event_id }}}}"
    body: "{version}"
"""


def test_reload_under_traffic(tmp_path: Path, sink: Sink) -> None:
    """Events posted during SIGHUP and file-change reloads (and a broken file) are each notified once, whole."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text(sink, "v1"))
    server = ServerProcess(rules=rules, database=tmp_path / "r.db", env={"RECEIVER_WEBHOOK_SECRET": SECRET})
    server.start()
    posted: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        i = 0
        while not stop.is_set() and i < 2000:  # bounded
            event_id = f"r-{i}"
            statuses.append(server.post_signed(fault(event_id), SECRET)[0])
            posted.append(event_id)
            i += 1
            time.sleep(0.005)

    def arrived(version: str) -> bool:
        return any(r["title"].startswith(f"{version} ") for r in list(sink.received))

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        # Each step waits for what it needs (a notification of the running version), not for a time.
        assert wait_until(lambda: arrived("v1"), timeout=30)
        rules.write_text(rules_text(sink, "v2"))
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: arrived("v2"), timeout=30), "the SIGHUP reload never took effect"
        rules.write_text("rules: [ {name: broken, notify: [nowhere]} ]\n")  # invalid: running rules stay
        server.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "rules_reload_failed" in server.log(), timeout=30)
        settled = len(posted)
        assert wait_until(lambda: len(posted) >= settled + 20, timeout=30), "no traffic after the broken reload"
        rules.write_text(rules_text(sink, "v3"))  # picked up by the file watcher, no signal
        assert wait_until(lambda: arrived("v3"), timeout=30), "the file watcher never reloaded"
    finally:
        stop.set()
        thread.join()
    try:
        received = sink.wait_for(len(posted), timeout=60)
        time.sleep(0.5)  # a duplicate would arrive meanwhile (checked below)
        received = list(sink.received)
    finally:
        log = server.log()
        server.stop()
    assert set(statuses) == {202}
    titles = [r["title"] for r in received]
    counts = Counter(t.split(" ", 1)[1] for t in titles)
    assert set(posted) == set(counts), f"lost: {sorted(set(posted) - set(counts))[:5]}"
    assert {1} == set(counts.values())
    versions = Counter(t.split(" ", 1)[0] for t in titles)
    assert {"v1", "v2", "v3"} == set(versions), versions
    assert all(r["message"].strip() == r["title"].split(" ", 1)[0] for r in received), (
        "title and body from different rule sets"
    )
    assert "rules_reload_failed" in log
