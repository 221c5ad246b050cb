"""``parse_event``: dispatch a webhook body on its ``Type`` to the event class, or ``UnknownEvent``.

Dispatch is a dict from ``Type`` to class (``EVENT_TYPES``): one lookup instead of a
pydantic discriminated union, which would validate the tag first and has no answer for
unknown types, which must become ``UnknownEvent`` rather than an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import Field, PlainValidator, ValidationError

from receiver.errors import EventParseError
from receiver.events._text import show
from receiver.events.event import Event
from receiver.events.models import (
    CustomEvent,
    JobCompletedEvent,
    JobCreatedEvent,
    JobFaultedEvent,
    JobResumedEvent,
    JobStartedEvent,
    JobStoppedEvent,
    JobStoppingEvent,
    JobSuspendedEvent,
    JobTerminatingEvent,
    PingEvent,
    ProcessCreatedEvent,
    ProcessDeletedEvent,
    ProcessUpdatedEvent,
    QueueCreatedEvent,
    QueueDeletedEvent,
    QueueItemAddedEvent,
    QueueItemDeferredEvent,
    QueueItemDeletedEvent,
    QueueItemRetriedEvent,
    QueueItemReviewStatusChangedEvent,
    QueueItemTransactionAbandonedEvent,
    QueueItemTransactionCompletedEvent,
    QueueItemTransactionFailedEvent,
    QueueItemTransactionStartedEvent,
    QueueItemUpdatedEvent,
    QueueUpdatedEvent,
    RobotCreatedEvent,
    RobotDeletedEvent,
    RobotStatusEvent,
    RobotUpdatedEvent,
    ScheduleFailedEvent,
    TaskAssignmentChangedEvent,
    TaskCompletedEvent,
    TaskCreatedEvent,
    TaskDeletedEvent,
    TaskForwardedEvent,
    TaskSavedEvent,
    TaskUpdatedEvent,
)

__all__ = ["EVENT_TYPES", "UnknownEvent", "parse_event"]


def _as_payload(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"payload must be an object, got {type(value).__name__}")
    return dict(value)


# The wire name of UnknownEvent.payload: no Orchestrator key looks like it, so a body
# cannot fill the field itself.
_PAYLOAD_KEY = "__payload__"


class UnknownEvent(Event):
    """An event whose ``Type`` this version does not know; ``payload`` keeps the whole body.

    New Orchestrator versions add event types; they must be logged and counted, never refused.
    The envelope fields (EventId, Timestamp...) are read when they are readable.
    """

    payload: Annotated[dict[str, Any], PlainValidator(_as_payload)] = Field(
        default_factory=dict, validation_alias=_PAYLOAD_KEY
    )


_EVENT_CLASSES: tuple[type[Event], ...] = (
    JobCreatedEvent,
    JobStartedEvent,
    JobCompletedEvent,
    JobFaultedEvent,
    JobStoppedEvent,
    JobSuspendedEvent,
    JobResumedEvent,
    JobStoppingEvent,
    JobTerminatingEvent,
    RobotCreatedEvent,
    RobotUpdatedEvent,
    RobotDeletedEvent,
    RobotStatusEvent,
    QueueCreatedEvent,
    QueueUpdatedEvent,
    QueueDeletedEvent,
    QueueItemAddedEvent,
    QueueItemTransactionStartedEvent,
    QueueItemTransactionCompletedEvent,
    QueueItemTransactionFailedEvent,
    QueueItemTransactionAbandonedEvent,
    QueueItemDeferredEvent,
    QueueItemDeletedEvent,
    QueueItemRetriedEvent,
    QueueItemUpdatedEvent,
    QueueItemReviewStatusChangedEvent,
    ProcessCreatedEvent,
    ProcessUpdatedEvent,
    ProcessDeletedEvent,
    ScheduleFailedEvent,
    TaskCreatedEvent,
    TaskCompletedEvent,
    TaskAssignmentChangedEvent,
    TaskForwardedEvent,
    TaskSavedEvent,
    TaskDeletedEvent,
    TaskUpdatedEvent,
    PingEvent,
    CustomEvent,
)

EVENT_TYPES: Mapping[str, type[Event]] = MappingProxyType({cls.event_type: cls for cls in _EVENT_CLASSES})
"""Every known ``Type`` and its class (robot.log is not a webhook type and is not listed)."""

# Type names look case-sensitive (queueItem.transactionFailed) but a hand-written sender
# may not be; an exact match is tried first.
_EVENT_TYPES_FOLDED: dict[str, type[Event]] = {name.lower(): cls for name, cls in EVENT_TYPES.items()}


def _describe(type_value: str, exc: ValidationError) -> str:
    shown = []
    for error in exc.errors(include_url=False)[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "(body)"
        shown.append(f"{where}: {error['msg']} (got {show(error.get('input'))})")
    more = exc.error_count() - len(shown)
    tail = f"; and {more} more" if more > 0 else ""
    return f"{type_value!r} event has fields that cannot be read: {'; '.join(shown)}{tail}"


def _find_type(raw: dict[Any, Any]) -> tuple[Any, Any]:
    """Return (key, value) of the Type key in any casing, or (None, None)."""
    for key, value in raw.items():
        if isinstance(key, str) and key.lower() == "type":
            return key, value
    return None, None


def _unknown(type_value: str, raw: dict[Any, Any]) -> UnknownEvent:
    try:
        return UnknownEvent.model_validate({**raw, _PAYLOAD_KEY: raw})
    except ValueError:  # ValidationError, or a conversion pydantic-core did not wrap
        # An envelope we cannot read must not lose an event we do not understand anyway.
        return UnknownEvent.model_validate({"Type": type_value, _PAYLOAD_KEY: raw})


def parse_event(raw: Mapping[str, Any]) -> Event:
    """Turn the decoded JSON body of one webhook into its event class.

    Args:
        raw: the JSON object; keys in any casing (Orchestrator sends PascalCase).

    Returns:
        The specific event (``JobFaultedEvent``...), or ``UnknownEvent`` holding the whole
        payload when the ``Type`` is not one this version knows.

    Raises:
        EventParseError: code ``not_an_object`` when ``raw`` is not an object,
            ``missing_type`` when it has no non-empty string ``Type``, and
            ``invalid_fields`` when a known type's fields cannot be read.
    """
    if type(raw) is not dict:
        if not isinstance(raw, Mapping):
            raise EventParseError("not_an_object", f"a webhook body must be a JSON object, got {type(raw).__name__}")
        raw = dict(raw)
    type_key: Any = "Type"
    type_value = raw.get("Type")
    if type_value is None:
        type_key, type_value = _find_type(raw)
    if not isinstance(type_value, str) or not type_value.strip():
        raise EventParseError("missing_type", f"the body has no event Type (got {show(type_value)})")
    cls = EVENT_TYPES.get(type_value)
    if cls is None:
        cls = _EVENT_TYPES_FOLDED.get(type_value.strip().lower())
        if cls is None:
            return _unknown(type_value, raw)
        raw = {**raw, type_key: cls.event_type}
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise EventParseError("invalid_fields", _describe(type_value, exc)) from exc
    except ValueError as exc:
        # pydantic-core lets a few conversions escape unwrapped, e.g. str() of an int
        # beyond Python's 4300-digit limit where a string goes.
        raise EventParseError("invalid_fields", f"{type_value!r} event has a value that cannot be read: {exc}") from exc
