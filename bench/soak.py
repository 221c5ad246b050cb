"""Soak: sustained signed webhook traffic against a real ``receiver serve``, memory and files watched.

A fresh ``receiver serve`` (SQLite, full durability) runs the example rules.yaml with one rule
added in front that sends every event to a loopback json:// endpoint with the EventId as the
title, so each accepted event must arrive exactly once and can be counted. The example's
silences and inhibition are left out and fan-out collapse is off: they suppress notifications
by the clock or by other events, which would make "accepted but never delivered" ambiguous.
Everything else of the example (throttle, group, absence timers, recover, log:// channels) runs
as shipped. The events are harness.MIX (jobs, queue items, robots, schedules; processes spread
over 5,000 names), each with its own EventId and a fresh Timestamp.

Phases: start; a warm-up at the same rate (caches, pools and the allocator settle), then wait
until quiet and take the start figures; the soak at ``--rate`` for ``--seconds``; wait until
everything is delivered and the store is quiet, and take the end figures. The server's RSS, open
file descriptors and threads are sampled every ``--sample-every`` seconds throughout.

The load is open-loop: each POST has a due time, and both latencies count from it, so a server
that falls behind cannot hide its delay behind a client that waits. The endpoint, the load
generator and the sampler share one asyncio loop in this process (pinned to the load CPU), so
both latencies are measured on one monotonic clock.

Verdict: PASS when RSS grew by at most ``--rss-bound`` MiB from the start figure (after the
warm-up) to the end figure, open fds and threads ended within a few of their start values,
every request was answered 202, no accepted event is missing from the store or the endpoint,
and nothing arrived twice. Exit status 1 otherwise.

Run ``make soak`` (5 minutes of load) or ``.venv/bin/python bench/soak.py --seconds 60 --rate 100``.
Loopback only; every loop is bounded in time and in requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from harness import (
    HOST,
    MIX,
    RESULTS,
    ROOT,
    Server,
    count_inbox,
    cpu_seconds,
    deliveries_by_state,
    example_rules,
    machine,
    mixed_events,
    open_fds,
    percentile,
    pin_self_to_load_cpu,
    receiver_tree,
    rss_kib,
    run_tag,
    stored_event_ids,
    thread_count,
    workdir,
)

# The HTTP/1.1 request writer and answer reader of the other load generators, so the soak sends
# exactly what the ingest and end-to-end benchmarks send.
from loadgen import _exchange, _request

CHANNEL = "soak"
RULE = "soak-every-event"
REQUEST_TIMEOUT = 30.0  # seconds for one POST; Orchestrator's own timeout is in this range


@dataclass(frozen=True)
class SoakConfig:
    """How long, how fast, and the bounds the verdict is taken against."""

    seconds: float = 300.0
    rate: float = 200.0
    warmup_seconds: float = 30.0
    sample_every: float = 5.0
    connections: int = 8
    rss_bound_mib: float = 20.0  # RSS growth allowed from after the warm-up to the end
    fd_slack: int = 4  # open fds may end this many above (or below) their start value
    thread_slack: int = 4  # threads likewise (apprise's pool may start one more)
    drain_timeout: float = 180.0  # after the load, how long everything may take to arrive
    sink_delay: float = 0.005  # the endpoint answers after 5 ms, a fast real service
    out: Path | None = RESULTS / "soak.json"


# --- the notification endpoint --------------------------------------------------------------------


@dataclass
class _Endpoint:
    """apprise's json:// target, in this loop: counts every arrival per title (bench/sink.py keeps only the first)."""

    delay: float
    first: dict[str, float] = field(default_factory=dict)
    count: Counter[str] = field(default_factory=Counter)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, 0, backlog=256)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # Python 3.11's wait_closed does not wait for open connections; they end with the server.
            await self._server.wait_closed()

    def arrived(self, prefix: str) -> int:
        return sum(1 for title in self.first if title.startswith(prefix))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # One request per round; the loop ends when apprise closes the connection.
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    headers = {
                        k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
                    }
                    body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
                    return
                arrived = time.perf_counter()
                try:
                    title = str(json.loads(body).get("title", ""))
                except (ValueError, AttributeError):
                    title = ""
                self.first.setdefault(title, arrived)
                self.count[title] += 1
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# --- the load -------------------------------------------------------------------------------------


@dataclass
class _Phase:
    """What one phase sent and got back. Times are perf_counter seconds."""

    tag: str
    due: dict[str, float] = field(default_factory=dict)  # accepted event id -> when its POST was due
    statuses: Counter[int] = field(default_factory=Counter)  # 599: no answer (timeout, connection lost)
    webhook_latencies: list[float] = field(default_factory=list)
    not_sent: int = 0  # events the generator could not send before its hard deadline

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())


async def _connection(port: int, queue: asyncio.Queue[tuple[str, str, bytes, float] | None], phase: _Phase) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while (job := await queue.get()) is not None:
            event_id, signature, body, due = job
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                assert reader is not None  # noqa: S101 - narrowing: opened together with writer
                status, _ = await asyncio.wait_for(
                    _exchange(reader, writer, _request(port, signature, body)), REQUEST_TIMEOUT
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                status = 599
                if writer is not None:
                    writer.close()
                reader = writer = None
            answered = time.perf_counter()
            phase.statuses[status] += 1
            if status == 202:
                phase.due[event_id] = due
                phase.webhook_latencies.append(answered - due)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _load(port: int, cfg: SoakConfig, seconds: float, phase: _Phase) -> _Phase:
    """POST ``rate * seconds`` distinct signed events of the MIX at ``rate``, open loop."""
    tag = phase.tag
    total = int(cfg.rate * seconds)
    # A small queue: if the server stalls, the generator waits instead of piling up requests, and
    # the latencies (counted from the due time) show the stall.
    queue: asyncio.Queue[tuple[str, str, bytes, float] | None] = asyncio.Queue(maxsize=cfg.connections * 4)
    workers = [asyncio.create_task(_connection(port, queue, phase)) for _ in range(cfg.connections)]
    start = time.perf_counter()
    hard_deadline = start + 2 * seconds + 60
    chunk = max(1, int(cfg.rate))
    items: list[tuple[str, str, bytes]] = []
    for i in range(total):
        if i % chunk == 0:
            # Generated a second's worth at a time, so each Timestamp is fresh and memory stays flat.
            items = mixed_events(min(chunk, total - i), tag, i)
        due = start + i / cfg.rate
        now = time.perf_counter()
        if now > hard_deadline:
            phase.not_sent = total - i
            break
        if due > now:
            await asyncio.sleep(due - now)
        event_id, signature, body = items[i % chunk]
        await queue.put((event_id, signature, body, due))
    for _ in workers:
        await queue.put(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=REQUEST_TIMEOUT * 4)
    return phase


# --- the server's resources -----------------------------------------------------------------------


@dataclass
class _Sampler:
    """The server's RSS, open fds, threads and CPU every ``every`` seconds, with the load's progress."""

    pid: int
    every: float
    endpoint: _Endpoint
    phases: list[_Phase] = field(default_factory=list)  # the phases begun so far, the running one last
    started: float = field(default_factory=time.perf_counter)
    samples: list[dict[str, float]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _seen: int = 0  # webhook latencies of the running phase already summarised
    _cpu: tuple[float, float] | None = None  # (wall, server CPU seconds) at the previous sample

    def take(self) -> dict[str, float]:
        now, cpu = time.perf_counter(), cpu_seconds(self.pid)
        wall_then, cpu_then = self._cpu or (now, cpu)
        self._cpu = (now, cpu)
        latest: list[float] = []
        if self.phases:
            latest = self.phases[-1].webhook_latencies[self._seen :]
            self._seen += len(latest)
        accepted = sum(len(p.due) for p in self.phases)
        sample = {
            "t": round(now - self.started, 2),
            "rss_mib": rss_kib(self.pid) / 1024,
            "fds": open_fds(self.pid),
            "threads": thread_count(self.pid),
            # Share of one CPU since the previous sample: near 100 % the server is saturated.
            "cpu_pct": round(100 * (cpu - cpu_then) / (now - wall_then), 1) if now > wall_then else 0.0,
            "accepted": accepted,
            # Accepted but not yet arrived: a backlog that keeps growing means the rate is above capacity.
            "backlog": accepted - len(self.endpoint.first),
            "webhook_p99_ms": round(percentile(latest, 99) * 1e3, 1) if latest else 0.0,
            "webhook_max_ms": round(max(latest) * 1e3, 1) if latest else 0.0,
        }
        self.samples.append(sample)
        return sample

    def begin(self, phase: _Phase) -> None:
        self.phases.append(phase)
        self._seen = 0

    async def run(self) -> None:
        while not self._stop.is_set():
            self.take()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every)

    def stop(self) -> None:
        self._stop.set()


async def _settled(sampler: _Sampler) -> dict[str, float]:
    """The server's figures once it is idle: the median RSS of three reads half a second apart."""
    reads = []
    for _ in range(3):
        await asyncio.sleep(0.5)
        reads.append(sampler.take())
    rss = sorted(r["rss_mib"] for r in reads)[1]
    return {"rss_mib": rss, "fds": reads[-1]["fds"], "threads": reads[-1]["threads"]}


async def _drain(server: Server, endpoint: _Endpoint, phases: list[_Phase], limit: float) -> bool:
    """Wait until every accepted event arrived and the store is quiet; False after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        arrived = all(endpoint.arrived(p.tag) >= len(p.due) for p in phases)
        if arrived:
            counts = await asyncio.to_thread(count_inbox, server.database)
            if not counts.get("inbox_new") and not counts.get("deliveries_pending"):
                return True
        await asyncio.sleep(0.25)
    return False


# --- the run ----------------------------------------------------------------------------------------


def soak_rules(into: Path, endpoint_port: int) -> Path:
    """The example rules.yaml plus a first rule that sends every event to the endpoint, titled by its EventId."""
    path = example_rules(into)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    # Suppression by the clock (a Sunday window) or by other events (inhibit, collapse) would make
    # a missing notification ambiguous; the rest of the example runs as shipped.
    document.pop("silences", None)
    document.pop("inhibit", None)
    document["collapse"] = False
    document["channels"][CHANNEL] = {
        "url": f"json://{HOST}:{endpoint_port}/notify",
        "concurrency": 4,
        "timeout": "10s",
    }
    every = {
        "name": RULE,
        "match": {"type": [name for name, _ in MIX]},
        "notify": [CHANNEL],
        "continue": True,
        "title": "{{ event_id }}",
    }
    document["rules"] = [every, *document["rules"]]
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


async def _soak(cfg: SoakConfig, wd: Path) -> dict[str, Any]:
    endpoint = _Endpoint(cfg.sink_delay)
    await endpoint.start()
    server = Server("receiver", wd, rules=soak_rules(wd, endpoint.port))
    try:
        await asyncio.to_thread(server.start)
        sampler = _Sampler(server.pid, cfg.sample_every, endpoint)
        idle = await _settled(sampler)
        _log(f"idle: {idle['rss_mib']:.1f} MiB, {idle['fds']:.0f} fds, {idle['threads']:.0f} threads")
        sampling = asyncio.create_task(sampler.run())

        warm = _Phase(run_tag())
        sampler.begin(warm)
        await _load(server.port, cfg, cfg.warmup_seconds, warm)
        warm_drained = await _drain(server, endpoint, [warm], cfg.drain_timeout)
        start = await _settled(sampler)
        _log(f"after warm-up ({warm.sent} events): {start['rss_mib']:.1f} MiB, {start['fds']:.0f} fds")

        began = time.perf_counter()
        main = _Phase(run_tag())
        sampler.begin(main)
        await _load(server.port, cfg, cfg.seconds, main)
        load_seconds = time.perf_counter() - began
        _log(f"load: {main.sent} events in {load_seconds:.0f} s, draining")
        drained = await _drain(server, endpoint, [warm, main], cfg.drain_timeout)
        drain_seconds = time.perf_counter() - began - load_seconds
        end = await _settled(sampler)
        sampler.stop()
        await sampling
        stored = await asyncio.to_thread(stored_event_ids, server.database)
        counts = await asyncio.to_thread(count_inbox, server.database)
        deliveries = await asyncio.to_thread(deliveries_by_state, server.database, CHANNEL)
    finally:
        await asyncio.to_thread(server.stop)
        await endpoint.stop()
    phases = [warm, main]
    accepted = {eid for p in phases for eid in p.due}
    e2e = [endpoint.first[eid] - due for eid, due in main.due.items() if eid in endpoint.first]
    statuses = sum((p.statuses for p in phases), Counter())
    return {
        "idle": idle,
        "start": start,
        "end": end,
        "max": {k: max(s[k] for s in sampler.samples) for k in ("rss_mib", "fds", "threads")},
        "samples": sampler.samples,
        "backlog_max": max(s["backlog"] for s in sampler.samples),
        "warmup_events": warm.sent,
        "warmup_drained": warm_drained,
        "drained": drained,
        "load_seconds": load_seconds,
        "achieved_rate": main.sent / load_seconds if load_seconds else 0.0,
        "drain_seconds": drain_seconds,
        "sent": sum(p.sent for p in phases),
        "not_sent": sum(p.not_sent for p in phases),
        "accepted": len(accepted),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "non_202": sum(v for k, v in statuses.items() if k != 202),
        "delivered": sum(1 for eid in accepted if eid in endpoint.first),
        "lost": sum(1 for eid in accepted if eid not in endpoint.first),
        "lost_in_store": len(accepted - stored),
        "duplicates": sum(endpoint.count[eid] - 1 for eid in accepted if endpoint.count[eid] > 1),
        "unexpected_titles": sum(1 for title in endpoint.count if title not in accepted),
        "store": counts,
        "soak_deliveries": deliveries,
        "webhook_p50_ms": percentile(main.webhook_latencies, 50) * 1e3,
        "webhook_p99_ms": percentile(main.webhook_latencies, 99) * 1e3,
        "webhook_max_ms": max(main.webhook_latencies, default=float("nan")) * 1e3,
        "e2e_p50_ms": percentile(e2e, 50) * 1e3,
        "e2e_p99_ms": percentile(e2e, 99) * 1e3,
        "e2e_max_ms": max(e2e, default=float("nan")) * 1e3,
    }


def verdict(result: dict[str, Any], cfg: SoakConfig) -> list[str]:
    """The reasons the soak failed; empty when it passed."""
    growth = result["end"]["rss_mib"] - result["start"]["rss_mib"]
    checks = [
        (growth <= cfg.rss_bound_mib, f"RSS grew {growth:.1f} MiB after the warm-up (bound {cfg.rss_bound_mib:g})"),
        (
            abs(result["end"]["fds"] - result["start"]["fds"]) <= cfg.fd_slack,
            f"open fds {result['start']['fds']:.0f} -> {result['end']['fds']:.0f} (bound ±{cfg.fd_slack})",
        ),
        (
            result["end"]["threads"] - result["start"]["threads"] <= cfg.thread_slack,
            f"threads {result['start']['threads']:.0f} -> {result['end']['threads']:.0f} (bound +{cfg.thread_slack})",
        ),
        (result["non_202"] == 0, f"{result['non_202']} requests not answered 202: {result['statuses']}"),
        (result["not_sent"] == 0, f"{result['not_sent']} events not sent: the load fell behind its deadline"),
        (result["lost"] == 0, f"{result['lost']} accepted events never delivered"),
        (result["lost_in_store"] == 0, f"{result['lost_in_store']} accepted events not in the store"),
        (result["duplicates"] == 0, f"{result['duplicates']} notifications arrived more than once"),
        (result["drained"], f"not drained within {cfg.drain_timeout:g} s"),
    ]
    return [reason for ok, reason in checks if not ok]


def run(cfg: SoakConfig) -> dict[str, Any]:
    """Run the soak; return the result document (also written to ``cfg.out`` when set)."""
    # Before the load: other people commit while a 5-minute soak runs, and HEAD would move.
    commit = _commit()
    with workdir("soak") as tmp:
        result = asyncio.run(_soak(cfg, Path(tmp)))
    failures = verdict(result, cfg)
    document = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "machine": machine(),
        "commit": commit,
        "tree": str(receiver_tree()),
        **result,
        "rss_growth_mib": result["end"]["rss_mib"] - result["start"]["rss_mib"],
        "verdict": "FAIL" if failures else "PASS",
        "failures": failures,
    }
    if cfg.out is not None:
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        cfg.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return document


def _commit() -> str:
    """HEAD of this checkout, "+changes" when receiver/ differs from it (read-only git calls).

    With BENCH_RECEIVER_TREE (a copy elsewhere, e.g. ``git archive HEAD``) the package run is not
    this checkout's: the label says so, and the copy's own commit is the caller's to record.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "receiver"],  # noqa: S607 - git from PATH
            cwd=receiver_tree(),
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    # A tree outside the checkout (BENCH_RECEIVER_TREE) is not a git work tree: git prints nothing.
    if receiver_tree() != ROOT:
        return f"{receiver_tree()} (checkout HEAD {head})"
    return f"{head}+changes" if dirty else head


def table(doc: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    s, e, m = doc["start"], doc["end"], doc["max"]
    rows = [
        (
            "load",
            f"{doc['config']['rate']:g}/s for {doc['config']['seconds']:g} s (achieved {doc['achieved_rate']:.1f}/s)",
        ),
        ("warm-up events", f"{doc['warmup_events']:,}"),
        (
            "RSS idle / start / end / max",
            f"{doc['idle']['rss_mib']:.1f} / {s['rss_mib']:.1f} / {e['rss_mib']:.1f} / {m['rss_mib']:.1f} MiB",
        ),
        ("RSS growth after warm-up", f"{doc['rss_growth_mib']:+.1f} MiB (bound {doc['config']['rss_bound_mib']:g})"),
        (
            "open fds idle / start / end / max",
            f"{doc['idle']['fds']:.0f} / {s['fds']:.0f} / {e['fds']:.0f} / {m['fds']:.0f}",
        ),
        (
            "threads idle / start / end / max",
            f"{doc['idle']['threads']:.0f} / {s['threads']:.0f} / {e['threads']:.0f} / {m['threads']:.0f}",
        ),
        ("requests sent", f"{doc['sent']:,}"),
        ("answered 202", f"{doc['accepted']:,}"),
        ("not 202", f"{doc['non_202']:,} {doc['statuses'] if doc['non_202'] else ''}".rstrip()),
        ("notifications delivered", f"{doc['delivered']:,}"),
        ("lost (202, never delivered)", f"{doc['lost']:,} (not in the store: {doc['lost_in_store']:,})"),
        ("duplicates", f"{doc['duplicates']:,}"),
        (
            "webhook p50 / p99 / max",
            f"{doc['webhook_p50_ms']:.1f} / {doc['webhook_p99_ms']:.1f} / {doc['webhook_max_ms']:.1f} ms",
        ),
        (
            "end to end p50 / p99 / max",
            f"{doc['e2e_p50_ms']:.1f} / {doc['e2e_p99_ms']:.1f} / {doc['e2e_max_ms']:.1f} ms",
        ),
        ("delivery backlog max", f"{doc['backlog_max']:,.0f} accepted, not yet delivered"),
        ("drained after the load", f"{doc['drain_seconds']:.1f} s"),
        ("verdict", doc["verdict"] + "".join(f"\n  - {reason}" for reason in doc["failures"])),
    ]
    width = max(len(name) for name, _ in rows)
    where = doc["machine"]
    head = f"soak {where['date']}, commit {doc['commit']}, {where['cpus']} CPUs ({where['pinning']})"
    return "\n".join([head, *(f"{name:<{width}}  {value}" for name, value in rows)])


def _log(message: str) -> None:
    print(f"  soak: {message}", file=sys.stderr, flush=True)  # noqa: T201 - progress


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print the table, write bench/results/soak.json; 1 on FAIL."""
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="soak duration (default 300)")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="events per second (default 200)")
    parser.add_argument("--warmup", type=float, default=defaults.warmup_seconds, help="warm-up seconds (default 30)")
    parser.add_argument("--sample-every", type=float, default=defaults.sample_every, help="seconds (default 5)")
    parser.add_argument("--connections", type=int, default=defaults.connections, help="client connections (default 8)")
    parser.add_argument("--rss-bound", type=float, default=defaults.rss_bound_mib, help="MiB of growth (default 20)")
    parser.add_argument("--out", type=Path, default=defaults.out, help="JSON file (default bench/results/soak.json)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0 or args.warmup < 0 or args.sample_every <= 0 or args.connections < 1:
        parser.error("--seconds, --rate, --sample-every and --connections must be positive, --warmup not negative")
    cfg = SoakConfig(
        seconds=args.seconds,
        rate=args.rate,
        warmup_seconds=args.warmup,
        sample_every=args.sample_every,
        connections=args.connections,
        rss_bound_mib=args.rss_bound,
        out=args.out,
    )
    pin_self_to_load_cpu()
    doc = run(cfg)
    print(table(doc))  # noqa: T201 - the soak's output
    return 0 if doc["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
