"""The pydantic schema of ``rules.yaml``: strict (``extra="forbid"``), validated piece by piece.

The loader validates the top level, then each channel, source and rule on its own, so that
one broken rule does not hide the problems of the others. ``match:`` blocks are free-form
here; :mod:`receiver.rules.match` checks them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from receiver.rules.model import BodyFormat, Severity

__all__ = [
    "ALLOWED_KEYS",
    "DEFAULT_ORCHESTRATOR_SCOPES",
    "ENRICH_PARTS",
    "NAME_CHARS",
    "AbsenceSpec",
    "BudgetSpec",
    "ChannelSpec",
    "CollapseSpec",
    "DateRangeSpec",
    "Duration",
    "EnrichSpec",
    "ExpectSpec",
    "FileSpec",
    "FrequencySpec",
    "GroupSpec",
    "HeartbeatSpec",
    "InhibitSpec",
    "OrchestratorSpec",
    "RecoverSpec",
    "RedactPatternSpec",
    "RedactSpec",
    "RuleSpec",
    "SilenceSpec",
    "SourceSpec",
    "ThrottleSpec",
    "WeeklySpec",
    "parse_duration",
]

# Names are stored in indexed columns (deliveries, noise state): bounded far below PostgreSQL's entry limit.
NAME_CHARS = 200
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> timedelta:
    """Read ``30s``, ``5m``, ``2h``, ``1d``, ``1w``, ``250ms`` or a number of seconds.

    Raises:
        ValueError: anything else, or a negative or zero duration.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[(m.group(2) or "s").lower()]
    else:
        raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 5m, 2h, 1d or a number of seconds")
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{value!r} is too long a duration") from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _empty_if_null(default: Any) -> Any:
    # `channels:` with every entry commented out is null in YAML: read it as empty.
    return BeforeValidator(lambda value: default() if value is None else value)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class BudgetSpec(_Spec):
    """``channels.<name>.budget:``: at most ``max`` notifications per ``per``, the rest in one digest."""

    max: int = Field(ge=1, le=100_000)
    per: Duration


class ChannelSpec(_Spec):
    """A channel written as a mapping (a plain string is its ``url``)."""

    url: str = Field(min_length=1)
    max_attempts: int = Field(default=100, ge=1, le=1000)
    max_age: Duration = timedelta(hours=24)
    concurrency: int = Field(default=4, ge=1, le=256)
    timeout: Duration = timedelta(seconds=30)
    budget: BudgetSpec | None = None


DEFAULT_ORCHESTRATOR_SCOPES = ("OR.Webhooks",)
"""What the Orchestrator features need: webhooks read, edit, create and Ping (Ping wants the write scope)."""


def _split_scopes(value: Any) -> Any:
    return value.split() if isinstance(value, str) else value


class HeartbeatSpec(_Spec):
    """``sources.<name>.orchestrator.heartbeat:``, the end-to-end check of the webhook path."""

    every: Duration = timedelta(minutes=5)
    within: Duration = timedelta(minutes=1)
    notify: Annotated[list[str], BeforeValidator(_as_list)] = Field(min_length=1)
    auto_enable: bool = False
    health_every: Duration = timedelta(minutes=5)


class RecoverySpec(_Spec):
    """``sources.<name>.orchestrator.recovery:``, gap recovery in the background."""

    every: Duration = timedelta(minutes=10)
    lookback: Duration = timedelta(hours=24)


class OrchestratorSpec(_Spec):
    """``sources.<name>.orchestrator:``, the connection back to Orchestrator; values are expanded by the loader."""

    url: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    scopes: Annotated[list[str], BeforeValidator(_split_scopes)] = Field(
        default_factory=lambda: list(DEFAULT_ORCHESTRATOR_SCOPES), min_length=1
    )
    public_url: str = Field(min_length=1)
    token_url: str | None = None
    web_url: str | None = None
    timeout: Duration = timedelta(seconds=10)
    heartbeat: HeartbeatSpec | None = None
    recovery: RecoverySpec | None = None


class ExpectSpec(_Spec):
    """``sources.<name>.expect:``: alert once when no event arrived for ``every`` within ``during``."""

    every: Duration
    during: Annotated[list[str], BeforeValidator(_as_list)] = Field(default_factory=list)
    timezone: str | None = None
    notify: Annotated[list[str], BeforeValidator(_as_list)] = Field(min_length=1)


class SourceSpec(_Spec):
    """A webhook / robot-log source."""

    secrets: list[str] = Field(default_factory=list)
    logs_token: str | None = None
    insecure: bool = False
    accept_hex_signature: bool = False
    orchestrator: OrchestratorSpec | None = None
    expect: ExpectSpec | None = None


class ThrottleSpec(_Spec):
    """``throttle:`` of a rule."""

    interval: Duration
    key: str | None = None


class GroupSpec(_Spec):
    """``group:`` of a rule."""

    by: Annotated[list[Any], BeforeValidator(_as_list)] = Field(default_factory=list)
    wait: Duration = timedelta(seconds=30)
    interval: Duration = timedelta(minutes=5)


class FrequencySpec(_Spec):
    """``frequency:`` of a rule."""

    count: int = Field(ge=2, le=100_000)
    within: Duration
    key: str | None = None


class AbsenceSpec(_Spec):
    """``absence:`` of a rule; ``expect`` is a match block, compiled by the loader."""

    expect: Any
    within: Duration
    key: str | None = None


class RecoverSpec(_Spec):
    """``recover:`` of a rule (``recover: true`` is read as ``{}``); ``match`` is compiled by the loader."""

    match: Any = None
    key: str | None = None
    title: str | None = None
    body: str | None = None


ENRICH_PARTS = ("job", "logs", "arguments")
"""What ``enrich:`` may ask Orchestrator for: the job, its Error/Fatal log lines, its input arguments."""

EnrichPart = Literal["job", "logs", "arguments"]


def _job_and_logs() -> list[EnrichPart]:
    return ["job", "logs"]


class EnrichSpec(_Spec):
    """``enrich:`` of a rule or of the file: what to ask Orchestrator about the event before it is sent.

    Written as a list (``enrich: [job, logs]``), a mapping (``{with: [job, logs], log_lines: 5,
    budget: 3s}``), ``true`` (job and logs) or ``false`` / ``[]`` (none).
    """

    with_: Annotated[list[Annotated[EnrichPart, BeforeValidator(_lower)]], BeforeValidator(_as_list)] = Field(
        default_factory=_job_and_logs, alias="with"
    )
    log_lines: int = Field(default=5, ge=1, le=50)
    budget: Duration = Field(default=timedelta(seconds=3), le=timedelta(seconds=30))


def _enrich(value: Any) -> Any:
    # A list is what to fetch; true means the defaults; false means nothing (and overrides a file default).
    if value is True:
        return {}
    if value is False:
        return {"with": []}
    if isinstance(value, list | str):
        return {"with": value}
    return value


def _recover(value: Any) -> Any:
    # `recover: true` means "the absence's expect clears it"; false means no recovery.
    if value is True:
        return {}
    if value is False:
        return None
    return value


class EscalationSpec(_Spec):
    """One step of a rule's ``escalate:``: after how long an unacknowledged alert notifies which channels."""

    after: Duration
    notify: Annotated[list[str], BeforeValidator(_as_list)] = Field(min_length=1)


class RuleSpec(_Spec):
    """One rule as written."""

    name: str = Field(min_length=1, max_length=NAME_CHARS)
    description: str | None = None
    match: Any = None
    notify: Annotated[list[str], BeforeValidator(_as_list)]
    continue_: bool = Field(default=False, alias="continue")
    title: str | None = None
    body: str | None = None
    severity: Annotated[Severity | None, BeforeValidator(_lower)] = None
    format: Annotated[BodyFormat, BeforeValidator(_lower)] = "text"
    throttle: ThrottleSpec | None = None
    group: GroupSpec | None = None
    frequency: FrequencySpec | None = None
    absence: AbsenceSpec | None = None
    recover: Annotated[RecoverSpec | None, BeforeValidator(_recover)] = None
    share_across_sources: bool = False
    enrich: Annotated[EnrichSpec | None, BeforeValidator(_enrich)] = None
    repeat: Duration | None = None
    escalate: list[EscalationSpec] = Field(default_factory=list, max_length=20)
    actions: Annotated[list[Literal["retry"]], BeforeValidator(_as_list)] = Field(default_factory=list)
    resolve_after: Duration = timedelta(hours=24)


class WeeklySpec(_Spec):
    """One weekly window of a silence; days and times are read by the loader."""

    days: Any = "mon-sun"
    from_: Any = Field(alias="from")
    to: Any


class DateRangeSpec(_Spec):
    """One date range of a silence; read by the loader."""

    from_: Any = Field(alias="from")
    to: Any


class SilenceSpec(_Spec):
    """A maintenance window (``silences:``)."""

    name: str = Field(min_length=1, max_length=NAME_CHARS)
    comment: str | None = None
    match: Any = None
    rules: Annotated[list[str], BeforeValidator(_as_list)] = Field(default_factory=list)
    timezone: str | None = None
    weekly: list[WeeklySpec] = Field(default_factory=list)
    dates: list[DateRangeSpec] = Field(default_factory=list)


class InhibitSpec(_Spec):
    """An inhibition (``inhibit:``)."""

    name: str = Field(min_length=1, max_length=NAME_CHARS)
    source: Any = None
    source_rule: str | None = None
    target: Any
    equal: Annotated[list[Any], BeforeValidator(_as_list)] = Field(default_factory=list)
    until: Any = None
    duration: Duration = timedelta(hours=1)
    note: str | None = None
    share_across_sources: bool = False


class CollapseSpec(_Spec):
    """Folder fan-out collapse (``collapse:``)."""

    window: Duration = timedelta(seconds=30)
    types: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        default_factory=lambda: ["queue.*", "queueItem.*"], min_length=1
    )


class RedactPatternSpec(_Spec):
    """A user's pattern of ``redact:`` (RE2 syntax)."""

    name: str = Field(min_length=1, max_length=NAME_CHARS)
    regex: str = Field(min_length=1)
    replacement: str | None = Field(default=None, max_length=200)


class RedactSpec(_Spec):
    """Redaction (``redact:``): built-in pattern names and user regexes, applied to message text."""

    # Items are checked one by one by the loader (a built-in's name, or a RedactPatternSpec mapping).
    patterns: Annotated[list[Any], BeforeValidator(_as_list)] = Field(min_length=1)
    replacement: str = Field(default="[redacted:{name}]", max_length=200)


class FileSpec(_Spec):
    """The top level of the file; the items are validated one by one afterwards."""

    channels: Annotated[dict[str, Any], _empty_if_null(dict)] = Field(default_factory=dict)
    sources: Annotated[dict[str, Any], _empty_if_null(dict)] = Field(default_factory=dict)
    rules: Annotated[list[Any], _empty_if_null(list)] = Field(default_factory=list)
    orchestrator_url: str | None = None
    timezone: str = "UTC"
    silences: Annotated[list[Any], _empty_if_null(list)] = Field(default_factory=list)
    inhibit: Annotated[list[Any], _empty_if_null(list)] = Field(default_factory=list)
    collapse: Any = None
    enrich: Annotated[EnrichSpec | None, BeforeValidator(_enrich)] = None
    redact: Any = None


# Keys of each part, for did-you-mean on unknown keys.
ALLOWED_KEYS: dict[str, tuple[str, ...]] = {
    "file": tuple(FileSpec.model_fields),
    "channel": tuple(ChannelSpec.model_fields),
    "budget": tuple(BudgetSpec.model_fields),
    "source": tuple(SourceSpec.model_fields),
    "expect": tuple(ExpectSpec.model_fields),
    "orchestrator": tuple(OrchestratorSpec.model_fields),
    "heartbeat": tuple(HeartbeatSpec.model_fields),
    "recovery": tuple(RecoverySpec.model_fields),
    "rule": tuple(f.alias or name for name, f in RuleSpec.model_fields.items()),
    "throttle": tuple(ThrottleSpec.model_fields),
    "group": tuple(GroupSpec.model_fields),
    "frequency": tuple(FrequencySpec.model_fields),
    "absence": tuple(AbsenceSpec.model_fields),
    "recover": tuple(RecoverSpec.model_fields),
    "escalate": tuple(EscalationSpec.model_fields),
    "silence": tuple(f.alias or name for name, f in SilenceSpec.model_fields.items()),
    "weekly": tuple(f.alias or name for name, f in WeeklySpec.model_fields.items()),
    "dates": tuple(f.alias or name for name, f in DateRangeSpec.model_fields.items()),
    "inhibit": tuple(InhibitSpec.model_fields),
    "collapse": tuple(CollapseSpec.model_fields),
    "enrich": tuple(f.alias or name for name, f in EnrichSpec.model_fields.items()),
    "redact": tuple(RedactSpec.model_fields),
    "patterns": tuple(RedactPatternSpec.model_fields),
}
