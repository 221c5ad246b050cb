"""The benchmark suite: ingest, rules, delivery, end to end, memory; one table, also as JSON.

Run ``make bench`` (about 6 minutes) or ``make bench-quick`` (about 2), or directly
``.venv/bin/python bench/suite.py [--quick] [--only SECTIONS] [--candidate DIR ...]``.

Every figure sits next to a baseline measured in the same run, and the ratio is what to read:
these machines are shared and noisy, so absolute numbers drift between runs while the ratios
hold. Runs that compare two servers are interleaved (A B A B ...) and the ratio is the median
of the ratios of adjacent pairs. Servers are pinned to one CPU, the load generators to another
(see harness.py). The table is printed and written to bench/results/latest.json and
latest.md (bench/results/ is not committed; docs/performance.md keeps a dated copy).

``--candidate DIR`` (repeatable) runs one more receiver per DIR, the ``receiver`` package found
there (a proposed change, e.g. a copy of the tree with one edit), in the ingest and delivery
interleaves, so its effect is measured against the same baseline in the same run. Rows are
labelled with the directory's name.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_rules
from bench_delivery import DeliveryConfig, delivery, end_to_end
from bench_ingest import IngestConfig
from bench_ingest import run as run_ingest
from bench_memory import MemoryConfig
from bench_memory import run as run_memory
from harness import RESULTS, Sink, machine, pin_self_to_load_cpu

SECTIONS = ("rules", "ingest", "delivery", "e2e", "memory")

Row = dict[str, Any]


def _row(
    section: str,
    figure: str,
    base_label: str,
    base: float,
    value: float,
    *,
    ratio: float | None = None,
    target: str = "",
    ok: bool | None = None,
    unit: str = "",
) -> Row:
    if ratio is None:
        ratio = value / base if base else float("nan")
    return {
        "section": section,
        "figure": figure,
        "unit": unit,
        "baseline": base_label,
        "baseline_value": base,
        "value": value,
        "ratio": ratio,
        "target": target,
        "verdict": "" if ok is None else ("OK" if ok else "MISSED"),
    }


def _ingest_rows(result: dict[str, Any]) -> list[Row]:
    rows = []
    for s in result["summary"]:
        c, who = s["concurrency"], s["kind"]
        graded = c == 64
        prefix = f"ingest c={c}" + ("" if who == "receiver" else f" ({who})")
        rows += [
            _row(
                "ingest",
                f"{prefix} requests/s",
                "bare Starlette",
                s["bare_rps"],
                s["rps"],
                ratio=s["rps_ratio"],
                target=">= 0.50" if graded else "",
                ok=s["rps_ratio"] >= 0.5 if graded else None,
            ),
            _row(
                "ingest",
                f"{prefix} p50",
                "bare Starlette",
                s["bare_p50_ms"],
                s["p50_ms"],
                ratio=s["p50_ratio"],
                unit="ms",
            ),
            _row(
                "ingest",
                f"{prefix} p99",
                "bare Starlette",
                s["bare_p99_ms"],
                s["p99_ms"],
                ratio=s["p99_ratio"],
                unit="ms",
                target="<= 3.0" if graded else "",
                ok=s["p99_ratio"] <= 3.0 if graded else None,
            ),
            _row(
                "ingest", f"{prefix} server CPU per request", "bare Starlette", s["bare_cpu_us"], s["cpu_us"], unit="µs"
            ),
            _none_row("ingest", f"{prefix} answered 202, not stored", s["lost"]),
        ]
    return rows


def _none_row(section: str, figure: str, count: int, *, ok: bool | None = None) -> Row:
    """A figure whose target is zero: requests or events lost."""
    return _row(section, figure, "—", 0, count, ratio=math.nan, target="0", ok=count == 0 if ok is None else ok)


def _rules_rows(rows: list[dict[str, Any]]) -> list[Row]:
    base = rows[0]
    return [
        _row(
            "rules",
            f"rules: match one event, {r['rules']:,} rules",
            f"{base['rules']} rules",
            base["match_us"],
            r["match_us"],
            ratio=r["ratio_vs_10"],
            unit="µs",
            target="<= 5.0" if r["rules"] == 10_000 else "",
            ok=r["ratio_vs_10"] <= 5.0 if r["rules"] == 10_000 else None,
        )
        for r in rows[1:]
    ]


def _delivery_rows(d: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for label, summary in [("", d), *((f" ({name})", c) for name, c in d.get("candidates", {}).items())]:
        rows += [
            _row(
                "delivery",
                f"delivery{label}: {d['events']:,} notifications, last arrival",
                "apprise direct",
                d["direct_s"],
                summary["receiver_s"],
                ratio=summary["ratio"],
                unit="s",
                target="<= 1.20",
                ok=summary["ratio"] <= 1.2,
            ),
            _none_row("delivery", f"delivery{label}: accepted, not delivered", summary["lost"]),
        ]
    return rows


def _e2e_rows(e: dict[str, Any]) -> list[Row]:
    base = e["baseline"]
    name = f"end to end {e['rate']:.0f}/s x {e['seconds']:.0f} s"
    return [
        _row("e2e", f"{name}: p50", "apprise direct", base["p50_ms"], e["p50_ms"], ratio=e["p50_ratio"], unit="ms"),
        _row("e2e", f"{name}: p99", "apprise direct", base["p99_ms"], e["p99_ms"], ratio=e["p99_ratio"], unit="ms"),
        _none_row("e2e", f"{name}: lost (of {e['accepted']:,} accepted)", e["lost"], ok=e["lost"] == 0 == e["refused"]),
    ]


def _memory_rows(m: dict[str, Any]) -> list[Row]:
    idle = m["idle_mib"]
    return [
        _row(
            "memory",
            "RSS idle",
            "bare Starlette idle",
            m["bare_idle_mib"],
            idle,
            unit="MiB",
            target="< 120 MiB",
            ok=idle < 120,
        ),
        _row(
            "memory",
            f"RSS after {m['events']:,} events",
            "receiver idle",
            idle,
            m["after_events_mib"],
            unit="MiB",
            target="growth <= 20 MiB",
            ok=m["growth_mib"] <= 20,
        ),
        _row(
            "memory", f"RSS with {m['rules_loaded']:,} rules", "receiver idle", idle, m["after_rules_mib"], unit="MiB"
        ),
    ]


def _fmt(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "—"
    if abs(value) >= 1000 or (isinstance(value, int) and not isinstance(value, bool)):
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| figure | baseline | baseline value | receiver | ratio | target | verdict |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        unit = f" {r['unit']}" if r["unit"] else ""
        lines.append(
            f"| {r['figure']} | {r['baseline']} | {_fmt(r['baseline_value'])}{unit if r['baseline'] != '—' else ''} "
            f"| {_fmt(r['value'])}{unit} | {_fmt(r['ratio'])} | {r['target']} | {r['verdict']} |"
        )
    return "\n".join(lines)


def _configs(quick: bool, candidates: tuple[Path, ...]) -> dict[str, Any]:
    if quick:
        return {
            "ingest": IngestConfig(reps=2, seconds=3.0, candidates=candidates),
            "rules_budget": 0.1,
            "delivery": DeliveryConfig(reps=1, e2e_seconds=10.0, baseline_seconds=3.0, candidates=candidates),
            "memory": MemoryConfig(events=10_000, warm_events=500),
        }
    return {
        "ingest": IngestConfig(candidates=candidates),
        "rules_budget": 0.5,
        "delivery": DeliveryConfig(reps=7, candidates=candidates),
        "memory": MemoryConfig(),
    }


def _plain(value: Any) -> Any:
    """``value`` with NaN as None, so the JSON is strict."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _timed(name: str, fn: Callable[[], Any], timings: dict[str, float]) -> Any:
    print(f"{name}...", file=sys.stderr, flush=True)  # noqa: T201 - progress
    started = time.monotonic()
    try:
        return fn()
    finally:
        timings[name] = round(time.monotonic() - started, 1)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print the table; write it as JSON and Markdown."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs (about 2 minutes)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {','.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where to write the JSON")
    parser.add_argument(
        "--candidate",
        type=Path,
        action="append",
        default=[],
        help="a directory holding a changed receiver package to compare (repeatable)",
    )
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    for candidate in args.candidate:
        if not (candidate / "receiver" / "__init__.py").is_file():
            parser.error(f"--candidate {candidate}: no receiver package in that directory")

    pin_self_to_load_cpu()
    cfg = _configs(args.quick, tuple(args.candidate))
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    rows: list[Row] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="receiver-bench-") as tmp:
        tmp_path = Path(tmp)
        if "rules" in only:
            results["rules"] = _timed("rules", lambda: bench_rules.run(seed=7, budget=cfg["rules_budget"]), timings)
            rows += _rules_rows(results["rules"])
        if "ingest" in only:
            results["ingest"] = _timed("ingest", lambda: run_ingest(cfg["ingest"], tmp_path), timings)
            rows += _ingest_rows(results["ingest"])
        if "delivery" in only or "e2e" in only:
            with Sink() as sink:
                if "delivery" in only:
                    results["delivery"] = _timed("delivery", lambda: delivery(cfg["delivery"], sink, tmp_path), timings)
                    rows += _delivery_rows(results["delivery"])
                if "e2e" in only:
                    results["e2e"] = _timed("e2e", lambda: end_to_end(cfg["delivery"], sink, tmp_path), timings)
                    rows += _e2e_rows(results["e2e"])
        if "memory" in only:
            results["memory"] = _timed("memory", lambda: run_memory(cfg["memory"]), timings)
            rows += _memory_rows(results["memory"])
    timings["total"] = round(time.monotonic() - started, 1)

    info = machine()
    header = (
        f"receiver benchmark, {info['date']}, {'quick' if args.quick else 'full'} run, {timings['total']:.0f} s\n"
        f"machine: {info['host']}, {info['cpus']} x {info['cpu']}, Linux {info['kernel']}, "
        f"Python {info['python']}; {info['pinning']}"
    )
    text = f"{header}\n\n{table(rows)}\n"
    print(text)  # noqa: T201 - the suite's output
    args.json.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": info, "quick": args.quick, "timings_s": timings, "table": rows, "sections": results}
    args.json.write_text(json.dumps(_plain(document), indent=2, default=str) + "\n", encoding="utf-8")
    args.json.with_suffix(".md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
