"""What one replica asks of a node: RSS and CPU of ``receiver serve`` idle and under a short load.

The figures behind the resource requests and limits of deploy/kubernetes/deployment.yaml
(docs/deploy.md, "Resources"). The server runs the example rules.yaml (log:// channels) on the
store given (SQLite by default; ``--database postgresql://...`` for the store several replicas
share). RSS is read idle, sampled every 0.2 s while ``--events`` events of the realistic mix
(harness.MIX) are posted at ``--concurrency``, and read again once the inbox and the outbox are
empty. CPU is the process's user + system time over the load's wall time.

    .venv/bin/python bench/bench_resources.py [--database URL] [--events 10000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness import HOST, Server, example_rules, mixed_events, rss_kib, run_tag, workdir
from loadgen import post_all
from prometheus_client.parser import text_string_to_metric_families

CHUNK = 10_000
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15 of proc(5)


def backlog(port: int) -> float:
    """Events not processed plus deliveries not sent, as /metrics reports them."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name in ("receiver_inbox_depth", "receiver_outbox_depth"):
            total += sum(sample.value for sample in family.samples)
    return total


def settled_rss(pid: int) -> int:
    """RSS in KiB, the median of three reads half a second apart."""
    reads = []
    for _ in range(3):
        time.sleep(0.5)
        reads.append(rss_kib(pid))
    return sorted(reads)[1]


def run(database_url: str | None, events: int, concurrency: int) -> dict[str, Any]:
    """Measure one server; RSS in MiB, CPU in cores."""
    with workdir("resources") as tmp:
        wd = Path(tmp)
        with Server("receiver", wd, rules=example_rules(wd), database_url=database_url) as server:
            time.sleep(2)  # start-up work (migrations, the first scrape of the store) is over
            idle = settled_rss(server.pid)
            peak = idle
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.wait(0.2):
                    peak = max(peak, rss_kib(server.pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            cpu_before, started = cpu_seconds(server.pid), time.monotonic()
            tag, accepted = run_tag(), 0
            for start in range(0, events, CHUNK):
                items = mixed_events(min(CHUNK, events - start), tag, start)
                accepted += post_all(server.port, items, concurrency=concurrency).get(202, 0)
            posted = time.monotonic() - started
            deadline = time.monotonic() + 600
            while backlog(server.port) > 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            drained = time.monotonic() - started
            cpu_used = cpu_seconds(server.pid) - cpu_before
            done.set()
            sampler.join()
            after = settled_rss(server.pid)
    return {
        "store": (database_url or "sqlite").split(":", 1)[0],
        "events": events,
        "accepted": accepted,
        "concurrency": concurrency,
        "idle_rss_mib": round(idle / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "after_rss_mib": round(after / 1024, 1),
        "post_seconds": round(posted, 1),
        "drain_seconds": round(drained, 1),
        "events_per_second": round(events / drained, 1),
        "cpu_cores_under_load": round(cpu_used / drained, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--database", default=None, help="postgresql://... (default: a SQLite file)")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    json.dump(run(args.database, args.events, args.concurrency), sys.stdout, indent=2)
    print()  # noqa: T201 - the closing newline of the JSON


if __name__ == "__main__":
    main()
