"""The enumerated types of the Orchestrator API, as ``IntEnum`` with their API-guide numbers.

Webhook payloads carry enum *names* (``"State": "Faulted"``); the REST API guide
("Enumerated types") gives the numbers, which also appear inside JSON-string blobs.
``Enum.parse`` accepts both, plus UiPath's alternative spellings, so rules files and
payloads can use whichever form they have.

Where the numbers come from:

- JobState, JobSource (Manual/Trigger), JobType (Unattended/Attended), RobotState,
  ProcessingStatus, ProcessingExceptionType, ReviewStatus, AssetValueScope: the
  Orchestrator API guide, "Enumerated types" page.
- LogLevel: NLog level ordinals, which Orchestrator stores in ``[dbo].[Logs].Level``
  (reference section 5.1).
- AssetValueType and UserType: **unconfirmed**. The names and their order come from
  UiPath's OpenAPI definition and the ``uipath-typescript`` SDK; the numbers assume the
  usual C# declaration order starting at 0. No webhook carries them as numbers.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Self

from receiver.events._text import show

__all__ = [
    "AssetValueScope",
    "AssetValueType",
    "JobSource",
    "JobState",
    "JobType",
    "LogLevel",
    "OrchestratorEnum",
    "ProcessingExceptionType",
    "ProcessingStatus",
    "ReviewStatus",
    "RobotState",
    "UserType",
]

# Built lazily per enum class: folded (lower-case) name or alias -> member.
_LOOKUPS: dict[type[OrchestratorEnum], dict[str, Any]] = {}


class OrchestratorEnum(IntEnum):
    """Base of the Orchestrator enums: an ``IntEnum`` that parses names, aliases and numbers.

    ``str()`` and f-strings give the member name (``"Faulted"``), not the number, so that
    templates show what Orchestrator shows.
    """

    @classmethod
    def parse(cls, value: object) -> Self:
        """Read a member from its name (any casing), an alias, its number, or its number as a string.

        Args:
            value: e.g. ``"Faulted"``, ``"faulted"``, ``4`` or ``"4"``.

        Returns:
            The member.

        Raises:
            ValueError: the value names no member; the message lists the valid names.
        """
        if isinstance(value, cls):
            return value
        # bool is an int subclass: True must not silently mean member 1.
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError as exc:
                raise ValueError(cls._invalid(value)) from exc
        if isinstance(value, str):
            text = value.strip()
            digits = text.lstrip("+-")
            if digits.isascii() and digits.isdigit():
                try:
                    return cls(int(text))
                except ValueError as exc:  # not a member, or "+-4", or beyond int()'s digit limit
                    raise ValueError(cls._invalid(value)) from exc
            lookup = _LOOKUPS.get(cls)
            if lookup is None:
                lookup = {name.lower(): member for name, member in cls.__members__.items()}
                _LOOKUPS[cls] = lookup
            member = lookup.get(text.lower())
            if member is not None:
                return member  # type: ignore[no-any-return]
        raise ValueError(cls._invalid(value))

    @classmethod
    def _invalid(cls, value: object) -> str:
        names = ", ".join(f"{m.name} ({m.value})" for m in cls)
        aliases = [name for name, member in cls.__members__.items() if name != member.name]
        also = f"; aliases: {', '.join(aliases)}" if aliases else ""
        return f"{show(value)} is not a valid {cls.__name__}; valid names: {names}{also}"

    def __str__(self) -> str:
        return str(self.name)

    def __format__(self, format_spec: str) -> str:
        # An explicit spec (":d", ":>3") formats the number; a bare f-string gives the name.
        if format_spec:
            return int.__format__(int(self), format_spec)
        return str(self)


class JobState(OrchestratorEnum):
    """State of a job (``Job.State``)."""

    Pending = 0
    Running = 1
    Stopping = 2
    Terminating = 3
    Faulted = 4
    Successful = 5
    Stopped = 6
    Suspended = 7
    Resumed = 8


class JobSource(OrchestratorEnum):
    """How a job was started (``Job.SourceType``).

    The API guide lists only Manual and Trigger. Webhooks send many more names
    (``Agent``, ``Queue``, ``StudioWeb``, ``AgentHub``...); their numbers are not
    published, so payload fields keep them as strings.
    """

    Manual = 0
    Trigger = 1
    # Alias [infer]: triggers were called schedules, and webhook jobs started by a time
    # trigger say "SourceType": "Schedule".
    Schedule = 1


class JobType(OrchestratorEnum):
    """Kind of job (``Job.Type``). ``ServerlessGeneric`` (2025 schema) has no published number."""

    Unattended = 0
    Attended = 1


class RobotState(OrchestratorEnum):
    """Availability of a robot session (``Sessions[].State``)."""

    Available = 0
    Busy = 1
    Disconnected = 2
    Unknown = 3


class ProcessingStatus(OrchestratorEnum):
    """Processing status of a queue item (``QueueItem.Status``)."""

    New = 0
    InProgress = 1
    Failed = 2
    Successful = 3
    Abandoned = 4
    Retried = 5
    Deleted = 6


class ProcessingExceptionType(OrchestratorEnum):
    """Category of a queue item failure (``QueueItem.ProcessingException.Type``)."""

    ApplicationException = 0
    BusinessException = 1


class ReviewStatus(OrchestratorEnum):
    """Review status of a failed queue item (``QueueItem.ReviewStatus``).

    Orchestrator's name for 0 is ``None``, a Python keyword, so the member is ``NONE``;
    ``parse("None")`` finds it and ``str()`` gives ``"None"``.
    """

    NONE = 0
    InReview = 1
    Verified = 2
    Retried = 3

    def __str__(self) -> str:
        return "None" if self is ReviewStatus.NONE else str(self.name)


class AssetValueScope(OrchestratorEnum):
    """Visibility of an asset."""

    Global = 0
    PerRobot = 1


class AssetValueType(OrchestratorEnum):
    """Type of an asset's value. Numbers unconfirmed (declaration order, see module docstring)."""

    DBConnectionString = 0
    HttpConnectionString = 1
    Text = 2
    Bool = 3
    Integer = 4
    Credential = 5
    WindowsCredential = 6
    KeyValueList = 7
    Secret = 8


class LogLevel(OrchestratorEnum):
    """Level of a robot log entry, with the NLog ordinals.

    Aliases are the UiPath (Studio/robot settings) spellings that Orchestrator shows
    under the NLog name: Verbose -> Trace, Information -> Info, Warning -> Warn,
    Critical -> Fatal.
    """

    Trace = 0
    Debug = 1
    Info = 2
    Warn = 3
    Error = 4
    Fatal = 5
    Verbose = 0
    Information = 2
    Warning = 3
    Critical = 5


class UserType(OrchestratorEnum):
    """Kind of Orchestrator user. Numbers unconfirmed (declaration order, see module docstring)."""

    User = 0
    Robot = 1
    DirectoryUser = 2
    DirectoryGroup = 3
    DirectoryRobot = 4
    DirectoryExternalApplication = 5
