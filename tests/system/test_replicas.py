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
from support import ServerProcess, Sink, fault, sample

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SECRET = "replica-secret"
CONCURRENCY = 4


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink(delay=0.01).start()
    yield server
    server.stop()


def start_replicas(tmp_path: Path, pg_url: str, rules_text: str) -> list[ServerProcess]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text)
    env = {"RECEIVER_WEBHOOK_SECRET": SECRET, "RECEIVER_LEASE_SECONDS": "3"}
    servers = [
        ServerProcess(rules=rules, database=tmp_path / f"replica{i}", env=env, database_url=pg_url) for i in range(3)
    ]
    for server in servers:
        server.start()
    return servers


@pytest.fixture
def replicas(tmp_path: Path, sink: Sink, pg_url: str) -> Iterator[list[ServerProcess]]:
    servers = start_replicas(
        tmp_path,
        pg_url,
        f"""
channels:
  hook: {{url: "{sink.url()}", concurrency: {CONCURRENCY}, timeout: 5s}}
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: [hook]
    title: "{{{{ event_id }}}}"
""",
    )
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


def test_noise_state_is_shared_by_replicas(tmp_path: Path, sink: Sink, pg_url: str) -> None:
    """A throttle and a digest give on three replicas what they give on one: one message each."""
    servers = start_replicas(
        tmp_path,
        pg_url,
        f"""
channels:
  hook: "{sink.url()}"
rules:
  - name: throttled-faults
    match: {{type: job.faulted}}
    notify: [hook]
    throttle: {{key: "{{{{ process }}}}", interval: 1h}}
    title: "throttled {{{{ process }}}}"
  - name: queue-digest
    match: {{type: queueItem.transactionFailed}}
    notify: [hook]
    group: {{by: [queue], wait: 2s, interval: 1h}}
    title: "digest"
""",
    )
    try:
        failed = json.loads(sample("queueItem.transactionFailed.json"))

        def post(i: int) -> int:
            if i % 2:
                body = fault(f"noise-{i}")
            else:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                body = json.dumps({**failed, "EventId": f"qi-{i}", "Timestamp": stamp}).encode()
            return servers[i % 3].post_signed(body, SECRET)[0]

        with ThreadPoolExecutor(12) as pool:
            assert {202} == set(pool.map(post, range(60)))
        sink.wait_for(2, timeout=30)
        time.sleep(4)  # past the group's wait: a second digest or throttled message would be here
    finally:
        for server in servers:
            server.kill()
    titles = sorted(r["title"] for r in sink.received)
    assert 2 == len(titles), titles
    assert "digest" == titles[0]
    assert titles[1].startswith("throttled ")
