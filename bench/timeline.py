"""Where a delivery run's wall time goes, bucket by bucket: arrivals and the server's CPU per thread.

Runs the delivery benchmark's workload (1,000 signed job.faulted events posted at concurrency 16,
one rule sending each to the 5 ms json:// endpoint at channel concurrency 4) through the receiver,
then apprise called directly on the same endpoint, and prints per bucket (100 ms by default):

- how many notifications arrived at the endpoint;
- the receiver's CPU in that bucket, per thread: the event loop (``main``: edge, inbox worker,
  dispatcher, apprise's async side) and the others (``threads``: the store's and apprise's
  sending threads), as a percentage of one CPU, read from ``/proc/PID/task/*/schedstat``.

A bucket near 100 % is CPU-bound: moving work between the loop's parts there is zero-sum, and only
less CPU per event shortens it. A bucket well under 100 % with few arrivals is waiting (for the
endpoint, the disk, a timer). docs/performance.md ("Seventh session") reads one.

Run: ``.venv/bin/python bench/timeline.py [--rounds N] [--bucket S] [DIR ...]``: each DIR holds a
``receiver`` package to run instead of this checkout's (``git archive REV | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from harness import Server, Sink, receiver_tree, run_direct_apprise, run_tag, signed_faults, sink_rules, workdir
from loadgen import post_all

EVENTS = 1_000
CONCURRENCY = 4


def _thread_cpu(pid: int) -> dict[str, int]:
    """Nanoseconds on a CPU so far: the main thread's, and every other thread's together."""
    used = {"main": 0, "threads": 0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as stat:
                ns = int(stat.read().split()[0])
        except OSError:  # the thread ended between the listing and the read
            continue
        used["main" if tid == str(pid) else "threads"] += ns
    return used


class _Sampler(threading.Thread):
    """Reads the server's per-thread CPU every half bucket until stopped."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.time(), _thread_cpu(self.pid)))
            self.stopped.wait(self.every)

    def at(self, moment: float, key: str) -> int:
        """The CPU nanoseconds of ``key`` at the last sample before ``moment``."""
        value = 0
        for when, used in self.samples:
            if when > moment:
                break
            value = used[key]
        return value


def _arrivals(sink: Sink, tag: str, start: float, bucket: float) -> list[int]:
    times = list(sink.stats(tag, full=True)["arrivals"].values())
    counts = [0] * (int((max(times) - start) / bucket) + 1)
    for when in times:
        counts[int((when - start) / bucket)] += 1
    return counts


def through_receiver(sink: Sink, tree: Path | None, bucket: float) -> None:
    """One receiver run: its total, then a line per bucket."""
    tag = run_tag()
    items = signed_faults(EVENTS, tag)
    with workdir("timeline") as tmp:
        rules = sink_rules(Path(tmp), sink.port, concurrency=CONCURRENCY)
        server = Server("receiver", Path(tmp), rules=rules, tree=tree or receiver_tree())
        with server:
            sampler = _Sampler(server.pid, bucket / 2)
            sampler.start()
            start = time.time()
            post_all(server.port, items, concurrency=16)
            posted = time.time() - start
            stats = sink.wait_for(tag, EVENTS, timeout=300)
            sampler.stopped.set()
            sampler.join()
    arrivals = _arrivals(sink, tag, start, bucket)
    name = tree.name if tree is not None else "receiver"
    print(f"{name}: last arrival after {stats['last'] - start:.2f} s, posting took {posted:.2f} s")  # noqa: T201
    print("     s  arrived   main  threads  total (% of one CPU)")  # noqa: T201
    for n, count in enumerate(arrivals):
        lo, hi = start + n * bucket, start + (n + 1) * bucket
        main, others = ((sampler.at(hi, k) - sampler.at(lo, k)) / 1e9 / bucket * 100 for k in ("main", "threads"))
        print(f"  {n * bucket:4.1f} {count:8d} {main:6.0f} {others:8.0f} {main + others:6.0f}")  # noqa: T201


def direct(sink: Sink, bucket: float) -> None:
    """apprise called directly, 4 at a time: its total and arrivals per bucket."""
    tag = run_tag()
    with workdir("timeline") as tmp:
        doc = run_direct_apprise(sink.url, tag, EVENTS, concurrency=CONCURRENCY, out=Path(tmp) / "direct.json")
    stats = sink.wait_for(tag, EVENTS, timeout=60)
    arrivals = _arrivals(sink, tag, doc["start"], bucket)
    print(f"apprise direct: last arrival after {stats['last'] - doc['start']:.2f} s")  # noqa: T201
    print("  arrivals per bucket: " + " ".join(str(n) for n in arrivals))  # noqa: T201


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print them."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--bucket", type=float, default=0.1, help="seconds per line")
    parser.add_argument(
        "trees", nargs="*", type=Path, help="directories holding a receiver package (default: this checkout)"
    )
    args = parser.parse_args(argv)
    trees: list[Path | None] = list(args.trees) or [None]
    with Sink() as sink:
        for _ in range(max(1, args.rounds)):
            for tree in trees:
                through_receiver(sink, tree, args.bucket)
            direct(sink, args.bucket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
