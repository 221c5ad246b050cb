"""Hostile input at the edge against a real ``receiver serve``: the figures of docs/reliability.md for /logs and bursts.

``stall``: posts ``--posts`` bodies to ``POST /logs/uipath`` while a thread asks ``/healthz`` every
millisecond, and prints each post's status and time and the slowest ``/healthz`` before and during.
``--kind tiny`` is ~1 MiB of 87,000 one-field entries (``{"level":1}``); ``--kind cap`` is 1,000
entries of ~1 KiB each (~1 MiB, at the default entry cap). Past the default burst of 5,000
entries the ``cap`` posts get 429.

``trickle``: ``--holders`` connections each send the head and 10 bytes of an unsigned webhook and
then nothing; meanwhile 100 signed ``job.faulted`` webhooks go to a rule that sends each to a
loopback json:// endpoint. Prints how long until all 100 arrived.

Run ``.venv/bin/python bench/hostile_logs.py stall --kind tiny`` (or ``cap``, or ``trickle``).
To measure another version: ``git archive REV | tar -x -C DIR`` and ``BENCH_RECEIVER_TREE=DIR``.
Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness import HOST, Server, Sink, signed_faults, sink_rules, workdir

TOKEN = "bench-logs-token"  # noqa: S105 - a throwaway token for loopback servers


def _bodies(kind: str, posts: int) -> list[bytes]:
    if kind == "tiny":
        return [("[" + ",".join(['{"level":1}'] * 87_000) + "]").encode()] * posts
    padding = "x" * 990
    return [
        json.dumps({"logs": [{"Level": "Info", "Message": f"p{p}-{n} {padding}"} for n in range(1000)]}).encode()
        for p in range(posts)
    ]


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310 - loopback
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def stall(kind: str, posts: int) -> None:
    """Post the bodies and report the slowest /healthz before and during."""
    with workdir("logs") as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(
            "channels:\n  log: {url: 'log://'}\n"
            "rules:\n  - {name: errors, match: {type: robot.log, level: {gte: Error}}, notify: [log]}\n"
        )
        env = {"RECEIVER_LOGS_TOKEN": TOKEN, "RECEIVER_BODY_TIMEOUT_SECONDS": "60"}
        with Server("receiver", Path(tmp), rules=rules, env=env) as server:
            latencies: list[float] = []
            stop = threading.Event()

            def probe() -> None:
                while not stop.is_set() and len(latencies) < 1_000_000:
                    started = time.perf_counter()
                    with urllib.request.urlopen(f"http://{HOST}:{server.port}/healthz", timeout=30) as reply:
                        reply.read()
                    latencies.append(time.perf_counter() - started)
                    stop.wait(0.001)

            thread = threading.Thread(target=probe, daemon=True)
            thread.start()
            time.sleep(1.0)
            before = max(latencies)
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            results = []
            for body in _bodies(kind, posts):
                started = time.perf_counter()
                status = _post(server.port, "/logs/uipath", body, headers)
                results.append(f"{status} in {time.perf_counter() - started:.3f} s")
            time.sleep(3.0)  # the worker processes what was accepted
            stop.set()
            thread.join(35)
    during = max(latencies)
    print(f"{kind}: {len(body)} bytes per body; posts: {', '.join(results)}")  # noqa: T201 - the output
    print(f"/healthz slowest: {before * 1000:.0f} ms before, {during * 1000:.0f} ms during")  # noqa: T201 - the output


def trickle(holders: int) -> None:
    """Hold unsigned bodies open and time the delivery of 100 signed alerts."""
    with Sink() as sink, workdir("trickle") as tmp:
        rules = sink_rules(Path(tmp), sink.port)
        with Server("receiver", Path(tmp), rules=rules, env={"RECEIVER_BODY_TIMEOUT_SECONDS": "120"}) as server:
            held = []
            for _ in range(holders):
                sock = socket.create_connection((HOST, server.port))
                sock.sendall(
                    b"POST /webhooks/uipath HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"X-UiPath-Signature: sha256=bm9wZQ==\r\nContent-Length: 1000\r\n\r\n" + b'{"Type": "j'
                )
                held.append(sock)
            time.sleep(0.5)
            tag = f"t{time.monotonic_ns() % 10**7:07d}"  # signed_faults keeps 8 characters of it
            started = time.monotonic()
            for _, signature, body in signed_faults(100, tag):
                status = _post(server.port, "/webhooks/uipath", body, {"X-UiPath-Signature": signature})
                if status != 202:
                    raise RuntimeError(f"a signed webhook got {status}")
            stats = sink.wait_for(tag, 100, timeout=60)
            took = time.monotonic() - started
            for sock in held:
                sock.close()
    print(f"{holders} held unsigned bodies: {stats['count']}/100 alerts delivered in {took:.2f} s")  # noqa: T201 - the output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("mode", choices=["stall", "trickle"])
    parser.add_argument("--kind", choices=["tiny", "cap"], default="tiny")
    parser.add_argument("--posts", type=int, default=3)
    parser.add_argument("--holders", type=int, default=10)
    args = parser.parse_args()
    if args.mode == "stall":
        stall(args.kind, min(args.posts, 50))
    else:
        trickle(min(args.holders, 100))


if __name__ == "__main__":
    main()
