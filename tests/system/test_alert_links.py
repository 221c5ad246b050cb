"""Action links with a real ``receiver serve`` and the fake Orchestrator, over loopback.

An alert message carries signed links. Fetching one with GET (as chat clients and mail scanners
do) changes nothing; the confirmation page's POST acknowledges; an altered or expired link gets a
page that says so (4xx); "retry the job" starts exactly one job of the same release on the same
robot through StartJobs, even when its POST is sent twice.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_orchestrator import FakeOrchestrator
from support import ServerProcess, Sink, fresh, wait_until

from receiver.actionlink import LinkSigner

CLIENT_ID, CLIENT_SECRET = "receiver-app", "cl1ent-s3cret-value"
SECRET = "links-secret"
ADMIN = "links-admin-token"
LINK_KEY = "links-signing-key-for-the-test"
SCOPES = "OR.Jobs OR.Folders.Read"

RULES = """\
channels:
  ops: "{sink}"
sources:
  uipath:
    secrets: ["{secret}"]
    orchestrator:
      url: "{url}"
      client_id: "{client_id}"
      client_secret: "{client_secret}"
      public_url: "http://127.0.0.1:9/webhooks/uipath"
      scopes: "{scopes}"
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: ops
    actions: [retry]
    repeat: 1h
"""


@pytest.fixture
def orch() -> Iterator[FakeOrchestrator]:
    fake = FakeOrchestrator(org="acme", tenant="DefaultTenant")
    fake.add_client(CLIENT_ID, CLIENT_SECRET, SCOPES)
    with fake:
        yield fake


def _call(url: str, data: dict[str, str] | None = None) -> tuple[int, str]:
    body = None if data is None else urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, method="GET" if data is None else "POST")  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 - loopback
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _alert(server: ServerProcess) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{server.base}/api/alerts", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback
        alerts: list[dict[str, Any]] = json.loads(reply.read())["alerts"]
    assert 1 == len(alerts)
    return alerts[0]


def _links(message: str) -> dict[str, str]:
    return dict(re.findall(r"^(Acknowledge|Silence[^:]*|Retry the job): (\S+)$", message, re.M))


def test_links_get_changes_nothing_post_acts_bad_links_refused_retry_starts_one_job(
    tmp_path: Path, orch: FakeOrchestrator, sink: Sink
) -> None:
    folder = orch.add_folder("Finance")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        RULES.format(
            sink=sink.url(),
            secret=SECRET,
            url=orch.orchestrator_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            scopes=SCOPES,
        )
    )
    server = ServerProcess(rules=rules, database=tmp_path / "links", env={})
    server.env = {
        "RECEIVER_PUBLIC_URL": f"http://127.0.0.1:{server.port}",
        "RECEIVER_LINK_KEY": LINK_KEY,
        "RECEIVER_ADMIN_TOKEN": ADMIN,
    }
    try:
        server.start()
        raw = json.loads(fresh("job.faulted.json"))
        raw["OrganizationUnitId"] = folder["Id"]
        status, _ = server.post_signed(json.dumps(raw).encode(), SECRET)
        assert 202 == status
        (message,) = sink.wait_for(1, timeout=30)
        links = _links(message["message"])
        assert {"Acknowledge", "Silence this process for 1 h", "Retry the job"} == set(links), message["message"]
        assert all(url.startswith(f"{server.base}/act/") for url in links.values())

        # A GET (a chat client's preview, a mail scanner) shows the page and changes nothing.
        for url in links.values():
            status, page = _call(url)
            assert 200 == status
            assert "<form" in page
            assert "<script" not in page
        assert "firing" == _alert(server)["state"]
        assert [] == orch.started_jobs()

        # The confirmation page's POST acknowledges.
        status, page = _call(links["Acknowledge"], {"by": "ana"})
        assert 200 == status
        assert "Acknowledged by ana" in page
        alert = _alert(server)
        assert ("acknowledged", "ana") == (alert["state"], alert["acknowledged_by"])

        # Altered: refused with a page that says so, and nothing is done.
        token = links["Retry the job"].rsplit("/", 1)[1]
        altered = f"{server.base}/act/{token[:-3]}{'x' if token[-3] != 'x' else 'y'}{token[-2:]}"
        status, page = _call(altered, {"by": "mallory"})
        assert 403 == status
        assert "This link is not valid" in page
        # Expired: a link made more than its lifetime (24 h by default) ago.
        old = LinkSigner(LINK_KEY, ttl=24 * 3600).token(alert["id"], "retry", now=time.time() - 25 * 3600)
        status, page = _call(f"{server.base}/act/{old}", {"by": "mallory"})
        assert 410 == status
        assert "This link has expired" in page
        assert [] == orch.started_jobs()

        # Retry the job: confirmed twice (a double click, a resent form): one job starts.
        status, page = _call(links["Retry the job"], {"by": "ana"})
        assert 200 == status, page
        status, again = _call(links["Retry the job"], {"by": "ana"})
        assert 409 == status
        assert "already retried" in again
        started = orch.started_jobs()
        assert 1 == len(started)
        job = raw["Job"]
        assert job["Release"]["Key"] == started[0]["Release"]["Key"]
        assert job["Robot"]["Id"] == started[0]["Robot"]["Id"]
        assert folder["Id"] == started[0]["OrganizationUnitId"]
        calls = [r for r in orch.request_log if r.path.endswith("StartJobs")]
        assert 1 == len(calls)
        info = calls[0].body["startInfo"]
        assert ("Specific", [job["Robot"]["Id"]], job["Release"]["Key"]) == (
            info["Strategy"],
            info["RobotIds"],
            info["ReleaseKey"],
        )
        assert wait_until(lambda: "retried" in [e["action"] for e in _trail(server, alert["id"])])
    finally:
        server.stop()


def _trail(server: ServerProcess, alert_id: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{server.base}/api/alerts/{alert_id}", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback
        trail: list[dict[str, Any]] = json.loads(reply.read())["trail"]
    return trail


SIMPLE_RULES = """\
channels:
  ops: "{sink}"
sources:
  uipath:
    secrets: ["{secret}"]
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: ops
"""


@pytest.mark.parametrize(
    ("proxies", "actor"),
    [pytest.param("127.0.0.1", "dora", id="trusted-peer"), pytest.param("10.0.0.0/8", None, id="other-peer")],
)
def test_the_user_header_is_believed_only_from_a_trusted_proxy(
    tmp_path: Path, sink: Sink, proxies: str, actor: str | None
) -> None:
    """The real server keeps the connection's peer: the header names who acts only when that peer is trusted."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(SIMPLE_RULES.format(sink=sink.url(), secret=SECRET))
    server = ServerProcess(rules=rules, database=tmp_path / "proxy", env={})
    server.env = {
        "RECEIVER_PUBLIC_URL": f"http://127.0.0.1:{server.port}",
        "RECEIVER_LINK_KEY": LINK_KEY,
        "RECEIVER_ADMIN_TOKEN": ADMIN,
        "RECEIVER_TRUSTED_PROXIES": proxies,
        "RECEIVER_TRUSTED_USER_HEADER": "X-Forwarded-User",
    }
    try:
        server.start()
        status, _ = server.post_signed(fresh("job.faulted.json"), SECRET)
        assert 202 == status
        (message,) = sink.wait_for(1, timeout=30)
        url = _links(message["message"])["Acknowledge"]
        request = urllib.request.Request(  # noqa: S310 - loopback
            url,
            data=b"",
            method="POST",
            headers={"X-Forwarded-User": "dora", "X-Forwarded-For": "203.0.113.9"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback
                status = reply.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        alert = _alert(server)
        if actor is None:
            assert (400, "firing") == (status, alert["state"])
        else:
            assert (200, "acknowledged", actor) == (status, alert["state"], alert["acknowledged_by"])
    finally:
        server.stop()
