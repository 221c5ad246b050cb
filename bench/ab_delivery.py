"""A/B of receiver trees on the delivery benchmark: wall time and server CPU per run, no apprise baseline.

Each round runs every tree once on the delivery benchmark's workload (1,000 signed job.faulted
events posted at concurrency 16, one rule sending each to the 5 ms json:// endpoint at channel
concurrency 4), in an order that reverses every round, so that neither tree always runs first on
a machine that drifts. Per run it records the time from the first POST to the last arrival (as
``bench/suite.py`` does) and the server's CPU seconds (``/proc``, user + system, all threads).
It prints each round and, per tree, the medians and the median of its per-round ratios to the
first tree: the CPU side tells a change that saves work from one that only moves it.

``bench/suite.py --only delivery --candidate DIR`` gives the same comparison in wall time against
apprise called directly; this script is for telling small differences apart (docs/performance.md,
"Fifth session").

Run: ``.venv/bin/python bench/ab_delivery.py --rounds 10 DIR_A DIR_B [...]``, each DIR holding a
``receiver`` package (``git archive REV | tar -x -C DIR``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench_delivery import through_receiver
from harness import Sink, median

EVENTS = 1_000


def _run(sink: Sink, tree: Path) -> tuple[float, float]:
    """(wall seconds to the last arrival, server CPU seconds) of one delivery run on ``tree``."""
    run = through_receiver(sink, EVENTS, tree, tree.name)
    if run["arrived"] < EVENTS:
        raise SystemExit(f"{tree}: only {run['arrived']} of {EVENTS} notifications arrived")
    return run["seconds"], run["cpu_seconds"]


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("trees", nargs="+", type=Path, help="directories holding a receiver package; the first is A")
    args = parser.parse_args(argv)
    trees: list[Path] = args.trees
    if len(trees) < 2:
        parser.error("give at least two trees")
    wall: dict[Path, list[float]] = {tree: [] for tree in trees}
    cpu: dict[Path, list[float]] = {tree: [] for tree in trees}
    with Sink() as sink:
        for n in range(max(1, args.rounds)):
            for tree in trees if n % 2 == 0 else trees[::-1]:
                seconds, used = _run(sink, tree)
                wall[tree].append(seconds)
                cpu[tree].append(used)
            print(  # noqa: T201 - progress
                f"round {n + 1}: " + "  ".join(f"{t.name} {wall[t][-1]:.2f} s / {cpu[t][-1]:.2f} CPU s" for t in trees),
                flush=True,
            )
    first = trees[0]
    for tree in trees:
        wall_ratio = median(a / b for a, b in zip(wall[tree], wall[first], strict=True))
        cpu_ratio = median(a / b for a, b in zip(cpu[tree], cpu[first], strict=True))
        print(  # noqa: T201 - the result
            f"{tree.name:16} wall {median(wall[tree]):.2f} s  CPU {median(cpu[tree]):.2f} s  "
            f"against {first.name}: wall x{wall_ratio:.3f}  CPU x{cpu_ratio:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
