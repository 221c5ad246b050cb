"""Gap recovery in the background: job ends and failed queue items the webhook did not bring.

Each source with ``orchestrator.recovery`` runs soon after start, then every ``every`` seconds
and at once when its heartbeat finds the webhook path back (:meth:`GapRecoveries.kick`), on
the one replica holding the ``gap-recovery`` lease: ask the API for the jobs that ended (the
queue items that failed) since the watermark (receiver.orchestrator.recovery) and store each in
the inbox under ``job:<JobKey>:<State>`` (``queueitem:<Key>:<RetryNumber>:<Status>``), the key
the webhook edge gives the same event, so whichever arrives second is a duplicate. The worker
then processes them like webhooks. The watermark is the start of the last complete run, kept in
the store (the counter ``gap-recovery:<source>``, epoch seconds, only ever raised): a restart or
a new leader goes on from it rather than looking back ``lookback`` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from receiver.errors import StoreError
from receiver.orchestrator import OrchestratorClient, OrchestratorError, RetryPolicy
from receiver.orchestrator.recovery import (
    Recovered,
    RecoveryRun,
    find_ended_jobs,
    recovery_item_statuses,
    recovery_states,
)
from receiver.pipeline.per_source import run_per_source
from receiver.rules import GapRecovery, OrchestratorLink, RuleSet, Source
from receiver.store import CounterStore, InboxItem, InboxStore

__all__ = ["GapRecoveries", "RecoveryStore", "recover_source", "watermark_name"]

log = structlog.get_logger()

_LEASE = "gap-recovery"
_OVERLAP = timedelta(minutes=5)  # a job's EndTime may be written a little after the fact


async def recover_source(
    source: Source,
    ruleset: RuleSet,
    client: OrchestratorClient,
    *,
    since: datetime,
    now: datetime,
    store: InboxStore | None,
) -> tuple[RecoveryRun, list[tuple[Recovered, str]]]:
    """Find the job ends of one source since ``since`` and store those the inbox lacks.

    Args:
        source: the source.
        ruleset: the rules (which end states they use).
        client: the source's Orchestrator client.
        since: the start of the window.
        now: the end of the window and the receive time of what is stored.
        store: where to store; None for a dry run.

    Returns:
        The run, and per job end found what became of it: ``stored (event N)``,
        ``already received`` or ``would send``.

    Raises:
        OrchestratorError: the folders could not be listed.
        StoreError: the store refused a write.
    """
    states, statuses = recovery_states(ruleset, source.name), recovery_item_statuses(ruleset, source.name)
    run = await find_ended_jobs(client, states, since=since, now=now, item_statuses=statuses)
    outcomes: list[tuple[Recovered, str]] = []
    for found in run.found:
        if store is None:
            outcomes.append((found, "would send"))
            continue
        item = InboxItem(
            source=source.name,
            event_id=found.event_id,
            type=found.type,
            body=found.body,
            received_at=now.timestamp(),
            event_time=found.event_time,
        )
        accepted = await store.accept(item)
        outcomes.append((found, "already received" if accepted.duplicate else f"stored (event {accepted.inbox_id})"))
    return run, outcomes


class RecoveryStore(InboxStore, CounterStore, Protocol):
    """What gap recovery needs of the store: the inbox, the lease, and the watermark counters."""


def watermark_name(source: str) -> str:
    """The counter that keeps ``source``'s watermark."""
    return f"gap-recovery:{source}"


class GapRecoveries:
    """Gap recovery of every source that has ``orchestrator.recovery``; started by the app factory.

    Args:
        store: the inbox and the lease.
        rules: the rule set in force (read at each run: a reload takes effect at the next one).
        clock: wall time.
        transport: an httpx2 transport for tests; None for the network.
    """

    def __init__(
        self,
        store: RecoveryStore,
        rules: Callable[[], RuleSet],
        *,
        clock: Callable[[], float] = time.time,
        transport: Any = None,
    ) -> None:
        self._store = store
        self._rules = rules
        self._clock = clock
        self._transport = transport
        self.watermarks: dict[str, datetime] = {}
        self._kicks: dict[str, asyncio.Event] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @staticmethod
    def configured(ruleset: RuleSet) -> dict[str, GapRecovery]:
        """The sources with gap recovery, and theirs."""
        return {
            name: source.orchestrator.recovery
            for name, source in ruleset.sources.items()
            if source.orchestrator is not None and source.orchestrator.recovery is not None
        }

    async def run(self) -> None:
        """Run every source's recovery until cancelled; one task per source, each with its own period."""
        try:
            await run_per_source(lambda: self.configured(self._rules()), self._source_loop, label="gap-recovery")
        finally:
            with contextlib.suppress(StoreError, OSError):
                await self._store.release_lease(_LEASE, self.owner)

    def kick(self, name: str) -> None:
        """Run ``name``'s recovery now rather than at the end of its period (the heartbeat's path came back)."""
        self._kicks.setdefault(name, asyncio.Event()).set()

    async def _source_loop(self, name: str) -> None:
        kicked = self._kicks.setdefault(name, asyncio.Event())
        while True:
            kicked.clear()
            ruleset = self._rules()
            source = ruleset.sources.get(name)
            link = source.orchestrator if source is not None else None
            if source is None or link is None or link.recovery is None:
                return
            started = time.monotonic()
            try:
                if await self._leader(link.recovery.every):
                    await self.once(source, link, link.recovery, ruleset)
            except asyncio.CancelledError:
                raise
            except Exception:  # a run must never end gap recovery
                log.exception("gap_recovery_failed", source=name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kicked.wait(), max(0.0, link.recovery.every - (time.monotonic() - started)))

    async def _leader(self, every: float) -> bool:
        try:
            return await self._store.acquire_lease(_LEASE, self.owner, now=self._clock(), ttl=max(3 * every, 60.0))
        except StoreError as exc:
            log.warning("gap_recovery_lease_unavailable", error=str(exc))
            return False

    async def once(self, source: Source, link: OrchestratorLink, recovery: GapRecovery, ruleset: RuleSet) -> None:
        """One run for one source: from the watermark (at most ``lookback`` back) to now."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        floor = now - timedelta(seconds=recovery.lookback)
        # The store's (any replica's last complete run), or this process's if it could not be stored.
        marks = [m for m in (self.watermarks.get(source.name), await self._stored_watermark(source.name)) if m]
        mark = max(marks) if marks else None
        since = floor if mark is None else max(floor, mark - _OVERLAP)
        budget = max(5.0, min(60.0, recovery.every / 2))
        client = OrchestratorClient(source.name, link, transport=self._transport, policy=RetryPolicy(budget=budget))
        async with client:
            try:
                run, outcomes = await recover_source(source, ruleset, client, since=since, now=now, store=self._store)
            except (OrchestratorError, StoreError) as exc:
                log.warning("gap_recovery_failed", source=source.name, error=str(exc))
                return
        stored = sum(outcome.startswith("stored") for _, outcome in outcomes)
        log.info(
            "gap_recovery_run",
            source=source.name,
            since=since.isoformat(),
            states=list(run.states),
            item_statuses=list(run.item_statuses),
            folders=run.folders,
            calls=run.calls,
            found=len(outcomes),
            stored=stored,
            failed_folders=len(run.failures),
            complete=run.complete,
        )
        if run.complete and not run.failures:
            self.watermarks[source.name] = run.until
            try:
                await self._store.raise_counter(watermark_name(source.name), int(run.until.timestamp()))
            except StoreError as exc:  # kept in memory meanwhile; a restart looks back further
                log.warning("gap_recovery_watermark_not_stored", source=source.name, error=str(exc))

    async def _stored_watermark(self, source: str) -> datetime | None:
        """The watermark a previous run (this process's, an earlier one's, another replica's) stored."""
        try:
            seconds = await self._store.read_counter(watermark_name(source))
        except StoreError as exc:
            log.warning("gap_recovery_watermark_unreadable", source=source, error=str(exc))
            return None
        return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None
