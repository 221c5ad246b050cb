"""Figures of the admin-access faults (issue #19, docs/reliability.md) against a real ``receiver serve``.

Prints, for the tree it runs from: what an empty ``RECEIVER_ADMIN_TOKEN`` lets through, what a
login form with 51 fields gets, how long a ``/ui/login`` body trickled a byte every 0.2 s keeps its
connection (and /healthz's slowest answer meanwhile), the same for an unauthenticated POST whose
body is left unread, and what 1,000 wrong bearer tokens in a row get. Each trickle stops after 15 s.

Run from the tree to measure: ``.venv/bin/python bench/access.py``. The "before" figures: unpack
the older tree (``git archive REV receiver | tar -x -C DIR``) and run from outside any tree, so that
the server imports that one: ``cd /tmp && PYTHONPATH=DIR /path/to/.venv/bin/python /path/to/bench/access.py``.
"""

from __future__ import annotations

import http.client
import socket
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import ServerProcess

ADMIN = "bench-admin-token"
RULES = "channels:\n  log: {url: 'log://'}\nrules:\n  - {name: all, match: {}, notify: [log]}\n"
TRICKLE_SECONDS = 15.0


def start(admin: str) -> ServerProcess:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "rules.yaml").write_text(RULES)
    env = {"RECEIVER_WEBHOOK_SECRET": "s", "RECEIVER_ADMIN_TOKEN": admin, "RECEIVER_BODY_TIMEOUT_SECONDS": "1"}
    return ServerProcess(rules=tmp / "rules.yaml", database=tmp / "r.db", env=env).start()


def ask(server: ServerProcess, method: str, path: str, body: str | None, headers: dict[str, str]) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, body=body, headers=headers)
    reply = conn.getresponse()
    text = reply.read()[:90].decode(errors="replace").split("\n", 1)[0]
    cookie = " +session cookie" if reply.getheader("set-cookie") else ""
    conn.close()
    return f"{reply.status}{cookie} {text}"


def healthz_seconds(server: ServerProcess) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"{server.base}/healthz", timeout=5) as reply:  # noqa: S310 - loopback
        reply.read()
    return time.monotonic() - started


def trickle(server: ServerProcess, path: str) -> str:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()
    health: list[float] = []
    reply, outcome = b"", "still open"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + b"token=")
        started = time.monotonic()
        sock.settimeout(0.2)
        while time.monotonic() - started < TRICKLE_SECONDS:
            health.append(healthz_seconds(server))
            try:
                sock.sendall(b"a")
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                outcome = "reset"
                break
            if not chunk:
                outcome = "closed"
                break
            reply += chunk
        took = time.monotonic() - started
    answer = reply.split(b"\r\n", 1)[0].decode() or "no answer"
    return f"{answer}; {outcome} after {took:.2f} s; /healthz slowest {max(health) * 1000:.0f} ms of {len(health)}"


def say(*parts: object) -> None:
    sys.stdout.write(" ".join(map(str, parts)) + "\n")


def main() -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    server = start("")
    try:
        say("RECEIVER_ADMIN_TOKEN='':")
        say("  GET /api/rules, Bearer (empty):", ask(server, "GET", "/api/rules", None, {"Authorization": "Bearer "}))
        origin = {**form, "Origin": server.base}
        say("  POST /ui/login token=:", ask(server, "POST", "/ui/login", "token=&next=/ui", origin))
    finally:
        server.stop()
    server = start(ADMIN)
    try:
        fields = "&".join(f"f{i}=x" for i in range(51))
        say("POST /ui/login, 51 fields:", ask(server, "POST", "/ui/login", fields, {**form, "Origin": server.base}))
        say("trickled /ui/login body:", trickle(server, "/ui/login"))
        say("trickled body, POST /api/rules/reload without a token:", trickle(server, "/api/rules/reload"))
        codes: Counter[int] = Counter()
        started = time.monotonic()
        for i in range(1000):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", "/api/rules", headers={"Authorization": f"Bearer guess-{i}"})
            codes[conn.getresponse().status] += 1
            conn.close()
        say(f"1,000 wrong bearer tokens in {time.monotonic() - started:.2f} s:", dict(sorted(codes.items())))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
