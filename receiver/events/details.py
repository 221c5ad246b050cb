"""What Orchestrator's API says about an event's job and queue item now: the details of ``enrich:``.

The API's answers are untrusted text like a webhook's: every text value is cut at
:data:`DETAIL_TEXT_LIMIT` (a log line's message at :data:`LOG_LINE_LIMIT`) and the number of
log lines is bounded by the caller, so a message built from them has a known size. Built
from the decoded OData entities (``JobDto``, ``LogDto``, ``QueueItemDto`` of the reference);
a field of the wrong type is left out rather than refusing the whole answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.events.textcap import cap_text
from receiver.timefmt import parse_iso

__all__ = [
    "DETAIL_TEXT_LIMIT",
    "LOG_LINE_LIMIT",
    "Details",
    "ItemDetail",
    "JobDetail",
    "LogLine",
    "item_detail",
    "job_detail",
    "log_lines",
]

DETAIL_TEXT_LIMIT = 4_000
"""The most characters of one text value of the details (Info, exception details, arguments)."""

LOG_LINE_LIMIT = 1_000
"""The most characters of one robot log message."""


@dataclass(frozen=True, slots=True)
class JobDetail:
    """The job as Orchestrator has it (``GET odata/Jobs({Id})``).

    Attributes:
        id: the job's Id.
        key: the job's Key.
        state: its State (``Faulted``...).
        info: its full ``Info`` (the error text), cut at :data:`DETAIL_TEXT_LIMIT`.
        host_machine: ``HostMachineName``.
        robot: ``Robot.Name`` (or its user name).
        process: ``ReleaseName``.
        folder_path: ``OrganizationUnitFullyQualifiedName``.
        start_time: ``StartTime``.
        end_time: ``EndTime``.
        error_code: ``ErrorCode`` (or ``JobError.code``).
        input_arguments: ``InputArguments`` as JSON text, only when the rule asked for them.
    """

    id: int | None = None
    key: str | None = None
    state: str | None = None
    info: str | None = None
    host_machine: str | None = None
    robot: str | None = None
    process: str | None = None
    folder_path: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error_code: str | None = None
    input_arguments: str | None = None


@dataclass(frozen=True, slots=True)
class LogLine:
    """One Error or Fatal robot log line of the job (``GET odata/RobotLogs``).

    Attributes:
        time: ``TimeStamp``.
        level: ``Level`` (``Error``, ``Fatal``).
        message: ``Message``, cut at :data:`LOG_LINE_LIMIT`.
    """

    time: datetime | None
    level: str
    message: str


@dataclass(frozen=True, slots=True)
class ItemDetail:
    """The queue item as Orchestrator has it (``GET odata/QueueItems({Id})``).

    Attributes:
        id: the item's Id.
        key: its Key.
        status: its Status (``Failed``...).
        exception_type: ``ProcessingExceptionType`` (``BusinessException``, ``ApplicationException``).
        reason: ``ProcessingException.Reason``.
        details: ``ProcessingException.Details`` (often a stack trace), cut at :data:`DETAIL_TEXT_LIMIT`.
        reference: ``Reference``.
        retry_number: ``RetryNumber``.
        job_key: ``ExecutorJobKey``: the job that processed it.
    """

    id: int | None = None
    key: str | None = None
    status: str | None = None
    exception_type: str | None = None
    reason: str | None = None
    details: str | None = None
    reference: str | None = None
    retry_number: int | None = None
    job_key: str | None = None


@dataclass(frozen=True, slots=True)
class Details:
    """What enrichment found for one event, or why it found nothing.

    Attributes:
        job: the job, when asked for and found.
        logs: its last Error/Fatal log lines, oldest first, when asked for (empty: none logged).
        item: the queue item, for queue item events.
        unavailable: why the details are missing (``timeout``, ``HTTP 500``...), or None.
        logs_unavailable: why the log lines are missing while the rest was read (robot logs
            refused for want of a scope, slow or failing), or None.
    """

    job: JobDetail | None = None
    logs: tuple[LogLine, ...] | None = None
    item: ItemDetail | None = None
    unavailable: str | None = None
    logs_unavailable: str | None = None


def _text(value: Any, limit: int = DETAIL_TEXT_LIMIT) -> str | None:
    if isinstance(value, str):
        return cap_text(value, limit) if value else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None


def _arguments(value: Any) -> str | None:
    # The API sends them as a JSON *string*; an object (a newer or other server) is written as JSON.
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return cap_text(text, DETAIL_TEXT_LIMIT)


def job_detail(raw: Mapping[str, Any], *, arguments: bool) -> JobDetail:
    """A ``JobDto`` as a :class:`JobDetail`; its input arguments only when ``arguments``."""
    robot = raw.get("Robot")
    robot_name = None
    if isinstance(robot, Mapping):
        robot_name = _text(robot.get("Name"), 300) or _text(robot.get("Username"), 300)
    error = raw.get("JobError")
    code = _text(raw.get("ErrorCode"), 200)
    if code is None and isinstance(error, Mapping):
        code = _text(error.get("code"), 200)
    return JobDetail(
        id=_int(raw.get("Id")),
        key=_text(raw.get("Key"), 100),
        state=_text(raw.get("State"), 100),
        info=_text(raw.get("Info")),
        host_machine=_text(raw.get("HostMachineName"), 300),
        robot=robot_name,
        process=_text(raw.get("ReleaseName"), 300),
        folder_path=_text(raw.get("OrganizationUnitFullyQualifiedName"), 1000),
        start_time=_time(raw.get("StartTime")),
        end_time=_time(raw.get("EndTime")),
        error_code=code,
        input_arguments=_arguments(raw.get("InputArguments")) if arguments else None,
    )


def log_lines(raw: Iterable[Any], limit: int) -> tuple[LogLine, ...]:
    """At most ``limit`` ``LogDto`` entries (given newest first) as :class:`LogLine`, oldest first."""
    lines: list[LogLine] = []
    for entry in raw:
        if len(lines) >= limit:
            break
        if not isinstance(entry, Mapping):
            continue
        message = entry.get("Message")
        lines.append(
            LogLine(
                time=_time(entry.get("TimeStamp")),
                level=_text(entry.get("Level"), 20) or "?",
                message=cap_text(message, LOG_LINE_LIMIT) if isinstance(message, str) else "",
            )
        )
    lines.reverse()
    return tuple(lines)


def item_detail(raw: Mapping[str, Any]) -> ItemDetail:
    """A ``QueueItemDto`` as an :class:`ItemDetail`."""
    exception = raw.get("ProcessingException")
    reason = details = None
    if isinstance(exception, Mapping):
        reason = _text(exception.get("Reason"))
        details = _text(exception.get("Details"))
    return ItemDetail(
        id=_int(raw.get("Id")),
        key=_text(raw.get("Key"), 100),
        status=_text(raw.get("Status"), 100),
        exception_type=_text(raw.get("ProcessingExceptionType"), 100),
        reason=reason,
        details=details,
        reference=_text(raw.get("Reference"), 1000),
        retry_number=_int(raw.get("RetryNumber")),
        job_key=_text(raw.get("ExecutorJobKey"), 100),
    )
