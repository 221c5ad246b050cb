"""The notification endpoint of the delivery benchmarks: a loopback HTTP server for apprise's json://.

It answers every POST after ``--delay`` seconds (5 ms by default, a fast real service) and
records, for each notification, its title (the benchmarks put the event id there) and the
wall-clock time it arrived. ``GET /stats?prefix=P`` returns what arrived with titles starting
with ``P``: count, first and last arrival, and with ``&full=1`` every title's arrival time.
Run: ``python bench/sink.py --port PORT``; it prints ``READY`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from urllib.parse import parse_qs, urlsplit

# Arrival time by title, bucketed by the title's first _HEAD characters (the benchmarks' run tag),
# so that a poll for one run's arrivals reads that run's bucket: a scan of every run's arrivals
# took milliseconds once a suite had sent tens of thousands, and held up the answers of the run
# being measured, more so the later it ran.
_HEAD = 8
_arrivals: dict[str, dict[str, float]] = {}


def _stats(query: str) -> bytes:
    params = parse_qs(query)
    prefix = params.get("prefix", [""])[0]
    buckets = [_arrivals.get(prefix[:_HEAD], {})] if len(prefix) >= _HEAD else list(_arrivals.values())
    times = {title: t for bucket in buckets for title, t in bucket.items() if title.startswith(prefix)}
    body: dict[str, object] = {
        "count": len(times),
        "first": min(times.values(), default=None),
        "last": max(times.values(), default=None),
    }
    if params.get("full", ["0"])[0] == "1":
        body["arrivals"] = times
    return json.dumps(body).encode()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            except asyncio.CancelledError:  # stopping: an idle connection ends without a traceback
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            if method == "GET":
                payload = _stats(urlsplit(target).query)
            else:
                arrived = time.time()
                try:
                    title = str(json.loads(body).get("title", ""))
                except ValueError:
                    title = ""
                _arrivals.setdefault(title[:_HEAD], {}).setdefault(title, arrived)
                await asyncio.sleep(delay)
                payload = b""
            close = headers.get("connection", "").lower() == "close"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(payload)).encode()
                + (b"\r\nConnection: close" if close else b"")
                + b"\r\n\r\n"
                + payload
            )
            await writer.drain()
            if close:
                return
    finally:
        writer.close()


async def _main(port: int, delay: float) -> None:
    server = await asyncio.start_server(lambda r, w: _serve(r, w, delay), "127.0.0.1", port, backlog=1024)
    # SIGINT (how the harness stops it) ends the loop quietly: as a KeyboardInterrupt it cancelled
    # every open connection's task mid-read and printed a traceback for each.
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    print("READY", flush=True)  # noqa: T201 - the parent waits for this line
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.005, help="seconds before answering (default 0.005)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.port, args.delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
