"""The base payload model (frozen, lenient, case-insensitive keys) and the annotated field types.

Orchestrator sends PascalCase keys; other senders and hand-written tests use camelCase or
lower case. Every payload model therefore accepts its keys in any casing. Folding keys
costs a Python loop per object, so it runs only for an object whose keys are not all
known aliases already (the common PascalCase payload goes straight to pydantic-core).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainValidator,
    model_validator,
)
from pydantic.alias_generators import to_pascal

from receiver.events.enums import (
    JobSource,
    JobState,
    JobType,
    LogLevel,
    OrchestratorEnum,
    ProcessingExceptionType,
    ProcessingStatus,
    ReviewStatus,
    RobotState,
)

__all__ = [
    "JsonBag",
    "LenientJobSource",
    "LenientJobState",
    "LenientJobType",
    "LenientLogLevel",
    "LenientProcessingExceptionType",
    "LenientProcessingStatus",
    "LenientReviewStatus",
    "LenientRobotState",
    "Many",
    "PayloadModel",
    "UtcDatetime",
]


def _assume_utc(value: datetime) -> datetime:
    # Orchestrator writes UTC with "Z", but some nested times (alert ReportingTime) have no
    # offset; comparing naive with aware datetimes raises, so every datetime leaves aware.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_assume_utc)]
"""An ISO-8601 date-time (0 to 7 fractional digits, ``Z`` or offset); naive means UTC."""


def _json_bag(value: Any) -> Any:
    # The OData API sends *Arguments as JSON-encoded strings, webhooks as objects. A string
    # that is not a JSON object or array is kept as the string it is.
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "["):
            try:
                return json.loads(text)
            except ValueError:
                return value
    return value


JsonBag = Annotated[Any, PlainValidator(_json_bag)]
"""A free-form bag (InputArguments, SpecificContent, EventData...): kept as sent, keys untouched.

A string holding a JSON object or array is decoded; any other value is kept unchanged.
"""


_E = TypeVar("_E", bound=OrchestratorEnum)


def _lenient(enum: type[_E]) -> Any:
    def validate(value: Any) -> _E | str | None:
        if value is None:
            return None
        if isinstance(value, str | int) and not isinstance(value, bool):
            try:
                return enum.parse(value)
            except ValueError:
                # A newer Orchestrator may send a name we do not know (SourceType "AgentHub"):
                # keep it rather than refuse the whole event.
                return value if isinstance(value, str) else str(value)
        raise ValueError(f"expected a {enum.__name__} name or number, got {value!r:.80}")

    return PlainValidator(validate)


LenientJobState = Annotated[JobState | str | None, _lenient(JobState)]
LenientJobSource = Annotated[JobSource | str | None, _lenient(JobSource)]
LenientJobType = Annotated[JobType | str | None, _lenient(JobType)]
LenientRobotState = Annotated[RobotState | str | None, _lenient(RobotState)]
LenientProcessingStatus = Annotated[ProcessingStatus | str | None, _lenient(ProcessingStatus)]
LenientProcessingExceptionType = Annotated[ProcessingExceptionType | str | None, _lenient(ProcessingExceptionType)]
LenientReviewStatus = Annotated[ReviewStatus | str | None, _lenient(ReviewStatus)]
LenientLogLevel = Annotated[LogLevel | str | None, _lenient(LogLevel)]


def _one_or_many(value: Any) -> Any:
    # The 2023 docs show "Jobs": {...} for job.created, and most events use "Job" where
    # job.stopped uses "Jobs": an object becomes a one-element list, null an empty one.
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return value


_T = TypeVar("_T")

Many = Annotated[list[_T], BeforeValidator(_one_or_many)]
"""A list that also accepts a single object (as a one-element list) and null (as empty)."""


def _fold_keys(data: dict[Any, Any], known: frozenset[str], folded: dict[str, str]) -> dict[Any, Any]:
    """Return a copy of ``data`` whose keys that match an alias case-insensitively are renamed to it."""
    result: dict[Any, Any] = {}
    renamed: list[tuple[str, Any]] = []
    for key, value in data.items():
        if key in known or not isinstance(key, str):
            result[key] = value
            continue
        canonical = folded.get(key.lower())
        if canonical is None:
            result[key] = value
        else:
            renamed.append((canonical, value))
    # An exact-case key wins over a differently cased duplicate ("Job" beats "job").
    for canonical, value in renamed:
        result.setdefault(canonical, value)
    return result


class PayloadModel(BaseModel):
    """Base of every payload model: frozen, ignores unknown fields, reads keys in any casing.

    Fields are snake_case in Python and PascalCase (Orchestrator's spelling) on the wire.
    Numbers are accepted where a string goes (``EventId: 307348658``) and numeric strings
    where a number goes (NLog posts ``"TenantId": "1"``).
    """

    model_config = ConfigDict(
        alias_generator=to_pascal,
        extra="ignore",
        frozen=True,
        coerce_numbers_to_str=True,
        validate_by_alias=True,
        validate_by_name=False,
    )

    _known_keys: ClassVar[frozenset[str]] = frozenset()
    _folded_keys: ClassVar[dict[str, str]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Collect the wire names of the subclass's fields for case-insensitive matching."""
        super().__pydantic_init_subclass__(**kwargs)
        names: set[str] = set()
        for field in cls.model_fields.values():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(choice for choice in alias.choices if isinstance(choice, str))
            elif isinstance(alias, str):
                names.add(alias)
            elif field.alias is not None:
                names.add(field.alias)
        cls._known_keys = frozenset(names)
        cls._folded_keys = {name.lower(): name for name in names}

    @model_validator(mode="before")
    @classmethod
    def _canonical_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and not cls._known_keys.issuperset(data):
            return _fold_keys(data, cls._known_keys, cls._folded_keys)
        return data
