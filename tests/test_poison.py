"""One event the database refuses must not stop the others (issue #19, defect 6).

The real inbox worker on a real store (SQLite, and PostgreSQL when RECEIVER_TEST_DATABASE_URL is
set), driven by the fake clock of ``noise_support``. A noise key is rendered event text: past
PostgreSQL's 2,704-byte btree entry limit it used to fail the whole batch's transaction, and the
same batch was claimed and failed again at every lease. Keys over 200 bytes are now stored as a
readable prefix and a digest, and a batch the database refuses for good is split until the one
bad event is set aside with its error; a transient failure sets nothing aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import sqlite3
import string
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from noise_support import Harness, payload

from receiver.errors import StoreError
from receiver.pipeline.worker import MAX_CLAIMS, InboxWorker
from receiver.store import (
    DeliveryRow,
    InboxItem,
    LateDelivery,
    NewDelivery,
    NoiseWrite,
    Processed,
    SQLiteStore,
    Store,
    open_store,
)

pytestmark = pytest.mark.anyio


RULES = """
channels:
  ops: "log://"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    throttle: {interval: 10m, key: "{{ process }}"}
"""

# Random letters and digits: PostgreSQL compresses an index entry before checking its size, so a
# repetitive key would fit; this one cannot be compressed below the limit.
LONG = "".join(random.Random(19).choices(string.ascii_letters + string.digits, k=10_000))  # noqa: S311 - not a secret


def fault(process: str) -> dict[str, Any]:
    return payload("job.faulted.json", Job__Release__ProcessKey=process)


async def accept_all(h: Harness, events: Sequence[dict[str, Any]]) -> list[int]:
    """Accept events without processing them, so that the worker claims them as one batch."""
    assert h.store is not None
    ids = []
    for raw in events:
        item = InboxItem("uipath", str(raw["EventId"]), str(raw["Type"]), json.dumps(raw).encode(), received_at=h.now)
        ids.append((await h.store.accept(item)).inbox_id)
    return ids


async def states(store: Store) -> dict[int, tuple[str, dict[str, Any]]]:
    return {r.id: (r.state, json.loads(r.outcome or "{}")) for r in await store.list_events(limit=1000)}


async def test_a_10000_character_throttle_key_is_stored_as_a_digest_and_still_throttles(
    tmp_path: Path, store_url: str
) -> None:
    """A batch with a 10,000-character key is processed whole, and the long key throttles like a short one."""
    h = await Harness(tmp_path, RULES, store_url).open()
    try:
        assert h.store is not None
        events = [fault(f"Process{n}") for n in range(5)]
        events[2] = fault(LONG)
        events.append(fault(LONG))  # the same long key again, in the same batch
        ids = await accept_all(h, events)
        await h.work()
        await h.advance(60)
        later = await h.post(fault(LONG))  # a later batch: the state comes back from the store
        outcome = await states(h.store)
        assert dict.fromkeys([*ids, later], "processed") == {i: s for i, (s, _) in outcome.items()}
        assert [] == await h.store.claim_inbox(limit=100, now=h.now + 3600, lease=60)
        assert [("faults", "notified")] == await h.actions(ids[2])
        assert [("faults", "throttled")] == await h.actions(ids[-1])
        assert [("faults", "throttled")] == await h.actions(later)
        sent = await h.sent()
        assert 5 == len(sent)  # four short processes, the long one once
        stored = [r.entry.key for r in await h.store.list_noise_log(limit=100) if r.entry.inbox_id == later]
        digest = LONG[:120] + "…#" + hashlib.sha256(LONG.encode()).hexdigest()
        assert [digest] == stored
        assert len(digest.encode()) <= 200
    finally:
        await h.close()


class Faulty:
    """The real store, except that committing event ``poisoned`` (or a timer's delivery about it) fails.

    ``refused="event"``: the commit of the event as processed carries one more delivery, about an
    event that does not exist, which the database itself refuses (a foreign key: the driver's
    IntegrityError), as it would a write too long for an index; ``refused="timer"``: the same in
    the commit of a timer that delivers about the event. ``transient``: that many commits of the
    event raise a recoverable StoreError (a lost connection), then it goes through. Every other
    method is the real store's.
    """

    def __init__(self, inner: Store, poisoned: int, *, refused: str | None, transient: int = 0) -> None:
        self.inner = inner
        self.poisoned = poisoned
        self.refused = refused
        self.transient = transient
        self.commits: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def finish_inbox(
        self, processed: Sequence[Processed], *, now: float, noise: NoiseWrite | None = None
    ) -> list[DeliveryRow]:
        self.commits.append([p.inbox_id for p in processed])
        event = any(p.inbox_id == self.poisoned and p.state == "processed" for p in processed)
        timer = not processed and noise is not None and any(d.inbox_id == self.poisoned for d in noise.deliveries)
        if (self.refused == "event" and event) or (self.refused == "timer" and timer):
            noise = noise or NoiseWrite()
            noise = replace(noise, deliveries=[*noise.deliveries, LateDelivery(NOWHERE, NOTE)])
        elif event and self.transient > 0:
            self.transient -= 1
            raise StoreError("connection to the database lost")
        return await self.inner.finish_inbox(processed, now=now, noise=noise)


async def faulty_harness(
    tmp_path: Path, store_url: str, count: int, rules: str = RULES, **fault: Any
) -> tuple[Harness, list[int], Faulty]:
    """A harness whose worker commits through ``Faulty``, with ``count`` faults of distinct processes accepted."""
    h = await Harness(tmp_path, rules, store_url).open()
    assert h.store is not None
    ids = await accept_all(h, [fault_of(f"Process{n}") for n in range(count)])
    faulty = Faulty(h.store, ids[count // 3], **fault)
    h.worker = InboxWorker(faulty, lambda: h.ruleset, clock=lambda: h.now, lease=60, poll=0.01)  # type: ignore[arg-type]
    return h, ids, faulty


fault_of = fault
NOWHERE = 999_999_999  # no such inbox row
NOTE = NewDelivery("faults", "ops", "t", "b", "failure", "text")


async def test_an_event_the_database_refuses_is_set_aside_and_the_others_go_through(
    tmp_path: Path, store_url: str
) -> None:
    """Of 20 events claimed together, the one whose write the database refuses ends unparsed with the
    error; the 19 others are processed and notified, and nothing is claimed again."""
    h, ids, faulty = await faulty_harness(tmp_path, store_url, 20, refused="event")
    try:
        assert h.store is not None
        assert h.worker is not None
        assert 20 == await h.worker.run_once()
        outcome = await states(h.store)
        bad = outcome.pop(faulty.poisoned)
        assert "unparsed" == bad[0]
        assert "store_rejected" == bad[1]["error"]
        assert "foreign key" in bad[1]["detail"].lower()  # the database's own words
        assert {i: "processed" for i in ids if i != faulty.poisoned} == {i: s for i, (s, _) in outcome.items()}
        assert sorted(i for i in ids if i != faulty.poisoned) == sorted(s.inbox_id for s in await h.sent())
        assert [] == await h.store.claim_inbox(limit=100, now=h.now + 3600, lease=60)
        assert 0 == await h.worker.run_once()
        assert len(faulty.commits) <= 12  # halves: about 2 log2(20) commits, not one per event
    finally:
        await h.close()


async def test_a_transient_failure_sets_nothing_aside_and_the_batch_is_processed_later(
    tmp_path: Path, store_url: str
) -> None:
    """A lost connection at commit leaves the whole batch new with its claims given back; the next pass
    processes all of it, together (a failure the worker saw is no crash: nothing is taken alone)."""
    h, ids, _ = await faulty_harness(tmp_path, store_url, 10, refused=None, transient=2)
    try:
        assert h.store is not None
        assert h.worker is not None
        for _ in range(2):
            with pytest.raises(StoreError):
                await h.worker.run_once()
            assert dict.fromkeys(ids, "new") == {i: s for i, (s, _) in (await states(h.store)).items()}
            assert {0} == {r.claims for r in await h.store.list_events(limit=100)}
        assert 10 == await h.worker.run_once()
        assert dict.fromkeys(ids, "processed") == {i: s for i, (s, _) in (await states(h.store)).items()}
        assert sorted(ids) == sorted(s.inbox_id for s in await h.sent())
    finally:
        await h.close()


async def test_the_store_says_which_errors_refuse_the_data(store_url: str) -> None:
    """A constraint the database enforces is a permanent StoreError on both stores, and nothing of it stays."""
    store = open_store(store_url)
    await store.open()
    try:
        accepted = await store.accept(InboxItem("uipath", "e1", "job.faulted", b"{}", received_at=1000.0))
        with pytest.raises(StoreError) as raised:
            await store.finish_inbox(
                [Processed(accepted.inbox_id, "processed", "{}", [NOTE])],
                now=1001.0,
                noise=NoiseWrite(deliveries=[LateDelivery(NOWHERE, NOTE)]),
            )
        assert raised.value.recoverable is False
        # Nothing of the refused transaction stayed, and the store still works.
        assert [] == await store.list_deliveries()
        await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}")], now=1002.0)
        assert "processed" == (await store.list_events())[0].state
    finally:
        await store.close()


@pytest.mark.postgres
async def test_an_index_entry_past_postgres_limit_is_a_permanent_error(pg_url: str) -> None:
    """PostgreSQL's "index row size exceeds maximum" (program limit exceeded) refuses the data for good."""
    store = open_store(pg_url)
    await store.open()
    try:
        accepted = await store.accept(InboxItem("uipath", "e1", "job.faulted", b"{}", received_at=1000.0))
        long_rule = NewDelivery(LONG, "ops", "t", "b", "failure", "text")  # the unique (inbox_id, rule, channel)
        with pytest.raises(StoreError) as raised:
            await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}", [long_rule])], now=1001.0)
        assert raised.value.recoverable is False
    finally:
        await store.close()


async def test_a_locked_sqlite_database_is_a_recoverable_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer holding the lock past the busy timeout is transient: nothing may be set aside for it."""
    monkeypatch.setattr("receiver.store.sqlite._BUSY_SECONDS", 0.05)
    path = tmp_path / "r.db"
    store = SQLiteStore(str(path))
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        accepted = await store.accept(InboxItem("uipath", "e1", "job.faulted", b"{}", received_at=1000.0))
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked") as raised:
            await store.finish_inbox([Processed(accepted.inbox_id, "processed", "{}")], now=1001.0)
        assert raised.value.recoverable is True
    finally:
        other.close()
        await store.close()


GROUPED = """
channels:
  ops: "log://"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    group: {by: [process], wait: 30s, interval: 5m}
"""


async def test_a_group_with_a_10000_character_key_fires_its_digest(tmp_path: Path, store_url: str) -> None:
    """A timer stored under a digested key is found, fired and sent like any other."""
    h = await Harness(tmp_path, GROUPED, store_url).open()
    try:
        first = await h.post(fault(LONG))
        await h.post_at(10, fault(LONG))
        assert [] == await h.sent()
        await h.advance(31)
        sent = await h.sent()
        assert [(30.0, first)] == [(s.at, s.inbox_id) for s in sent]
        assert LONG[:100] in sent[0].title + sent[0].body
    finally:
        await h.close()


async def test_a_timer_the_database_refuses_is_dropped_and_the_others_fire(tmp_path: Path, store_url: str) -> None:
    """Of three group digests due together, the one whose write is refused is dropped with its reason; the
    other two are sent and events keep being processed."""
    h, ids, faulty = await faulty_harness(tmp_path, store_url, 3, GROUPED, refused="timer")
    try:
        assert h.store is not None
        await h.work()
        await h.advance(31)
        assert sorted(i for i in ids if i != faulty.poisoned) == sorted(s.inbox_id for s in await h.sent())
        dropped = [r.entry for r in await h.store.list_noise_log(limit=100) if r.entry.action == "dropped"]
        assert ["faults"] == [e.rule for e in dropped]
        assert "the store refused" in dropped[0].reason
        later = await h.post(fault("Later"))
        assert "processed" == (await states(h.store))[later][0]
    finally:
        await h.close()


async def test_a_4300_digit_event_id_is_accepted_and_deduplicated(tmp_path: Path, store_url: str) -> None:
    """An integer EventId as long as JSON allows is kept to 200 characters: the webhook gets its 202
    (it used to fail the whole accept batch on PostgreSQL: 503 for every webhook committed with it)."""
    from starlette.testclient import TestClient

    from receiver.http.app import create_app
    from receiver.settings import Settings
    from receiver.signature import sign

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = Settings(
        rules=rules, database_url=store_url, webhook_secret="s3cret", watch_rules=False, poll_seconds=0.05
    )
    digits = "9" + "".join(random.Random(6).choices(string.digits, k=4299))  # noqa: S311 - not a secret
    raw = fault("Invoices") | {"EventId": 0}
    del raw["Timestamp"]  # the sample's is years old (a stale event is refused)
    body = json.dumps(raw).replace('"EventId": 0', f'"EventId": {digits}').encode()
    headers = {"X-UiPath-Signature": sign(body, "s3cret")}
    with TestClient(create_app(settings)) as client:
        first = client.post("/webhooks/uipath", content=body, headers=headers)
        again = client.post("/webhooks/uipath", content=body, headers=headers)
    assert (202, "accepted") == (first.status_code, first.json()["status"])
    assert (202, "duplicate") == (again.status_code, again.json()["status"])
    assert digits[:200] == first.json()["event_id"]


def test_names_stored_in_indexed_columns_are_bounded_at_load(tmp_path: Path) -> None:
    """Rule, channel, source, inhibit and silence names are at most 200 characters: a rules file with a
    longer one is refused with the problem named, so no name can overflow an index entry."""
    from receiver.errors import RulesError
    from receiver.rules import load_rules

    long = "n" * 201
    path = tmp_path / "rules.yaml"
    path.write_text(
        f"""
channels:
  ops: "log://"
  {long}: "log://"
sources:
  {long}: {{insecure: true}}
rules:
  - name: {long}
    match: {{type: job.faulted}}
    notify: [ops]
inhibit:
  - name: {long}
    source: {{type: job.faulted}}
    target: {{type: job.faulted}}
    equal: [process]
silences:
  - name: {long}
    dates: [{{from: "2026-01-01 00:00", to: "2026-01-02 00:00"}}]
"""
    )
    with pytest.raises(RulesError) as raised:
        load_rules(path, environ={})
    labels = sorted({str(p).split(": ", 1)[1].split(" ", 1)[0] for p in raised.value.problems})
    assert ["channel", "inhibit", "rule", "silence", "source"] == labels
    path.write_text(path.read_text().replace(long, "n" * 200))
    load_rules(path, environ={})  # 200 is fine


def test_a_stored_key_is_bounded_readable_and_stable() -> None:
    """200 bytes are kept as they are; past that, a prefix cut on a character boundary and the digest,
    which is stored unchanged when written again (a fired timer's row keeps its key)."""
    from receiver.store._text import stored_key

    assert "é" * 100 == stored_key("é" * 100)  # 200 bytes
    long = "é" * 101 + "\x00"
    stored = stored_key(long)
    assert stored.startswith("é" * 60 + "…#")  # 120 bytes, no half character
    assert len(stored.encode()) <= 200
    assert stored == stored_key(stored)
    assert stored != stored_key("é" * 102)


# -- an event that ends the process -----------------------------------------------------------


async def crash_on(h: Harness, times: int) -> None:
    """A worker that claims the batch and dies before finishing it, ``times`` times (its lease lapses)."""
    assert h.store is not None
    for _ in range(times):
        assert await h.store.claim_inbox(limit=100, now=h.now, lease=60)
        h.now += 61


async def test_an_event_claimed_again_after_a_crash_is_processed_alone(tmp_path: Path, store_url: str) -> None:
    """After the process died on a batch, its events are taken one at a time: a killer cannot take others with it."""
    h = await Harness(tmp_path, RULES, store_url).open()
    try:
        assert h.store is not None
        assert h.worker is not None
        ids = await accept_all(h, [fault(f"Process{n}") for n in range(5)])
        await crash_on(h, 1)
        assert 1 == await h.worker.run_once()  # one event, alone
        outcome = await states(h.store)
        assert "processed" == outcome[ids[0]][0]
        assert {"new"} == {outcome[i][0] for i in ids[1:]}
        [claims] = {r.claims for r in await h.store.list_events(limit=100) if r.id in ids[1:]}
        assert 1 == claims  # given back, not counted: the next claim is their second
        await h.work()
        assert dict.fromkeys(ids, "processed") == {i: s for i, (s, _) in (await states(h.store)).items()}
        assert sorted(ids) == sorted(s.inbox_id for s in await h.sent())
    finally:
        await h.close()


async def test_an_event_the_process_keeps_dying_on_is_set_aside(tmp_path: Path, store_url: str) -> None:
    """Claimed more than MAX_CLAIMS times without being finished, an event is set aside with why; the rest go on."""
    h = await Harness(tmp_path, RULES, store_url).open()
    try:
        assert h.store is not None
        assert h.worker is not None
        [killer] = await accept_all(h, [fault("Killer")])
        await crash_on(h, MAX_CLAIMS)
        [other] = await accept_all(h, [fault("Innocent")])
        await h.work()
        outcome = await states(h.store)
        assert "unparsed" == outcome[killer][0]
        assert "claimed_too_often" == outcome[killer][1]["error"]
        assert f"claimed {MAX_CLAIMS + 1} times" in outcome[killer][1]["detail"]
        assert "processed" == outcome[other][0]
        assert [other] == [s.inbox_id for s in await h.sent()]
        assert [] == await h.store.claim_inbox(limit=100, now=h.now + 3600, lease=60)
    finally:
        await h.close()


async def test_a_clean_stop_does_not_count_as_a_claim(tmp_path: Path, store_url: str) -> None:
    """Claims given back at a stop (or after a store failure the worker saw) never add up to a set-aside."""
    h = await Harness(tmp_path, RULES, store_url).open()
    try:
        assert h.store is not None
        [event] = await accept_all(h, [fault("Process")])
        for _ in range(MAX_CLAIMS + 2):
            [row] = await h.store.claim_inbox(limit=100, now=h.now, lease=60)
            await h.store.release_claims(inbox_ids=[row.id])
        await h.work()
        assert "processed" == (await states(h.store))[event][0]
    finally:
        await h.close()


async def test_a_stop_that_lands_during_the_claim_gives_the_claimed_events_back(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the worker's claim is under way: the claim commits anyway, and its events are given back.

    The store finishes a call once started whatever happens to its caller (a transaction is not cut
    short). Before, the claimed rows were lost to the stopping worker: the restarted server waited a
    whole lease for them, then took them as claimed twice (each processed alone, a poll apart), and a
    few such stops set an event aside as ``claimed_too_often``, its notification never sent.
    """
    h = await Harness(tmp_path, RULES, store_url).open()
    try:
        assert h.store is not None
        assert h.worker is not None
        ids = await accept_all(h, [fault(f"Process{n}") for n in range(5)])
        real_claim = h.store.claim_inbox
        claiming = asyncio.Event()
        commits: list[asyncio.Future[list[Any]]] = []

        async def claim_outliving_its_caller(**kwargs: Any) -> list[Any]:
            commit = asyncio.ensure_future(real_claim(**kwargs))  # runs to its end, as the store's does
            commits.append(commit)
            claiming.set()
            await asyncio.sleep(0.2)  # the stop lands here
            return await commit

        monkeypatch.setattr(h.store, "claim_inbox", claim_outliving_its_caller)
        task = asyncio.create_task(h.worker.run())
        await asyncio.wait_for(claiming.wait(), 5)
        task.cancel()  # the app's shutdown cancels the worker
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        await asyncio.gather(*commits)
        monkeypatch.undo()

        await h.restart()  # at the same moment: no lease has lapsed
        assert 5 == await h.worker.run_once(), "the restarted worker waits a lease for events claimed at the stop"
        rows = {r.id: r for r in await h.store.list_events(limit=100)}
        assert {1} == {rows[i].claims for i in ids}  # the stop's claim was given back, not counted
        assert sorted(ids) == sorted(s.inbox_id for s in await h.sent())
    finally:
        await h.close()


async def test_events_claimed_again_after_a_crash_follow_each_other_without_a_poll_between(
    tmp_path: Path, store_url: str
) -> None:
    """After a crash, each event of the batch it died on is processed alone, one right after the other.

    Before, the worker waited a poll interval (1 s by default) after each: a burst's batch of 100
    kept every later event, a fresh fault included, waiting 100 s more once the lease had lapsed.
    """
    h = await Harness(tmp_path, RULES, store_url).open()
    try:
        assert h.store is not None
        ids = await accept_all(h, [fault(f"Process{n}") for n in range(5)])
        await crash_on(h, 1)
        worker = InboxWorker(h.store, lambda: h.ruleset, clock=lambda: h.now, lease=60, poll=30)
        task = asyncio.create_task(worker.run())
        try:

            async def processed() -> set[int]:
                return {r.id for r in await h.store.list_events(limit=100) if r.state == "processed"}  # type: ignore[union-attr]

            for _ in range(250):  # at most 5 s, a sixth of one poll
                if await processed() == set(ids):
                    break
                await asyncio.sleep(0.02)
            assert set(ids) == await processed(), "the worker waited a poll between events claimed again"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await h.close()
