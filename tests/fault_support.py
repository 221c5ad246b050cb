"""Helpers of the fault-injection tests (tests/system/test_faults.py): a server whose file writes can be
capped, posters that retry like Orchestrator, a tally of what was lost, a throwaway PostgreSQL.

Everything runs on 127.0.0.1, and every loop and wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

from support import ServerProcess, Sink, free_port, fresh

from receiver.signature import sign


@dataclass
class CappedServer(ServerProcess):
    """A ``receiver serve`` whose file writes stop at ``fsize`` bytes per file: a full disk, unprivileged.

    ``RLIMIT_FSIZE`` makes every write past the cap fail with EFBIG (SIGXFSZ is ignored, so the
    process is not killed), which SQLite reports as an I/O error, as it would a full disk. The
    server's log goes to a pipe drained by a thread, so the cap never touches the log itself.
    ``uncap`` lifts the cap from outside with prlimit(2): the disk has been freed.
    """

    fsize: int | None = None
    _lines: list[str] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> CappedServer:
        cap = self.fsize

        def limit_writes() -> None:  # runs in the child between fork and exec
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            if cap is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (cap, resource.RLIM_INFINITY))

        self.process = subprocess.Popen(
            self.command(),
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # preexec_fn: the cap must be in place before exec, so the very first write obeys it.
            preexec_fn=limit_writes,
        )
        threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()
        if not wait_healthy(self, timeout):
            self.kill()
            raise RuntimeError(f"receiver did not become healthy:\n{self.log()}")
        return self

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with process.stdout:  # closed at EOF (the process died): no file left to the garbage collector
            for line in process.stdout:
                self._lines.append(line.decode(errors="replace"))

    def kill(self) -> None:
        """SIGKILL, then wait for the log pipe to be drained and closed."""
        super().kill()
        if self.process is not None and self.process.stdout is not None:
            deadline = time.monotonic() + 5
            while not self.process.stdout.closed and time.monotonic() < deadline:
                time.sleep(0.01)

    def log(self) -> str:
        return "".join(self._lines[-200:])

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines with this ``event`` name."""
        found = []
        for line in list(self._lines):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == name:
                    found.append(record)
        return found

    def uncap(self) -> None:
        """The disk has room again: lift the file-size cap of the running process."""
        assert self.process is not None
        resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def wait_healthy(server: ServerProcess, timeout: float) -> bool:
    """Wait until ``/healthz`` answers 200 (False when the process died or the time ran out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is None or server.process.poll() is not None:
            return False
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=1)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return True
            finally:
                conn.close()
        time.sleep(0.05)
    return False


@dataclass
class Tally:
    """What happened to each event: the answers it got, and what reached the channel.

    ``lost`` counts events answered 202 that never reached the channel; it must be 0.
    """

    posted: set[str] = field(default_factory=set)
    answers: Counter[int] = field(default_factory=Counter)  # every answer, retries included; 0 = no answer
    accepted: set[str] = field(default_factory=set)  # answered 202 at least once
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event_id: str, status: int) -> None:
        with self.lock:
            self.posted.add(event_id)
            self.answers[status] += 1
            if status == 202:
                self.accepted.add(event_id)

    def figures(self, delivered: Iterable[str]) -> dict[str, int]:
        """The figures of the report: posted, 202, 503, no answer, other, delivered, duplicates, lost."""
        counts = Counter(delivered)
        return {
            "posted": len(self.posted),
            "answered_202": self.answers[202],
            "answered_503": self.answers[503],
            "no_answer": self.answers[0],
            "answered_other": sum(n for s, n in self.answers.items() if s not in (0, 202, 503)),
            "events_202": len(self.accepted),
            "delivered": len(counts),
            "duplicates": sum(n - 1 for n in counts.values()),
            "lost": len(self.accepted - set(counts)),
            "unexpected": len(set(counts) - self.posted),
        }


def describe(figures: Mapping[str, object], test: str | None = None) -> str:
    """The figures as one line for an assertion message (pytest would shorten a dict).

    With ``RECEIVER_FAULT_FIGURES=PATH`` in the environment, they are also appended to PATH as one
    JSON line (with the test's name), for docs/reliability.md.
    """
    out = os.environ.get("RECEIVER_FAULT_FIGURES")
    if out and test:
        with open(out, "a") as file:
            file.write(json.dumps({"test": test, **figures}) + "\n")
    return " ".join(f"{key}={value}" for key, value in figures.items())


class Poster:
    """Posts signed events over one keep-alive connection, as one Orchestrator sender would.

    An event is posted again, as Orchestrator retries, after a 503 or a connection that failed
    (the server was killed), until it is answered 202 or ``deadline`` (``time.monotonic()``) passes.
    """

    def __init__(self, port: int, secret: str, tally: Tally, *, body: Callable[[str], bytes] | None = None) -> None:
        self.port = port
        self.secret = secret
        self.tally = tally
        self.body = body or (lambda event_id: fresh("job.faulted.json", EventId=event_id))
        self._conn: http.client.HTTPConnection | None = None

    def post_once(self, event_id: str, body: bytes, timeout: float = 30.0) -> int:
        """One attempt; 0 when no answer came (refused, reset, timed out)."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Content-Type": "application/json", "X-UiPath-Signature": sign(body, self.secret)}
        try:
            self._conn.request("POST", "/webhooks/uipath", body=body, headers=headers)
            reply = self._conn.getresponse()
            reply.read()
            status = reply.status
            if status == 503:
                assert reply.getheader("Retry-After") is not None, "a 503 must say when to retry"
        except (OSError, http.client.HTTPException):
            self.close()
            status = 0
        self.tally.record(event_id, status)
        return status

    def post(self, event_id: str, *, deadline: float, retry_pause: float = 0.05) -> int:
        """Post until 202 (or a refusal that retrying cannot fix), as Orchestrator would; the last status."""
        body = self.body(event_id)
        status = 0
        while time.monotonic() < deadline:
            status = self.post_once(event_id, body)
            if status not in (0, 503):
                return status
            time.sleep(retry_pause)  # Orchestrator waits before retrying; Retry-After is honoured loosely
        return status

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def titles(sink: Sink) -> list[str]:
    """The titles (the event ids, by the tests' rules) of everything the sink received."""
    with sink._lock:
        return [str(r.get("title")) for r in sink.received]


def settle(sink: Sink, expected: set[str], *, timeout: float, quiet: float = 1.0) -> list[str]:
    """Wait until every expected title arrived, then ``quiet`` seconds more for late duplicates."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not expected <= set(titles(sink)):
        time.sleep(0.05)
    time.sleep(quiet)  # a duplicate (a second send of a delivery) would arrive here, not a first one
    return titles(sink)


# -- a private, throwaway PostgreSQL cluster -------------------------------------------------


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries installed (Debian layout), or None."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3].split(".")[0]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a temporary directory, on a free loopback port, trust auth.

    It is never the shared server on port 5432: this one may be stopped and started at will. As
    root it runs as the ``postgres`` user (PostgreSQL refuses to run as root).
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="receiver-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        self.user = "postgres" if self._as_postgres else os.environ.get("USER", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres?connect_timeout=2"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout, cwd=self.root)

    def init(self) -> PrivatePostgres:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "--no-sync", "-E", "UTF8")
        with (self.data / "postgresql.conf").open("a") as conf:
            # Loopback only, no Unix socket in a shared directory; fsync stays on (durability is the point).
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n")
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "30", "start")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: open sessions are terminated, as in a routine restart."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres(bindir: Path) -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres(bindir).init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
