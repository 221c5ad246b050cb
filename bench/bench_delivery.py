"""Delivery and end to end, against a local json:// endpoint that answers in 5 ms (bench/sink.py).

Delivery: 1,000 job.faulted events posted to ``receiver serve`` whose one rule sends each to the
endpoint (channel concurrency 4): the time from the first POST to the arrival of the last
notification, against apprise called directly on the same endpoint with the same parallelism
(bench/direct_apprise.py, pinned to the server's CPU). Interleaved receiver, direct, receiver,
direct...; the ratio is the median of the ratios of adjacent pairs. Each of ``candidates``
(directories holding a changed receiver package, ``bench/suite.py --candidate``) runs after the
receiver in every round, and its ratio is taken against the same round's direct run.

End to end: events posted at a steady rate (200/s for 30 s), each timed from when its POST was
due to when its notification reached the endpoint (wall clock, one machine): p50, p99, max, and
how many accepted events never arrived. The baseline is apprise called directly at the same rate
on the same endpoint, timed the same way.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    Server,
    Sink,
    candidate_labels,
    count_inbox,
    cpu_seconds,
    median,
    percentile,
    run_direct_apprise,
    run_tag,
    signed_faults,
    sink_rules,
    workdir,
)
from loadgen import post_all, run_open

CONCURRENCY = 4  # the channel's concurrency, and the direct baseline's parallelism


@dataclass(frozen=True)
class DeliveryConfig:
    """How much to measure."""

    events: int = 1_000
    reps: int = 3
    rate: float = 200.0
    e2e_seconds: float = 30.0
    baseline_seconds: float = 5.0
    candidates: tuple[Path, ...] = ()


def _log(message: str) -> None:
    print(f"  delivery: {message}", file=sys.stderr, flush=True)  # noqa: T201 - progress


def _receiver(sink: Sink, wd: Path, tree: Path | None = None) -> Server:
    rules = sink_rules(wd, sink.port, concurrency=CONCURRENCY)
    return Server("receiver", wd, rules=rules) if tree is None else Server("receiver", wd, rules=rules, tree=tree)


def through_receiver(sink: Sink, events: int, tree: Path | None = None, label: str = "receiver") -> dict[str, Any]:
    """One delivery run: seconds to the last arrival, arrivals, 202s, posting time, server CPU seconds."""
    tag = run_tag()
    items = signed_faults(events, tag)
    with workdir("delivery") as tmp:
        server = _receiver(sink, Path(tmp), tree)
        with server:
            cpu = cpu_seconds(server.pid)
            start = time.time()
            statuses = post_all(server.port, items, concurrency=16)
            posted = time.time() - start
            stats = sink.wait_for(tag, events, timeout=300)
            cpu = cpu_seconds(server.pid) - cpu
        counts = count_inbox(server.database)
    seconds = (stats["last"] or time.time()) - start
    _log(f"{label:<8} {seconds:.2f} s for {stats['count']}/{events} (posting took {posted:.2f} s)")
    return {
        "seconds": seconds,
        "arrived": stats["count"],
        "accepted": statuses.get(202, 0),
        "post_seconds": posted,
        "cpu_seconds": cpu,
        "deliveries_dead": counts.get("deliveries_dead", 0),
    }


def _direct(sink: Sink, events: int, tmp: Path) -> dict[str, Any]:
    tag = run_tag()
    doc = run_direct_apprise(sink.url, tag, events, concurrency=CONCURRENCY, out=tmp / f"direct-{tag}.json")
    stats = sink.wait_for(tag, events, timeout=60)
    seconds = (stats["last"] or time.time()) - doc["start"]
    _log(f"direct   {seconds:.2f} s for {stats['count']}/{events}")
    return {"seconds": seconds, "arrived": stats["count"], "failed": doc["failed"]}


def delivery(cfg: DeliveryConfig, sink: Sink, tmp: Path) -> dict[str, Any]:
    """The delivery comparison; returns runs and summary (and one summary per candidate)."""
    labels = candidate_labels(cfg.candidates)
    rounds = []
    for _ in range(cfg.reps):
        receiver = through_receiver(sink, cfg.events)
        others = {label: through_receiver(sink, cfg.events, tree, label) for label, tree in labels}
        rounds.append((receiver, others, _direct(sink, cfg.events, tmp)))
    return {
        "events": cfg.events,
        "concurrency": CONCURRENCY,
        "sink_delay_ms": sink.delay * 1e3,
        "receiver_s": median(r["seconds"] for r, _, _ in rounds),
        "direct_s": median(d["seconds"] for _, _, d in rounds),
        "ratio": median(r["seconds"] / d["seconds"] for r, _, d in rounds),
        "lost": sum(r["accepted"] - r["arrived"] for r, _, _ in rounds),
        "runs": [{"receiver": r, "direct": d, **o} for r, o, d in rounds],
        "candidates": {
            label: {
                "receiver_s": median(o[label]["seconds"] for _, o, _ in rounds),
                "ratio": median(o[label]["seconds"] / d["seconds"] for _, o, d in rounds),
                "lost": sum(o[label]["accepted"] - o[label]["arrived"] for _, o, _ in rounds),
            }
            for label, _ in labels
        },
    }


def _latencies(sink: Sink, tag: str, due: dict[str, float]) -> list[float]:
    arrivals = sink.stats(tag, full=True)["arrivals"]
    return [arrivals[key] - t for key, t in due.items() if key in arrivals]


def _latency_summary(latencies: list[float], expected: int) -> dict[str, Any]:
    return {
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "max_ms": max(latencies, default=float("nan")) * 1e3,
        "arrived": len(latencies),
        "lost": expected - len(latencies),
    }


def end_to_end(cfg: DeliveryConfig, sink: Sink, tmp: Path) -> dict[str, Any]:
    """Steady rate through the receiver, and apprise at the same rate as the baseline."""
    tag = run_tag()
    count = int(cfg.rate * cfg.baseline_seconds)
    doc = run_direct_apprise(
        sink.url, tag, count, concurrency=CONCURRENCY, rate=cfg.rate, out=tmp / f"direct-rate-{tag}.json"
    )
    sink.wait_for(tag, count, timeout=30)
    baseline = _latency_summary(_latencies(sink, tag, doc["scheduled"]), count)
    _log(f"direct at {cfg.rate:.0f}/s: p50 {baseline['p50_ms']:.1f} ms p99 {baseline['p99_ms']:.1f} ms")

    tag = run_tag()
    items = signed_faults(int(cfg.rate * cfg.e2e_seconds), tag)
    with workdir("e2e") as wd:
        server = _receiver(sink, Path(wd))
        with server:
            due, statuses, elapsed = run_open(server.port, items, rate=cfg.rate)
            sink.wait_for(tag, len(due), timeout=60)
        counts = count_inbox(server.database)
    result = _latency_summary(_latencies(sink, tag, due), len(due))
    result |= {
        "rate": cfg.rate,
        "seconds": cfg.e2e_seconds,
        "achieved_rate": len(items) / elapsed,
        "posted": len(items),
        "accepted": len(due),
        "refused": len(items) - len(due),
        "statuses": {str(k): v for k, v in statuses.items()},
        "stored": counts["inbox"],
        "baseline": baseline,
        "p50_ratio": _ratio(result, baseline, "p50_ms"),
        "p99_ratio": _ratio(result, baseline, "p99_ms"),
    }
    _log(
        f"receiver at {cfg.rate:.0f}/s: p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms "
        f"lost {result['lost']}"
    )
    return result


def _ratio(result: dict[str, Any], baseline: dict[str, Any], key: str) -> float:
    """result[key] / baseline[key], NaN when the baseline is zero."""
    return float(result[key] / baseline[key]) if baseline[key] else float("nan")
