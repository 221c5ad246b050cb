"""Gap recovery: the job ends (and failed queue items) Orchestrator has and the webhook may never have brought.

Webhooks are fire-and-forget (a receiver down past Orchestrator's retries, a disabled or
breaker-suspended webhook, a cut network lose events for good). This module asks the API,
folder by folder, for the jobs that ended in a window, in the end states the rules of the
source can use, and turns each into the body the webhook would have carried, marked
``"Origin": "api"`` with ``RecoveredAt``. Storing them is the caller's business (the
orchestrator layer does not reach the store): the inbox key of each is
``job:<JobKey>:<State>`` (receiver.events.job_end_key), the same key the webhook edge gives
that job's end, so whichever arrives second is a duplicate.

When a rule of the source can use ``queueItem.transactionFailed``, each folder is also asked
for the queue items that failed in the window (``GET /odata/QueueItems``, ``Status eq 'Failed'``),
each stored under ``queueitem:<Key>:<RetryNumber>:Failed`` (receiver.events.queue_item_end_key).

API cost per run: one ``GET /odata/Folders`` (a page per 1000 folders), then one
``GET /odata/Jobs`` per folder (a page per 1000 jobs) with the ``X-UIPATH-OrganizationUnitId``
header, and one ``GET /odata/QueueItems`` per folder (a page per 100 items) when failed items
are recovered; the client honours 429 ``Retry-After``; a run stops at its time budget and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.events import (
    END_STATES,
    END_TYPES,
    EVENT_TYPES,
    ITEM_END_STATES,
    ITEM_END_TYPES,
    job_end_key,
    queue_item_end_key,
)
from receiver.jsonfmt import dumps
from receiver.orchestrator.client import OrchestratorClient
from receiver.orchestrator.errors import OrchestratorError
from receiver.rules import RuleSet, needed_event_types
from receiver.timefmt import parse_iso

__all__ = [
    "DEFAULT_LOOKBACK",
    "FolderFailure",
    "Recovered",
    "RecoveryRun",
    "find_ended_jobs",
    "item_event",
    "job_event",
    "recovery_item_statuses",
    "recovery_states",
]

DEFAULT_LOOKBACK = timedelta(hours=24)
"""How far back a run looks at most, whatever the watermark says."""

# The fields of the webhook's slim job (uipath-webhooks.md §3.3 B) the Jobs API also has.
_JOB_FIELDS = (
    "Id",
    "Key",
    "State",
    "SubState",
    "JobSubState",
    "CreationTime",
    "StartTime",
    "ResumeTime",
    "EndTime",
    "Info",
    "OutputArguments",
    "Robot",
    "Release",
    "Machine",
    "HostMachineName",
    "Type",
    "RuntimeType",
    "SourceType",
    "SpecificPriorityValue",
    "ErrorCode",
    "Error",
    "JobError",
    "EntryPointPath",
    "ProjectKey",
    "ParentJobKey",
)
_MAX_JOBS_PER_FOLDER = 10_000
# The fields of the webhook's queue item the QueueItems API also has (uipath-webhooks.md §3).
_ITEM_FIELDS = (
    "Id",
    "Key",
    "QueueDefinitionId",
    "Status",
    "ReviewStatus",
    "ProcessingExceptionType",
    "ProcessingException",
    "Priority",
    "Reference",
    "CreationTime",
    "StartProcessing",
    "EndProcessing",
    "DeferDate",
    "DueDate",
    "RetryNumber",
    "AncestorId",
    "UniqueKey",
    "CreatorJobKey",
    "ExecutorJobKey",
    "Robot",
    "SpecificContent",
    "Output",
)
_MAX_ITEMS_PER_FOLDER = 10_000


def _iso(moment: datetime) -> str:
    """An unquoted OData date (the reference §4): UTC with ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def recovery_states(ruleset: RuleSet, source: str) -> tuple[str, ...]:
    """The job end states worth recovering for ``source``: those whose event some rule can use.

    Args:
        ruleset: the compiled rules.
        source: the source name.

    Returns:
        Job ``State`` names (``Faulted``, ``Stopped``, ``Successful``), in that order; all of
        them when a rule can use any event type.
    """
    needed = needed_event_types(ruleset, source, EVENT_TYPES)
    return tuple(state for kind, state in END_STATES.items() if needed is None or kind in needed)


def recovery_item_statuses(ruleset: RuleSet, source: str) -> tuple[str, ...]:
    """The queue item statuses worth recovering for ``source`` (``Failed`` when a rule can use its event)."""
    needed = needed_event_types(ruleset, source, EVENT_TYPES)
    return tuple(status for kind, status in ITEM_END_STATES.items() if needed is None or kind in needed)


@dataclass(frozen=True, slots=True)
class Recovered:
    """One job end (or failed queue item) found in the API, as the webhook body it would have been.

    Attributes:
        event_id: the inbox key, ``job:<JobKey>:<State>`` (``queueitem:<Key>:<RetryNumber>:<Status>``).
        type: the event type (``job.faulted``, ``queueItem.transactionFailed``...).
        body: the webhook body (JSON), marked ``"Origin": "api"``.
        event_time: the job's ``EndTime`` (the item's ``EndProcessing``) as epoch seconds, or None.
        job_key: the job's ``Key`` (the item's).
        state: the job's end ``State`` (the item's ``Status``).
        folder: the folder path (``OrganizationUnitFullyQualifiedName``) or id.
        process: the release or process name (the item's ``Reference``, else its queue's id).
        ended_at: ``EndTime`` (``EndProcessing``) as Orchestrator wrote it.
    """

    event_id: str
    type: str
    body: bytes
    event_time: float | None
    job_key: str
    state: str
    folder: str
    process: str
    ended_at: str


@dataclass(frozen=True, slots=True)
class FolderFailure:
    """A folder whose jobs could not be read (the run goes on with the others)."""

    folder: str
    detail: str


@dataclass(slots=True)
class RecoveryRun:
    """What one run asked and found.

    Attributes:
        source: the source name.
        since: the start of the window (inclusive).
        until: when the run started (the end of the window).
        states: the job states asked for.
        item_statuses: the queue item statuses asked for.
        folders: how many folders were asked.
        found: the job ends found, oldest first, one per job and state.
        failures: folders that could not be read.
        calls: API calls made (pages), token requests aside.
        complete: False when the time budget or a page cap cut the run short.
    """

    source: str
    since: datetime
    until: datetime
    states: tuple[str, ...]
    item_statuses: tuple[str, ...] = ()
    folders: int = 0
    found: list[Recovered] = field(default_factory=list)
    failures: list[FolderFailure] = field(default_factory=list)
    calls: int = 0
    complete: bool = True


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_iso(value).timestamp()
    except ValueError:
        return None


def job_event(
    job: Mapping[str, Any], *, recovered_at: datetime, folder: Mapping[str, Any] | None = None
) -> Recovered | None:
    """Turn one job of the Jobs API into the webhook body of its end, or None when it has not ended.

    Args:
        job: a ``JobDto`` from ``GET /odata/Jobs``.
        recovered_at: when the run found it (``RecoveredAt`` in the body).
        folder: the ``FolderDto`` it was read from, for the folder key and path.

    Returns:
        The recovered event; None for a job without a ``Key`` or not in an end state.
    """
    state = job.get("State")
    key = job.get("Key")
    if not isinstance(state, str) or state not in END_TYPES or not isinstance(key, str) or not key:
        return None
    kind = END_TYPES[state]
    slim = {name: job[name] for name in _JOB_FIELDS if name in job}
    folder_id = job.get("OrganizationUnitId", folder.get("Id") if folder else None)
    body: dict[str, Any] = {
        "Type": kind,
        "EventId": f"recovered:{key}:{state}",
        "Timestamp": job.get("EndTime") or _iso(recovered_at),
        "OrganizationUnitId": folder_id,
        "Origin": "api",
        "RecoveredAt": _iso(recovered_at),
    }
    if folder is not None and folder.get("Key"):
        body["OrganizationUnitKey"] = folder["Key"]
    # uipath-webhooks.md §2: job.stopped carries a Jobs array, the other end events one Job.
    body["Jobs" if kind == "job.stopped" else "Job"] = [slim] if kind == "job.stopped" else slim
    event_id = job_end_key(body)
    if event_id is None:  # pragma: no cover  # a keyed job in an end state always has one
        return None
    release: Mapping[str, Any] = job["Release"] if isinstance(job.get("Release"), Mapping) else {}
    path = job.get("OrganizationUnitFullyQualifiedName") or (folder or {}).get("FullyQualifiedName") or folder_id
    return Recovered(
        event_id=event_id,
        type=kind,
        body=dumps(body),
        event_time=_parse_time(job.get("EndTime")),
        job_key=key,
        state=state,
        folder=str(path),
        process=str(job.get("ReleaseName") or release.get("Name") or release.get("ProcessKey") or "?"),
        ended_at=str(job.get("EndTime") or "?"),
    )


def item_event(
    item: Mapping[str, Any], *, recovered_at: datetime, folder: Mapping[str, Any] | None = None
) -> Recovered | None:
    """Turn one queue item of the QueueItems API into the webhook body of its failure, or None.

    The body carries ``QueueItem`` and ``Queue`` (its ``Id`` only: the API item does not name its
    queue, so a rule matching ``queue:`` does not match a recovered item).
    """
    status = item.get("Status")
    key = item.get("Key")
    if not isinstance(status, str) or status not in ITEM_END_TYPES or not isinstance(key, str) or not key:
        return None
    kind = ITEM_END_TYPES[status]
    folder_id = item.get("OrganizationUnitId", folder.get("Id") if folder else None)
    body: dict[str, Any] = {
        "Type": kind,
        "EventId": f"recovered:{key}:{item.get('RetryNumber') or 0}:{status}",
        "Timestamp": item.get("EndProcessing") or _iso(recovered_at),
        "OrganizationUnitId": folder_id,
        "Origin": "api",
        "RecoveredAt": _iso(recovered_at),
        "QueueItem": {name: item[name] for name in _ITEM_FIELDS if name in item},
        "Queue": {"Id": item.get("QueueDefinitionId")},
    }
    if folder is not None and folder.get("Key"):
        body["OrganizationUnitKey"] = folder["Key"]
    event_id = queue_item_end_key(body)
    if event_id is None:  # pragma: no cover  # a keyed item in an end status always has one
        return None
    path = (folder or {}).get("FullyQualifiedName") or item.get("OrganizationUnitFullyQualifiedName") or folder_id
    return Recovered(
        event_id=event_id,
        type=kind,
        body=dumps(body),
        event_time=_parse_time(item.get("EndProcessing")),
        job_key=key,
        state=status,
        folder=str(path),
        process=str(item.get("Reference") or f"queue {item.get('QueueDefinitionId')}"),
        ended_at=str(item.get("EndProcessing") or "?"),
    )


def _items_filter(statuses: Iterable[str], since: datetime) -> str:
    wanted = " or ".join(f"Status eq '{status}'" for status in statuses)
    return f"EndProcessing ge {_iso(since)} and ({wanted})"


def _jobs_filter(states: Iterable[str], since: datetime) -> str:
    wanted = " or ".join(f"State eq '{state}'" for state in states)
    return f"EndTime ge {_iso(since)} and ({wanted})"


async def find_ended_jobs(
    client: OrchestratorClient,
    states: tuple[str, ...],
    *,
    since: datetime,
    now: datetime | None = None,
    budget: float = 120.0,
    page_size: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    item_statuses: tuple[str, ...] = (),
) -> RecoveryRun:
    """Ask every folder for the jobs that ended in ``states`` (the items that failed) since ``since``.

    Args:
        client: the source's Orchestrator client (scopes ``OR.Folders.Read`` and ``OR.Jobs.Read``).
        states: the end states to ask for (see :func:`recovery_states`); none asks nothing.
        since: the start of the window (the caller bounds it by the lookback).
        now: the end of the window and ``RecoveredAt``; default the current time.
        budget: seconds for the whole run; folders left when it is spent are not asked.
        page_size: ``$top`` of the Jobs pages; default the API's maximum (1000).
        clock: monotonic seconds (tests).
        item_statuses: the queue item statuses to ask for too (see :func:`recovery_item_statuses`,
            scope ``OR.Queues.Read``); none asks nothing.

    Returns:
        What was asked and found; each job end once, oldest first.

    Raises:
        OrchestratorError: the folders could not be listed.
    """
    started = now or datetime.now(UTC)
    run = RecoveryRun(source=client.source, since=since, until=started, states=states, item_statuses=item_statuses)
    if not states and not item_statuses:
        return run
    deadline = clock() + budget
    folders = await client.collection("odata/Folders")
    run.calls += 1 + len(folders.items) // 1000
    seen: set[str] = set()
    for folder in folders.items:
        folder_id = folder.get("Id")
        if not isinstance(folder_id, int) or isinstance(folder_id, bool):
            continue
        if clock() >= deadline:
            run.complete = False
            break
        run.folders += 1
        name = str(folder.get("FullyQualifiedName") or folder_id)
        try:
            if states:
                await _folder_jobs(client, run, folder, states, since, page_size, seen)
            if item_statuses:
                await _folder_items(client, run, folder, item_statuses, since, seen)
        except OrchestratorError as exc:
            run.failures.append(FolderFailure(name, exc.detail))
            continue
    run.found.sort(key=lambda r: (r.event_time or 0.0, r.event_id))
    return run


async def _folder_jobs(
    client: OrchestratorClient,
    run: RecoveryRun,
    folder: Mapping[str, Any],
    states: tuple[str, ...],
    since: datetime,
    page_size: int | None,
    seen: set[str],
) -> None:
    jobs = await client.collection(
        "odata/Jobs",
        params={"$filter": _jobs_filter(states, since), "$orderby": "EndTime asc"},
        folder_id=folder["Id"],
        page_size=page_size,
        max_items=_MAX_JOBS_PER_FOLDER,
    )
    run.calls += 1 + len(jobs.items) // (page_size or 1000)
    run.complete = run.complete and not jobs.truncated
    for job in jobs.items:
        found = job_event(job, recovered_at=run.until, folder=folder)
        if found is not None and found.event_id not in seen:  # a parent folder may list its subfolders' jobs
            seen.add(found.event_id)
            run.found.append(found)


async def _folder_items(
    client: OrchestratorClient,
    run: RecoveryRun,
    folder: Mapping[str, Any],
    statuses: tuple[str, ...],
    since: datetime,
    seen: set[str],
) -> None:
    items = await client.collection(
        "odata/QueueItems",
        params={"$filter": _items_filter(statuses, since), "$orderby": "EndProcessing asc"},
        folder_id=folder["Id"],
        max_items=_MAX_ITEMS_PER_FOLDER,
    )
    run.calls += 1 + len(items.items) // 100
    run.complete = run.complete and not items.truncated
    for item in items.items:
        found = item_event(item, recovered_at=run.until, folder=folder)
        if found is not None and found.event_id not in seen:
            seen.add(found.event_id)
            run.found.append(found)
