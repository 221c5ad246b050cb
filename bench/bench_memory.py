"""Memory: resident set size of ``receiver serve`` idle, after 100,000 events, after 10,000 rules.

The server runs the example rules.yaml (log:// channels) on SQLite. The events are a realistic
mix (harness.MIX: mostly jobs starting and ending and queue traffic, about one in ten notifying)
with distinct EventIds and processes spread over 5,000 names, so a cache keyed by event or by
process would show. RSS is read when the server is quiet: every event processed and every
delivery sent. Then the rules file is rewritten with 10,000 rules (bench_rules' generator) and
RSS is read once the reload is in force. The baseline is the same server's idle RSS; the bare
Starlette app's idle RSS is shown for scale.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from bench_rules import build_rules
from harness import Server, count_inbox, example_rules, http_get_json, mixed_events, rss_kib, run_tag, workdir
from loadgen import post_all

CHUNK = 10_000
_ADMIN = "bench-admin-token"


@dataclass(frozen=True)
class MemoryConfig:
    """How much to measure."""

    events: int = 100_000
    warm_events: int = 1_000
    rules: int = 10_000


def _log(message: str) -> None:
    print(f"  memory: {message}", file=sys.stderr, flush=True)  # noqa: T201 - progress


def _quiet(server: Server, expected: int, timeout: float) -> dict[str, int]:
    """Wait until ``expected`` events are stored and none is new and no delivery is pending."""
    deadline = time.monotonic() + timeout
    while True:
        counts = count_inbox(server.database)
        done = counts["inbox"] >= expected and not counts.get("inbox_new") and not counts.get("deliveries_pending")
        if done or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def _settled_rss(pid: int) -> int:
    """RSS in KiB after the allocator and the workers had a moment (the median of three reads)."""
    reads = []
    for _ in range(3):
        time.sleep(0.5)
        reads.append(rss_kib(pid))
    return sorted(reads)[1]


def _post(server: Server, count: int, tag: str) -> int:
    accepted = 0
    for start in range(0, count, CHUNK):
        items = mixed_events(min(CHUNK, count - start), tag, start)
        accepted += post_all(server.port, items, concurrency=16).get(202, 0)
    return accepted


def run(cfg: MemoryConfig) -> dict[str, Any]:
    """Measure; RSS figures in MiB."""
    with workdir("bare") as tmp, Server("bare", Path(tmp)) as bare:
        bare_idle = _settled_rss(bare.pid)
    with workdir("memory") as tmp:
        wd = Path(tmp)
        rules = example_rules(wd)
        # /readyz names the rules loaded only to the admin token.
        with Server("receiver", wd, rules=rules, env={"RECEIVER_ADMIN_TOKEN": _ADMIN}) as server:
            idle = _settled_rss(server.pid)
            _log(f"idle {idle / 1024:.1f} MiB (bare Starlette {bare_idle / 1024:.1f} MiB)")
            stored = _post(server, cfg.warm_events, run_tag())
            _quiet(server, stored, 120)
            warm = _settled_rss(server.pid)
            _log(f"after {cfg.warm_events} events {warm / 1024:.1f} MiB")
            started = time.monotonic()
            stored += _post(server, cfg.events, run_tag())
            posted_s = time.monotonic() - started
            counts = _quiet(server, stored, 900)
            quiet_s = time.monotonic() - started
            after = _settled_rss(server.pid)
            _log(
                f"after {cfg.events} more events {after / 1024:.1f} MiB "
                f"({posted_s:.0f} s to post, {quiet_s:.0f} s to drain)"
            )
            # The example's own rules stay (other sections of the file name them), the rest are generated.
            document = yaml.safe_load(rules.read_text(encoding="utf-8"))
            document["rules"] += build_rules(cfg.rules - len(document["rules"]), seed=7)
            rules.write_text(yaml.safe_dump(document), encoding="utf-8")
            deadline = time.monotonic() + 120
            loaded = 0
            while loaded != cfg.rules and time.monotonic() < deadline:
                time.sleep(0.5)
                ready = http_get_json(server.port, "/readyz", token=_ADMIN).get("rules", {})
                loaded = ready.get("loaded", 0)
                if ready.get("last_reload_problems"):
                    raise RuntimeError(f"the {cfg.rules}-rule file was refused: {ready['last_reload_problems'][:3]}")
            big_rules = _settled_rss(server.pid)
            _log(f"with {loaded} rules {big_rules / 1024:.1f} MiB")
    mib = 1024
    return {
        "bare_idle_mib": bare_idle / mib,
        "idle_mib": idle / mib,
        "after_warm_mib": warm / mib,
        "after_events_mib": after / mib,
        "after_rules_mib": big_rules / mib,
        "growth_mib": (after - idle) / mib,
        "growth_after_warm_mib": (after - warm) / mib,
        "events": cfg.events,
        "warm_events": cfg.warm_events,
        "stored": stored,
        "inbox_states": {k: v for k, v in counts.items() if k.startswith("inbox_")},
        "deliveries": {k: v for k, v in counts.items() if k.startswith("deliveries_")},
        "rules_loaded": loaded,
        "post_seconds": posted_s,
        "drain_seconds": quiet_s,
    }
