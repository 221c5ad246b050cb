"""Security against a real ``receiver serve``: no secret leaks, no way in without the token, no injection.

One server runs for the module with canary values for every secret it knows: the webhook secret,
the robot-log token, the admin token, and a password and a token inside channel URLs (set
through ``${VAR}`` in rules.yaml, as operators do). Every answer it gives, the pages of ``/ui``,
its error pages and its whole log are searched for them. Requests that ``httpx`` would refuse to
send (CR, LF or NUL in a header, a duplicated signature header, a huge header) go over a raw
socket, all to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from support import ServerProcess, Sink, fault, free_port, fresh, wait_until

from receiver.signature import sign

CANARY_SECRET = "CanaryHookSecret-4k2Q"
CANARY_LOGS = "CanaryLogsToken-8w1R"
CANARY_ADMIN = "CanaryAdminToken-6z3T"
CANARY_URL_PASSWORD = "CanaryUrlPassword-2m7U"
CANARY_URL_TOKEN = "CanaryUrlToken-9p5V"
CANARIES = (CANARY_SECRET, CANARY_LOGS, CANARY_ADMIN, CANARY_URL_PASSWORD, CANARY_URL_TOKEN)

ENV = {
    "RECEIVER_WEBHOOK_SECRET": CANARY_SECRET,
    "RECEIVER_LOGS_TOKEN": CANARY_LOGS,
    "RECEIVER_ADMIN_TOKEN": CANARY_ADMIN,
    "CANARY_URL_PASSWORD": CANARY_URL_PASSWORD,
    "CANARY_URL_TOKEN": CANARY_URL_TOKEN,
    "RECEIVER_RETRY_INITIAL_SECONDS": "0.1",
    "RECEIVER_AUTH_FAILURES_PER_MINUTE": "100000",  # these tests send many wrong tokens; the limit has its own
}

RULES = """
channels:
  sink:
    url: "json://receiver:${{CANARY_URL_PASSWORD}}@127.0.0.1:{sink_port}/hook?token=${{CANARY_URL_TOKEN}}"
  broken:
    url: "json://receiver:${{CANARY_URL_PASSWORD}}@127.0.0.1:{closed_port}/hook?token=${{CANARY_URL_TOKEN}}"
    max_attempts: 1
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: [sink, broken]
    body: "{{{{ event.job.info }}}} at {{{{ event.process }}}}"
  - name: robot-errors
    match: {{type: robot.log, level: {{gte: Error}}}}
    notify: [sink]
"""

ADMIN = {"Authorization": f"Bearer {CANARY_ADMIN}"}


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Env:
    server: ServerProcess
    sink: Sink
    attacker: Sink
    rules: Path
    replies: list[Reply]

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """One request; every reply is kept, to be searched for canaries at the end."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            answer = conn.getresponse()
            reply = Reply(answer.status, answer.getheaders(), answer.read())
        finally:
            conn.close()
        self.replies.append(reply)
        return reply

    def raw(self, data: bytes) -> bytes:
        """Send ``data`` as is over a fresh socket and read the answer until the server closes or goes quiet."""
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as sock:
            sock.sendall(data)
            chunks: list[bytes] = []
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    chunk = sock.recv(65536)
                except (TimeoutError, ConnectionResetError):
                    break
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                    break
        answer = b"".join(chunks)
        self.replies.append(Reply(0, [], answer))
        return answer

    def signed(self, body: bytes, source: str = "uipath") -> Reply:
        return self.request(
            "POST", f"/webhooks/{source}", body, {"X-UiPath-Signature": sign(body, CANARY_SECRET), **_JSON}
        )


_JSON = {"Content-Type": "application/json"}


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return match is not None and len(body) >= int(match.group(1))


def _status(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return int(match.group(1)) if match else 0


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("security")
    sink, attacker = Sink().start(), Sink().start()
    rules = tmp / "rules.yaml"
    rules.write_text(RULES.format(sink_port=sink.port, closed_port=free_port()))
    server = ServerProcess(rules=rules, database=tmp / "receiver.db", env=ENV).start()
    try:
        yield Env(server=server, sink=sink, attacker=attacker, rules=rules, replies=[])
    finally:
        server.stop()
        sink.stop()
        attacker.stop()


def _login(env: Env) -> str:
    """Log in to /ui with the admin token; returns the session cookie header value."""
    reply = env.request(
        "POST",
        "/ui/login",
        urlencode({"token": CANARY_ADMIN, "next": "/ui"}).encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"},
    )
    assert 303 == reply.status, reply.text
    cookie = reply.header("set-cookie") or ""
    return cookie.split(";", 1)[0]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **ENV},
        check=False,
    )


BROKEN_RULES = """
channels:
  sink: "json://receiver:${CANARY_URL_PASSWORD}@127.0.0.1:9/hook?token=${CANARY_URL_TOKEN}"
  typo: "jsn://receiver:${CANARY_URL_PASSWORD}@127.0.0.1:9/hook?token=${CANARY_URL_TOKEN}"
  literal: "notaservice://user:CanaryUrlPassword-2m7U@127.0.0.1/CanaryUrlToken-9p5V"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [sink, typo, literal, missing]
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("check", "{rules}"), id="check"),
        pytest.param(("check", "{broken}"), id="check-errors"),
        pytest.param(("test", "{rules}", "{event}"), id="test"),
        pytest.param(("test", "{rules}", "{event}", "--json"), id="test-json"),
        pytest.param(("test", "{broken}", "{event}"), id="test-errors"),
        pytest.param(("test", "{broken}", "{event}", "--json"), id="test-errors-json"),
    ],
)
def test_cli_output_shows_no_canary(tmp_path: Path, args: tuple[str, ...]) -> None:
    """`receiver check` and `receiver test`, valid and broken rules, text and --json: no secret in the output.

    The broken file also writes the secrets literally into a URL of an unknown scheme, the case
    where an error message is most tempted to quote the URL.
    """
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(sink_port=9, closed_port=9))
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN_RULES)
    event = tmp_path / "event.json"
    event.write_bytes(fault("cli-1"))
    paths = {"rules": rules, "broken": broken, "event": event}
    result = _cli(*(a.format(**paths) for a in args), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert (1 if "broken" in args[1] else 0) == result.returncode, output
    for canary in CANARIES:
        assert canary not in output, f"{canary} in `receiver {' '.join(args)}`:\n{output}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="none"),
        pytest.param("Bearer ", id="empty"),
        pytest.param("Bearer wrong", id="wrong"),
        pytest.param(f"Bearer {CANARY_ADMIN[:-1]}", id="prefix"),
        pytest.param(f"Bearer {CANARY_ADMIN}x", id="longer"),
        pytest.param(f"Bearer {CANARY_ADMIN.lower()}", id="other-case"),
        pytest.param(f"Basic {CANARY_ADMIN}", id="other-scheme"),
        pytest.param(CANARY_ADMIN, id="no-scheme"),
        pytest.param(f"Bearer {CANARY_LOGS}", id="logs-token"),
    ],
)
def test_admin_api_refuses_without_the_token(env: Env, authorization: str | None) -> None:
    """Every admin route answers 401 (and does nothing) unless the Authorization header is exactly the token."""
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in (
        ("GET", "/api/rules"),
        ("GET", "/api/events"),
        ("GET", "/api/events/1"),
        ("GET", "/api/deliveries"),
        ("GET", "/api/deliveries/1"),
        ("POST", "/api/deliveries/1/retry"),
        ("POST", "/api/deliveries/retry-dead"),
        ("GET", "/api/silences"),
        ("POST", "/api/silences"),
        ("DELETE", "/api/silences/1"),
        ("GET", "/api/suppressions"),
        ("POST", "/api/rules/reload"),
    ):
        reply = env.request(method, path, b"{}" if method == "POST" else None, headers)
        assert (401, "unauthorized") == (reply.status, reply.json()["error"]), (method, path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param(CANARY_ADMIN[:-1], id="prefix"),
        pytest.param(CANARY_ADMIN[:1], id="first-character"),
        pytest.param(f"{CANARY_ADMIN}x", id="longer"),
        pytest.param(CANARY_LOGS, id="logs-token"),
    ],
)
def test_ui_refuses_without_the_token(env: Env, token: str) -> None:
    """Logging in with anything but the token is a 401 without a session, and pages send the visitor to log in."""
    reply = env.request(
        "POST",
        "/ui/login",
        urlencode({"token": token, "next": "/ui"}).encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"},
    )
    assert 401 == reply.status
    assert reply.header("set-cookie") is None
    for path in ("/ui", "/ui/events", "/ui/deliveries", "/ui/rules", "/ui/silences"):
        page = env.request("GET", path, headers={"Cookie": f"receiver_session={token}"})
        assert 303 == page.status, path
        assert (page.header("location") or "").startswith("/ui/login")
    forged = f"{int(time.time()) + 600}.{'0' * 64}"
    assert 303 == env.request("GET", "/ui/events", headers={"Cookie": f"receiver_session={forged}"}).status


def _headers_of(answer: bytes) -> list[str]:
    return answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]


def _post_raw(env: Env, path: bytes, headers: list[bytes], body: bytes) -> bytes:
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: 127.0.0.1", *headers, b"Content-Length: %d" % len(body)]
    return env.raw(b"\r\n".join(lines) + b"\r\n\r\n" + body)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(b"X-UiPath-Signature: abc\rX-Injected: evil", 400, id="bare-CR"),
        pytest.param(b"X-UiPath-Signature: abc\x00X-Injected: evil", 400, id="NUL"),
        pytest.param(b"X-UiPath-Signature: abc\nX-Injected: evil", 400, id="bare-LF"),
        # 100 KB arrives in one read: the 64 KiB head bound measures the head as parsed (receiver/http/protocol.py).
        pytest.param(b"X-UiPath-Signature: " + b"A" * 100_000, 431, id="oversized"),
        pytest.param(b"X-Injected evil no colon", 400, id="no-colon"),
    ],
)
def test_header_injection_is_refused_or_harmless(env: Env, header: bytes, expected: int) -> None:
    """A header with CR, LF or NUL inside, a huge one, or a broken line: refused, never a 202, nothing reflected."""
    answer = _post_raw(env, b"/webhooks/uipath", [header], fault(f"inject-{len(header)}"))
    assert expected == _status(answer), answer[:200]
    assert not any(line.lower().startswith("x-injected") for line in _headers_of(answer))
    assert b"evil" not in answer


@pytest.mark.slow
def test_duplicate_signature_headers_do_not_let_a_body_in(env: Env) -> None:
    """Two X-UiPath-Signature headers get 400 duplicate_signature, even with the right one among them."""
    body = fault("dup-sig")
    wrong = sign(body, "not-the-secret").encode()
    right = sign(body, CANARY_SECRET).encode()
    both_wrong = _post_raw(
        env, b"/webhooks/uipath", [b"X-UiPath-Signature: " + wrong, b"X-UiPath-Signature: AAAA"], body
    )
    assert 400 == _status(both_wrong)
    assert b"duplicate_signature" in both_wrong
    # Which of two signatures counts would be a guess: refused whichever order, nothing stored.
    for pair in ([wrong, right], [right, wrong]):
        answer = _post_raw(env, b"/webhooks/uipath", [b"X-UiPath-Signature: " + s for s in pair], body)
        assert 400 == _status(answer), answer[:200]


@pytest.mark.slow
def test_attacker_text_in_source_or_type_stays_out_of_headers_and_log_lines(env: Env) -> None:
    """CR/LF in the source (URL-encoded) or in a signed body's Type: no header of the answer carries it,
    and the server log stays one JSON object per line (no forged line)."""
    injected = "x\r\nX-Injected: evil\r\n\r\n"
    answer = env.raw(
        b"POST /webhooks/"
        + quote(injected, safe="").encode()
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    assert 404 == _status(answer)
    assert not any(line.lower().startswith("x-injected") for line in _headers_of(answer))
    signed = env.signed(fresh("job.faulted.json", Type=f"job.faulted{injected}", EventId="inject-type"))
    assert 202 == signed.status
    assert not any(k.lower() == "x-injected" for k, _ in signed.headers)
    logs = env.request(
        "POST",
        "/logs/uipath",
        json.dumps({"Level": "Error", "Message": injected, "ProcessName": injected}).encode(),
        {"Authorization": f"Bearer {CANARY_LOGS}", **_JSON},
    )
    assert 202 == logs.status
    assert wait_until(lambda: "inject-type" in env.server.log())
    for line in env.server.log().splitlines():
        if line.strip():
            assert isinstance(json.loads(line), dict), line
            assert not line.startswith("X-Injected")


def _events(env: Env, event_type: str) -> list[dict[str, Any]]:
    reply = env.request("GET", f"/api/events?type={event_type}&limit=1000", headers=ADMIN)
    return list(reply.json()["events"])


def _event(env: Env, wanted: Callable[[dict[str, Any]], bool]) -> int:
    """The id of the one stored event ``wanted`` picks, once it is there."""
    found: list[int] = []

    def stored() -> bool:
        found[:] = [e["id"] for t in ("job.faulted", "robot.log") for e in _events(env, t) if wanted(e)]
        return len(found) == 1

    assert wait_until(stored), f"not stored exactly once: {found}"
    return found[0]


def _delivered(env: Env, inbox_id: int) -> set[tuple[str, str]]:
    """(channel, state) of each delivery of one event."""
    reply = env.request("GET", f"/api/deliveries?event={inbox_id}", headers=ADMIN)
    return {(d["channel"], d["state"]) for d in reply.json()["deliveries"]}


def _sent_to_sink(env: Env) -> int:
    reply = env.request("GET", "/api/deliveries?channel=sink&state=sent&limit=1000", headers=ADMIN)
    return len(reply.json()["deliveries"])


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_payloads_and_api_calls_cannot_choose_where_notifications_go(env: Env) -> None:
    """URLs in webhook fields that templates render, or in admin API bodies and queries, never become a
    destination: the attacker's loopback sink gets nothing, the rules file's sink gets the alert."""
    evil = env.attacker.url("evil")
    payload = json.loads(fresh("job.faulted.json", EventId="evil-url", Url=evil, Channel=evil, Notify=[evil]))
    payload["Job"].update(Info=f"see {evil}", Url=evil, Channel=evil)
    payload["Job"]["Release"].update(ProcessKey=evil, Name=evil, Url=evil)
    body = json.dumps(payload).encode()
    assert 202 == env.signed(body).status
    # Other tests' notifications may still be arriving: wait for this alert by its text.
    assert wait_until(lambda: any(evil in json.dumps(m) for m in list(env.sink.received))), (
        "the configured sink never got the alert with the attacker's URL rendered in it"
    )
    sent = _sent_to_sink(env)
    for method, path, payload in (
        ("POST", "/api/rules/reload", {"channels": {"sink": evil}, "url": evil}),
        ("POST", f"/api/deliveries/1/retry?url={quote(evil)}", {"url": evil, "channel": evil}),
        ("POST", "/api/deliveries/retry-dead", {"url": evil}),
        (
            "POST",
            "/api/silences",
            {"matchers": "process=x", "comment": "c", "created_by": "t", "for": "1h", "url": evil},
        ),
        ("GET", f"/api/events?source={quote(evil)}&url={quote(evil)}", None),
    ):
        reply = env.request(method, path, None if payload is None else json.dumps(payload).encode(), {**ADMIN, **_JSON})
        assert reply.status < 500, (path, reply.text)
    assert 202 == env.signed(fault("evil-after")).status
    assert wait_until(lambda: _sent_to_sink(env) >= sent + 1), "the alert after the API calls never reached the sink"
    time.sleep(0.5)  # a send to the attacker would have happened by now, alongside the sink's
    assert 0 == env.attacker.calls
    deliveries = env.request("GET", "/api/deliveries?limit=1000", headers=ADMIN).json()["deliveries"]
    assert {"sink", "broken"} >= {d["channel"] for d in deliveries}


@pytest.mark.slow
def test_oversized_headers_are_refused(env: Env) -> None:
    """20 MB of headers is refused with 431 before it is read into memory: the 1 MiB body limit must not
    be sidestepped by sending the bytes as a header."""
    answer = _post_raw(env, b"/webhooks/uipath", [b"X-Big: " + b"A" * 20_000_000], fault("big-header"))
    assert 431 == _status(answer), answer[:200]
    assert b"headers_too_large" in answer


@pytest.mark.slow
def test_headers_under_the_limit_still_work(env: Env) -> None:
    """A 60 KiB head (under the 64 KiB bound) is taken as usual."""
    body = fault("big-but-fine")
    signature = b"X-UiPath-Signature: " + sign(body, CANARY_SECRET).encode()
    answer = _post_raw(env, b"/webhooks/uipath", [signature, b"X-Padding: " + b"p" * 60_000], body)
    assert 202 == _status(answer), answer[:200]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_no_canary_in_any_answer_page_or_log_line(env: Env) -> None:
    """Accept, refuse, deliver, dead-letter, browse the API and /ui, hit every error page: no secret shows.

    Last in the module: it stops the server to read its whole log, and searches the answers of
    the tests before it (injection attempts, refused logins) as well as its own.
    """
    robot_logs_before = {e["id"] for e in _events(env, "robot.log")}
    assert 202 == env.signed(fault("sec-1")).status
    assert (
        202
        == env.request(
            "POST", "/logs/uipath", fresh("robot-log-error.json"), {"Authorization": f"Bearer {CANARY_LOGS}", **_JSON}
        ).status
    )
    # Earlier tests of the module used the same server and sink: wait for this test's own events.
    sec = _event(env, lambda e: e["event_id"] == "sec-1")
    robot = _event(env, lambda e: e["type"] == "robot.log" and e["id"] not in robot_logs_before)
    assert wait_until(lambda: {("sink", "sent"), ("broken", "dead")} == _delivered(env, sec)), _delivered(env, sec)
    assert wait_until(lambda: {("sink", "sent")} == _delivered(env, robot)), _delivered(env, robot)

    events = env.request("GET", "/api/events?explain=1", headers=ADMIN).json()["events"]
    deliveries = env.request("GET", "/api/deliveries", headers=ADMIN).json()["deliveries"]
    dead = next(d for d in deliveries if d["state"] == "dead" and d["inbox_id"] == sec)
    detail = env.request("GET", f"/api/deliveries/{dead['id']}", headers=ADMIN).json()
    # The channel's own error was recorded, so the search below covers a real failure reason.
    assert detail["attempt_log"]
    assert detail["attempt_log"][0]["reason"]
    expected = {
        "/api/rules": 200,
        f"/api/events/{events[0]['id']}": 200,
        f"/api/events/{events[-1]['id']}": 200,
        "/api/suppressions?all=1": 200,
        "/api/silences?all=1": 200,
        "/api/events/99999": 404,
        "/api/events/not-a-number": 400,
        "/api/deliveries?state=nonsense": 400,
        "/api/openapi.json": 200,
    }
    assert expected == {path: env.request("GET", path, headers=ADMIN).status for path in expected}
    assert 200 == env.request("POST", "/api/rules/reload", headers=ADMIN).status

    cookie = {"Cookie": _login(env)}
    for path in (
        "/ui",
        "/ui/events",
        f"/ui/events/{events[0]['id']}",
        "/ui/deliveries",
        "/ui/deliveries?state=dead",
        "/ui/rules",
        "/ui/silences",
    ):
        page = env.request("GET", path, headers=cookie)
        assert 200 == page.status, (path, page.status)

    errors = {
        "wrong signature": env.request("POST", "/webhooks/uipath", fault("sec-2"), {"X-UiPath-Signature": "AAAA"}),
        "no signature": env.request("POST", "/webhooks/uipath", fault("sec-3")),
        "unknown source": env.signed(fault("sec-4"), source="nope"),
        "not json": env.signed(b"{not json"),
        "too large": env.request("POST", "/webhooks/uipath", b"{" + b" " * (1024 * 1024 + 10) + b"}"),
        "logs wrong token": env.request("POST", "/logs/uipath", b"{}", {"Authorization": f"Bearer {CANARY_LOGS}x"}),
        "admin wrong token": env.request("GET", "/api/rules", headers={"Authorization": "Bearer nope"}),
        "no route": env.request("GET", "/nowhere"),
        "wrong method": env.request("GET", "/webhooks/uipath"),
        "ui wrong token": env.request(
            "POST",
            "/ui/login",
            urlencode({"token": CANARY_ADMIN[:-1]}).encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"},
        ),
    }
    assert {
        "wrong signature": 401,
        "no signature": 401,
        "unknown source": 404,
        "not json": 400,
        "too large": 413,
        "logs wrong token": 401,
        "admin wrong token": 401,
        "no route": 404,
        "wrong method": 405,
        "ui wrong token": 401,
    } == {name: reply.status for name, reply in errors.items()}
    assert 200 == env.request("GET", "/metrics").status
    assert 200 == env.request("GET", "/readyz").status

    env.server.stop()
    log = env.server.log()
    assert "notification_dead" in log  # the channel failure, with its reason, went through the log
    for reply in env.replies:
        seen = reply.text + "".join(f"{k}: {v}" for k, v in reply.headers)
        for canary in CANARIES:
            assert canary not in seen, f"{canary} in an answer: {seen[:300]}"
    for canary in CANARIES:
        assert canary not in log, f"{canary} in the server log"
