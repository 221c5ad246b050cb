"""Load generators, every one bounded in time and in requests, loopback only.

* ``run_wrk``: wrk with a Lua script that cycles through pre-signed bodies (Lua has no HMAC,
  so the bodies and their signatures are generated up front, one distinct EventId each); the
  script reports whether it ran out of bodies and had to reuse some (then the receiver's
  duplicate path was part of what was measured, and the run says so).
* ``run_closed``: the same measurement in Python (asyncio, keep-alive connections, each sending
  its next request as soon as the answer arrived), for machines without wrk.
* ``run_open``: a steady rate, each request sent at its scheduled time whatever the server does
  (for the end-to-end latency), with the scheduled wall-clock time of each event recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness import HOST, percentile

__all__ = ["LoadResult", "have_wrk", "post_all", "run_closed", "run_open", "run_wrk"]

PATH = "/webhooks/uipath"

_LUA = r"""
-- Cycles through pre-signed bodies: one "<signature>\t<body>" per line of $BENCH_BODIES.
local sigs, bodies, n = {}, {}, 0
for line in io.lines(os.getenv("BENCH_BODIES")) do
  local tab = line:find("\t", 1, true)
  n = n + 1
  sigs[n] = line:sub(1, tab - 1)
  bodies[n] = line:sub(tab + 1)
end
local i, wrapped = 0, 0
local headers = {["Content-Type"] = "application/json"}
wrk.method = "POST"

request = function()
  i = i + 1
  if i > n then i = 1; wrapped = wrapped + 1 end
  headers["X-UiPath-Signature"] = sigs[i]
  return wrk.format("POST", nil, headers, bodies[i])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"status_errors":%d,' ..
    '"socket_errors":%d,"timeouts":%d,"bodies":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write, e.timeout, n))
end
"""


@dataclass
class LoadResult:
    """What one load run measured."""

    tool: str
    concurrency: int
    requests: int  # completed requests (any status)
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers, socket errors and timeouts
    reused_bodies: bool = False  # True when the generator ran out of distinct bodies

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    """True when wrk is on PATH (and not disabled with BENCH_NO_WRK=1)."""
    return shutil.which("wrk") is not None and os.environ.get("BENCH_NO_WRK") != "1"


def run_wrk(port: int, bodies_file: Path, bodies: int, *, concurrency: int, seconds: float) -> LoadResult:
    """Run wrk (one thread) against the webhook route for ``seconds``."""
    script = bodies_file.with_suffix(".lua")
    script.write_text(_LUA, encoding="utf-8")
    argv = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://{HOST}:{port}{PATH}",
    ]
    done = subprocess.run(  # noqa: S603 - wrk on loopback, arguments built here
        argv,
        env={**os.environ, "BENCH_BODIES": str(bodies_file)},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return LoadResult(
        tool="wrk",
        concurrency=concurrency,
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3,
        errors=data["status_errors"] + data["socket_errors"] + data["timeouts"],
        # wrk counts only answered requests; up to `concurrency` more were sent and cut at the end.
        reused_bodies=data["requests"] + concurrency > bodies,
    )


# --- a small HTTP/1.1 client --------------------------------------------------------------------


def _request(port: int, signature: str, body: bytes) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"X-UiPath-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    payload = await reader.readexactly(length) if length else b""
    return status, payload


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def _closed(
    port: int, items: Sequence[tuple[str, str, bytes]], concurrency: int, seconds: float, wrap: bool
) -> tuple[_Tally, float, bool]:
    tally = _Tally()
    cursor = 0
    reused = False
    stop_at = time.perf_counter() + seconds

    def take() -> tuple[str, str, bytes] | None:
        nonlocal cursor, reused
        if cursor >= len(items):
            if not wrap:
                return None
            cursor, reused = 0, True
        item = items[cursor]
        cursor += 1
        return item

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.perf_counter() < stop_at:
                item = take()
                if item is None:
                    return
                started = time.perf_counter()
                try:
                    status, _ = await _exchange(reader, writer, _request(port, item[1], item[2]))
                except (OSError, asyncio.IncompleteReadError):
                    tally.errors += 1
                    return
                tally.latencies.append(time.perf_counter() - started)
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
                if not 200 <= status < 300:
                    tally.errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(connection() for _ in range(concurrency))), timeout=seconds + 60)
    return tally, time.perf_counter() - started, reused


def _run(coro_factory: Callable[[], object]) -> object:
    try:
        import uvloop  # the client is the bottleneck otherwise sooner than the server

        return uvloop.run(coro_factory())  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro_factory())  # type: ignore[arg-type]


def run_closed(
    port: int, items: Sequence[tuple[str, str, bytes]], *, concurrency: int, seconds: float, wrap: bool = True
) -> LoadResult:
    """Closed-loop load in Python: ``concurrency`` keep-alive connections for ``seconds``."""
    tally, elapsed, reused = _run(lambda: _closed(port, items, concurrency, seconds, wrap))  # type: ignore[misc]
    return LoadResult(
        tool="python",
        concurrency=concurrency,
        requests=len(tally.latencies),
        seconds=elapsed,
        p50_ms=percentile(tally.latencies, 50) * 1e3,
        p99_ms=percentile(tally.latencies, 99) * 1e3,
        errors=tally.errors,
        reused_bodies=reused,
    )


def post_all(port: int, items: Sequence[tuple[str, str, bytes]], *, concurrency: int = 8) -> dict[int, int]:
    """Post every item once (bounded: at most ten minutes); returns the count per status."""
    tally, _, _ = _run(lambda: _closed(port, items, concurrency, 600.0, False))  # type: ignore[misc]
    return tally.statuses


async def _open(
    port: int, items: Sequence[tuple[str, str, bytes]], rate: float, connections: int
) -> tuple[dict[str, float], dict[int, int], float]:
    sent: dict[str, float] = {}
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[tuple[str, str, bytes, float] | None] = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while (job := await queue.get()) is not None:
                event_id, signature, body, scheduled = job
                try:
                    status, _ = await _exchange(reader, writer, _request(port, signature, body))
                except (OSError, asyncio.IncompleteReadError):
                    status = 599
                statuses[status] = statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    sent[event_id] = scheduled
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    start_wall, start = time.time(), time.perf_counter()
    for i, (event_id, signature, body) in enumerate(items):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # The latency counts from when the POST was due, so a client that fell behind cannot hide server delay.
        queue.put_nowait((event_id, signature, body, start_wall + i / rate))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=120)
    return sent, statuses, time.perf_counter() - start


def run_open(
    port: int, items: Sequence[tuple[str, str, bytes]], *, rate: float, connections: int = 16
) -> tuple[dict[str, float], dict[int, int], float]:
    """Post ``items`` at ``rate`` per second; returns (event id -> wall time due, statuses, seconds)."""
    return _run(lambda: _open(port, items, rate, connections))  # type: ignore[return-value]
