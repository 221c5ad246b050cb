"""``POST /logs/{source}`` limits (entries per request, a rate per source) and the burst gate's authenticated count."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support import fault, post_scope
from test_app import LOGS, SECRET, FakeNotifier, make_settings

from receiver.http.app import create_app
from receiver.signature import sign

FINANCE_LOGS = "finance-logs-token"

RULES = f"""
sources:
  finance:
    secrets: ["finance-secret"]
    logs_token: "{FINANCE_LOGS}"
channels:
  ops: "log://"
rules:
  - name: robot-errors
    match: {{type: robot.log, level: {{gte: Error}}}}
    notify: [ops]
"""


def entries(count: int, tag: str = "e") -> bytes:
    """A ``{"logs": [...]}`` body of ``count`` distinct Info entries."""
    return json.dumps({"logs": [{"Level": "Info", "Message": f"{tag}-{n}"} for n in range(count)]}).encode()


def stored(tmp_path: Path, source: str = "uipath") -> int:
    """Robot-log events of ``source`` in the inbox."""
    with sqlite3.connect(tmp_path / "r.db") as db:
        query = "SELECT count(*) FROM inbox WHERE type = 'robot.log' AND source = ?"
        (count,) = db.execute(query, (source,)).fetchone()
    return int(count)


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def make_client(tmp_path: Path, rules_path: Path, **overrides: Any) -> TestClient:
    return TestClient(create_app(make_settings(tmp_path, rules_path, **overrides), notifier=FakeNotifier()))


def post_logs(client: TestClient, body: bytes, *, source: str = "uipath", token: str = LOGS) -> Any:
    return client.post(f"/logs/{source}", content=body, headers={"Authorization": f"Bearer {token}"})


class TestEntriesPerRequest:
    @pytest.fixture
    def client(self, tmp_path: Path, rules_path: Path) -> Iterator[TestClient]:
        with make_client(tmp_path, rules_path) as client:
            yield client

    def test_one_over_the_cap_is_refused_whole(self, client: TestClient, tmp_path: Path) -> None:
        """1,001 entries (the default cap is 1,000) get 413 ``too_many_entries`` and nothing is stored."""
        reply = post_logs(client, entries(1001))
        assert (413, "too_many_entries") == (reply.status_code, reply.json()["error"])
        assert "1001 log entries" in reply.json()["detail"]
        assert "at most 1000" in reply.json()["detail"]
        assert 0 == stored(tmp_path)

    def test_the_cap_itself_is_accepted(self, client: TestClient, tmp_path: Path) -> None:
        """1,000 entries get 202 and become 1,000 events."""
        reply = post_logs(client, entries(1000))
        assert (202, 1000, 0) == (reply.status_code, reply.json()["accepted"], reply.json()["duplicates"])
        assert 1000 == stored(tmp_path)

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(json.dumps([{"Message": "m"}] * 1001).encode(), id="array"),
            pytest.param(json.dumps({"LOGS": [{"Message": "m"}] * 1001}).encode(), id="wrapped-any-casing"),
        ],
    )
    def test_every_shape_is_counted(self, client: TestClient, body: bytes) -> None:
        """The cap holds for a bare array and for ``{"logs": [...]}`` alike, duplicates included."""
        assert 413 == post_logs(client, body).status_code

    def test_the_cap_is_a_setting(self, tmp_path: Path, rules_path: Path) -> None:
        """``RECEIVER_LOGS_MAX_ENTRIES`` moves the cap."""
        with make_client(tmp_path, rules_path, logs_max_entries=5) as client:
            assert 413 == post_logs(client, entries(6)).status_code
            assert 202 == post_logs(client, entries(5)).status_code


class TestRatePerSource:
    @pytest.fixture
    def client(self, tmp_path: Path, rules_path: Path) -> Iterator[TestClient]:
        # 10 entries at once, then one every 100 s: the bucket does not refill within the test.
        with make_client(tmp_path, rules_path, logs_max_entries=10, logs_burst=10, logs_rate_per_second=0.01) as client:
            yield client

    def test_past_the_rate_429_with_retry_after(self, client: TestClient, tmp_path: Path) -> None:
        """Once a source's bucket is spent, its next post gets 429 with the wait in ``Retry-After``."""
        assert 202 == post_logs(client, entries(10)).status_code
        reply = post_logs(client, entries(1, tag="late"))
        assert (429, "rate_limited") == (reply.status_code, reply.json()["error"])
        assert 90 <= int(reply.headers["retry-after"]) <= 100  # one entry at 0.01/s
        assert 10 == stored(tmp_path)

    def test_a_request_that_does_not_fit_takes_nothing(self, client: TestClient, tmp_path: Path) -> None:
        """6 entries when 4 are left: refused whole, stored not at all, and the 4 are still there."""
        assert 202 == post_logs(client, entries(6, tag="a")).status_code
        refused = post_logs(client, entries(6, tag="b"))
        assert 429 == refused.status_code
        assert 190 <= int(refused.headers["retry-after"]) <= 200  # 2 entries missing at 0.01/s
        assert 6 == stored(tmp_path)
        assert 202 == post_logs(client, entries(4, tag="c")).status_code
        assert 10 == stored(tmp_path)

    def test_another_source_is_not_affected(self, client: TestClient, tmp_path: Path) -> None:
        """One source over its rate leaves another source's bucket alone."""
        assert 202 == post_logs(client, entries(10)).status_code
        assert 429 == post_logs(client, entries(1, tag="late")).status_code
        reply = post_logs(client, entries(10), source="finance", token=FINANCE_LOGS)
        assert 202 == reply.status_code
        assert 10 == stored(tmp_path, "finance")

    def test_webhooks_are_not_limited(self, client: TestClient) -> None:
        """Orchestrator's own webhooks never count against the robot-log rate."""
        assert 202 == post_logs(client, entries(10)).status_code
        statuses = set()
        for n in range(30):
            body = fault(f"not-limited-{n}")
            reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)})
            statuses.add(reply.status_code)
        assert {202} == statuses

    def test_zero_turns_the_limit_off(self, tmp_path: Path, rules_path: Path) -> None:
        """``RECEIVER_LOGS_RATE_PER_SECOND=0``: no limit."""
        with make_client(tmp_path, rules_path, logs_max_entries=10, logs_burst=10, logs_rate_per_second=0) as client:
            statuses = {post_logs(client, entries(10, tag=f"r{n}")).status_code for n in range(5)}
        assert {202} == statuses

    def test_a_burst_of_zero_counts_as_one_full_request(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``RECEIVER_LOGS_BURST=0`` is taken as docs/operations.md says (a value below
        ``RECEIVER_LOGS_MAX_ENTRIES`` counts as that), not refused at start."""
        from receiver.settings import load_settings

        monkeypatch.setenv("RECEIVER_LOGS_BURST", "0")
        assert 0 == load_settings().logs_burst

    def test_a_burst_below_the_cap_lets_one_full_request_through(self, tmp_path: Path, rules_path: Path) -> None:
        """With the bucket at its floor, one request of the cap fits, the next waits for the rate."""
        with make_client(tmp_path, rules_path, logs_max_entries=10, logs_burst=0, logs_rate_per_second=0.01) as client:
            assert 202 == post_logs(client, entries(10)).status_code
            assert 429 == post_logs(client, entries(1, tag="late")).status_code


class _Held:
    """ASGI ``receive`` that sends ``first`` and then never the rest (a client that stops sending)."""

    def __init__(self, first: bytes, rest: bytes = b"") -> None:
        self.chunks = [first, rest]
        self.more = asyncio.Event()

    async def __call__(self) -> dict[str, Any]:
        if len(self.chunks) == 2:
            return {"type": "http.request", "body": self.chunks.pop(0), "more_body": True}
        await self.more.wait()
        return {"type": "http.request", "body": self.chunks.pop(0), "more_body": False}


class TestBurstGate:
    """The edge-activity gate (workers give way to a burst) counts only authenticated requests."""

    @pytest.mark.anyio
    async def test_unauthenticated_bodies_held_open_do_not_make_the_edge_busy(
        self, tmp_path: Path, rules_path: Path
    ) -> None:
        """Twelve connections trickling unsigned bodies (and twelve log posts without the token) count for nothing."""
        app = create_app(make_settings(tmp_path, rules_path, body_timeout_seconds=30), notifier=FakeNotifier())
        async with app.router.lifespan_context(app):
            rt = app.state.runtime
            held, tasks = [], []
            for n in range(12):
                body = fault(f"unsigned-{n}")
                receive = _Held(body[:10], body[10:])
                held.append(receive)
                scope = post_scope("/webhooks/uipath", {"x-uipath-signature": "sha256=bm9wZQ=="}, len(body))
                tasks.append(asyncio.create_task(app(scope, receive, _discard)))
                logs = entries(1)
                scope = post_scope("/logs/uipath", {"authorization": "Bearer wrong"}, len(logs))
                tasks.append(asyncio.create_task(app(scope, _Held(logs[:5], logs[5:]), _discard)))
            await asyncio.sleep(0.2)
            busy = rt.edge.inflight
            started = asyncio.get_running_loop().time()
            await rt.edge.wait_quiet(1.0)
            waited = asyncio.get_running_loop().time() - started
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert 0 == busy
        assert waited < 0.5, f"background work waited {waited:.2f} s for unauthenticated requests"

    @pytest.mark.anyio
    async def test_authenticated_requests_in_hand_still_make_it_busy(self, tmp_path: Path, rules_path: Path) -> None:
        """Twelve signed webhooks waiting on the store are a burst: background work waits (at most its bound)."""
        app = create_app(make_settings(tmp_path, rules_path), notifier=FakeNotifier())
        async with app.router.lifespan_context(app):
            rt = app.state.runtime
            release = asyncio.Event()
            accept = rt.store.accept

            async def slow_accept(item: Any) -> Any:
                await release.wait()
                return await accept(item)

            rt.store.accept = slow_accept
            tasks = []
            for n in range(12):
                body = fault(f"signed-{n}")
                scope = post_scope("/webhooks/uipath", {"x-uipath-signature": sign(body, SECRET)}, len(body))
                tasks.append(asyncio.create_task(app(scope, _Whole(body), _discard)))
            await asyncio.sleep(0.2)
            busy = rt.edge.inflight
            started = asyncio.get_running_loop().time()
            await rt.edge.wait_quiet(0.3)
            waited = asyncio.get_running_loop().time() - started
            release.set()
            await asyncio.gather(*tasks)
            after = rt.edge.inflight
        assert 12 == busy
        assert waited >= 0.29
        assert 0 == after


class _Whole:
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __call__(self) -> dict[str, Any]:
        return {"type": "http.request", "body": self.body, "more_body": False}


async def _discard(message: dict[str, Any]) -> None:
    pass
