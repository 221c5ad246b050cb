"""What the benchmark sections share: CPU pinning, server processes, signed bodies, statistics.

Everything listens and connects on 127.0.0.1 only. Servers run as child processes in a fresh
temporary directory each (their own SQLite file, rules file and log), pinned to one CPU; the load
generators, the notification sink and this driver share the other CPU, so the two sides do not
steal each other's time slices. On a single-CPU machine nothing is pinned.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DATA = ROOT / "tests" / "data"
SECRET = "bench-secret"  # noqa: S105 - a throwaway webhook secret for loopback servers
HOST = "127.0.0.1"

sys.path.insert(0, str(ROOT))

from receiver.signature import sign  # noqa: E402

# --- CPUs ---------------------------------------------------------------------------------------


def cpus() -> tuple[int | None, int | None]:
    """(server CPU, load CPU): the first two CPUs this process may use, or (None, None) with one."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


SERVER_CPU, LOAD_CPU = cpus()


def pin_self_to_load_cpu() -> None:
    """Move this driver (and every child it starts without its own pin) to the load CPU."""
    if LOAD_CPU is not None:
        os.sched_setaffinity(0, {LOAD_CPU})


def _pinned(cpu: int | None) -> Any:
    if cpu is None:
        return None

    def pin() -> None:
        # Before exec, so every thread the server starts later inherits the mask.
        os.sched_setaffinity(0, {cpu})

    return pin


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pinning": f"server on CPU {SERVER_CPU}, load on CPU {LOAD_CPU}" if SERVER_CPU is not None else "none",
    }


# --- statistics ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Iterable[float]) -> float:
    """The median, or NaN for nothing."""
    items = [v for v in values if v == v]  # drop NaN
    return statistics.median(items) if items else float("nan")


# --- bodies -------------------------------------------------------------------------------------

BODY_BYTES = 1024


def fresh_timestamp() -> str:
    """Now, as Orchestrator writes it (the edge refuses events older than a day as replays)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fault_body(event_id: str, *, timestamp: str, process: str = "InvoiceProcessing", size: int = BODY_BYTES) -> bytes:
    """A compact ``job.faulted`` body of exactly ``size`` bytes (the job's Info is padded or cut)."""
    raw = json.loads((DATA / "job.faulted.json").read_text(encoding="utf-8"))
    raw["EventId"] = event_id
    raw["Timestamp"] = timestamp
    raw["Job"]["Release"]["ProcessKey"] = process
    info = raw["Job"]["Info"]
    raw["Job"]["Info"] = ""
    room = size - len(json.dumps(raw, separators=(",", ":")).encode())
    if room < 0:
        raise ValueError(f"a job.faulted body cannot be made as small as {size} bytes")
    raw["Job"]["Info"] = (info * (room // len(info) + 1))[:room]
    body = json.dumps(raw, separators=(",", ":")).encode()
    # Escapes (\r\n) make the encoded Info longer than its characters: trim until it fits.
    while len(body) > size:
        raw["Job"]["Info"] = raw["Job"]["Info"][:-1]
        body = json.dumps(raw, separators=(",", ":")).encode()
    if len(body) < size:
        raw["Job"]["Info"] += " " * (size - len(body))
        body = json.dumps(raw, separators=(",", ":")).encode()
    return body


def signed_faults(count: int, tag: str, *, process: str = "InvoiceProcessing") -> list[tuple[str, str, bytes]]:
    """``count`` distinct (event id, signature, body) triples; ``tag`` keeps sets apart."""
    template = fault_body("@" * 32, timestamp=fresh_timestamp(), process=process)
    head, _, tail = template.partition(b"@" * 32)
    out = []
    for i in range(count):
        # 32 characters like Orchestrator's ids; the pad keeps every body exactly BODY_BYTES - 11 + 32.
        event_id = f"{tag[:8]:<8}{i:024x}".replace(" ", "0")
        body = head + event_id.encode() + tail
        out.append((event_id, sign(body, SECRET), body))
    return out


def write_wrk_bodies(path: Path, bodies: Sequence[tuple[str, str, bytes]]) -> None:
    """One ``<signature>\\t<body>`` per line, for the wrk Lua script."""
    with path.open("wb") as fh:
        for _, signature, body in bodies:
            fh.write(signature.encode() + b"\t" + body + b"\n")


# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    """How many file descriptors ``pid`` has open (sockets, the store's files, logs, pipes)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    """How many threads ``pid`` runs (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Threads for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class Server:
    """A server child process on a loopback port, in its own temporary directory."""

    kind: str  # "bare" or "receiver"
    workdir: Path
    rules: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    # The directory that holds the receiver package to run: this checkout, or a candidate change
    # (BENCH_RECEIVER_TREE applies one to every section; bench_ingest --candidate runs it side by side).
    tree: Path = field(default_factory=lambda: receiver_tree())
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    database_url: str | None = None  # None: a SQLite file in the work directory

    @property
    def database(self) -> Path:
        return self.workdir / "receiver.db"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.kind}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None  # noqa: S101 - narrowing
        return self.process.pid

    def argv(self) -> list[str]:
        if self.kind == "bare":
            return [sys.executable, str(BENCH / "bare_app.py"), "--port", str(self.port)]
        return [
            sys.executable,
            "-m",
            "receiver",
            "serve",
            "--rules",
            str(self.rules),
            "--port",
            str(self.port),
            "--database",
            self.database_url or f"sqlite:///{self.database}",
        ]

    def start(self, timeout: float = 60.0) -> Server:
        env = {
            **os.environ,
            "RECEIVER_WEBHOOK_SECRET": SECRET,
            "RECEIVER_LOG_FORMAT": "json",
            "PYTHONPATH": str(self.tree),
            **self.env,
        }
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and scripts
                self.argv(),
                cwd=self.workdir,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_pinned(SERVER_CPU),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited with {self.process.returncode}:\n{self.tail_log()}")
            # uvicorn binds only after the lifespan started up (rules loaded, store open).
            with socket.socket() as sock:
                if sock.connect_ex((HOST, self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} server did not listen within {timeout:.0f} s:\n{self.tail_log()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def tail_log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def workdir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A fresh temporary directory for one server run."""
    return tempfile.TemporaryDirectory(prefix=f"receiver-bench-{prefix}-")


def receiver_tree() -> Path:
    """The directory holding the receiver package the benchmarks run (BENCH_RECEIVER_TREE, else this checkout)."""
    return Path(os.environ.get("BENCH_RECEIVER_TREE") or ROOT)


def example_rules(into: Path, tree: Path | None = None) -> Path:
    """A copy of the example rules.yaml (log:// channels) of ``tree`` (the one that goes with its code) in ``into``."""
    source = (tree or receiver_tree()) / "rules.yaml"
    target = into / "rules.yaml"
    target.write_text((source if source.is_file() else ROOT / "rules.yaml").read_text(encoding="utf-8"), "utf-8")
    return target


def sink_rules(into: Path, sink_port: int, *, concurrency: int = 4) -> Path:
    """Rules that send every job.faulted to the sink as JSON, with the event id as the title."""
    target = into / "rules.yaml"
    target.write_text(
        "channels:\n"
        "  sink:\n"
        f'    url: "json://{HOST}:{sink_port}/notify"\n'
        f"    concurrency: {concurrency}\n"
        "rules:\n"
        "  - name: faults\n"
        "    match:\n"
        "      type: job.faulted\n"
        "    notify: [sink]\n"
        '    title: "{{ event_id }}"\n',
        encoding="utf-8",
    )
    return target


def candidate_labels(candidates: Sequence[Path]) -> list[tuple[str, Path]]:
    """(label, directory) of each ``--candidate``: the directory's name, made unique."""
    labels: list[tuple[str, Path]] = []
    for path in candidates:
        label = path.resolve().name or str(path)
        while label in {"bare", "receiver"} | {existing for existing, _ in labels}:
            label += "'"
        labels.append((label, path))
    return labels


def run_tag() -> str:
    """Eight hex characters that keep the event ids of one run apart from every other run's."""
    return uuid.uuid4().hex[:8]


@dataclass
class Sink:
    """The json:// endpoint (bench/sink.py) as a child process on the load CPU."""

    delay: float = 0.005
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"json://{HOST}:{self.port}/notify"

    def start(self) -> Sink:
        self.process = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, str(BENCH / "sink.py"), "--port", str(self.port), "--delay", str(self.delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None  # noqa: S101 - narrowing
        if self.process.stdout.readline().strip() != "READY":
            raise RuntimeError("the sink did not start")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def stats(self, prefix: str, *, full: bool = False) -> dict[str, Any]:
        """What arrived with titles starting with ``prefix``."""
        import urllib.request

        url = f"http://{HOST}:{self.port}/stats?prefix={prefix}&full={int(full)}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            return dict(json.loads(reply.read()))

    def wait_for(self, prefix: str, count: int, timeout: float) -> dict[str, Any]:
        """Poll until ``count`` notifications with ``prefix`` arrived or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        stats = self.stats(prefix)
        while stats["count"] < count and time.monotonic() < deadline:
            time.sleep(0.05)
            stats = self.stats(prefix)
        return stats

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def run_direct_apprise(
    url: str, tag: str, count: int, *, concurrency: int, rate: float | None = None, out: Path
) -> dict[str, Any]:
    """Run bench/direct_apprise.py pinned to the server CPU; returns its JSON document."""
    argv = [sys.executable, str(BENCH / "direct_apprise.py"), "--url", url, "--tag", tag, "--count", str(count)]
    argv += ["--concurrency", str(concurrency), "--out", str(out)]
    if rate:
        argv += ["--rate", str(rate)]
    subprocess.run(argv, check=True, timeout=900, preexec_fn=_pinned(SERVER_CPU))  # noqa: S603
    return dict(json.loads(out.read_text(encoding="utf-8")))


def count_inbox(database: Path) -> dict[str, int]:
    """Rows of a stopped (or running) receiver's store, read-only: inbox by state, deliveries by state."""
    import sqlite3  # noqa: TID251 - the bench reads the store file to check that nothing was lost

    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        counts = {f"inbox_{state}": n for state, n in conn.execute("SELECT state, count(*) FROM inbox GROUP BY state")}
        counts |= {
            f"deliveries_{state}": n
            for state, n in conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state")
        }
        counts["inbox"] = sum(v for k, v in counts.items() if k.startswith("inbox_"))
        return counts
    finally:
        conn.close()


def stored_event_ids(database: Path) -> set[str]:
    """The EventIds in a receiver's inbox (read-only), to check that every 202 was stored."""
    import sqlite3  # noqa: TID251 - the bench reads the store file to check that nothing was lost

    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0] for row in conn.execute("SELECT event_id FROM inbox")}
    finally:
        conn.close()


def deliveries_by_state(database: Path, channel: str) -> dict[str, int]:
    """The deliveries of one channel by state (read-only): pending, sent, dead..."""
    import sqlite3  # noqa: TID251 - the bench reads the store file to check that nothing was lost

    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        query = "SELECT state, count(*) FROM deliveries WHERE channel = ? GROUP BY state"
        return dict(conn.execute(query, (channel,)))
    finally:
        conn.close()


# A day of a large estate, roughly: mostly jobs starting and ending and queue traffic, a few
# faults and failures (which the example rules notify), processes spread over more names than
# the rule index's candidate cache holds.
MIX: tuple[tuple[str, int], ...] = (
    ("job.started", 30),
    ("job.completed", 30),
    ("queueItem.added", 10),
    ("queueItem.transactionStarted", 8),
    ("queueItem.transactionCompleted", 10),
    ("job.faulted", 4),
    ("job.stopped", 2),
    ("queueItem.transactionFailed", 3),
    ("robot.status", 2),
    ("schedule.failed", 1),
)
PROCESSES = 5_000


def _set_process(node: Any, placeholder: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ProcessKey" and isinstance(value, str):
                node[key] = placeholder
            else:
                _set_process(value, placeholder)
    elif isinstance(node, list):
        for value in node:
            _set_process(value, placeholder)


def mixed_events(count: int, tag: str, start: int = 0) -> list[tuple[str, str, bytes]]:
    """``count`` signed events of the MIX numbered from ``start`` (distinct EventIds per ``tag``)."""
    templates: list[tuple[bytes, bytes, bytes]] = []
    for name, weight in MIX:
        raw = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
        raw["EventId"], raw["Timestamp"] = "@EID@", fresh_timestamp()
        _set_process(raw, "@PROC@")
        text = json.dumps(raw, separators=(",", ":")).encode()
        head, _, rest = text.partition(b"@EID@")
        templates += [(head, rest, name.encode())] * weight
    out = []
    for i in range(start, start + count):
        head, rest, _ = templates[(i * 7919) % len(templates)]  # a fixed, well-mixed order
        event_id = f"{tag[:8]:<8}{i:024x}".replace(" ", "0")
        body = head + event_id.encode() + rest.replace(b"@PROC@", f"Process{(i * 31) % PROCESSES:05d}".encode())
        out.append((event_id, sign(body, SECRET), body))
    return out


def http_get_json(port: int, path: str, *, token: str | None = None) -> Any:
    """GET a loopback JSON route (with ``token`` as the admin bearer token)."""
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 - loopback
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def wait_quiet(database: Path, timeout: float = 60.0) -> bool:
    """Wait until a receiver's store has no new event and no pending delivery (its workers are idle).

    The warm-up requests before a measurement leave work behind; measuring from a quiet server
    keeps that work out of the figures. Returns False if it was still busy at ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        counts = count_inbox(database)
        if not counts.get("inbox_new") and not counts.get("deliveries_pending"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
