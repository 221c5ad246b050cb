"""Events the edge stores already claimed for the inbox worker, handed over without a claim."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient
from support import fresh, post_scope, wait_until

from receiver.http.app import create_app
from receiver.pipeline.worker import InboxWorker
from receiver.rules import RuleSet, load_rules
from receiver.settings import Settings
from receiver.signature import sign
from receiver.store import EventRow, InboxItem, NoiseWrite, Processed, Store, open_store

SECRET = "adoption-secret"
RULES = 'channels:\n  ops: "log://"\nrules:\n  - name: faults\n    match: {type: job.faulted}\n    notify: [ops]\n'


def settings(tmp_path: Path, database_url: str) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return Settings(rules=rules, database_url=database_url, webhook_secret=SECRET, watch_rules=False, poll_seconds=0.05)


def processed_ids(client: TestClient) -> set[int]:
    async def read() -> set[int]:
        rows = await client.app.state.runtime.store.list_events(limit=100)  # type: ignore[attr-defined]
        return {row.id for row in rows if row.state == "processed"}

    assert client.portal is not None
    return client.portal.call(read)


def test_events_arriving_one_by_one_are_processed_without_a_claim(tmp_path: Path, store_url: str) -> None:
    """At a steady rate the worker gets each event from the commit that stored it: no claim returns one."""
    with TestClient(create_app(settings(tmp_path, store_url))) as client:
        rt = client.app.state.runtime  # type: ignore[attr-defined]
        assert wait_until(lambda: rt.worker.adoption_lease(rt.clock()) is not None), "the worker never led the inbox"
        store = rt.store
        claim = store.claim_inbox
        from_claims: list[int] = []

        async def recorded_claim(**kwargs: Any) -> list[EventRow]:
            rows: list[EventRow] = await claim(**kwargs)
            from_claims.extend(row.id for row in rows)
            return rows

        store.claim_inbox = recorded_claim
        for n in range(5):
            body = fresh(EventId=f"steady-{n}")
            reply = client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET)})
            assert 202 == reply.status_code, reply.text
            assert wait_until(lambda n=n: len(processed_ids(client)) == n + 1), f"event {n} was not processed"
        ids = processed_ids(client)
    assert 5 == len(ids)
    assert set() == ids & set(from_claims)


def no_rules(tmp_path: Path) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text("channels: {}\nrules: []\n")
    return load_rules(path, environ={})


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def arrive(store: Store, worker: InboxWorker, clock: Clock, event_id: str) -> tuple[int, float | None]:
    """Store an event as the edge does: claimed for the worker when it says so. (inbox id, lease)."""
    lease = worker.adoption_lease(clock())
    item = InboxItem("uipath", event_id, "job.faulted", b"{}", received_at=clock(), lease_until=lease)
    return (await store.accept(item)).inbox_id, lease


class RecordsFinished:
    """Wraps a store's finish_inbox to record the order in which events were finished."""

    def __init__(self, store: Store) -> None:
        self.order: list[int] = []
        self._finish = store.finish_inbox
        store.finish_inbox = self.finish  # type: ignore[method-assign]

    async def finish(self, processed: Sequence[Processed], *, now: float, noise: NoiseWrite | None = None) -> None:
        await self._finish(processed, now=now, noise=noise)
        self.order.extend(p.inbox_id for p in processed)


@pytest.mark.anyio
async def test_a_burst_past_a_batch_goes_through_the_store_in_order(tmp_path: Path, store_url: str) -> None:
    """Past a batch handed over, arrivals are stored unclaimed until a claim drains them; all finish in order."""
    store = open_store(store_url)
    await store.open()
    try:
        ruleset, clock = no_rules(tmp_path), Clock()
        worker = InboxWorker(store, lambda: ruleset, clock=clock, lease=60, poll=0.05, batch=3)
        store.hand_claimed_to(worker.adopt)
        finished = RecordsFinished(store)
        assert await worker._lead()
        arrivals = [await arrive(store, worker, clock, f"burst-{n}") for n in range(6)]
        assert [True, True, True, False, False, False] == [lease is not None for _, lease in arrivals]
        while await worker.run_once():
            pass
        assert [inbox_id for inbox_id, _ in arrivals] == finished.order
        # The claim found the store drained: the next arrival is handed over again.
        assert (await arrive(store, worker, clock, "after"))[1] is not None
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_worker_that_loses_the_inbox_gives_back_what_it_was_handed(tmp_path: Path, store_url: str) -> None:
    """Events handed to a worker that lost the inbox lease are released for the new leader at once."""
    store = open_store(store_url)
    await store.open()
    try:
        ruleset, clock = no_rules(tmp_path), Clock()
        start = clock.now
        worker = InboxWorker(store, lambda: ruleset, clock=clock, lease=60, poll=0.05)
        store.hand_claimed_to(worker.adopt)
        assert await worker._lead()
        clock.now = start + 20
        handed = [await arrive(store, worker, clock, f"handed-{n}") for n in range(2)]
        assert all(lease == start + 80 for _, lease in handed)
        # Its own lease ran out at start + 60; another replica took the inbox before it renewed.
        assert await store.acquire_lease("inbox", "other", now=start + 61, ttl=60)
        clock.now = start + 62
        task = asyncio.create_task(worker.run())
        try:
            taken = await until(lambda: store.claim_inbox(limit=10, now=start + 62, lease=60))
            assert [inbox_id for inbox_id, _ in handed] == [row.id for row in taken]
            assert worker.adoption_lease(clock()) is None  # not leading: arrivals are stored unclaimed
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await store.close()


@pytest.mark.anyio
async def test_an_event_whose_request_was_cancelled_during_the_commit_is_still_handed_over(
    tmp_path: Path, store_url: str
) -> None:
    """The client left while its event was being committed: the worker still gets it, not a lease (60 s) later."""
    app = create_app(settings(tmp_path, store_url))
    async with app.router.lifespan_context(app):
        rt = app.state.runtime
        await until(lambda: _now(rt.worker.adoption_lease(rt.clock())))  # the worker leads the inbox
        accept = rt.store.accept
        cancelled: list[bool] = []

        async def client_leaves_during_the_commit(item: InboxItem) -> Any:
            assert item.lease_until is not None  # stored claimed for the worker
            task = asyncio.current_task()
            assert task is not None
            asyncio.get_running_loop().call_soon(task.cancel)
            try:
                return await accept(item)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        rt.store.accept = client_leaves_during_the_commit
        body = fresh(EventId="left-early")
        with pytest.raises(asyncio.CancelledError):
            await _post(app, body)
        assert [True] == cancelled
        rt.store.accept = accept
        assert 1 == len(await until(lambda: _processed(rt.store)))


async def until(check: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
    """Await ``check()`` every 20 ms until its value is true; that value (fails past ``within`` seconds)."""
    with anyio.fail_after(within):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.02)


async def _now(value: Any) -> Any:
    return value


async def _processed(store: Store) -> list[EventRow]:
    return [row for row in await store.list_events(limit=10) if row.state == "processed"]


async def _post(app: Any, body: bytes) -> None:
    """POST a signed webhook straight to the ASGI app (no server), raising what the request's task raises."""
    scope = post_scope(
        "/webhooks/uipath", {"content-type": "application/json", "x-uipath-signature": sign(body, SECRET)}, len(body)
    )
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(_: dict[str, Any]) -> None:
        return None

    await app(scope, receive, send)
