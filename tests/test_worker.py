"""The inbox worker's shutdown, in process on a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from receiver.rules import RuleSet, load_rules
from receiver.store import InboxItem, NoiseWrite, Processed, SQLiteStore
from receiver.worker import InboxWorker

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class StuckCommit(SQLiteStore):
    """A store whose commit of processed events never returns (the process is stopped meanwhile)."""

    async def finish_inbox(
        self, processed: Sequence[Processed], *, now: float, noise: NoiseWrite | None = None
    ) -> None:
        await asyncio.Event().wait()


def no_rules(tmp_path: Path) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text("channels: {}\nrules: []\n")
    return load_rules(path, environ={})


async def test_stopping_gives_back_the_lease_and_the_unfinished_batch(tmp_path: Path) -> None:
    """A worker stopped mid-batch frees its lease and its claimed events: the next worker takes both at once."""
    store = StuckCommit(str(tmp_path / "r.db"))
    await store.open()
    try:
        ids = [
            (await store.accept(InboxItem("uipath", f"e{n}", "job.faulted", b"{}", received_at=time.time()))).inbox_id
            for n in range(3)
        ]
        ruleset = no_rules(tmp_path)
        worker = InboxWorker(store, lambda: ruleset, clock=time.time, lease=60, poll=0.05)
        task = asyncio.create_task(worker.run())
        for _ in range(200):
            if not await store.claim_inbox(limit=10, now=time.time(), lease=0):
                break  # the worker holds all three
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await store.acquire_lease("inbox", "next", now=time.time(), ttl=60)
        assert ids == [r.id for r in await store.claim_inbox(limit=10, now=time.time(), lease=60)]
    finally:
        await store.close()


def test_an_outcome_with_text_orjson_refuses_is_still_stored_as_json() -> None:
    """A lone surrogate (from event text in a noise reason) or an integer past 64 bits: json writes it."""
    from receiver.worker import _outcome_json

    summary = {"parsed": True, "noise": [{"reason": "key \ud800 muted"}], "count": 2**70}
    assert summary == json.loads(_outcome_json(summary))
    assert {"matched": ["faults"]} == json.loads(_outcome_json({"matched": ["faults"]}))
