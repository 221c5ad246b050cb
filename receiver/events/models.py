"""The webhook event classes, one per Orchestrator ``Type``, grouped in families with shared handles.

Every event is a frozen pydantic model named after its Orchestrator type plus ``Event``
(``job.faulted`` -> ``JobFaultedEvent``). A family base (``JobEvent``, ``QueueItemEvent``...)
holds the payload shape and computes the handles from it; the concrete classes only name
their type.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import AliasChoices, Field

from receiver.events.base import JsonBag, Many
from receiver.events.enums import JobState, ProcessingExceptionType, RobotState
from receiver.events.event import Event, key_or_id
from receiver.events.payloads import Job, ProcessSchedule, Queue, QueueItem, Release, Robot, Session, StartInfo, Task

__all__ = [
    "CustomEvent",
    "JobCompletedEvent",
    "JobCreatedEvent",
    "JobEvent",
    "JobFaultedEvent",
    "JobResumedEvent",
    "JobStartedEvent",
    "JobStoppedEvent",
    "JobStoppingEvent",
    "JobSuspendedEvent",
    "JobTerminatingEvent",
    "PingEvent",
    "ProcessCreatedEvent",
    "ProcessDeletedEvent",
    "ProcessEvent",
    "ProcessUpdatedEvent",
    "QueueCreatedEvent",
    "QueueDeletedEvent",
    "QueueEvent",
    "QueueItemAddedEvent",
    "QueueItemDeferredEvent",
    "QueueItemDeletedEvent",
    "QueueItemEvent",
    "QueueItemRetriedEvent",
    "QueueItemReviewStatusChangedEvent",
    "QueueItemTransactionAbandonedEvent",
    "QueueItemTransactionCompletedEvent",
    "QueueItemTransactionFailedEvent",
    "QueueItemTransactionStartedEvent",
    "QueueItemUpdatedEvent",
    "QueueUpdatedEvent",
    "RobotCreatedEvent",
    "RobotDeletedEvent",
    "RobotEvent",
    "RobotStatusEvent",
    "RobotUpdatedEvent",
    "ScheduleFailedEvent",
    "TaskAssignmentChangedEvent",
    "TaskCompletedEvent",
    "TaskCreatedEvent",
    "TaskDeletedEvent",
    "TaskEvent",
    "TaskForwardedEvent",
    "TaskSavedEvent",
    "TaskUpdatedEvent",
]


# --- jobs -------------------------------------------------------------------------------


class JobEvent(Event):
    """Base of the ``job.*`` events. ``Job`` and ``Jobs`` (object or array) both land in ``jobs``."""

    jobs: Many[Job] = Field(default_factory=list, validation_alias=AliasChoices("Jobs", "Job"))
    start_info: StartInfo | None = None

    @property
    def job(self) -> Job | None:
        """The first job, or None."""
        return self.jobs[0] if self.jobs else None

    @property
    def job_state(self) -> JobState | str | None:
        """State of the first job."""
        job = self.job
        return None if job is None else job.state

    @property
    def job_key(self) -> str | None:
        """Key of the first job."""
        job = self.job
        return None if job is None else job.key

    @property
    def job_id(self) -> int | None:
        """Id of the first job."""
        job = self.job
        return None if job is None else job.id

    @property
    def process(self) -> str | None:
        """Release.ProcessKey, else Release.Name/DisplayName, else ReleaseName (job.created)."""
        job = self.job
        if job is None:
            return None
        label = None if job.release is None else job.release.label
        return label or job.release_name

    @property
    def robot(self) -> str | None:
        """Robot.Name of the first job (None for modern-folder jobs not yet assigned)."""
        job = self.job
        return None if job is None or job.robot is None else job.robot.name

    @property
    def machine(self) -> str | None:
        """HostMachineName, else Robot.MachineName, else Machine.Name.

        The host comes first because in modern folders Machine.Name is often a machine
        template shared by many hosts; the person on call needs the host to look at.
        """
        job = self.job
        if job is None:
            return None
        return (
            job.host_machine_name
            or (job.robot.machine_name if job.robot else None)
            or (job.machine.name if job.machine else None)
        )

    @property
    def message(self) -> str | None:
        """``Job.Info`` (for faults: the exception message and stack)."""
        job = self.job
        return None if job is None else job.info

    @property
    def entity_key(self) -> str | None:
        """The first job's Key."""
        job = self.job
        return (job.key if job is not None else None) or self.event_key


class JobCreatedEvent(JobEvent):
    """``job.created``: ``Jobs`` array (full job shape) plus ``StartInfo``."""

    event_type: ClassVar[str] = "job.created"


class JobStartedEvent(JobEvent):
    """``job.started``."""

    event_type: ClassVar[str] = "job.started"


class JobCompletedEvent(JobEvent):
    """``job.completed`` (State Successful)."""

    event_type: ClassVar[str] = "job.completed"


class JobFaultedEvent(JobEvent):
    """``job.faulted`` (State Faulted; ``Info`` holds the error)."""

    event_type: ClassVar[str] = "job.faulted"


class JobStoppedEvent(JobEvent):
    """``job.stopped``: note the ``Jobs`` array."""

    event_type: ClassVar[str] = "job.stopped"


class JobSuspendedEvent(JobEvent):
    """``job.suspended``."""

    event_type: ClassVar[str] = "job.suspended"


class JobResumedEvent(JobEvent):
    """``job.resumed`` (since 2023-09)."""

    event_type: ClassVar[str] = "job.resumed"


class JobStoppingEvent(JobEvent):
    """``job.stopping`` (since 2023-09)."""

    event_type: ClassVar[str] = "job.stopping"


class JobTerminatingEvent(JobEvent):
    """``job.terminating`` (since 2023-09)."""

    event_type: ClassVar[str] = "job.terminating"


# --- robots -----------------------------------------------------------------------------


class RobotEvent(Event):
    """Base of ``robot.created``/``updated``/``deleted``: the ``Robots`` array."""

    robots: Many[Robot] = Field(default_factory=list, validation_alias=AliasChoices("Robots", "Robot"))

    @property
    def robot(self) -> str | None:
        """Name of the first robot."""
        return self.robots[0].name if self.robots else None

    @property
    def machine(self) -> str | None:
        """MachineName of the first robot."""
        return self.robots[0].machine_name if self.robots else None

    @property
    def entity_key(self) -> str | None:
        """Key (else Id) of the first robot."""
        if not self.robots:
            return self.event_key
        return key_or_id(self.robots[0].key, self.robots[0].id) or self.event_key


class RobotCreatedEvent(RobotEvent):
    """``robot.created``."""

    event_type: ClassVar[str] = "robot.created"


class RobotUpdatedEvent(RobotEvent):
    """``robot.updated``."""

    event_type: ClassVar[str] = "robot.updated"


class RobotDeletedEvent(RobotEvent):
    """``robot.deleted``."""

    event_type: ClassVar[str] = "robot.deleted"


class RobotStatusEvent(Event):
    """``robot.status``: robot availability changes, one ``Sessions`` entry per robot session.

    There is no robot.up/robot.down event: a robot is down when a session's State is
    Disconnected or IsUnresponsive is true (see ``robot_down``).
    """

    event_type: ClassVar[str] = "robot.status"

    sessions: Many[Session] = Field(default_factory=list, validation_alias=AliasChoices("Sessions", "Session"))

    @property
    def session(self) -> Session | None:
        """The first session, or None."""
        return self.sessions[0] if self.sessions else None

    @property
    def robot(self) -> str | None:
        """The session's RobotName if sent, else its RobotId as a string."""
        session = self.session
        if session is None:
            return None
        return session.robot_name or (None if session.robot_id is None else str(session.robot_id))

    @property
    def machine(self) -> str | None:
        """HostMachineName of the first session."""
        session = self.session
        return None if session is None else session.host_machine_name or session.machine_name

    @property
    def robot_state(self) -> RobotState | str | None:
        """State of the first session."""
        session = self.session
        return None if session is None else session.state

    @property
    def is_unresponsive(self) -> bool | None:
        """IsUnresponsive of the first session."""
        session = self.session
        return None if session is None else session.is_unresponsive

    @property
    def robot_down(self) -> bool:
        """True when any session is Disconnected or unresponsive."""
        return any(session.is_down for session in self.sessions)

    @property
    def entity_key(self) -> str | None:
        """RobotId of the first session, as a string."""
        session = self.session
        if session is None or session.robot_id is None:
            return self.event_key
        return str(session.robot_id)


# --- queues and queue items -------------------------------------------------------------


class QueueEvent(Event):
    """Base of ``queue.created``/``updated``/``deleted``: the ``Queues`` array."""

    queues: Many[Queue] = Field(default_factory=list, validation_alias=AliasChoices("Queues", "Queue"))
    folder_keys: list[str] | None = None

    @property
    def queue(self) -> str | None:
        """Name of the first queue."""
        return self.queues[0].name if self.queues else None

    @property
    def entity_key(self) -> str | None:
        """Key (else Id) of the first queue."""
        if not self.queues:
            return self.event_key
        return key_or_id(self.queues[0].key, self.queues[0].id) or self.event_key


class QueueCreatedEvent(QueueEvent):
    """``queue.created``."""

    event_type: ClassVar[str] = "queue.created"


class QueueUpdatedEvent(QueueEvent):
    """``queue.updated``."""

    event_type: ClassVar[str] = "queue.updated"


class QueueDeletedEvent(QueueEvent):
    """``queue.deleted``."""

    event_type: ClassVar[str] = "queue.deleted"


class QueueItemEvent(Event):
    """Base of the ``queueItem.*`` events. ``QueueItem`` and ``QueueItems`` both land in ``queue_items``."""

    queue_definition: Queue | None = Field(default=None, alias="Queue")
    queue_items: Many[QueueItem] = Field(default_factory=list, validation_alias=AliasChoices("QueueItems", "QueueItem"))

    @property
    def queue_item(self) -> QueueItem | None:
        """The first queue item, or None."""
        return self.queue_items[0] if self.queue_items else None

    @property
    def queue(self) -> str | None:
        """``Queue.Name``."""
        return None if self.queue_definition is None else self.queue_definition.name

    @property
    def robot(self) -> str | None:
        """Robot.Name of the first item (present once a robot processed it)."""
        item = self.queue_item
        return None if item is None or item.robot is None else item.robot.name

    @property
    def machine(self) -> str | None:
        """Robot.MachineName of the first item."""
        item = self.queue_item
        return None if item is None or item.robot is None else item.robot.machine_name

    @property
    def message(self) -> str | None:
        """ProcessingException.Reason of the first item, else its Error.Title."""
        item = self.queue_item
        if item is None:
            return None
        if item.processing_exception is not None and item.processing_exception.reason:
            return item.processing_exception.reason
        return None if item.error is None else item.error.title

    @property
    def exception_type(self) -> ProcessingExceptionType | str | None:
        """ProcessingException.Type of the first item."""
        item = self.queue_item
        if item is None or item.processing_exception is None:
            return None
        return item.processing_exception.type

    @property
    def entity_key(self) -> str | None:
        """Key (else Id) of the first item; all retries of an item share the Key."""
        item = self.queue_item
        if item is None:
            return self.event_key
        return key_or_id(item.key, item.id) or self.event_key


class QueueItemAddedEvent(QueueItemEvent):
    """``queueItem.added``."""

    event_type: ClassVar[str] = "queueItem.added"


class QueueItemTransactionStartedEvent(QueueItemEvent):
    """``queueItem.transactionStarted``."""

    event_type: ClassVar[str] = "queueItem.transactionStarted"


class QueueItemTransactionCompletedEvent(QueueItemEvent):
    """``queueItem.transactionCompleted``."""

    event_type: ClassVar[str] = "queueItem.transactionCompleted"


class QueueItemTransactionFailedEvent(QueueItemEvent):
    """``queueItem.transactionFailed``; ``exception_type`` tells business from application failures."""

    event_type: ClassVar[str] = "queueItem.transactionFailed"


class QueueItemTransactionAbandonedEvent(QueueItemEvent):
    """``queueItem.transactionAbandoned`` (``QueueItems`` array)."""

    event_type: ClassVar[str] = "queueItem.transactionAbandoned"


class QueueItemDeferredEvent(QueueItemEvent):
    """``queueItem.deferred`` (since 2025-09)."""

    event_type: ClassVar[str] = "queueItem.deferred"


class QueueItemDeletedEvent(QueueItemEvent):
    """``queueItem.deleted`` (since 2025-09)."""

    event_type: ClassVar[str] = "queueItem.deleted"


class QueueItemRetriedEvent(QueueItemEvent):
    """``queueItem.retried`` (since 2025-09)."""

    event_type: ClassVar[str] = "queueItem.retried"


class QueueItemUpdatedEvent(QueueItemEvent):
    """``queueItem.updated`` (since 2025-09)."""

    event_type: ClassVar[str] = "queueItem.updated"


class QueueItemReviewStatusChangedEvent(QueueItemEvent):
    """``queueItem.reviewStatusChanged`` (since 2025-09)."""

    event_type: ClassVar[str] = "queueItem.reviewStatusChanged"


# --- processes, schedules, tasks, ping, custom ------------------------------------------


class ProcessEvent(Event):
    """Base of ``process.created``/``updated``/``deleted``: the ``Releases`` array."""

    releases: Many[Release] = Field(default_factory=list, validation_alias=AliasChoices("Releases", "Release"))

    @property
    def process(self) -> str | None:
        """ProcessKey (else Name) of the first release."""
        return self.releases[0].label if self.releases else None

    @property
    def entity_key(self) -> str | None:
        """Key (else Id) of the first release."""
        if not self.releases:
            return self.event_key
        return key_or_id(self.releases[0].key, self.releases[0].id) or self.event_key


class ProcessCreatedEvent(ProcessEvent):
    """``process.created``."""

    event_type: ClassVar[str] = "process.created"


class ProcessUpdatedEvent(ProcessEvent):
    """``process.updated``."""

    event_type: ClassVar[str] = "process.updated"


class ProcessDeletedEvent(ProcessEvent):
    """``process.deleted``."""

    event_type: ClassVar[str] = "process.deleted"


class ScheduleFailedEvent(Event):
    """``schedule.failed``: a trigger could not create its job; ``Reason`` says why."""

    event_type: ClassVar[str] = "schedule.failed"

    process_schedule: ProcessSchedule | None = None
    reason: str | None = None

    @property
    def process(self) -> str | None:
        """The schedule's Release.ProcessKey (else its name), else the schedule's ReleaseName."""
        schedule = self.process_schedule
        if schedule is None:
            return None
        return (None if schedule.release is None else schedule.release.label) or schedule.release_name

    @property
    def message(self) -> str | None:
        """``Reason``."""
        return self.reason

    @property
    def entity_key(self) -> str | None:
        """Key (else Id) of the schedule."""
        schedule = self.process_schedule
        if schedule is None:
            return self.event_key
        return key_or_id(schedule.key, schedule.id) or self.event_key


class TaskEvent(Event):
    """Base of the ``task.*`` (Action Center) events: the ``Tasks`` array."""

    tasks: Many[Task] = Field(default_factory=list, validation_alias=AliasChoices("Tasks", "Task"))
    result_reference: JsonBag = None

    @property
    def task(self) -> Task | None:
        """The first task, or None."""
        return self.tasks[0] if self.tasks else None

    @property
    def folder(self) -> int | None:
        """The envelope's folder, else the first task's OrganizationUnitId."""
        if self.organization_unit_id is not None or not self.tasks:
            return self.organization_unit_id
        return self.tasks[0].organization_unit_id

    @property
    def message(self) -> str | None:
        """Title of the first task."""
        return self.tasks[0].title if self.tasks else None

    @property
    def entity_key(self) -> str | None:
        """Key (else Id) of the first task."""
        if not self.tasks:
            return self.event_key
        return key_or_id(self.tasks[0].key, self.tasks[0].id) or self.event_key


class TaskCreatedEvent(TaskEvent):
    """``task.created``."""

    event_type: ClassVar[str] = "task.created"


class TaskCompletedEvent(TaskEvent):
    """``task.completed`` (also carries ``ResultReference``)."""

    event_type: ClassVar[str] = "task.completed"


class TaskAssignmentChangedEvent(TaskEvent):
    """``task.assignmentChanged``."""

    event_type: ClassVar[str] = "task.assignmentChanged"


class TaskForwardedEvent(TaskEvent):
    """``task.forwarded``."""

    event_type: ClassVar[str] = "task.forwarded"


class TaskSavedEvent(TaskEvent):
    """``task.saved``."""

    event_type: ClassVar[str] = "task.saved"


class TaskDeletedEvent(TaskEvent):
    """``task.deleted``."""

    event_type: ClassVar[str] = "task.deleted"


class TaskUpdatedEvent(TaskEvent):
    """``task.updated`` (since 2024-08)."""

    event_type: ClassVar[str] = "task.updated"


class PingEvent(Event):
    """``ping``: sent when a webhook is created or updated, to test the URL. Envelope only."""

    event_type: ClassVar[str] = "ping"


class CustomEvent(Event):
    """``custom``: raised from a workflow; ``EventData`` is a free-form object."""

    event_type: ClassVar[str] = "custom"

    event_data: JsonBag = None
