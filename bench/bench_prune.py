"""Ingest latency while retention prunes a million rows, against the same server not pruning.

The store is filled directly with SQL (not through HTTP): ``--events`` processed events received
40 days ago, each with one sent delivery, its attempt and one noise decision, so 4 x ``--events``
rows (1,000,000 by default). Then two phases, each a fresh ``receiver serve`` on that store,
pinned to its own CPU, with signed ``job.faulted`` webhooks posted at a steady ``--rate`` on
loopback (open loop: a request's latency counts from when it was due, so a stalled server cannot
hide behind a waiting client):

1. baseline: retention off (``RECEIVER_RETAIN_*_DAYS=0``), for ``--baseline-seconds``;
2. pruning: retention on (30 days), the first run 2 s after start; the load runs until the
   server logs ``store_pruned`` (bounded by ``--max-seconds``).

The p99 of the pruning phase is taken over the webhooks sent while the prune ran (from its log
line's time and duration). Run from the checkout: ``python bench/bench_prune.py`` (SQLite), or
``python bench/bench_prune.py --database postgresql://root@127.0.0.1:5432/test`` (a schema of its
own, dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3  # noqa: TID251 - the bench fills the store file directly
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import HOST, SECRET, Server, percentile, pin_self_to_load_cpu, run_tag, signed_faults, workdir

from receiver.store import open_store

DAY = 86400.0
RULES = 'channels:\n  ops: "log://"\nrules:\n  - name: faults\n    match: {type: job.faulted}\n    notify: [ops]\n'
CHUNK = 20_000
OFF = {"RECEIVER_RETAIN_EVENTS_DAYS": "0", "RECEIVER_RETAIN_NOISE_LOG_DAYS": "0"}
ON = {"RECEIVER_RETAIN_EVENTS_DAYS": "30", "RECEIVER_RETAIN_NOISE_LOG_DAYS": "30"}


def _log(message: str) -> None:
    print(f"  prune: {message}", file=sys.stderr, flush=True)  # noqa: T201 - progress


# --- filling ------------------------------------------------------------------------------------


def _rows(events: int, at: float, body: bytes) -> Iterator[tuple[list[tuple[Any, ...]], ...]]:
    """Chunks of (inbox, deliveries, attempts, noise_log) rows, ids 1..events."""
    for start in range(1, events + 1, CHUNK):
        ids = range(start, min(events + 1, start + CHUNK))
        yield (
            [(n, f"old-{n:012d}", body, at + n * 1e-3, at + n * 1e-3) for n in ids],
            [(n, n, at, at, at, at) for n in ids],
            [(n, n, at) for n in ids],
            [(n, at, at, n) for n in ids],
        )


_INBOX = (
    "INSERT INTO inbox (id, source, event_id, type, body, received_at, state, processed_at, outcome) "
    "VALUES ({p}, 'uipath', {p}, 'job.faulted', {p}, {p}, 'processed', {p}, '{{}}')"
)
_DELIVERY = (
    "INSERT INTO deliveries (id, inbox_id, rule, channel, title, body, severity, body_format, state, attempts, "
    "created_at, budget_since, next_attempt_at, sent_at) "
    "VALUES ({p}, {p}, 'faults', 'ops', 't', 'b', 'failure', 'text', 'sent', 1, {p}, {p}, {p}, {p})"
)
_ATTEMPT = "INSERT INTO attempts (id, delivery_id, at, status, elapsed) VALUES ({p}, {p}, {p}, 'sent', 0.1)"
_NOISE = (
    "INSERT INTO noise_log (id, at, recorded_at, inbox_id, rule, key, action, reason, suppressed) "
    "VALUES ({p}, {p}, {p}, {p}, 'faults', 'k', 'notified', 'sent to ops', {false})"
)


def _open(url: str) -> None:
    """Create the schema the server will find, through the store itself."""

    async def run() -> None:
        store = open_store(url)
        await store.open()
        await store.close()

    asyncio.run(run())


def fill_sqlite(path: Path, events: int, body: bytes) -> None:
    """``events`` old processed events with a delivery, an attempt and a noise decision each."""
    _open(f"sqlite:///{path}")
    at = time.time() - 40 * DAY
    conn = sqlite3.connect(path)
    try:
        for inbox, deliveries, attempts, noise in _rows(events, at, body):
            with conn:
                conn.executemany(_INBOX.format(p="?"), inbox)
                conn.executemany(_DELIVERY.format(p="?"), deliveries)
                conn.executemany(_ATTEMPT.format(p="?"), attempts)
                conn.executemany(_NOISE.format(p="?", false="0"), noise)
    finally:
        conn.close()


def fill_postgres(url: str, events: int, body: bytes) -> None:
    """The same on PostgreSQL (ids given explicitly; the identity sequences are moved past them)."""
    import psycopg  # noqa: TID251 - the bench fills the store directly

    _open(url)
    at = time.time() - 40 * DAY
    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(url.split("?")[0], options=f"-c search_path={schema}") as conn:
        for inbox, deliveries, attempts, noise in _rows(events, at, body):
            with conn.cursor() as cur:
                for sql, rows in (
                    (_INBOX, inbox),
                    (_DELIVERY, deliveries),
                    (_ATTEMPT, attempts),
                    (_NOISE, noise),
                ):
                    statement = sql.format(p="%s", false="false").replace(
                        " VALUES ", " OVERRIDING SYSTEM VALUE VALUES "
                    )
                    cur.executemany(statement, rows)
            conn.commit()
        for table in ("inbox", "deliveries", "attempts", "noise_log"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {events + 1})")
        conn.execute("ANALYZE")
        conn.commit()


def drop_schema(url: str) -> None:
    import psycopg  # noqa: TID251 - the bench's own schema

    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# --- load ---------------------------------------------------------------------------------------


@dataclass
class Phase:
    """What one phase measured: per webhook, when it was due (wall clock) and its latency."""

    name: str
    sent: list[tuple[float, float, int]] = field(default_factory=list)  # (due, latency s, status)
    prune_window: tuple[float, float] | None = None
    pruned: dict[str, int] = field(default_factory=dict)

    def latencies(self, window: tuple[float, float] | None = None) -> list[float]:
        low, high = window or (float("-inf"), float("inf"))
        return [lat for due, lat, _ in self.sent if low <= due <= high]

    def summary(self, window: tuple[float, float] | None = None) -> dict[str, Any]:
        values = self.latencies(window)
        return {
            "requests": len(values),
            "non_2xx": sum(1 for _, _, status in self.sent if not 200 <= status < 300),
            "p50_ms": round(percentile(values, 50) * 1e3, 2),
            "p99_ms": round(percentile(values, 99) * 1e3, 2),
            "max_ms": round(max(values, default=float("nan")) * 1e3, 2),
        }


def _request(port: int, signature: str, body: bytes) -> bytes:
    return (
        f"POST /webhooks/uipath HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"X-UiPath-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


async def _load(server: Server, phase: Phase, bodies: list[tuple[str, str, bytes]], rate: float, stop: Any) -> None:
    """Post at ``rate`` until ``stop()`` is true or the bodies run out; ``connections`` keep-alive sockets."""
    queue: asyncio.Queue[tuple[float, float, bytes] | None] = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            while (job := await queue.get()) is not None:
                due_wall, due_perf, request = job
                try:
                    status = await _exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError):
                    status = 599
                phase.sent.append((due_wall, time.perf_counter() - due_perf, status))
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(16)]
    start_wall, start = time.time(), time.perf_counter()
    for i, (_, signature, body) in enumerate(bodies):
        if await stop():
            break
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((start_wall + i / rate, start + i / rate, _request(server.port, signature, body)))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=120)


class _PrunedLine:
    """The server's ``store_pruned`` log line, looked for in what the log gained since the last look."""

    def __init__(self, server: Server) -> None:
        self._path = server.log_path
        self._offset = self._path.stat().st_size if self._path.exists() else 0
        self.line: dict[str, Any] | None = None

    def __call__(self) -> dict[str, Any] | None:
        if self.line is None:
            with contextlib.suppress(OSError), self._path.open("rb") as log:
                log.seek(self._offset)
                chunk = log.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]
                self._offset += len(complete)
                for raw in complete.splitlines():
                    if b'"store_pruned"' in raw:
                        self.line = dict(json.loads(raw))
                        break
        return self.line


def run_phase(
    name: str, server: Server, bodies: list[tuple[str, str, bytes]], rate: float, seconds: float, *, until_pruned: bool
) -> Phase:
    phase = Phase(name)
    deadline = [0.0]
    checked = [0.0]
    pruned = _PrunedLine(server)

    async def stop() -> bool:
        if time.monotonic() > deadline[0]:
            return True
        if not until_pruned or time.monotonic() - checked[0] < 0.25:
            return False
        checked[0] = time.monotonic()
        return pruned() is not None

    with server:
        deadline[0] = time.monotonic() + seconds
        asyncio.run(_load(server, phase, bodies, rate, stop))
    line = pruned()
    if line is not None:
        end = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
        phase.prune_window = (end - float(line["seconds"]), end)
        phase.pruned = {k: int(line[k]) for k in ("inbox", "deliveries", "attempts", "noise_log", "silences")}
    return phase


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=250_000, help="old events to fill (4 rows each)")
    parser.add_argument("--rate", type=float, default=100.0, help="webhooks per second during both phases")
    parser.add_argument("--baseline-seconds", type=float, default=30.0)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="bound of the pruning phase")
    parser.add_argument("--database", help="a postgresql:// URL (default: SQLite in a temporary directory)")
    parser.add_argument("--pause", help="RECEIVER_PRUNE_PAUSE_SECONDS of the pruning server (default: its default)")
    args = parser.parse_args(argv)
    pin_self_to_load_cpu()
    tag = run_tag()
    template = signed_faults(1, tag)[0][2]
    with workdir("prune") as tmp:
        directory = Path(tmp)
        rules = directory / "rules.yaml"
        rules.write_text(RULES, encoding="utf-8")
        url = None
        started = time.monotonic()
        if args.database:
            url = f"{args.database}{'&' if '?' in args.database else '?'}schema=bench_prune_{uuid.uuid4().hex[:8]}"
            fill_postgres(url, args.events, template)
        else:
            fill_sqlite(directory / "receiver.db", args.events, template)
        _log(f"filled {4 * args.events:,} rows in {time.monotonic() - started:.1f} s")
        try:
            phases = []
            for name, env, seconds, until in (
                ("baseline", OFF, args.baseline_seconds, False),
                ("pruning", ON, args.max_seconds, True),
            ):
                bodies = signed_faults(int(args.rate * seconds) + 1, f"{tag[:4]}{name[:4]}")
                server_env = {**env, "RECEIVER_PRUNE_INTERVAL_SECONDS": "2"}
                if args.pause is not None:
                    server_env["RECEIVER_PRUNE_PAUSE_SECONDS"] = args.pause
                server = _server(directory, rules, server_env, url)
                phase = run_phase(name, server, bodies, args.rate, seconds, until_pruned=until)
                phases.append(phase)
                _log(f"{name}: {phase.summary()}")
            base, pruning = phases
            report = {
                "store": "postgresql" if url else "sqlite",
                "rows_filled": 4 * args.events,
                "rate_per_s": args.rate,
                "pause_s": args.pause or "default",
                "baseline": base.summary(),
                "pruning_whole_phase": pruning.summary(),
                "pruning_window": pruning.summary(pruning.prune_window) if pruning.prune_window else None,
                "prune_seconds": round(pruning.prune_window[1] - pruning.prune_window[0], 1)
                if pruning.prune_window
                else None,
                "pruned": pruning.pruned,
            }
        finally:
            if url:
                drop_schema(url)
    print(json.dumps(report, indent=2))  # noqa: T201 - the result
    return 0


def _server(directory: Path, rules: Path, env: dict[str, str], url: str | None) -> Server:
    server = Server("receiver", directory, rules=rules, env={**env, "RECEIVER_WEBHOOK_SECRET": SECRET})
    if url is not None:
        argv = server.argv()
        argv[argv.index("--database") + 1] = url
        server.argv = lambda: argv  # type: ignore[method-assign]
    return server


if __name__ == "__main__":
    raise SystemExit(main())
