"""Where ``receiver serve`` spends its CPU while the webhook route is under load.

Starts the receiver as the ingest benchmark does (example rules, SQLite with full durability,
pinned to one CPU), loads it with wrk at one concurrency, and samples it with py-spy (only the
thread holding the GIL, i.e. Python CPU time) for the length of the load. Prints the share of
samples per part of the server, with an estimate in µs of server CPU per request, then the
functions with the most inclusive and self samples. The raw collapsed stacks are kept in
bench/results/profile-ingest.txt (feed them to any flame graph tool).

Run: ``make profile`` or ``.venv/bin/python bench/profile_ingest.py [--seconds S] [--concurrency C]
[--candidate DIR]``. Needs py-spy (``.venv/bin/pip install py-spy``), which is not a project
dependency.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from harness import (
    RESULTS,
    Server,
    cpu_seconds,
    example_rules,
    pin_self_to_load_cpu,
    receiver_tree,
    run_tag,
    signed_faults,
    wait_quiet,
    workdir,
    write_wrk_bodies,
)
from loadgen import have_wrk, post_all, run_closed, run_wrk

# (name, test on the whole stack); the first that matches takes the sample.
CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("store thread", re.compile(r"^thread \(\d+\): receiver-store")),
    ("other threads (apprise sends)", re.compile(r"^thread \(\d+\): (?!MainThread)")),
    ("edge: logging (webhook_received)", re.compile(r"receiver/(?:http/)?edge\.py.*(structlog|logging/)")),
    ("edge: metrics", re.compile(r"receiver/(?:http/)?edge\.py.*prometheus_client")),
    ("edge: store.accept (group commit hand-off)", re.compile(r"receiver/(?:http/)?edge\.py.*receiver/store/")),
    ("edge: signature", re.compile(r"receiver/(?:http/)?edge\.py.*receiver/signature\.py")),
    (
        "edge: JSON envelope",
        re.compile(r"receiver/(?:http/)?edge\.py.*(_parse_envelope|_lookup|_event_time|_event_id)"),
    ),
    ("edge: JSON response", re.compile(r"receiver/(?:http/)?edge\.py.*starlette/responses\.py")),
    ("edge: reading the body", re.compile(r"receiver/(?:http/)?edge\.py.*_read_body")),
    ("edge: the rest", re.compile(r"receiver/(?:http/)?edge\.py")),
    ("inbox worker", re.compile(r"receiver/(?:pipeline/)?worker\.py")),
    (
        "dispatcher, apprise",
        re.compile(r"receiver/(?:pipeline/dispatch|delivery/notifier|dispatch|notifier)\.py|apprise/"),
    ),
    ("HTTP framework (uvicorn, starlette)", re.compile(r"uvicorn/protocols|starlette/")),
    ("event loop, other", re.compile(r"")),
)


def _frames(stack: str) -> list[str]:
    return [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")[1:]]


def summarize(raw: Path, cpu_us_per_request: float, top: int = 25) -> str:
    """The report for one collapsed-stack file."""
    total = 0
    categories: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        categories[next(name for name, test in CATEGORIES if test.search(stack))] += n
        frames = stack.split(";")
        for frame in set(_frames(stack)):
            inclusive[frame] += n
        own[frames[-1]] += n
    if not total:
        return "no samples (is py-spy allowed to attach? try as root or with CAP_SYS_PTRACE)"
    lines = [
        f"{total} samples (GIL held); server CPU {cpu_us_per_request:.0f} µs per request (user + system, all threads)",
        "",
        "by part (share of samples; µs: that share of the server CPU per request, a rough split):",
    ]
    for name, n in categories.most_common():
        lines.append(f"  {n / total:6.1%}  ~{n / total * cpu_us_per_request:5.0f} µs/req  {name}")
    lines += ["", "inclusive (functions; those in nearly every sample left out):"]
    common = [(name, n) for name, n in inclusive.most_common() if n < 0.9 * total]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in common[:top]]
    lines += ["", "self (lines):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Profile one loaded receiver and print where its time goes."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--candidate", type=Path, help="profile the receiver package in this directory instead")
    parser.add_argument("--out", type=Path, default=RESULTS / "profile-ingest.txt")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        parser.error("py-spy is not installed: .venv/bin/pip install py-spy")
    pin_self_to_load_cpu()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bodies = signed_faults(int(20_000 * args.seconds), run_tag())
    with workdir("profile") as tmp:
        wd = Path(tmp)
        bodies_file = wd / "bodies.txt"
        write_wrk_bodies(bodies_file, bodies)
        tree = args.candidate or receiver_tree()
        with Server("receiver", wd, rules=example_rules(wd, tree), tree=tree) as server:
            post_all(server.port, signed_faults(300, run_tag()), concurrency=16)
            wait_quiet(server.database)
            command = [spy, "record", "--gil", "--threads", "--format", "raw", "--rate", str(args.rate)]
            command += ["--duration", str(round(args.seconds)), "--output", str(args.out), "--pid", str(server.pid)]
            sampler = subprocess.Popen(  # noqa: S603 - py-spy on our own child
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(0.3)  # let py-spy attach before the load starts
            cpu_before = cpu_seconds(server.pid)
            if have_wrk():
                result = run_wrk(
                    server.port, bodies_file, len(bodies), concurrency=args.concurrency, seconds=args.seconds
                )
            else:
                result = run_closed(server.port, bodies, concurrency=args.concurrency, seconds=args.seconds)
            cpu = cpu_seconds(server.pid) - cpu_before
            _, errors = sampler.communicate(timeout=60)
    if sampler.returncode != 0:
        print(f"py-spy failed: {errors.decode(errors='replace')}", file=sys.stderr)  # noqa: T201
        return 1
    per_request = cpu / max(1, result.requests) * 1e6
    print(  # noqa: T201 - the report
        f"{result.tool} c={args.concurrency}: {result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms\n\n{summarize(args.out, per_request)}\n\nraw stacks: {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
