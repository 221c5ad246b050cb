"""Hand-offs to a thread, server CPU and latency per notifying event at a steady rate, trees A/B.

Each round runs every tree (a directory holding a ``receiver`` package; this checkout by default)
through the same workload, the order reversed every other round, and apprise called directly at
the same rate as the latency baseline:

- ``receiver serve`` (SQLite, full durability) through bench/counted_serve.py, which counts every
  ``ThreadPoolExecutor.submit`` (``run_in_executor``, ``to_thread``, the store's and apprise's
  pools), pinned to the server CPU; one rule sends each job.faulted to the 5 ms json:// sink at
  channel concurrency 4 (the end-to-end section's setup);
- a warm-up of 300 events, delivered and settled; then ``--rate`` events/s for ``--seconds``,
  posted on 16 keep-alive connections at their scheduled times (``loadgen.run_open``);
- measured from the first POST until every notification arrived: hand-offs per event (by pool),
  the server's CPU per event from /proc (all threads, and the event loop's thread alone), and each
  event's latency from when its POST was due to its notification's arrival.

Ratios between trees within one round share the machine's state; read those, and the spread of
the rounds. Run: ``.venv/bin/python bench/handoffs.py [--rounds N] [--rate R] [--seconds S] [DIR ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from harness import (
    BENCH,
    Server,
    Sink,
    cpu_seconds,
    percentile,
    pin_self_to_load_cpu,
    receiver_tree,
    run_direct_apprise,
    run_tag,
    signed_faults,
    sink_rules,
    wait_quiet,
    workdir,
)
from loadgen import post_all, run_open

CONCURRENCY = 4
WARMUP = 300


class _CountedServer(Server):
    """``receiver serve`` started through bench/counted_serve.py."""

    def argv(self) -> list[str]:
        return [sys.executable, str(BENCH / "counted_serve.py"), *super().argv()[3:]]

    def counts(self) -> dict[str, int]:
        """The hand-offs so far, per pool."""
        out = Path(self.env["HANDOFF_COUNTS"])
        out.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not out.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not write its hand-off counts")
            time.sleep(0.01)
        return {k: int(v) for k, v in json.loads(out.read_text(encoding="utf-8")).items()}


def _main_thread_seconds(pid: int) -> float:
    """CPU seconds of the event loop's thread (the main thread) so far."""
    with open(f"/proc/{pid}/task/{pid}/schedstat") as stat:
        return int(stat.read().split()[0]) / 1e9


def through_receiver(sink: Sink, tree: Path, rate: float, seconds: float) -> dict[str, Any]:
    """One measured run of one tree."""
    warm_tag, tag = run_tag(), run_tag()
    warm = signed_faults(WARMUP, warm_tag)
    items = signed_faults(int(rate * seconds), tag)
    with workdir("handoffs") as wd:
        rules = sink_rules(Path(wd), sink.port, concurrency=CONCURRENCY)
        env = {"HANDOFF_COUNTS": str(Path(wd) / "handoffs.json")}
        server = _CountedServer("receiver", Path(wd), rules=rules, tree=tree, env=env)
        with server:
            post_all(server.port, warm, concurrency=16)
            sink.wait_for(warm_tag, WARMUP, timeout=120)
            wait_quiet(server.database)
            time.sleep(1.0)
            before, cpu, main = server.counts(), cpu_seconds(server.pid), _main_thread_seconds(server.pid)
            due, statuses, _ = run_open(server.port, items, rate=rate)
            stats = sink.wait_for(tag, len(due), timeout=120)
            after, cpu, main = (
                server.counts(),
                cpu_seconds(server.pid) - cpu,
                _main_thread_seconds(server.pid) - main,
            )
    arrivals = sink.stats(tag, full=True)["arrivals"]
    latencies = [arrivals[k] - t for k, t in due.items() if k in arrivals]
    events = len(due)
    pools = {k: (after.get(k, 0) - before.get(k, 0)) / events for k in sorted(set(after) | set(before))}
    return {
        "tree": str(tree),
        "events": events,
        "refused": len(items) - events,
        "arrived": stats["count"],
        "handoffs_per_event": sum(pools.values()),
        "handoffs_by_pool": {k: v for k, v in pools.items() if v},
        "cpu_ms_per_event": cpu / events * 1e3,
        "loop_cpu_ms_per_event": main / events * 1e3,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "statuses": {str(k): v for k, v in statuses.items()},
    }


def direct(sink: Sink, rate: float, seconds: float, tmp: Path) -> dict[str, Any]:
    """apprise called directly at ``rate``, 4 at a time: latency from each send's due time."""
    tag = run_tag()
    count = int(rate * seconds)
    doc = run_direct_apprise(sink.url, tag, count, concurrency=CONCURRENCY, rate=rate, out=tmp / f"direct-{tag}.json")
    sink.wait_for(tag, count, timeout=60)
    arrivals = sink.stats(tag, full=True)["arrivals"]
    latencies = [arrivals[k] - t for k, t in doc["scheduled"].items() if k in arrivals]
    return {"p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3}


def _line(label: str, run: dict[str, Any], base: dict[str, Any]) -> str:
    pools = " ".join(f"{k}={v:.2f}" for k, v in run["handoffs_by_pool"].items())
    return (
        f"  {label:<12} hand-offs/event {run['handoffs_per_event']:5.2f} ({pools})  CPU/event "
        f"{run['cpu_ms_per_event']:.2f} ms (loop {run['loop_cpu_ms_per_event']:.2f})  p50 {run['p50_ms']:.1f} ms "
        f"({run['p50_ms'] / base['p50_ms']:.1f}x direct) p99 {run['p99_ms']:.1f} ms  "
        f"lost {run['events'] - run['arrived']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print each run and the medians; ``--out`` writes them as JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("trees", nargs="*", type=Path, help="directories holding a receiver package")
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in args.trees] or [receiver_tree()]
    labels = {tree: tree.name for tree in trees}
    pin_self_to_load_cpu()
    rounds: list[dict[str, Any]] = []
    with Sink() as sink, workdir("handoffs-direct") as tmp:
        for n in range(max(1, args.rounds)):
            order = trees if n % 2 == 0 else trees[::-1]
            runs = {labels[tree]: through_receiver(sink, tree, args.rate, args.seconds) for tree in order}
            base = direct(sink, args.rate, args.seconds / 2, Path(tmp))
            print(f"round {n + 1} (order {', '.join(labels[t] for t in order)}); direct p50 {base['p50_ms']:.1f} ms")  # noqa: T201
            for label, run in runs.items():
                print(_line(label, run, base), flush=True)  # noqa: T201
            rounds.append({"order": [labels[t] for t in order], "direct": base, "runs": runs})
    print("medians over the rounds (min-max):")  # noqa: T201
    first = labels[trees[0]]
    for tree in trees:
        label = labels[tree]
        figures = {
            key: [r["runs"][label][key] for r in rounds]
            for key in ("handoffs_per_event", "cpu_ms_per_event", "loop_cpu_ms_per_event", "p50_ms", "p99_ms")
        }
        p50_ratio = [r["runs"][label]["p50_ms"] / r["direct"]["p50_ms"] for r in rounds]
        cpu_ratio = [r["runs"][label]["cpu_ms_per_event"] / r["runs"][first]["cpu_ms_per_event"] for r in rounds]
        text = "  ".join(f"{k} {statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})" for k, v in figures.items())
        print(f"  {label}: {text}")  # noqa: T201
        print(  # noqa: T201
            f"  {label}: p50 / direct {statistics.median(p50_ratio):.2f} ({min(p50_ratio):.2f}-{max(p50_ratio):.2f})"
            f"  CPU / {first}'s {statistics.median(cpu_ratio):.2f} ({min(cpu_ratio):.2f}-{max(cpu_ratio):.2f})"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(rounds, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
