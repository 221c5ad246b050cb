"""The base ``Event``: the envelope every webhook shares, and the handles rules and templates read.

Each handle is a property that returns ``None`` here; each event family overrides the
ones that apply to it (see docs/contracts.md). Handles are properties, not fields, so that
they cost nothing at parse time and cannot disagree with the payload they come from.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import AliasChoices, Field

from receiver.events.base import PayloadModel, UtcDatetime
from receiver.events.enums import JobState, LogLevel, ProcessingExceptionType, RobotState

__all__ = ["Event", "key_or_id"]


def key_or_id(key: str | None, id_: int | None) -> str | None:
    """Return the entity's Key, else its Id as a string, else None."""
    if key:
        return key
    return None if id_ is None else str(id_)


class Event(PayloadModel):
    """Base of every event: the envelope fields and the handles, each ``None`` when not applicable.

    Attributes:
        type: the Orchestrator ``Type`` (``job.faulted``, ``robot.log``...).
        event_id: ``EventId`` as a string (Orchestrator has sent hex and numeric ids).
        timestamp: ``Timestamp``, aware (naive times are UTC).
        organization_unit_id: the folder id, read from ``OrganizationUnitId`` or ``FolderId``.
        event_key: the envelope's ``EntityKey`` (meaning undocumented).
        origin: ``api`` when gap recovery read the event from the Orchestrator API; None for a webhook.
        recovered_at: when gap recovery found it (``RecoveredAt``); None for a webhook.
    """

    event_type: ClassVar[str] = ""

    type: str
    event_id: str | None = None
    timestamp: UtcDatetime | None = None
    event_time: UtcDatetime | None = None
    tenant_id: int | None = None
    user_id: int | None = None
    user_key: str | None = None
    organization_unit_id: int | None = Field(
        default=None, validation_alias=AliasChoices("OrganizationUnitId", "FolderId")
    )
    organization_unit_key: str | None = None
    event_key: str | None = Field(default=None, alias="EntityKey")
    event_source_id: int | None = None
    webhook_name: str | None = Field(default=None, alias="Name")
    origin: str | None = None
    recovered_at: UtcDatetime | None = None

    @property
    def tenant(self) -> int | None:
        """``TenantId``."""
        return self.tenant_id

    @property
    def folder(self) -> int | None:
        """The folder id (``OrganizationUnitId``/``FolderId``)."""
        return self.organization_unit_id

    @property
    def job_state(self) -> JobState | str | None:
        """State of the (first) job; a string when Orchestrator sent a state we do not know."""
        return None

    @property
    def job_key(self) -> str | None:
        """Key (GUID) of the (first) job."""
        return None

    @property
    def job_id(self) -> int | None:
        """Id of the (first) job."""
        return None

    @property
    def process(self) -> str | None:
        """Process name: Release.ProcessKey, else the release's name."""
        return None

    @property
    def robot(self) -> str | None:
        """Robot name."""
        return None

    @property
    def machine(self) -> str | None:
        """Machine name."""
        return None

    @property
    def queue(self) -> str | None:
        """Queue name."""
        return None

    @property
    def level(self) -> LogLevel | None:
        """Log level (robot logs only)."""
        return None

    @property
    def message(self) -> str | None:
        """The human text: job Info, failure reason, schedule Reason, log Message."""
        return None

    @property
    def entity_key(self) -> str | None:
        """Key of the primary entity, for dedup and absence checks; the envelope's EntityKey by default."""
        return self.event_key

    @property
    def robot_state(self) -> RobotState | str | None:
        """State of the (first) robot session (robot.status only)."""
        return None

    @property
    def exception_type(self) -> ProcessingExceptionType | str | None:
        """Business or application exception of the (first) queue item (queue item events only)."""
        return None
