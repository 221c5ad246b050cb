"""Models of the entities nested in webhook payloads: jobs, robots, queues, queue items, sessions...

Field sets follow the reference (section 3): the 2018 documentation examples plus what the
OpenAPI schema added up to 2025. Every field is optional, because Orchestrator omits null
properties inconsistently (missing == null), and unknown fields are ignored.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field

from receiver.events.base import (
    JsonBag,
    LenientJobSource,
    LenientJobState,
    LenientJobType,
    LenientProcessingExceptionType,
    LenientProcessingStatus,
    LenientReviewStatus,
    LenientRobotState,
    PayloadModel,
    UtcDatetime,
)
from receiver.events.enums import RobotState

__all__ = [
    "Environment",
    "Job",
    "JobError",
    "Machine",
    "ProcessSchedule",
    "ProcessingException",
    "Queue",
    "QueueItem",
    "QueueItemError",
    "Release",
    "Robot",
    "Session",
    "StartInfo",
    "Task",
]


class Environment(PayloadModel):
    """A robot environment (classic folders)."""

    id: int | None = None
    name: str | None = None
    description: str | None = None


class Machine(PayloadModel):
    """The machine (template) a job ran on (``Job.Machine``)."""

    id: int | None = None
    key: str | None = None
    name: str | None = None
    service_user_name: str | None = None
    type: str | None = None
    scope: str | None = None


class Robot(PayloadModel):
    """A robot: the reduced ``Job.Robot``/``QueueItem.Robot`` or a full ``Robots[]`` entry."""

    id: int | None = None
    key: str | None = None
    name: str | None = None
    machine_id: int | None = None
    machine_key: str | None = None
    machine_name: str | None = None
    description: str | None = None
    version: str | None = None
    user_name: str | None = None
    type: str | None = None
    hosting_type: str | None = None
    local_system_account: str | None = None
    environments: list[Environment] | None = None
    execution_settings: JsonBag = None


class Release(PayloadModel):
    """A process ("release" internally): ``Job.Release``, ``ProcessSchedule.Release``, ``Releases[]``."""

    id: int | None = None
    key: str | None = None
    process_key: str | None = None
    process_version: str | None = None
    name: str | None = None
    display_name: str | None = None
    description: str | None = None
    is_latest_version: bool | None = None
    process_type: str | None = None
    target_runtime: str | None = None
    environment_id: str | None = None
    environment: Environment | None = None
    input_arguments: JsonBag = None
    tags: JsonBag = None

    @property
    def label(self) -> str | None:
        """The process name for people: ProcessKey (package id), else Name, else DisplayName."""
        return self.process_key or self.name or self.display_name


class JobError(PayloadModel):
    """The 2025 ``Job.Error`` object (camelCase on the wire; any casing is accepted)."""

    code: str | None = None
    title: str | None = None
    detail: str | None = None
    category: str | None = None
    status: int | None = None
    timestamp: UtcDatetime | None = None


class Job(PayloadModel):
    """A job: the full shape of ``job.created`` and the slim shape of every other job event."""

    id: int | None = None
    key: str | None = None
    state: LenientJobState = None
    job_sub_state: str | None = None
    source: str | None = None
    source_type: LenientJobSource = None
    type: LenientJobType = None
    batch_execution_key: str | None = None
    release_name: str | None = None
    info: str | None = None
    creation_time: UtcDatetime | None = None
    start_time: UtcDatetime | None = None
    end_time: UtcDatetime | None = None
    resume_time: UtcDatetime | None = None
    host_machine_name: str | None = None
    runtime_type: str | None = None
    process_type: str | None = None
    specific_priority_value: int | None = None
    starting_schedule_id: int | None = None
    project_key: str | None = None
    serverless_job_type: str | None = None
    creator_user_key: str | None = None
    parent_job_key: str | None = None
    entry_point_path: str | None = None
    error_code: str | None = None
    error: JobError | None = None
    robot: Robot | None = None
    machine: Machine | None = None
    release: Release | None = None
    input_arguments: JsonBag = None
    output_arguments: JsonBag = None


class StartInfo(PayloadModel):
    """How ``job.created`` jobs were requested."""

    release_key: str | None = None
    strategy: str | None = None
    robot_ids: list[int] | None = None
    jobs_count: int | None = None
    source: str | None = None


class Queue(PayloadModel):
    """A queue definition: ``Queue`` of queue item events, ``Queues[]`` of queue events."""

    id: int | None = None
    key: str | None = None
    name: str | None = None
    description: str | None = None
    max_number_of_retries: int | None = None
    accept_automatically_retry: bool | None = None
    enforce_unique_reference: bool | None = None
    retry_abandoned_items: bool | None = None
    sla_in_minutes: int | None = None
    risk_sla_in_minutes: int | None = None
    release_key: str | None = None
    tags: JsonBag = None


class ProcessingException(PayloadModel):
    """Why a queue item failed. ``type`` tells business from application exceptions."""

    reason: str | None = None
    details: str | None = None
    type: LenientProcessingExceptionType = None
    timestamp: UtcDatetime | None = None
    associated_image_file_path: str | None = None


class QueueItemError(PayloadModel):
    """The 2025 ``QueueItem.Error`` object."""

    code: str | None = None
    title: str | None = None
    detail: str | None = None
    category: str | None = None
    timestamp: UtcDatetime | None = None


class QueueItem(PayloadModel):
    """A queue item (transaction). All retries of one item share ``key``."""

    id: int | None = None
    key: str | None = None
    queue_definition_id: int | None = None
    status: LenientProcessingStatus = None
    review_status: LenientReviewStatus = None
    processing_exception: ProcessingException | None = None
    error: QueueItemError | None = None
    priority: str | None = None
    reference: str | None = None
    creation_time: UtcDatetime | None = None
    start_processing: UtcDatetime | None = None
    end_processing: UtcDatetime | None = None
    due_date: UtcDatetime | None = None
    defer_date: UtcDatetime | None = None
    risk_sla_date: UtcDatetime | None = None
    seconds_in_previous_attempts: int | None = None
    retry_number: int | None = None
    manual_retry_number: int | None = None
    ancestor_id: int | None = None
    unique_key: str | None = None
    creator_job_id: int | None = None
    creator_job_key: str | None = None
    executor_job_id: int | None = None
    executor_job_key: str | None = None
    reviewer_user_id: int | None = None
    source: str | None = None
    progress: str | None = None
    robot: Robot | None = None
    specific_content: JsonBag = None
    output: JsonBag = None
    analytics_data: JsonBag = None


class Session(PayloadModel):
    """One robot session of ``robot.status``. ``RobotName``/``MachineName`` are not documented but used if sent."""

    session_id: int | None = None
    robot_id: int | None = None
    robot_name: str | None = None
    machine_id: int | None = None
    machine_key: str | None = None
    machine_name: str | None = None
    host_machine_name: str | None = None
    service_username: str | None = None
    state: LenientRobotState = None
    reporting_time: UtcDatetime | None = None
    is_unresponsive: bool | None = None
    license_error_code: str | None = None

    @property
    def is_down(self) -> bool:
        """True when the robot is Disconnected or unresponsive (Orchestrator's "robot down")."""
        return self.state == RobotState.Disconnected or self.is_unresponsive is True


class ProcessSchedule(PayloadModel):
    """A trigger (``schedule.failed``'s ``ProcessSchedule``). ``EnvironmentId`` is a string on the wire."""

    id: int | None = None
    key: str | None = None
    name: str | None = None
    enabled: bool | None = None
    release_name: str | None = None
    environment_id: str | None = None
    environment_name: str | None = None
    start_process_cron: str | None = None
    start_strategy: str | None = None
    stop_strategy: str | None = None
    external_job_key: str | None = None
    external_job_key_scheduler: str | None = None
    time_zone_id: str | None = None
    time_zone_iana: str | None = None
    use_calendar: bool | None = None
    calendar_id: int | None = None
    release: Release | None = None
    executor_robots: JsonBag = None
    machine_robots: JsonBag = None
    input_arguments: JsonBag = None


class Task(PayloadModel):
    """An Action Center task (``Tasks[]`` of task events)."""

    id: int | None = None
    key: str | None = None
    title: str | None = None
    type: str | None = None
    priority: str | None = None
    status: str | None = None
    creation_time: UtcDatetime | None = None
    task_catalog_name: str | None = None
    organization_unit_id: int | None = Field(
        default=None, validation_alias=AliasChoices("OrganizationUnitId", "FolderId")
    )
    assigned_to_user_id: int | None = None
    assigned_to_user_id_old_value: int | None = None
    forwarded_by_user_id: int | None = None
    deleter_user_id: int | None = None
    deletion_time: UtcDatetime | None = None
    action: str | None = None
    external_tag: str | None = None
    tags: JsonBag = None
