"""Benchmark: the cost of matching one event against 10, 100, 1,000 and 10,000 rules.

A standalone script (not a test): ``python bench/bench_rules.py [--json PATH]``.

The rule sets are a realistic mix for a large estate, generated with a fixed seed: most rules
are about other event types and other processes (``type`` + exact ``process``), some use type
globs (``job.*``) or process globs, some add robot / folder / state clauses, and a handful have
no ``type`` at all (every event must try those). The rule that matches the measured event is
the last one, so a linear scan has to walk the whole file.

Reported per size: the load time, the time of ``RuleSet.match`` (index with its candidate
cache, as in the server), the same with the candidate cache cleared before every call (the
index lookup itself), a linear scan of every rule (``match_linear``, for comparison), and the
ratio of ``match`` to the 10-rule case (target: 10,000 rules within 5x of 10).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver.events import Event, parse_event, parse_log_entries  # noqa: E402
from receiver.rules import RuleSet, load_rules  # noqa: E402

SIZES = (10, 100, 1_000, 10_000)
TYPES = [
    *("job.created", "job.started", "job.completed", "job.faulted", "job.stopped", "job.suspended", "job.resumed"),
    *("queueItem.added", "queueItem.transactionStarted", "queueItem.transactionCompleted"),
    *("queueItem.transactionFailed", "queueItem.transactionAbandoned"),
    *("robot.status", "robot.created", "robot.updated", "robot.log", "schedule.failed"),
    *("process.created", "process.updated", "queue.created", "task.created", "task.completed"),
]
UNTYPED_RULES = 3  # rules without `type`: few in a real file; each one is tried for every event


def _processes(count: int) -> list[str]:
    stems = ["Invoice", "Vendor", "Payroll", "Claims", "Order", "Ticket", "Report", "Onboarding", "Billing", "Audit"]
    return [f"{stems[i % len(stems)]}Process{i:05d}" for i in range(count)]


def _rule(i: int, rnd: random.Random, processes: list[str]) -> dict[str, Any]:
    kind = rnd.random()
    match: dict[str, Any]
    if kind < 0.60:
        match = {"type": rnd.choice(TYPES), "process": rnd.choice(processes)}
    elif kind < 0.75:
        match = {"type": rnd.choice(TYPES), "process": rnd.sample(processes, 3)}
        match[rnd.choice(["robot", "machine"])] = f"ROBOT-{rnd.randint(1, 400):03d}*"
    elif kind < 0.85:
        match = {"type": rnd.choice(["job.*", "queueItem.*", "robot.*", "task.*"]), "process": rnd.choice(processes)}
    elif kind < 0.95:
        match = {"type": rnd.choice(TYPES), "process": f"{rnd.choice(processes)[:-2]}*", "folder": rnd.randint(2, 99)}
    else:
        match = {"type": rnd.sample(TYPES, 2), "job.state": ["Faulted", "Stopped"], "process": rnd.choice(processes)}
    return {"name": f"rule-{i:05d}", "match": match, "notify": ["ops"], "continue": rnd.random() < 0.1}


def build_rules(size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` rules, the last of which matches the measured job.faulted event."""
    rnd = random.Random(seed)  # noqa: S311 - test data, not cryptography
    processes = _processes(max(50, size // 4))
    rules = [_rule(i, rnd, processes) for i in range(size - 1 - UNTYPED_RULES)]
    untyped = [
        {"name": "untyped-test-processes", "match": {"process": "*_Test"}, "notify": []},
        {"name": "untyped-other-source", "match": {"source": "lab"}, "notify": ["ops"]},
        {"name": "untyped-robot-down", "match": {"robot_down": True}, "notify": ["ops"]},
    ]
    rules[len(rules) // 2 : len(rules) // 2] = untyped[:UNTYPED_RULES]
    rules.append(
        {"name": "target", "match": {"type": "job.faulted", "process": "InvoiceProcessing"}, "notify": ["ops"]}
    )
    return rules[-size:] if size < len(rules) else rules


def _load(rules: list[dict[str, Any]]) -> tuple[RuleSet, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"channels": {"ops": "log://"}, "rules": rules}), encoding="utf-8")
        start = time.perf_counter()
        ruleset = load_rules(path, environ={})
        return ruleset, time.perf_counter() - start


def _time(fn: Callable[[], object], budget: float) -> float:
    """Median seconds per call over batches filling about ``budget`` seconds."""
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.05:
        fn()
        calls += 1
    batch = max(1, calls // 5)
    samples: list[float] = []
    end = time.perf_counter() + budget
    while time.perf_counter() < end or len(samples) < 5:
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch)
    return statistics.median(samples)


def _event(name: str) -> Event:
    raw = json.loads((ROOT / "tests" / "data" / name).read_text(encoding="utf-8"))
    return parse_event(raw) if "Type" in raw else parse_log_entries(raw)[0]


def _measure(ruleset: RuleSet, event: Event, budget: float) -> tuple[float, float, float]:
    """Seconds per call of match (cached), match with the candidate cache cleared, linear scan."""

    def match() -> object:
        return ruleset.match(event, "uipath")

    def cold() -> object:
        ruleset._index._cache.clear()
        return ruleset.match(event, "uipath")

    def linear() -> object:
        return ruleset.match_linear(event, "uipath")

    return _time(match, budget), _time(cold, budget), _time(linear, budget)


def run(seed: int, budget: float) -> list[dict[str, Any]]:
    """Measure every size; returns one row per size."""
    event = _event("job.faulted.json")
    rows: list[dict[str, Any]] = []
    for size in SIZES:
        ruleset, load_s = _load(build_rules(size, seed))
        routes = ruleset.match(event, "uipath")
        if [r.rule.name for r in routes] != [r.rule.name for r in ruleset.match_linear(event, "uipath")]:
            raise SystemExit(f"index and linear scan disagree at {size} rules")
        match_s, cold_s, linear_s = _measure(ruleset, event, budget)
        candidates = len(ruleset._index.candidates(event.type.casefold(), (event.process or "").casefold()))
        rows.append(
            {
                "rules": size,
                "load_s": round(load_s, 4),
                "match_us": round(match_s * 1e6, 2),
                "cold_cache_us": round(cold_s * 1e6, 2),
                "linear_us": round(linear_s * 1e6, 2),
                "candidates": candidates,
                "matched": [r.rule.name for r in routes],
            }
        )
    base = rows[0]["match_us"]
    for row in rows:
        row["ratio_vs_10"] = round(row["match_us"] / base, 2)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated rule sets (default 7)")
    parser.add_argument("--budget", type=float, default=0.5, help="seconds of measurement per figure (default 0.5)")
    args = parser.parse_args(argv)
    rows = run(args.seed, args.budget)
    header = f"{'rules':>7} {'load s':>8} {'match µs':>9} {'cold µs':>8} {'linear µs':>10} {'cands':>6} {'x vs 10':>8}"
    print(header)  # noqa: T201 - a script's output
    for r in rows:
        print(  # noqa: T201
            f"{r['rules']:>7} {r['load_s']:>8.3f} {r['match_us']:>9.2f} {r['cold_cache_us']:>8.2f} "
            f"{r['linear_us']:>10.2f} {r['candidates']:>6} {r['ratio_vs_10']:>8.2f}"
        )
    ok = rows[-1]["ratio_vs_10"] <= 5.0
    print(f"10,000 rules vs 10: {rows[-1]['ratio_vs_10']}x (target <= 5x): {'OK' if ok else 'MISSED'}")  # noqa: T201
    if args.json:
        document = {"benchmark": "bench_rules", "python": sys.version.split()[0], "seed": args.seed, "rows": rows}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
