"""Robot log entries posted to ``POST /logs/{source}``: ``RobotLogEvent`` and ``parse_log_entries``.

Robot logs do not come as webhooks. They arrive either in the Orchestrator API shape
(``LogDto`` of ``/odata/RobotLogs``: ``Level``, ``Message``, ``RawMessage``...) or as the
JSON an NLog ``WebService`` target posts, whose names are whatever the NLog layout says
and whose values are all strings (``"LevelOrdinal": "4"``). So names are matched loosely
(any casing, ``_``/``-`` ignored), values are coerced, and the robot's own entry inside
``RawMessage`` (a JSON string) fills fields the outer object lacks.

Decisions where UiPath is silent:

- An entry with no level at all is ``LogLevel.Info``, the level of the robot's
  "Log Message" activity by default and of NLog's plain ``Log()``; an entry whose level
  is present but unreadable gets ``level`` None and keeps the text in ``level_text``, so
  no rule guesses.
- ``event_id`` is ``sha256`` of the entry as posted (canonical JSON: sorted keys, no
  whitespace, ASCII), first 32 hex digits: the same entry posted twice gets the same id
  and deduplicates, two entries differing in any field do not.
- ``entity_key`` is the job key, so that absence rules can follow one job's logs.
- The time is whatever the NLog layout renders: ISO 8601 (``${date:format=o}``), ``${longdate}``
  and ``${date}``'s default ``yyyy/MM/dd HH:mm:ss.fff`` are read (no offset: UTC); a time in any
  other form is left out (``timestamp`` None) and the entry kept. Refusing it would refuse every
  entry of that configuration, each sent again unchanged until NLog drops it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import ValidationError

from receiver.errors import EventParseError
from receiver.events._text import show
from receiver.events.base import JsonBag
from receiver.events.enums import LogLevel
from receiver.events.event import Event

__all__ = ["ROBOT_LOG_TYPE", "RobotLogEvent", "parse_log_entries"]

ROBOT_LOG_TYPE = "robot.log"

# Candidate names per field, already folded (see _fold). The outer entry is tried first,
# then the robot's raw entry (RawMessage), whose names are the robot's camelCase ones.
_OUTER: dict[str, tuple[str, ...]] = {
    "LogMessage": ("message",),
    "Timestamp": ("timestamp", "time"),
    "ProcessName": ("processname",),
    "RobotName": ("robotname",),
    "MachineName": ("hostmachinename", "machinename"),
    "MachineId": ("machineid",),
    "MachineKey": ("machinekey",),
    "WindowsIdentity": ("windowsidentity",),
    "LogJobKey": ("jobkey", "jobid"),
    "TenantId": ("tenantid",),
    "OrganizationUnitId": ("organizationunitid", "folderid"),
    "RuntimeType": ("runtimetype",),
    "LogId": ("id",),
    "FileName": ("filename",),
    "LogType": ("logtype",),
    "ProcessVersion": ("processversion",),
    "Fingerprint": ("fingerprint",),
}
_RAW: dict[str, tuple[str, ...]] = {
    "LogMessage": ("message",),
    "Timestamp": ("timestamp",),
    "ProcessName": ("processname",),
    "RobotName": ("robotname",),
    "MachineName": ("machinename",),
    "MachineId": ("machineid",),
    "WindowsIdentity": ("windowsidentity",),
    "LogJobKey": ("jobid",),
    "TenantId": ("tenantid",),
    "OrganizationUnitId": ("organizationunitid",),
    "FileName": ("filename",),
    "LogType": ("logtype",),
    "ProcessVersion": ("processversion",),
    "Fingerprint": ("fingerprint",),
}
_LEVEL_NAMES = ("level", "levelordinal", "loglevel")
_IGNORED_IN_NAMES = str.maketrans("", "", "_-. @")
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=repr)


class RobotLogEvent(Event):
    """One robot log entry (Type ``robot.log``).

    Attributes:
        log_level: the normalised level (handle ``level``).
        level_text: the level as sent, when it was not a readable level.
        log_message: the message (handle ``message``).
        log_job_key: the job's key (handle ``job_key``; the robot calls it ``jobId``).
        raw_message: ``RawMessage`` as sent (a JSON string).
        raw_fields: ``RawMessage`` decoded, including custom log fields; empty when absent.
    """

    event_type: ClassVar[str] = ROBOT_LOG_TYPE

    log_level: LogLevel | None = None
    level_text: str | None = None
    log_message: str | None = None
    process_name: str | None = None
    robot_name: str | None = None
    machine_name: str | None = None
    machine_id: int | None = None
    machine_key: str | None = None
    windows_identity: str | None = None
    log_job_key: str | None = None
    runtime_type: str | None = None
    log_id: int | None = None
    file_name: str | None = None
    log_type: str | None = None
    process_version: str | None = None
    fingerprint: str | None = None
    raw_message: str | None = None
    raw_fields: JsonBag = None

    @property
    def level(self) -> LogLevel | None:
        """The normalised log level."""
        return self.log_level

    @property
    def message(self) -> str | None:
        """The log message."""
        return self.log_message

    @property
    def process(self) -> str | None:
        """ProcessName."""
        return self.process_name

    @property
    def robot(self) -> str | None:
        """RobotName."""
        return self.robot_name

    @property
    def machine(self) -> str | None:
        """HostMachineName (the robot's machineName as fallback)."""
        return self.machine_name

    @property
    def job_key(self) -> str | None:
        """JobKey (the robot's jobId)."""
        return self.log_job_key

    @property
    def entity_key(self) -> str | None:
        """The job key, so one job's logs share it."""
        return self.log_job_key


def _fold(entry: Mapping[Any, Any]) -> dict[str, Any]:
    # NLog layouts name parameters freely: "LevelOrdinal", "levelOrdinal", "level_ordinal".
    folded: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(key, str):
            name = key.lower()
            if not name.isalnum():
                name = name.translate(_IGNORED_IN_NAMES)
            folded.setdefault(name, value)
    return folded


def _first(fields: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = fields.get(name)
        if value is not None and value != "":
            return value
    return None


def _decode_raw(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return {}
        if isinstance(decoded, dict):
            return decoded
    return {}


def _level(fields: dict[str, Any], raw: dict[str, Any]) -> tuple[LogLevel | None, str | None]:
    candidates = [fields.get(name) for name in _LEVEL_NAMES]
    candidates.append(raw.get("level"))
    present = [value for value in candidates if value is not None and value != ""]
    if not present:
        return LogLevel.Info, None
    for value in present:
        try:
            return LogLevel.parse(value), None
        except ValueError:
            continue
    return None, _short_text(present[0])


def _short_text(value: Any) -> str:
    return value[:100] if isinstance(value, str) else show(value)


def _raw_text(value: Any) -> str | None:
    # RawMessage is a JSON string in the API; a sender that posts it as an object gets it
    # back as the JSON text it would have been.
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return show(value)


def _event_id(entry: Mapping[Any, Any], index: int) -> str:
    try:
        canonical = _CANONICAL.encode(entry)
    except (TypeError, ValueError) as exc:
        raise EventParseError("invalid_logs", f"log entry {index} is not plain JSON: {exc}") from exc
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:32]


def _parse_entry(index: int, entry: Mapping[Any, Any]) -> RobotLogEvent:
    fields = _fold(entry)
    raw_message = fields.get("rawmessage")
    raw_fields = _decode_raw(raw_message)
    raw = _fold(raw_fields)
    if not raw and _first(fields, ("message", "rawmessage", *_LEVEL_NAMES)) is None:
        raise EventParseError("invalid_logs", f"log entry {index} has no Message, Level or RawMessage")
    level, level_text = _level(fields, raw)
    data: dict[str, Any] = {
        "Type": ROBOT_LOG_TYPE,
        "EventId": _event_id(entry, index),
        "LogLevel": level,
        "LevelText": level_text,
        "RawMessage": _raw_text(raw_message),
        "RawFields": raw_fields,
    }
    for field, names in _OUTER.items():
        value = _first(fields, names)
        if value is None:
            value = _first(raw, _RAW.get(field, ()))
        data[field] = value
    if data["LogMessage"] is None and not raw_fields and isinstance(raw_message, str):
        # A RawMessage that is plain text (not the robot's JSON) is the only text there is.
        data["LogMessage"] = raw_message
    data["Timestamp"] = _nlog_date(data["Timestamp"])
    try:
        return _validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {show(err.get('input'))})"
            for err in exc.errors(include_url=False)[:3]
        )
        raise EventParseError("invalid_logs", f"log entry {index} has fields that cannot be read: {problems}") from exc
    except ValueError as exc:  # a conversion pydantic-core did not wrap (an int too long for str())
        raise EventParseError("invalid_logs", f"log entry {index} has a value that cannot be read: {exc}") from exc


_NLOG_DATE = re.compile(r"(\d{4})/(\d{2})/(\d{2}) ")


def _nlog_date(value: Any) -> Any:
    """NLog's ``${date}`` default (``2025/06/03 07:51:02.123``) as ISO 8601; any other value unchanged."""
    if isinstance(value, str):
        found = _NLOG_DATE.match(value.strip())
        if found is not None:
            year, month, day = found.groups()
            return f"{year}-{month}-{day}T{value.strip()[found.end() :]}"
    return value


def _validate(data: dict[str, Any]) -> RobotLogEvent:
    """The event of ``data``; a time that cannot be read is left out rather than refusing the entry."""
    try:
        return RobotLogEvent.model_validate(data)
    except ValidationError as exc:
        if data["Timestamp"] is None or any(err["loc"][:1] != ("Timestamp",) for err in exc.errors()):
            raise
    return RobotLogEvent.model_validate({**data, "Timestamp": None})


def _entries(raw: Any) -> list[Any]:
    if isinstance(raw, list):
        return raw
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            if isinstance(key, str) and key.lower() == "logs":
                if not isinstance(value, list):
                    raise EventParseError(
                        "invalid_logs", f"{key!r} must be an array of log entries, got {type(value).__name__}"
                    )
                return value
        return [raw]
    raise EventParseError(
        "invalid_logs", f"logs must be an object, an array or {{'logs': [...]}}, got {type(raw).__name__}"
    )


def parse_log_entries(raw: Any) -> list[RobotLogEvent]:
    """Turn the decoded JSON of one ``POST /logs/{source}`` into robot log events.

    Args:
        raw: one log object, an array of them, or ``{"logs": [...]}`` (key in any casing).
            Each object is a ``LogDto`` (RobotLogs API) or NLog JSON; names in any casing,
            values possibly strings; a JSON-string ``RawMessage`` supplies missing fields.

    Returns:
        One ``RobotLogEvent`` per entry, in order (an empty list for an empty array).

    Raises:
        EventParseError: code ``invalid_logs`` when the shape is none of those, an entry
            is not an object or has no Message, Level or RawMessage, or a field has the
            wrong type (the message names the entry's index).
    """
    entries = _entries(raw)
    events = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise EventParseError("invalid_logs", f"log entry {index} must be an object, got {type(entry).__name__}")
        if any(isinstance(key, str) and key.lower() == "logs" for key in entry):
            # A `logs` key makes an object the {"logs": [...]} wrapper; a wrapper inside the list is no entry.
            raise EventParseError("invalid_logs", f"log entry {index} has a key 'logs': wrappers do not nest")
        events.append(_parse_entry(index, entry))
    return events
