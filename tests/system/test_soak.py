"""A short soak: bench/soak.py's machinery for about 20 seconds at a modest rate.

The full soak (``make soak``, 5 minutes at 200 events/s) states the figures in
docs/reliability.md; this one keeps the same checks in every test run: a real ``receiver
serve`` on SQLite with the example rules plus a rule that sends every event to a loopback
json:// endpoint, the harness's realistic event mix, nothing lost, nothing twice. Memory, open
files, threads and latency are measured and judged by the benchmark (``make soak``), never
asserted here (CI runs on 2 shared CPUs).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# bench/ is a directory of scripts that import each other by name (harness, loadgen), not a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import soak

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    """One short soak, shared by the assertions below."""
    cfg = soak.SoakConfig(
        seconds=16,
        rate=50,
        warmup_seconds=4,
        sample_every=1,
        connections=4,
        # Memory, files and threads are the benchmark's to judge (make soak, docs/reliability.md), not asserted here.
        rss_bound_mib=float("inf"),
        fd_slack=10**6,
        thread_slack=10**6,
        drain_timeout=60,
        out=None,
    )
    return soak.run(cfg)


def test_every_request_was_accepted(result: dict[str, Any]) -> None:
    """At a modest rate every signed event is answered 202 and none is left unsent."""
    assert (1_000, 1_000, 0, 0) == (result["sent"], result["accepted"], result["non_202"], result["not_sent"])


def test_no_accepted_event_is_lost(result: dict[str, Any]) -> None:
    """Every 202 is in the store and its notification reached the endpoint."""
    assert (0, 0) == (result["lost"], result["lost_in_store"])
    assert result["accepted"] == result["delivered"]
    assert result["drained"]


def test_nothing_arrives_twice(result: dict[str, Any]) -> None:
    """Without a crash at-least-once delivers exactly once, and only what was accepted arrives."""
    assert (0, 0) == (result["duplicates"], result["unexpected_titles"])
