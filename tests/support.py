"""Test helpers shared by several test modules: loopback HTTP sinks and endpoints, a real server process."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from receiver.delivery.notifier import SendResult
from receiver.render import Notification
from receiver.signature import sign

DATA = Path(__file__).parent / "data"

ENABLE_POSTGRES = "export RECEIVER_TEST_DATABASE_URL=postgresql://USER@HOST:5432/DB"


def with_params(url: str, **params: str) -> str:
    """``url`` with query parameters added."""
    parts = urlsplit(url)
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample(name: str) -> bytes:
    """The bytes of a sample payload in tests/data."""
    return (DATA / name).read_bytes()


def fresh(name: str = "job.faulted.json", **changes: Any) -> bytes:
    """A sample with a current Timestamp (the samples are years old, which the replay check refuses).

    ``changes`` replace top-level fields, e.g. ``EventId="ev-1"``.
    """
    raw = json.loads(sample(name))
    raw["Timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.1234567Z", time.gmtime())
    raw.update(changes)
    return json.dumps(raw).encode()


def fault(event_id: str) -> bytes:
    """A fresh ``job.faulted`` sample with its own EventId."""
    return fresh("job.faulted.json", EventId=event_id)


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; returns whether it came true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class QuietServer(ThreadingHTTPServer):
    """A test endpoint that says nothing when a client leaves before its answer was written.

    socketserver prints each such error's traceback to stderr, through pytest's capture.
    """

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            super().handle_error(request, client_address)


@dataclass
class Sink:
    """A loopback HTTP endpoint that records every POST (json:// and form:// targets).

    ``behaviour`` decides the answer per request: a status code, or None to drop the connection.
    """

    port: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    behaviour: Callable[[int], int | None] = lambda _: 200
    delay: float = 0.0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    calls: int = 0

    def start(self) -> Sink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender died mid-request (the SIGKILL fault test): a real endpoint never
                    # sees a message that did not arrive whole.
                    self.close_connection = True
                    return
                with sink._lock:
                    sink.calls += 1
                    number = sink.calls
                status = sink.behaviour(number)
                if sink.delay:
                    time.sleep(sink.delay)
                if status is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if 200 <= status < 300:
                    try:
                        payload = json.loads(body)
                    except ValueError:
                        payload = {"raw": body.decode(errors="replace")}
                    with sink._lock:
                        sink.received.append(payload)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = QuietServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()  # quick to stop
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        with self._lock:
            return list(self.received)


@dataclass
class ServerProcess:
    """A real ``receiver serve`` process on a loopback port."""

    rules: Path
    database: Path
    env: Mapping[str, str]
    port: int = field(default_factory=free_port)
    database_url: str | None = None  # instead of the SQLite file ``database`` (whose name still names the log)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def command(self) -> list[str]:
        """The ``receiver serve`` command line of this server."""
        database = self.database_url or f"sqlite:///{self.database}"
        serve = ["receiver", "serve", "--rules", str(self.rules), "--port", str(self.port), "--database", database]
        return [sys.executable, "-m", *serve]

    def environment(self) -> dict[str, str]:
        """Its environment: ours, its own settings, JSON logs and a short poll."""
        return {**os.environ, **self.env, "RECEIVER_LOG_FORMAT": "json", "RECEIVER_POLL_SECONDS": "0.2"}

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.log_path = self.database.with_suffix(f".{time.monotonic_ns()}.log")
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self.command(), env=self.environment(), stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"receiver exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as reply:  # noqa: S310 - loopback
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"receiver did not become healthy:\n{self.log()}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.base}{path}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def post_signed(self, body: bytes, secret: str, source: str = "uipath") -> tuple[int, dict[str, Any]]:
        return self.post(f"/webhooks/{source}", body, {"X-UiPath-Signature": sign(body, secret)})


@dataclass
class HealthPoller:
    """Asks ``/healthz`` every 50 ms in a thread and keeps the slowest answer (bounded by ``limit`` seconds)."""

    base: str
    limit: float = 120.0
    slowest: float = 0.0
    failures: list[str] = field(default_factory=list)
    polls: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthPoller:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def stalled(self) -> bool:
        return self.slowest >= 1.0 or bool(self.failures)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=5) as reply:  # noqa: S310 - loopback
                    reply.read()
                    if reply.status != 200:
                        self.failures.append(f"status {reply.status}")
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.polls += 1
            self._stop.wait(0.05)


def self_signed_certificate(directory: Path) -> tuple[Path, Path] | None:
    """A certificate and key for 127.0.0.1 (CN and subjectAltName), made by the openssl CLI; None without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class Endpoint:
    """A keep-alive HTTP/1.1 server on loopback that counts connections and records requests."""

    answer_headers: dict[str, str] = field(default_factory=dict)
    close_after_each: bool = False
    connections: int = 0
    closed_by_client: int = 0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    redirect: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (status, Location)
    drop_after_each: bool = False  # close the connection after answering, without saying so
    finished: int = 0  # connections the server has closed
    answer_body: bytes = b"ok"
    tls: ssl.SSLContext | None = None
    port: int = 0

    def start(self) -> ThreadingHTTPServer:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                endpoint.connections += 1

            def finish(self) -> None:
                super().finish()
                endpoint.closed_by_client += not self.close_connection_by_us

            close_connection_by_us = False

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                endpoint.bodies.append(self.rfile.read(length))
                endpoint.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, location = endpoint.redirect.get(self.path.split("?")[0], (200, ""))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                for name, value in endpoint.answer_headers.items():
                    self.send_header(name, value)
                if endpoint.close_after_each:
                    self.send_header("Connection", "close")
                    self.close_connection_by_us = True
                self.send_header("Content-Length", str(len(endpoint.answer_body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # a client that stops reading a long answer closes on us
                    self.wfile.write(endpoint.answer_body)
                if endpoint.drop_after_each:
                    self.close_connection = True
                    self.close_connection_by_us = True

            do_POST = _answer
            do_GET = _answer

            def log_message(self, *args: object) -> None:
                pass

        class Server(QuietServer):
            def shutdown_request(self, request: Any) -> None:
                super().shutdown_request(request)
                endpoint.finished += 1  # counted once the socket is closed: its FIN is on the way

        server = Server(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()  # quick to shut down
        return server

    def url(self, path: str = "/hook") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"


# Request shapes apprise's webhook plugins send (tests/test_keepalive.py, tests/test_loop_send.py).
PLAIN_CALLS: dict[str, dict[str, Any]] = {
    "json-text": {"data": '{"title": "Ünïcode ✓"}', "headers": {"Content-Type": "application/json"}},
    "bytes": {"data": b"\x00\x01 raw"},
    "json-argument": {"json": {"a": [1, "é"]}},
    "params-and-auth": {"params": {"sig": "a b/c", "x": "1"}, "auth": ("user", "pässword"), "data": "x"},
    "header-removed": {"headers": {"User-Agent": None, "X-Custom": "v"}, "data": "x"},
    "form": {"data": {"token": "abc", "msg": "hi there"}},
}


def post_scope(path: str, headers: dict[str, str], length: int) -> dict[str, Any]:
    """The ASGI scope of a POST to ``path`` with these headers and a body of ``length`` bytes (no server)."""
    raw = [(k.lower().encode(), v.encode()) for k, v in {**headers, "content-length": str(length)}.items()]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


@dataclass
class RecordingNotifier:
    """A Notifier that records its calls (``sent``: the notifications, in order) and reports each sent."""

    calls: list[tuple[str, Notification, float]] = field(default_factory=list)
    returned: list[SendResult] = field(default_factory=list)
    sent: list[Notification] = field(default_factory=list)

    async def send(self, url: str, notification: Notification, *, timeout: float) -> SendResult:  # noqa: ASYNC109
        self.calls.append((url, notification, timeout))
        self.sent.append(notification)
        self.returned.append(SendResult("sent", None, 0.001 * len(self.calls), recoverable=False))
        return self.returned[-1]
