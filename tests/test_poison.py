"""One event the database refuses must not stop the others (issue #19, defect 6).

The real inbox worker on a real store (SQLite, and PostgreSQL when RECEIVER_TEST_DATABASE_URL is
set), driven by the fake clock of ``noise_support``. A noise key is rendered event text: past
PostgreSQL's 2,704-byte btree entry limit it used to fail the whole batch's transaction, and the
same batch was claimed and failed again at every lease. Keys over 200 bytes are now stored as a
readable prefix and a digest, and a batch the database refuses for good is split until the one
bad event is set aside with its error; a transient failure sets nothing aside.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from noise_support import Harness, payload

from receiver.store import InboxItem, Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(
    params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'receiver.db'}"
    return str(request.getfixturevalue("pg_url"))


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
