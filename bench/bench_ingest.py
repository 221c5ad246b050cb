"""Ingest: requests/s, p50 and p99 of ``POST /webhooks/uipath`` against a bare Starlette app.

Both servers get the same signed 1 KB ``job.faulted`` bodies, one distinct EventId each (so the
receiver stores every one instead of answering "duplicate"), from the same load generator, at
each concurrency. Runs are interleaved (bare, receiver, bare, receiver, ...), each server is a
fresh process in a fresh directory (a new SQLite file, so the bodies never repeat within a run),
and every ratio is the median of the ratios of adjacent pairs. After each receiver run the store
is read back: every request answered 202 must be in the inbox.

The receiver is ``receiver serve`` with the example rules.yaml (its workers process and deliver
to log:// channels while the load runs: that is part of what one process does), SQLite with
``synchronous=FULL``. Each of ``candidates`` (directories holding a changed receiver package,
labelled by the directory's name) runs as one more server in the same interleave.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    Server,
    candidate_labels,
    count_inbox,
    cpu_seconds,
    example_rules,
    median,
    receiver_tree,
    run_tag,
    signed_faults,
    wait_quiet,
    workdir,
    write_wrk_bodies,
)
from loadgen import LoadResult, have_wrk, post_all, run_closed, run_wrk

WARM_REQUESTS = 300
MAX_RPS = 20_000  # distinct bodies per second of load; a faster server reuses some (and the run says so)


@dataclass(frozen=True)
class IngestConfig:
    """How much to measure."""

    concurrencies: tuple[int, ...] = (16, 64)
    reps: int = 5
    seconds: float = 6.0
    candidates: tuple[Path, ...] = ()


def _log(message: str) -> None:
    print(f"  ingest: {message}", file=sys.stderr, flush=True)  # noqa: T201 - progress


def _one(
    kind: str, concurrency: int, bodies: list[tuple[str, str, bytes]], bodies_file: Path | None, cfg: IngestConfig
) -> dict[str, Any]:
    with workdir(kind) as tmp:
        wd = Path(tmp)
        tree = dict(candidate_labels(cfg.candidates)).get(kind) or receiver_tree()
        server = Server("bare" if kind == "bare" else "receiver", wd, tree=tree)
        if kind != "bare":
            server.rules = example_rules(wd, tree)
        with server:
            warm = post_all(server.port, signed_faults(WARM_REQUESTS, run_tag()), concurrency=16)
            if warm.get(202) != WARM_REQUESTS:
                raise RuntimeError(f"{kind}: warm-up answers {warm}:\n{server.tail_log()}")
            if kind != "bare" and not wait_quiet(server.database):
                _log(f"{kind}: still processing the warm-up after 60 s; measuring anyway")
            cpu_before = cpu_seconds(server.pid)
            result: LoadResult
            if bodies_file is not None:
                result = run_wrk(server.port, bodies_file, len(bodies), concurrency=concurrency, seconds=cfg.seconds)
            else:
                result = run_closed(server.port, bodies, concurrency=concurrency, seconds=cfg.seconds)
            cpu = cpu_seconds(server.pid) - cpu_before
        row: dict[str, Any] = {
            "kind": kind,
            "concurrency": concurrency,
            "tool": result.tool,
            "requests": result.requests,
            "seconds": round(result.seconds, 3),
            "rps": round(result.rps, 1),
            "p50_ms": round(result.p50_ms, 3),
            "p99_ms": round(result.p99_ms, 3),
            "errors": result.errors,
            "reused_bodies": result.reused_bodies,
            "server_cpu_us_per_request": round(cpu / max(1, result.requests) * 1e6, 1),
        }
        if kind != "bare":
            # Answered requests must all be stored; a few more may be stored (sent, cut at the end).
            counts = count_inbox(server.database)
            stored = counts["inbox"] - WARM_REQUESTS
            row["stored"] = stored
            row["lost"] = max(0, result.requests - result.errors - stored)
            # The background work that shared the CPU with the load: events processed (beyond the
            # warm-up) by the time the server had stopped. It runs at one batch a second during a
            # flood, so a run with many more than that saw the edge quiet more often.
            row["processed_meanwhile"] = stored - counts.get("inbox_new", 0)
        _log(
            f"c={concurrency} {kind:<9} {row['rps']:>9.0f} req/s  p50 {row['p50_ms']:.2f} ms  "
            f"p99 {row['p99_ms']:.2f} ms  cpu {row['server_cpu_us_per_request']:.0f} µs/req"
            + (f"  processed {row['processed_meanwhile']}" if "processed_meanwhile" in row else "")
        )
        return row


def _ratio(runs: list[dict[str, Any]], kind: str, base: str, key: str, concurrency: int) -> float:
    """Median over repetitions of run[kind][key] / run[base][key] (pairs from the same repetition)."""
    a = [r for r in runs if r["kind"] == kind and r["concurrency"] == concurrency]
    b = [r for r in runs if r["kind"] == base and r["concurrency"] == concurrency]
    return median(x[key] / y[key] for x, y in zip(a, b, strict=True) if y[key])


def summarize(runs: list[dict[str, Any]], kinds: list[str], concurrencies: tuple[int, ...]) -> list[dict[str, Any]]:
    """One summary per (concurrency, kind other than bare)."""
    out = []
    for c in concurrencies:
        bare = [r for r in runs if r["kind"] == "bare" and r["concurrency"] == c]
        for kind in kinds[1:]:
            mine = [r for r in runs if r["kind"] == kind and r["concurrency"] == c]
            out.append(
                {
                    "concurrency": c,
                    "kind": kind,
                    "bare_rps": median(r["rps"] for r in bare),
                    "rps": median(r["rps"] for r in mine),
                    "rps_ratio": _ratio(runs, kind, "bare", "rps", c),
                    "bare_p50_ms": median(r["p50_ms"] for r in bare),
                    "p50_ms": median(r["p50_ms"] for r in mine),
                    "p50_ratio": _ratio(runs, kind, "bare", "p50_ms", c),
                    "bare_p99_ms": median(r["p99_ms"] for r in bare),
                    "p99_ms": median(r["p99_ms"] for r in mine),
                    "p99_ratio": _ratio(runs, kind, "bare", "p99_ms", c),
                    "bare_cpu_us": median(r["server_cpu_us_per_request"] for r in bare),
                    "cpu_us": median(r["server_cpu_us_per_request"] for r in mine),
                    "lost": sum(r["lost"] for r in mine),
                    "errors": sum(r["errors"] for r in mine),
                    "reused_bodies": any(r["reused_bodies"] for r in mine),
                    "reps": len(mine),
                }
            )
    return out


def run(cfg: IngestConfig, tmp: Path) -> dict[str, Any]:
    """Measure; returns the runs and their summaries."""
    kinds = ["bare", "receiver", *(label for label, _ in candidate_labels(cfg.candidates))]
    bodies = signed_faults(int(MAX_RPS * cfg.seconds), run_tag())
    bodies_file: Path | None = None
    if have_wrk():
        bodies_file = tmp / "ingest-bodies.txt"
        write_wrk_bodies(bodies_file, bodies)
    _log(f"{'wrk' if bodies_file else 'python load generator'}, {len(bodies)} distinct signed bodies")
    runs = [
        _one(kind, c, bodies, bodies_file, cfg) for c in cfg.concurrencies for _ in range(cfg.reps) for kind in kinds
    ]
    return {
        "tool": "wrk" if bodies_file else "python",
        "body_bytes": len(bodies[0][2]),
        "seconds_per_run": cfg.seconds,
        "reps": cfg.reps,
        "summary": summarize(runs, kinds, cfg.concurrencies),
        "runs": runs,
    }
