"""Several `receiver serve` replicas on one PostgreSQL database: each notification sent once.

Real processes on loopback ports share a fresh schema; a burst of signed events is spread
over them (each event also posted to a second replica at the same time, as a retrying
Orchestrator or a load balancer would), and every expected notification must reach the local
endpoint exactly once; then the same with one replica killed with SIGKILL mid-burst.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import ServerProcess, Sink, sample

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SECRET = "replica-secret"
CONCURRENCY = 4


def fault(event_id: str) -> bytes:
    raw = json.loads(sample("job.faulted.json"))
    raw["EventId"] = event_id
    raw["Timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps(raw).encode()


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink(delay=0.01).start()
    yield server
    server.stop()


@pytest.fixture
def replicas(tmp_path: Path, sink: Sink, pg_url: str) -> Iterator[list[ServerProcess]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"""
channels:
  hook: {{url: "{sink.url()}", concurrency: {CONCURRENCY}, timeout: 5s}}
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: [hook]
    title: "{{{{ event_id }}}}"
"""
    )
    env = {"RECEIVER_WEBHOOK_SECRET": SECRET, "RECEIVER_LEASE_SECONDS": "3"}
    servers = [
        ServerProcess(rules=rules, database=tmp_path / f"replica{i}", env=env, database_url=pg_url) for i in range(3)
    ]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.kill()


def post_to_two(servers: list[ServerProcess], index: int, event_id: str) -> list[int]:
    """Post one event to two replicas at once; a dead replica answers nothing (status 0)."""
    body = fault(event_id)
    targets = [servers[index % len(servers)], servers[(index + 1) % len(servers)]]
    statuses = []
    for server in targets:
        try:
            statuses.append(server.post_signed(body, SECRET)[0])
        except OSError:
            statuses.append(0)
    return statuses


def test_burst_over_three_replicas_each_notification_once(replicas: list[ServerProcess], sink: Sink) -> None:
    """Every event, posted to two of three replicas, is notified exactly once."""
    ids = [f"rep-{i}" for i in range(240)]
    with ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(lambda pair: post_to_two(replicas, *pair), enumerate(ids)))
    assert all(s == [202, 202] for s in statuses)
    sink.wait_for(len(ids), timeout=90)
    time.sleep(1.5)  # a duplicate would arrive here
    counts = Counter(r["title"] for r in sink.received)
    assert set(ids) == set(counts)
    assert {1} == set(counts.values()), f"duplicates: {[k for k, v in counts.items() if v > 1][:10]}"


def test_replica_killed_mid_burst_loses_nothing(replicas: list[ServerProcess], sink: Sink) -> None:
    """SIGKILL one replica during the burst: the others finish its work; nothing is lost.

    Duplicates are possible only for deliveries the dead replica had in flight (at most the
    channel's concurrency), the documented at-least-once window.
    """
    ids = [f"kill-{i}" for i in range(300)]

    def post(pair: tuple[int, str]) -> list[int]:
        index, event_id = pair
        if index == 150:
            replicas[1].kill()
        return post_to_two(replicas, index, event_id)

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, enumerate(ids)))
    # Each event reached at least one live replica (the other of its pair, when one was dead).
    assert all(202 in s for s in statuses)
    sink.wait_for(len(ids), timeout=120)
    time.sleep(1.5)
    counts = Counter(r["title"] for r in sink.received)
    assert set(ids) == set(counts), f"lost: {sorted(set(ids) - set(counts))[:10]}"
    duplicates = sum(c - 1 for c in counts.values())
    assert duplicates <= CONCURRENCY
