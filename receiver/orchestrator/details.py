"""Reading an event's job, its error log lines and its queue item back from the API (``enrich:``).

Calls, all with the event's folder as ``X-UIPATH-OrganizationUnitId`` (reference §5):

- ``GET odata/QueueItems({Id})`` for a queue item event (its ``ProcessingException`` and
  ``ExecutorJobKey``);
- ``GET odata/Jobs({Id})`` when the job's Id is known (not rate-limited, §6), else
  ``GET odata/Jobs/UiPath.Server.Configuration.OData.GetByKey(identifier=<Key>)``;
- ``GET odata/RobotLogs?$filter=JobKey eq <Key> and (Level eq 'Error' or Level eq 'Fatal')
  &$orderby=TimeStamp desc&$top=N``: one page, the newest N.

The job and the log lines are asked for at the same time. Log lines that fail (refused for want
of ``OR.Monitoring``, slow, 5xx) leave the job or item that was read: ``logs_unavailable`` says
why. :func:`unavailable_reason` turns a failure into the few words a message shows ("details
unavailable: <reason>").
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from receiver.events import Details, ItemDetail, JobDetail, LogLine, item_detail, job_detail, log_lines
from receiver.orchestrator.client import OrchestratorClient
from receiver.orchestrator.errors import OrchestratorAuthError, OrchestratorError, OrchestratorUnavailableError

__all__ = ["Wanted", "fetch_details", "unavailable_reason"]

_GUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
_GET_BY_KEY = "odata/Jobs/UiPath.Server.Configuration.OData.GetByKey(identifier={key})"


@dataclass(frozen=True, slots=True)
class Wanted:
    """What to read about one event (hashable: the enrichment cache's key with the source).

    Attributes:
        folder_id: the event's folder (``OrganizationUnitId``).
        job_id: the job's Id, when the event carries it.
        job_key: the job's Key, when the event carries it.
        item_id: the queue item's Id, for queue item events.
        job: read the job.
        logs: read its last ``log_lines`` Error and Fatal log lines.
        arguments: keep the job's input arguments.
        log_lines: how many log lines.
    """

    folder_id: int
    job_id: int | None = None
    job_key: str | None = None
    item_id: int | None = None
    job: bool = True
    logs: bool = True
    arguments: bool = False
    log_lines: int = 5


def _guid(value: str | None) -> str | None:
    # A key goes into a path and a $filter: only a GUID is sent, nothing an event could inject.
    return value if value is not None and _GUID.match(value) else None


async def _job(client: OrchestratorClient, wanted: Wanted, key: str | None) -> JobDetail | None:
    if wanted.job_id is not None:
        path = f"odata/Jobs({int(wanted.job_id)})"
    elif key is not None:
        path = _GET_BY_KEY.format(key=key)
    else:
        return None
    raw = await client.request("GET", path, folder_id=wanted.folder_id)
    return job_detail(raw, arguments=wanted.arguments) if isinstance(raw, dict) else None


async def _logs(client: OrchestratorClient, wanted: Wanted, key: str | None) -> tuple[LogLine, ...]:
    if key is None:
        return ()
    params: dict[str, str | int] = {
        "$filter": f"JobKey eq {key} and (Level eq 'Error' or Level eq 'Fatal')",
        "$orderby": "TimeStamp desc",
        "$top": wanted.log_lines,
    }
    data: Any = await client.request("GET", "odata/RobotLogs", params=params, folder_id=wanted.folder_id)
    page = data.get("value") if isinstance(data, dict) else None
    return log_lines(page if isinstance(page, list) else [], wanted.log_lines)


async def fetch_details(client: OrchestratorClient, wanted: Wanted) -> Details:
    """Read what ``wanted`` names; the queue item first (it names the job), then the job and its logs together.

    Raises:
        OrchestratorError: a call was refused or failed (see :func:`unavailable_reason`).
    """
    item: ItemDetail | None = None
    key = _guid(wanted.job_key)
    if wanted.item_id is not None:
        raw = await client.request("GET", f"odata/QueueItems({int(wanted.item_id)})", folder_id=wanted.folder_id)
        if isinstance(raw, dict):
            item = item_detail(raw)
            key = key or _guid(item.job_key)
    if wanted.logs and key is None and wanted.job_id is not None:
        # The log lines are found by the job's Key: read the job first to learn it.
        job = await _job(client, wanted, None)
        logs, missing = await _logs_or_reason(client, wanted, None if job is None else _guid(job.key))
        return Details(job=job if wanted.job else None, logs=logs, item=item, logs_unavailable=missing)
    if wanted.job and wanted.logs:
        both = (
            asyncio.ensure_future(_job(client, wanted, key)),
            asyncio.ensure_future(_logs_or_reason(client, wanted, key)),
        )
        try:
            job, (logs, missing) = await asyncio.gather(*both)
        finally:
            for call in both:  # the job failed: the log lines are not waited for
                call.cancel()
        return Details(job=job, logs=logs, item=item, logs_unavailable=missing)
    if wanted.job:
        return Details(job=await _job(client, wanted, key), item=item)
    if wanted.logs and item is None:
        return Details(logs=await _logs(client, wanted, key))  # nothing else asked: their failure is the enrichment's
    if wanted.logs:
        logs, missing = await _logs_or_reason(client, wanted, key)
        return Details(logs=logs, item=item, logs_unavailable=missing)
    return Details(item=item)


async def _logs_or_reason(
    client: OrchestratorClient, wanted: Wanted, key: str | None
) -> tuple[tuple[LogLine, ...] | None, str | None]:
    """The log lines, or (None, why not): a job or item read already is worth showing without them."""
    try:
        return await _logs(client, wanted, key), None
    except OrchestratorError as exc:
        return None, unavailable_reason(exc)


_FOLDER_ERRORS = frozenset({1100, 1101})
"""errorCode of a folder the caller cannot use (1100 "Invalid organization unit") or left out (1101), §3."""

_OUTCOME_WORDS = {
    "circuit_open": "circuit open",
    "timeout": "timeout",
    "network_error": "network error",
    "rate_limited": "rate limited (HTTP 429)",
}


def unavailable_reason(exc: OrchestratorError) -> str:
    """A failure in the few words of "details unavailable: <reason>" (``timeout``, ``HTTP 500``...)."""
    if isinstance(exc, OrchestratorUnavailableError):
        if exc.outcome == "server_error" and exc.status is not None:
            return f"HTTP {exc.status}"
        return _OUTCOME_WORDS.get(exc.outcome, exc.outcome)
    if isinstance(exc, OrchestratorAuthError):
        return "unauthorized" + (f" (HTTP {exc.status})" if exc.status is not None else "")
    if exc.error_code in _FOLDER_ERRORS:
        return f"the event's folder is not usable with this connection (HTTP {exc.status}, errorCode {exc.error_code})"
    if exc.status == 404:
        return "not found (HTTP 404)"
    if exc.status == 403:
        return "forbidden (HTTP 403): check the connection's scopes"
    return f"HTTP {exc.status}" if exc.status is not None else "unreadable answer"
