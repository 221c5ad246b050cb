"""A harness for noise scenarios: the real inbox worker on a real store, driven by a fake clock.

Events are accepted into the inbox as the edge would (``received_at`` = the clock), the worker
runs, and the store's deliveries are what reached the channels, with the time they were
created. ``restart`` closes the store and opens a new store object and worker on the same file,
as a process restart would. Nothing sleeps: ``advance`` moves the clock from timer to timer.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import DATA

from receiver.metrics import Metrics
from receiver.pipeline.alerts import Links
from receiver.pipeline.worker import InboxWorker
from receiver.rules import RuleSet, load_rules
from receiver.store import DeliveryRow, InboxItem, Store, open_store

T0 = 1_767_000_000.0  # Monday 2025-12-29 09:20:00 UTC

_ids = itertools.count(1)


def payload(name: str, **patch: Any) -> dict[str, Any]:
    """A sample from tests/data with a fresh EventId and fields changed (``Job__Robot__Name="X"``)."""
    raw: dict[str, Any] = json.loads((DATA / name).read_text())
    raw["EventId"] = f"ev-{next(_ids)}"
    for dotted, value in patch.items():
        set_path(raw, dotted.split("__"), value)
    return raw


def set_path(raw: Any, path: list[str], value: Any) -> None:
    """Set a nested value; a list on the way sets it in every element."""
    if isinstance(raw, list):
        for item in raw:
            set_path(item, path, value)
        return
    head, rest = path[0], path[1:]
    if not rest:
        raw[head] = value
        return
    set_path(raw.setdefault(head, {}), rest, value)


@dataclass
class Sent:
    """A delivery as a channel sees it."""

    at: float
    rule: str
    channel: str
    title: str
    body: str
    inbox_id: int


class Harness:
    """The worker and a SQLite file, with a clock the test moves."""

    def __init__(
        self,
        tmp_path: Path,
        rules_text: str,
        url: str | None = None,
        links: Links | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        path = tmp_path / "rules.yaml"
        path.write_text(rules_text)
        self.ruleset: RuleSet = load_rules(path, environ={})
        self.url = url or f"sqlite:///{tmp_path / 'receiver.db'}"
        self.now = T0
        self.store: Store | None = None
        self.worker: InboxWorker | None = None
        self.restarts = 0
        self.links = links
        self.metrics = metrics

    async def open(self) -> Harness:
        self.store = open_store(self.url)
        await self.store.open()
        self.worker = InboxWorker(
            self.store,
            lambda: self.ruleset,
            clock=lambda: self.now,
            lease=60,
            poll=0.01,
            links=self.links,
            metrics=self.metrics,
        )
        return self

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def restart(self) -> None:
        """A new store object and worker on the same database (what a process restart sees)."""
        await self.close()
        self.restarts += 1
        await self.open()

    def at(self, offset: float) -> float:
        return T0 + offset

    async def post(self, raw: dict[str, Any], *, source: str = "uipath", type_: str | None = None) -> int:
        """Accept an event now (as the edge does) and let the worker process the inbox."""
        assert self.store is not None
        body = json.dumps(raw).encode()
        accepted = await self.store.accept(
            InboxItem(
                source=source,
                event_id=str(raw.get("EventId")),
                type=type_ or str(raw["Type"]),
                body=body,
                received_at=self.now,
            )
        )
        await self.work()
        return accepted.inbox_id

    async def work(self) -> None:
        assert self.worker is not None
        while await self.worker.run_once():
            pass

    async def advance(self, offset: float) -> None:
        """Move the clock to ``T0 + offset``, stopping at every timer due on the way, and run the worker."""
        assert self.store is not None
        target = T0 + offset
        while True:
            due = await self._next_due()
            if due is None or due > target:
                break
            self.now = max(self.now, due)
            await self.work()
        self.now = target
        await self.work()

    async def _next_due(self) -> float | None:
        """The earliest noise timer or alert reminder / escalation."""
        assert self.store is not None
        times = [await self.store.next_noise_due()]
        times += [a.due_at for a in await self.store.list_alerts(open_only=True, limit=10_000)]
        times += [a.expires_at for a in await self.store.list_alerts(open_only=True, limit=10_000)]
        known = [t for t in times if t is not None and t > self.now]
        return min(known) if known else None

    async def post_at(self, offset: float, raw: dict[str, Any], **kwargs: Any) -> int:
        await self.advance(offset)
        return await self.post(raw, **kwargs)

    async def sent(self) -> list[Sent]:
        """Every delivery so far, in order of creation."""
        assert self.store is not None
        rows: list[DeliveryRow] = await self.store.list_deliveries(limit=10_000)
        return [
            Sent(r.created_at - T0, r.rule, r.channel, r.title, r.body, r.inbox_id)
            for r in sorted(rows, key=lambda r: r.id)
        ]

    async def outcome(self, inbox_id: int) -> dict[str, Any]:
        assert self.store is not None
        rows = await self.store.list_events(limit=10_000)
        row = next(r for r in rows if r.id == inbox_id)
        return dict(json.loads(row.outcome or "{}"))

    async def actions(self, inbox_id: int) -> list[tuple[str | None, str]]:
        """(rule, action) of the noise decisions recorded in an event's outcome."""
        return [(d.get("rule"), d["action"]) for d in (await self.outcome(inbox_id)).get("noise", [])]


def copy_of(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy with a fresh EventId (the same event again, as another folder's webhook would be)."""
    again = copy.deepcopy(raw)
    again["EventId"] = f"ev-{next(_ids)}"
    return again
