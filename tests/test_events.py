"""Tests of receiver.events: webhook payload models, handles, enums and robot log entries."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from receiver.errors import EventParseError
from receiver.events import (
    EVENT_TYPES,
    AssetValueScope,
    AssetValueType,
    CustomEvent,
    Event,
    JobCompletedEvent,
    JobCreatedEvent,
    JobEvent,
    JobFaultedEvent,
    JobResumedEvent,
    JobSource,
    JobStartedEvent,
    JobState,
    JobStoppedEvent,
    JobStoppingEvent,
    JobSuspendedEvent,
    JobTerminatingEvent,
    JobType,
    LogLevel,
    PingEvent,
    ProcessingExceptionType,
    ProcessingStatus,
    ProcessUpdatedEvent,
    QueueItemAddedEvent,
    QueueItemEvent,
    QueueItemTransactionCompletedEvent,
    QueueItemTransactionFailedEvent,
    QueueItemTransactionStartedEvent,
    ReviewStatus,
    RobotLogEvent,
    RobotState,
    RobotStatusEvent,
    ScheduleFailedEvent,
    TaskCompletedEvent,
    TaskEvent,
    UnknownEvent,
    UserType,
    parse_event,
    parse_log_entries,
)

T = TypeVar("T")

DATA = Path(__file__).parent / "data"
VARIANTS = DATA / "variants"

# Free-form bags whose keys belong to the automation, never renamed by the casing tests.
BAGS = {"InputArguments", "OutputArguments", "SpecificContent", "Output", "EventData", "ExecutionSettings"}


def load(name: str) -> dict[str, Any]:
    """Return a fresh copy of a sample payload, so tests can edit it."""
    data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return data


def recase(value: Any, rename: Any) -> Any:
    """Rename every key of a payload with ``rename``, leaving free-form bags untouched."""
    if isinstance(value, dict):
        return {rename(k): (v if k in BAGS else recase(v, rename)) for k, v in value.items()}
    if isinstance(value, list):
        return [recase(item, rename) for item in value]
    return value


def camel(key: str) -> str:
    """Return ``key`` in lower camelCase."""
    return key[:1].lower() + key[1:]


def ts(text: str) -> datetime:
    """Return an aware datetime from an ISO string."""
    return datetime.fromisoformat(text)


# --- the samples ------------------------------------------------------------------------

SAMPLES = [
    pytest.param(
        "job.created.json",
        JobCreatedEvent,
        {
            "type": "job.created",
            "event_id": "6b1d4f0e2a9c4d7e8f1a2b3c4d5e6f70",
            "tenant": 1,
            "folder": None,
            "job_state": JobState.Pending,
            "job_key": "0f3c9a7e-2d41-4b8e-9c55-7a1e6d2b4f10",
            "job_id": 90211,
            "process": "InvoiceProcessing",
            "robot": "FIN-UNATT-01",
            "machine": "RPAVM01",
            "queue": None,
            "level": None,
            "entity_key": "0f3c9a7e-2d41-4b8e-9c55-7a1e6d2b4f10",
        },
        None,
        id="job.created",
    ),
    pytest.param(
        "job.started.json",
        JobStartedEvent,
        {"job_state": JobState.Running, "process": "InvoiceProcessing", "robot": "FIN-UNATT-01", "folder": 1},
        "Waiting for execution",
        id="job.started",
    ),
    pytest.param(
        "job.completed.json",
        JobCompletedEvent,
        {"job_state": JobState.Successful, "job_id": 90230, "robot": "FIN-UNATT-02", "machine": "RPAVM02"},
        "Job completed",
        id="job.completed",
    ),
    pytest.param(
        "job.faulted.json",
        JobFaultedEvent,
        {
            "job_state": JobState.Faulted,
            "job_key": "0f3c9a7e-2d41-4b8e-9c55-7a1e6d2b4f10",
            "process": "InvoiceProcessing",
            "robot": "FIN-UNATT-01",
            "machine": "RPAVM01",
            "tenant": 1,
            "folder": 1,
            "timestamp": ts("2019-03-14T09:24:52.660981+00:00"),
        },
        "Cannot find the UI element",
        id="job.faulted",
    ),
    pytest.param(
        "job.stopped.json",
        JobStoppedEvent,
        {"job_state": JobState.Stopped, "job_id": 90244, "process": "VendorMasterSync"},
        "Job canceled",
        id="job.stopped",
    ),
    pytest.param(
        "job.suspended.json",
        JobSuspendedEvent,
        {
            "event_id": "307415502",
            "job_state": JobState.Suspended,
            "process": "InvoiceApproval.Orchestration",
            "robot": "svc_rpa01-unattended",
            "machine": "RPAVM01",
            "folder": 28,
            "entity_key": "5b9d1f3a-7c2e-4a80-96b4-0d2f8a6c4e31",
        },
        "Job suspended",
        id="job.suspended",
    ),
    pytest.param(
        "ping.json",
        PingEvent,
        {
            "type": "ping",
            "job_state": None,
            "process": None,
            "robot": None,
            "queue": None,
            "level": None,
            "message": None,
            "entity_key": "9d6b3f1a-8c2e-4a57-b0d9-4e1f7c3a5b28",
        },
        None,
        id="ping",
    ),
    pytest.param(
        "process.updated.json",
        ProcessUpdatedEvent,
        {"process": "InvoiceProcessing", "robot": None, "entity_key": "5c8e2f31-7a44-4f0b-9d6e-1b2a3c4d5e6f"},
        None,
        id="process.updated",
    ),
    pytest.param(
        "queueItem.added.json",
        QueueItemAddedEvent,
        {"queue": "Invoices_IN", "robot": None, "entity_key": "c7d1e5a9-3b2f-4c80-a6e4-1f9b3d7c5a02"},
        None,
        id="queueItem.added",
    ),
    pytest.param(
        "queueItem.transactionStarted.json",
        QueueItemTransactionStartedEvent,
        {"queue": "Invoices_IN", "job_state": None},
        None,
        id="queueItem.transactionStarted",
    ),
    pytest.param(
        "queueItem.transactionCompleted.json",
        QueueItemTransactionCompletedEvent,
        {"queue": "Invoices_IN", "robot": "FIN-UNATT-01", "machine": "RPAVM01"},
        None,
        id="queueItem.transactionCompleted",
    ),
    pytest.param(
        "queueItem.transactionFailed.json",
        QueueItemTransactionFailedEvent,
        {
            "queue": "Invoices_IN",
            "robot": "FIN-UNATT-01",
            "exception_type": ProcessingExceptionType.BusinessException,
            "entity_key": "4b8f2c6e-0a1d-4e37-95b3-c7e1a9d5f240",
        },
        "Vendor is blocked",
        id="queueItem.transactionFailed",
    ),
    pytest.param(
        "robot.status.json",
        RobotStatusEvent,
        {"robot": "112", "machine": "RPAVM01", "robot_state": RobotState.Disconnected, "entity_key": "112"},
        None,
        id="robot.status",
    ),
    pytest.param(
        "schedule.failed.json",
        ScheduleFailedEvent,
        {"process": "InvoiceProcessing", "folder": 1, "entity_key": "214"},
        "The robots already have pending jobs",
        id="schedule.failed",
    ),
    pytest.param(
        "robot-log-error.json",
        RobotLogEvent,
        {
            "type": "robot.log",
            "level": LogLevel.Error,
            "process": "InvoiceProcessing",
            "robot": "svc_rpa01-unattended",
            "machine": "RPAVM01",
            "job_key": "a61f3d9b-2c7e-4b50-8d14-6e9a2c0f7b35",
            "folder": 28,
            "timestamp": ts("2025-06-03T07:43:40.982+00:00"),
        },
        "Invoice INV-20931: SAP login failed",
        id="robot-log-error",
    ),
]


SAMPLE_NAMES = [str(param.values[0]) for param in SAMPLES]
WEBHOOK_SAMPLE_NAMES = [name for name in SAMPLE_NAMES if not name.startswith("robot-log")]


def parse_sample(name: str) -> Event:
    """Parse a sample as a webhook, or as a robot log when its name says so."""
    raw = load(name)
    if name.startswith("robot-log"):
        (entry,) = parse_log_entries(raw)
        return entry
    return parse_event(raw)


class TestSamples:
    """Every sample payload parses into its class with the right handles."""

    @pytest.mark.parametrize(("name", "cls", "handles", "message_start"), SAMPLES)
    def test_sample_parses_with_handles(
        self, name: str, cls: type[Event], handles: dict[str, Any], message_start: str | None
    ) -> None:
        """The sample becomes its specific class and each listed handle has the expected value."""
        event = parse_sample(name)
        assert cls is type(event)
        assert handles == {handle: getattr(event, handle) for handle in handles}
        if message_start is None:
            assert None is event.message
        else:
            assert event.message is not None
            assert event.message.startswith(message_start)

    def test_every_sample_is_in_the_table(self) -> None:
        """The table covers every JSON file in tests/data, so a new sample cannot go untested."""
        files = {path.name for path in DATA.glob("*.json")}
        assert files == set(SAMPLE_NAMES)

    @pytest.mark.parametrize("name", SAMPLE_NAMES)
    def test_timestamp_is_aware(self, name: str) -> None:
        """Every sample's timestamp is timezone-aware."""
        event = parse_sample(name)
        assert event.timestamp is not None
        assert event.timestamp.tzinfo is not None

    def test_job_created_keeps_both_jobs_and_start_info(self) -> None:
        """job.created exposes all jobs, the first as ``job``, and its StartInfo."""
        event = parse_event(load("job.created.json"))
        assert isinstance(event, JobCreatedEvent)
        expected = [90211, 90212]
        assert expected == [job.id for job in event.jobs]
        assert event.job is event.jobs[0]
        assert event.start_info is not None
        expected = [112, 118]
        assert expected == event.start_info.robot_ids
        assert JobSource.Manual == event.jobs[0].source_type
        assert JobType.Unattended == event.jobs[0].type

    def test_queue_item_bags_are_kept(self) -> None:
        """SpecificContent and Output keep the automation's own keys and values."""
        event = parse_event(load("queueItem.transactionCompleted.json"))
        assert isinstance(event, QueueItemEvent)
        assert event.queue_item is not None
        expected = ({"SapDocumentNumber": "5100038214", "PostedOn": "2019-03-14"}, 1249.5)
        assert expected == (event.queue_item.output, event.queue_item.specific_content["Amount"])
        assert ProcessingStatus.Successful == event.queue_item.status
        assert ReviewStatus.NONE is event.queue_item.review_status

    def test_parse_does_not_mutate_the_input(self) -> None:
        """parse_event leaves the caller's dict as it was, even when it renames keys."""
        raw = recase(load("job.faulted.json"), str.lower)
        before = copy.deepcopy(raw)
        parse_event(raw)
        assert before == raw

    def test_events_are_frozen(self) -> None:
        """An event cannot be changed after parsing."""
        event = parse_event(load("ping.json"))
        with pytest.raises(ValidationError):
            event.event_id = "other"  # type: ignore[misc]


# --- variants built by editing the samples ----------------------------------------------


class TestVariants:
    """Shapes Orchestrator versions, the docs or other senders produce all parse the same way."""

    @pytest.mark.parametrize(
        "state",
        [
            pytest.param(4, id="int"),
            pytest.param("4", id="numeric-string"),
            pytest.param("faulted", id="lower-name"),
            pytest.param("FAULTED", id="upper-name"),
        ],
    )
    def test_numeric_and_recased_enum(self, state: Any) -> None:
        """Job.State as a number, a numeric string or a name in any casing is JobState.Faulted."""
        raw = load("job.faulted.json")
        raw["Job"]["State"] = state
        assert JobState.Faulted is parse_event(raw).job_state

    @pytest.mark.parametrize(
        "rename",
        [
            pytest.param(camel, id="camelCase"),
            pytest.param(str.lower, id="lowercase"),
            pytest.param(str.upper, id="UPPERCASE"),
        ],
    )
    @pytest.mark.parametrize("name", WEBHOOK_SAMPLE_NAMES)
    def test_key_casing(self, name: str, rename: Any) -> None:
        """Keys in another casing give the same event as PascalCase keys."""
        expected = parse_event(load(name))
        actual = parse_event(recase(load(name), rename))
        assert expected == actual

    def test_bag_keys_are_not_renamed(self) -> None:
        """Free-form bags keep the automation's key casing when the payload's keys are folded."""
        raw = recase(load("job.completed.json"), camel)
        raw["job"]["outputArguments"] = {"processedCount": 1, "ProcessedCount": 2}
        event = parse_event(raw)
        assert isinstance(event, JobEvent)
        assert event.job is not None
        expected = {"processedCount": 1, "ProcessedCount": 2}
        assert expected == event.job.output_arguments

    def test_exact_case_key_wins_over_folded_duplicate(self) -> None:
        """When a key is sent twice in different casings, the PascalCase one is used."""
        raw = load("job.faulted.json")
        raw["job"] = {"Id": 1, "State": "Running"}
        assert JobState.Faulted == parse_event(raw).job_state

    def test_jobs_as_object(self) -> None:
        """``Jobs`` as one object (2023 docs) is read as a one-job list."""
        raw = load("job.created.json")
        raw["Jobs"] = raw["Jobs"][0]
        event = parse_event(raw)
        assert isinstance(event, JobCreatedEvent)
        expected = [90211]
        assert expected == [job.id for job in event.jobs]

    def test_job_as_array(self) -> None:
        """``Job`` as an array is read like ``Jobs``."""
        raw = load("job.faulted.json")
        raw["Job"] = [raw["Job"]]
        assert JobState.Faulted == parse_event(raw).job_state

    def test_stopped_jobs_as_singular_job(self) -> None:
        """job.stopped with a singular ``Job`` object (like the other job events) still gives its job."""
        raw = load("job.stopped.json")
        raw["Job"] = raw.pop("Jobs")[0]
        expected = 90244
        assert expected == parse_event(raw).job_id

    def test_queue_items_singular_and_plural(self) -> None:
        """``QueueItem`` and ``QueueItems`` (object or array) land in ``queue_items``."""
        raw = load("queueItem.transactionFailed.json")
        raw["QueueItems"] = raw.pop("QueueItem")
        event = parse_event(raw)
        assert isinstance(event, QueueItemEvent)
        expected = "4b8f2c6e-0a1d-4e37-95b3-c7e1a9d5f240"
        assert expected == event.entity_key
        assert event.queue_item is event.queue_items[0]

    def test_null_entity_lists(self) -> None:
        """``Jobs: null`` is an empty list and every job handle is None."""
        raw = load("job.stopped.json")
        raw["Jobs"] = None
        event = parse_event(raw)
        assert isinstance(event, JobEvent)
        expected: tuple[Any, ...] = ([], None, None, None, None)
        assert expected == (event.jobs, event.job, event.job_state, event.process, event.robot)

    def test_missing_optional_fields(self) -> None:
        """A job with only an Id, and no envelope besides Type, still parses; absent things are None."""
        event = parse_event({"Type": "job.faulted", "Job": {"Id": 7}})
        assert isinstance(event, JobFaultedEvent)
        expected = (7, None, None, None, None, None, None, None, None)
        actual = (
            event.job_id,
            event.job_state,
            event.process,
            event.robot,
            event.machine,
            event.message,
            event.event_id,
            event.timestamp,
            event.folder,
        )
        assert expected == actual

    @pytest.mark.parametrize("type_", sorted(EVENT_TYPES))
    def test_type_only_body(self, type_: str) -> None:
        """Every known type parses from a body holding only its Type."""
        event = parse_event({"Type": type_})
        assert EVENT_TYPES[type_] is type(event)
        assert type_ == event.type

    def test_output_arguments_as_json_string(self) -> None:
        """OutputArguments as a JSON-encoded string (OData style) is decoded."""
        raw = load("job.completed.json")
        raw["Job"]["OutputArguments"] = json.dumps(raw["Job"]["OutputArguments"])
        event = parse_event(raw)
        assert isinstance(event, JobEvent)
        assert event.job is not None
        expected = 42
        assert expected == event.job.output_arguments["ProcessedCount"]

    def test_arguments_string_that_is_not_json(self) -> None:
        """A string argument bag that is not JSON is kept as the string."""
        raw = load("job.completed.json")
        raw["Job"]["InputArguments"] = "{not json"
        event = parse_event(raw)
        assert isinstance(event, JobEvent)
        assert event.job is not None
        expected = "{not json"
        assert expected == event.job.input_arguments

    def test_folder_id_instead_of_organization_unit_id(self) -> None:
        """``FolderId`` is a synonym of ``OrganizationUnitId``."""
        raw = load("job.faulted.json")
        raw["FolderId"] = raw.pop("OrganizationUnitId") + 41
        expected = 42
        assert expected == parse_event(raw).folder

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("2019-03-14T09:24:52Z", datetime(2019, 3, 14, 9, 24, 52, tzinfo=UTC), id="0-digits"),
            pytest.param("2019-03-14T09:24:52.6Z", datetime(2019, 3, 14, 9, 24, 52, 600000, tzinfo=UTC), id="1"),
            pytest.param("2019-03-14T09:24:52.637Z", datetime(2019, 3, 14, 9, 24, 52, 637000, tzinfo=UTC), id="3"),
            pytest.param("2019-03-14T09:24:52.660981Z", datetime(2019, 3, 14, 9, 24, 52, 660981, tzinfo=UTC), id="6"),
            pytest.param("2019-03-14T09:24:52.6609812Z", datetime(2019, 3, 14, 9, 24, 52, 660981, tzinfo=UTC), id="7"),
            pytest.param("2021-08-20T16:48:43.76", datetime(2021, 8, 20, 16, 48, 43, 760000, tzinfo=UTC), id="naive"),
            pytest.param(
                "2025-06-03T09:43:40.9823511+02:00",
                datetime(2025, 6, 3, 9, 43, 40, 982351, tzinfo=timezone(timedelta(hours=2))),
                id="offset",
            ),
        ],
    )
    def test_timestamp_forms(self, text: str, expected: datetime) -> None:
        """Timestamps with 0 to 7 fractional digits, Z, an offset or none become aware datetimes."""
        raw = load("job.faulted.json")
        raw["Timestamp"] = text
        raw["Job"]["EndTime"] = text
        event = parse_event(raw)
        assert isinstance(event, JobEvent)
        assert event.job is not None
        assert (expected, expected) == (event.timestamp, event.job.end_time)
        assert event.timestamp is not None
        assert event.timestamp.utcoffset() == expected.utcoffset()

    def test_unknown_enum_values_are_kept(self) -> None:
        """Enum values this version does not know stay as the string sent (or the number as a string)."""
        raw = load("job.suspended.json")
        raw["Job"]["State"] = "Paused"
        raw["Job"]["SourceType"] = "AgentHub"
        raw["Job"]["Type"] = "ServerlessGeneric"
        event = parse_event(raw)
        assert isinstance(event, JobEvent)
        assert event.job is not None
        status = load("robot.status.json")
        status["Sessions"][0]["State"] = 42
        expected = ("Paused", "AgentHub", "ServerlessGeneric", "42")
        actual = (event.job_state, event.job.source_type, event.job.type, parse_event(status).robot_state)
        assert expected == actual

    def test_schedule_source_is_trigger(self) -> None:
        """SourceType ``Schedule`` (the webhook name) is JobSource.Trigger (the API-guide name)."""
        raw = load("job.suspended.json")
        raw["Job"]["SourceType"] = "Schedule"
        event = parse_event(raw)
        assert isinstance(event, JobEvent)
        assert event.job is not None
        assert JobSource.Trigger is event.job.source_type

    def test_unknown_type_keeps_payload(self) -> None:
        """An unknown Type becomes UnknownEvent holding the whole payload and its envelope."""
        raw = {"Type": "blobfile.uploaded", "EventId": 12, "BucketName": "b", "FullPath": "/x.pdf", "TenantId": 1}
        event = parse_event(raw)
        assert isinstance(event, UnknownEvent)
        assert raw == event.payload
        expected = ("blobfile.uploaded", "12", 1)
        assert expected == (event.type, event.event_id, event.tenant)

    def test_unknown_type_with_unreadable_envelope(self) -> None:
        """An unknown Type whose envelope cannot be read is still an UnknownEvent, never an error."""
        raw = {"Type": "alert.subscribed", "EventId": {"no": 1}, "Timestamp": "yesterday"}
        event = parse_event(raw)
        assert isinstance(event, UnknownEvent)
        assert (raw, None, None) == (event.payload, event.event_id, event.timestamp)

    def test_unknown_fields_are_ignored(self) -> None:
        """Fields this version does not model, top-level or nested, are ignored."""
        raw = load("job.faulted.json")
        raw["BrandNewEnvelopeField"] = {"a": 1}
        raw["Job"]["BrandNewJobField"] = [1, 2]
        raw["Job"]["Robot"]["Nickname"] = "bot"
        assert parse_event(load("job.faulted.json")) == parse_event(raw)

    def test_type_value_casing(self) -> None:
        """A Type in another casing dispatches to its class and is reported in Orchestrator's spelling."""
        raw = load("queueItem.transactionFailed.json")
        raw["type"] = raw.pop("Type").upper()
        event = parse_event(raw)
        assert isinstance(event, QueueItemTransactionFailedEvent)
        expected = "queueItem.transactionFailed"
        assert expected == event.type

    def test_numeric_event_id_and_huge_ids(self) -> None:
        """A numeric EventId becomes a string, and ids beyond int64 do not crash."""
        raw = load("job.faulted.json")
        raw["EventId"] = 307348658
        raw["Job"]["Id"] = 2**80
        event = parse_event(raw)
        expected = ("307348658", 2**80)
        assert expected == (event.event_id, event.job_id)

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            pytest.param(("Job", "Info"), {"text": "x"}, id="dict-as-string"),
            pytest.param(("Job", "Id"), "ninety", id="text-as-id"),
            pytest.param(("Job", "Robot"), "FIN-UNATT-01", id="string-as-object"),
            pytest.param(("Job", "State"), ["Faulted"], id="list-as-enum"),
            pytest.param(("Job", "EndTime"), "yesterday", id="bad-timestamp"),
            pytest.param(("TenantId",), 1.5, id="float-as-int"),
            pytest.param(("Job",), "job", id="string-as-job"),
        ],
    )
    def test_wrong_types_raise_invalid_fields(self, path: tuple[str, ...], value: Any) -> None:
        """A field of the wrong type raises EventParseError ``invalid_fields`` naming the field."""
        raw = load("job.faulted.json")
        target = raw
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(EventParseError) as caught:
            parse_event(raw)
        expected = "invalid_fields"
        assert expected == caught.value.code
        assert path[-1] in str(caught.value)
        assert "'job.faulted'" in str(caught.value)

    def test_number_too_long_for_a_string(self) -> None:
        """An int beyond Python's 4300-digit str() limit where a string goes is invalid_fields, not a crash."""
        raw = load("job.faulted.json")
        raw["EventId"] = 10**5000
        with pytest.raises(EventParseError) as caught:
            parse_event(raw)
        expected = "invalid_fields"
        assert expected == caught.value.code

    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            pytest.param({}, "missing_type", id="empty"),
            pytest.param({"Type": ""}, "missing_type", id="empty-type"),
            pytest.param({"Type": "  "}, "missing_type", id="blank-type"),
            pytest.param({"Type": 5}, "missing_type", id="number-type"),
            pytest.param({"Type": None, "EventId": "x"}, "missing_type", id="null-type"),
            pytest.param([{"Type": "ping"}], "not_an_object", id="array"),
            pytest.param("ping", "not_an_object", id="string"),
        ],
    )
    def test_unusable_bodies(self, raw: Any, code: str) -> None:
        """Bodies without a usable Type raise EventParseError with the matching code."""
        with pytest.raises(EventParseError) as caught:
            parse_event(raw)
        assert code == caught.value.code

    @pytest.mark.parametrize(
        ("type_", "cls", "state"),
        [
            pytest.param("job.resumed", JobResumedEvent, "Resumed", id="resumed"),
            pytest.param("job.stopping", JobStoppingEvent, "Stopping", id="stopping"),
            pytest.param("job.terminating", JobTerminatingEvent, "Terminating", id="terminating"),
        ],
    )
    def test_newer_job_events(self, type_: str, cls: type[Event], state: str) -> None:
        """The 2023 job events parse like job.suspended, with their state."""
        raw = load("job.suspended.json")
        raw["Type"] = type_
        raw["Job"]["State"] = state
        event = parse_event(raw)
        assert cls is type(event)
        assert (JobState[state], "InvoiceApproval.Orchestration") == (event.job_state, event.process)

    @pytest.mark.parametrize("type_", sorted(t for t in EVENT_TYPES if t.startswith("queueItem.")))
    def test_every_queue_item_event(self, type_: str) -> None:
        """Every queue item event parses from the transactionFailed sample's shape, singular or plural."""
        raw = load("queueItem.transactionFailed.json")
        raw["Type"] = type_
        if type_ in ("queueItem.added", "queueItem.transactionAbandoned") or type_ > "queueItem.deferred":
            raw["QueueItems"] = [raw.pop("QueueItem")]
        event = parse_event(raw)
        assert EVENT_TYPES[type_] is type(event)
        expected = ("Invoices_IN", "Vendor is blocked for posting")
        assert expected == (event.queue, event.message)

    def test_ten_queue_item_types(self) -> None:
        """The reference lists ten queue item events; all are known."""
        expected = {
            "queueItem.added",
            "queueItem.transactionStarted",
            "queueItem.transactionCompleted",
            "queueItem.transactionFailed",
            "queueItem.transactionAbandoned",
            "queueItem.deferred",
            "queueItem.deleted",
            "queueItem.retried",
            "queueItem.updated",
            "queueItem.reviewStatusChanged",
        }
        assert expected == {t for t in EVENT_TYPES if t.startswith("queueItem.")}


class TestRobotStatus:
    """robot.status tells when a robot is down and names it."""

    @pytest.mark.parametrize(
        ("state", "unresponsive", "down"),
        [
            pytest.param("Disconnected", False, True, id="disconnected"),
            pytest.param("Available", True, True, id="unresponsive"),
            pytest.param("Available", False, False, id="available"),
            pytest.param(1, None, False, id="busy-numeric"),
            pytest.param("2", None, True, id="disconnected-numeric-string"),
        ],
    )
    def test_robot_down(self, state: Any, unresponsive: bool | None, down: bool) -> None:
        """A robot is down when its session is Disconnected or IsUnresponsive."""
        raw = load("robot.status.json")
        raw["Sessions"][0]["State"] = state
        raw["Sessions"][0]["IsUnresponsive"] = unresponsive
        event = parse_event(raw)
        assert isinstance(event, RobotStatusEvent)
        assert (down, unresponsive) == (event.robot_down, event.is_unresponsive)

    def test_robot_name_when_sent(self) -> None:
        """The session's RobotName is the robot handle when present."""
        raw = load("robot.status.json")
        raw["Sessions"][0]["RobotName"] = "FIN-UNATT-01"
        expected = "FIN-UNATT-01"
        assert expected == parse_event(raw).robot

    def test_no_sessions(self) -> None:
        """Without sessions nothing is down and the robot handles are None."""
        event = parse_event({"Type": "robot.status", "Sessions": []})
        assert isinstance(event, RobotStatusEvent)
        expected = (False, None, None, None)
        assert expected == (event.robot_down, event.robot, event.robot_state, event.is_unresponsive)


class TestOtherFamilies:
    """Tasks, custom events and robot events expose their handles."""

    def test_task_completed(self) -> None:
        """A task event reads the first task; the folder falls back to the task's."""
        raw = {
            "Type": "task.completed",
            "EventId": "9",
            "Tasks": [{"Id": 5, "Key": "k-5", "Title": "Approve invoice", "OrganizationUnitId": 3}],
            "ResultReference": {"Approved": True},
        }
        event = parse_event(raw)
        assert isinstance(event, TaskCompletedEvent)
        assert isinstance(event, TaskEvent)
        expected = ("Approve invoice", "k-5", 3, {"Approved": True})
        assert expected == (event.message, event.entity_key, event.folder, event.result_reference)

    def test_custom_event_data_untouched(self) -> None:
        """``EventData`` keeps its keys and values."""
        event = parse_event({"Type": "custom", "EventData": {"invoice": "INV-1", "Total": 3}})
        assert isinstance(event, CustomEvent)
        expected = {"invoice": "INV-1", "Total": 3}
        assert expected == event.event_data

    def test_robot_created(self) -> None:
        """robot.created names the first robot and its machine."""
        raw = {"Type": "robot.created", "Robots": [{"Id": 9, "Name": "bot-9", "MachineName": "VM9"}]}
        event = parse_event(raw)
        expected = ("bot-9", "VM9", "9")
        assert expected == (event.robot, event.machine, event.entity_key)

    def test_queue_updated(self) -> None:
        """queue.updated names the first queue."""
        event = parse_event({"Type": "queue.updated", "Queues": [{"Id": 4, "Name": "Invoices_IN"}]})
        expected = ("Invoices_IN", "4")
        assert expected == (event.queue, event.entity_key)


# --- enums ------------------------------------------------------------------------------

ENUM_NUMBERS = [
    pytest.param(JobState, {"Pending": 0, "Running": 1, "Faulted": 4, "Suspended": 7, "Resumed": 8}, id="JobState"),
    pytest.param(JobSource, {"Manual": 0, "Trigger": 1}, id="JobSource"),
    pytest.param(JobType, {"Unattended": 0, "Attended": 1}, id="JobType"),
    pytest.param(RobotState, {"Available": 0, "Busy": 1, "Disconnected": 2, "Unknown": 3}, id="RobotState"),
    pytest.param(ProcessingStatus, {"New": 0, "InProgress": 1, "Failed": 2, "Deleted": 6}, id="ProcessingStatus"),
    pytest.param(
        ProcessingExceptionType,
        {"ApplicationException": 0, "BusinessException": 1},
        id="ProcessingExceptionType",
    ),
    pytest.param(ReviewStatus, {"NONE": 0, "InReview": 1, "Verified": 2, "Retried": 3}, id="ReviewStatus"),
    pytest.param(AssetValueScope, {"Global": 0, "PerRobot": 1}, id="AssetValueScope"),
    pytest.param(AssetValueType, {"Text": 2, "Credential": 5}, id="AssetValueType"),
    pytest.param(LogLevel, {"Trace": 0, "Debug": 1, "Info": 2, "Warn": 3, "Error": 4, "Fatal": 5}, id="LogLevel"),
    pytest.param(UserType, {"User": 0, "Robot": 1}, id="UserType"),
]


class TestEnums:
    """The Orchestrator enums parse names, aliases and numbers."""

    @pytest.mark.parametrize(("enum", "numbers"), ENUM_NUMBERS)
    def test_numbers(self, enum: Any, numbers: dict[str, int]) -> None:
        """Members have the API guide's numbers."""
        assert numbers == {name: int(enum[name]) for name in numbers}

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param("Faulted", JobState.Faulted, id="name"),
            pytest.param("faulted", JobState.Faulted, id="lower"),
            pytest.param(" FAULTED ", JobState.Faulted, id="upper-padded"),
            pytest.param(4, JobState.Faulted, id="int"),
            pytest.param("4", JobState.Faulted, id="numeric-string"),
            pytest.param(JobState.Faulted, JobState.Faulted, id="member"),
        ],
    )
    def test_parse_job_state(self, value: Any, expected: JobState) -> None:
        """JobState.parse reads the name in any casing, the number and the number as a string."""
        assert expected is JobState.parse(value)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param("Verbose", LogLevel.Trace, id="verbose"),
            pytest.param("information", LogLevel.Info, id="information"),
            pytest.param("Warning", LogLevel.Warn, id="warning"),
            pytest.param("CRITICAL", LogLevel.Fatal, id="critical"),
            pytest.param("4", LogLevel.Error, id="ordinal-string"),
            pytest.param(5, LogLevel.Fatal, id="ordinal"),
        ],
    )
    def test_parse_log_level_aliases(self, value: Any, expected: LogLevel) -> None:
        """LogLevel.parse maps UiPath's spellings and the NLog ordinals."""
        assert expected is LogLevel.parse(value)

    def test_review_status_none(self) -> None:
        """ReviewStatus "None" parses and prints as Orchestrator spells it."""
        expected = (ReviewStatus.NONE, "None")
        assert expected == (ReviewStatus.parse("None"), str(ReviewStatus.NONE))

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("Exploded", id="unknown-name"),
            pytest.param(9, id="unknown-number"),
            pytest.param("-1", id="negative-string"),
            pytest.param(True, id="bool"),
            pytest.param(4.0, id="float"),
            pytest.param(None, id="none"),
            pytest.param("9" * 5000, id="too-many-digits"),
        ],
    )
    def test_parse_rejects_with_valid_names(self, value: Any) -> None:
        """An unknown value raises ValueError listing the valid names."""
        with pytest.raises(ValueError, match="not a valid JobState") as caught:
            JobState.parse(value)
        assert "Pending (0)" in str(caught.value)
        assert "Resumed (8)" in str(caught.value)

    def test_error_lists_aliases(self) -> None:
        """LogLevel's error message also lists its aliases."""
        with pytest.raises(ValueError, match="aliases: Verbose, Information, Warning, Critical"):
            LogLevel.parse("loud")

    def test_str_and_format_give_the_name(self) -> None:
        """str() and f-strings show the name; a format spec shows the number."""
        expected = ("Faulted", "Faulted", "4", "004")
        actual = (str(JobState.Faulted), f"{JobState.Faulted}", f"{JobState.Faulted:d}", f"{JobState.Faulted:03d}")
        assert expected == actual


# --- robot logs -------------------------------------------------------------------------


class TestRobotLogs:
    """Robot log posts in their various shapes become RobotLogEvents."""

    @pytest.mark.parametrize(
        "wrap",
        [
            pytest.param(lambda e: e, id="object"),
            pytest.param(lambda e: [e], id="array"),
            pytest.param(lambda e: {"logs": [e]}, id="logs"),
            pytest.param(lambda e: {"Logs": [e]}, id="Logs"),
            pytest.param(lambda e: {"LOGS": [e]}, id="LOGS"),
        ],
    )
    def test_shapes(self, wrap: Any) -> None:
        """One object, an array or a ``logs`` wrapper in any casing give the same entry."""
        (event,) = parse_log_entries(wrap(load("robot-log-error.json")))
        assert ("robot.log", LogLevel.Error, "InvoiceProcessing") == (event.type, event.level, event.process)

    def test_empty_array(self) -> None:
        """An empty batch gives no events."""
        expected: list[RobotLogEvent] = []
        assert expected == parse_log_entries({"logs": []})

    @pytest.mark.parametrize(
        ("layout", "sent", "expected"),
        [
            pytest.param("${date}", "2025/06/03 07:51:02.123", "2025-06-03T07:51:02.123000+00:00", id="nlog-date"),
            pytest.param("${longdate}", "2025-06-03 07:51:02.1234", "2025-06-03T07:51:02.123400+00:00", id="longdate"),
            pytest.param("${date:format=o}", "2025-06-03T07:51:02.1234Z", "2025-06-03T07:51:02.123400+00:00", id="o"),
            pytest.param("${time}", "07:51:02.1234", None, id="time-only"),
            pytest.param("${date:format=dd.MM.yyyy}", "03.06.2025", None, id="local-format"),
        ],
    )
    def test_nlog_timestamp_layouts(self, layout: str, sent: str, expected: str | None) -> None:
        """Whatever NLog layout renders the time, the entry is kept; a time no reader understands is left out.

        Refusing it would refuse every entry of that NLog configuration, and NLog sends them again and
        again, unchanged, before dropping them.
        """
        entry = {"Level": "Error", "Message": f"m {layout}", "TimeStamp": sent}
        (event,) = parse_log_entries(entry)
        assert expected == (None if event.timestamp is None else event.timestamp.isoformat())
        assert (LogLevel.Error, f"m {layout}") == (event.level, event.message)

    def test_nlog_webservice_strings(self) -> None:
        """NLog WebService JSON with string values ("LevelOrdinal": "3", "TenantId": "1") is coerced."""
        (event,) = parse_log_entries(json.loads((VARIANTS / "robot-log-nlog-webservice.json").read_text("utf-8")))
        expected = (LogLevel.Warn, 1, 5, 1841, "RPAVM01", "PostInvoice", "a61f3d9b-2c7e-4b50-8d14-6e9a2c0f7b35")
        actual = (
            event.level,
            event.tenant,
            event.folder,
            event.machine_id,
            event.machine,
            event.file_name,
            event.job_key,
        )
        assert expected == actual
        assert event.timestamp is not None
        assert event.timestamp.tzinfo is not None

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            pytest.param({"LevelOrdinal": "4"}, LogLevel.Error, id="ordinal-string"),
            pytest.param({"level_ordinal": 5}, LogLevel.Fatal, id="snake-ordinal"),
            pytest.param({"level": "Information"}, LogLevel.Info, id="uipath-name"),
            pytest.param({"LEVEL": "warn"}, LogLevel.Warn, id="upper-key"),
            pytest.param({"Level": "Loud", "LevelOrdinal": "4"}, LogLevel.Error, id="falls-to-ordinal"),
            pytest.param({}, LogLevel.Info, id="no-level"),
        ],
    )
    def test_levels(self, fields: dict[str, Any], expected: LogLevel) -> None:
        """Levels are read from names, aliases and ordinals; an entry without one is Info."""
        (event,) = parse_log_entries({"Message": "m", **fields})
        assert expected is event.level

    def test_unreadable_level(self) -> None:
        """A level that is present but unreadable gives level None and keeps the text."""
        (event,) = parse_log_entries({"Message": "m", "Level": "Loud"})
        expected = (None, "Loud")
        assert expected == (event.level, event.level_text)

    def test_raw_message_fills_missing_fields(self) -> None:
        """Fields missing outside are read from the JSON-string RawMessage."""
        raw = {
            "RawMessage": json.dumps(
                {
                    "message": "from raw",
                    "level": "Error",
                    "processName": "P",
                    "robotName": "R",
                    "machineName": "M",
                    "jobId": "j-1",
                    "organizationUnitId": 7,
                    "fileName": "Main",
                    "timeStamp": "2025-06-03T09:43:40.9823511+02:00",
                }
            )
        }
        (event,) = parse_log_entries(raw)
        expected = ("from raw", LogLevel.Error, "P", "R", "M", "j-1", 7, "Main")
        actual = (
            event.message,
            event.level,
            event.process,
            event.robot,
            event.machine,
            event.job_key,
            event.folder,
            event.file_name,
        )
        assert expected == actual
        assert datetime(2025, 6, 3, 7, 43, 40, 982351, tzinfo=UTC) == event.timestamp

    def test_outer_fields_win_over_raw_message(self) -> None:
        """The outer entry's fields take precedence over RawMessage's."""
        raw = {"Message": "outer", "ProcessName": "Outer", "RawMessage": '{"message": "raw", "processName": "Raw"}'}
        (event,) = parse_log_entries(raw)
        expected = ("outer", "Outer")
        assert expected == (event.message, event.process)

    def test_raw_message_not_json(self) -> None:
        """A RawMessage that is not JSON is kept as text and supplies nothing."""
        (event,) = parse_log_entries({"Message": "m", "RawMessage": "plain text"})
        expected: tuple[str, dict[str, Any]] = ("plain text", {})
        assert expected == (event.raw_message, event.raw_fields)

    def test_plain_text_raw_message_only(self) -> None:
        """An entry with only a plain-text RawMessage uses it as the message, at level Info."""
        (event,) = parse_log_entries({"rawMessage": "robot said hello"})
        expected = ("robot said hello", LogLevel.Info)
        assert expected == (event.message, event.level)

    def test_raw_message_as_object(self) -> None:
        """A RawMessage posted as an object supplies fields and is kept as its JSON text."""
        (event,) = parse_log_entries({"Message": "m", "RawMessage": {"machineName": "VM1"}})
        expected = ("VM1", '{"machineName": "VM1"}', {"machineName": "VM1"})
        assert expected == (event.machine, event.raw_message, event.raw_fields)

    def test_key_casing(self) -> None:
        """Entry keys in camelCase or lower case are read like the LogDto names."""
        expected = parse_log_entries(load("robot-log-error.json"))[0]
        for rename in (camel, str.lower):
            (actual,) = parse_log_entries(recase(load("robot-log-error.json"), rename))
            assert (expected.level, expected.message, expected.process, expected.machine) == (
                actual.level,
                actual.message,
                actual.process,
                actual.machine,
            )

    def test_event_id_is_stable(self) -> None:
        """The same entry gets the same id twice; a changed entry gets another."""
        first = parse_log_entries(load("robot-log-error.json"))[0].event_id
        again = parse_log_entries(load("robot-log-error.json"))[0].event_id
        changed = load("robot-log-error.json")
        changed["Message"] = "other"
        other = parse_log_entries(changed)[0].event_id
        assert first == again
        assert first != other
        assert first is not None
        expected = 32
        assert expected == len(first)

    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param("log line", id="string"),
            pytest.param(42, id="number"),
            pytest.param(None, id="null"),
            pytest.param({"logs": {"Message": "m"}}, id="logs-not-array"),
            pytest.param([1, 2], id="array-of-numbers"),
            pytest.param([{"Message": "ok"}, "bad"], id="one-bad-entry"),
            pytest.param({}, id="empty-object"),
            pytest.param({"Message": {"nested": 1}}, id="object-message"),
            pytest.param({"Message": "m", "MachineId": "VM-01"}, id="text-machine-id"),
            pytest.param([{"Message": "m", "LOGS": ""}], id="a-wrapper-inside-the-array"),
            pytest.param({"logs": [{"Message": "m", "logs": []}]}, id="a-wrapper-inside-the-wrapper"),
        ],
    )
    def test_bad_shapes(self, raw: Any) -> None:
        """Bodies that are not log entries raise EventParseError ``invalid_logs``."""
        with pytest.raises(EventParseError) as caught:
            parse_log_entries(raw)
        expected = "invalid_logs"
        assert expected == caught.value.code


# --- property tests ---------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**200)
    | st.floats()
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)

KNOWN_KEYS = st.sampled_from(
    [
        "EventId",
        "Timestamp",
        "TenantId",
        "OrganizationUnitId",
        "FolderId",
        "Job",
        "Jobs",
        "jobs",
        "QueueItem",
        "QueueItems",
        "Queue",
        "Sessions",
        "Robots",
        "Releases",
        "ProcessSchedule",
        "Reason",
        "Tasks",
        "EventData",
        "State",
        "Id",
        "Key",
        "Release",
        "Robot",
        "Info",
    ]
)

TYPES = st.sampled_from(sorted(EVENT_TYPES)) | st.text(max_size=20)
ENVELOPE_AND_ENTITIES = st.dictionaries(KNOWN_KEYS | st.text(max_size=10), JSON, max_size=6)
NESTED_JOB = st.dictionaries(KNOWN_KEYS, JSON, max_size=5)
EVENT_BODIES = st.builds(
    lambda type_, job, rest: {**rest, "Job": job, "Type": type_}, TYPES, NESTED_JOB, ENVELOPE_AND_ENTITIES
)

LOG_KEYS = st.sampled_from(
    ["Message", "Level", "LevelOrdinal", "RawMessage", "TimeStamp", "MachineId", "TenantId", "JobKey", "logs", "Logs"]
)


def outcome(parse: Callable[[Any], T], raw: Any) -> T | EventParseError:
    """Return what ``parse(raw)`` returns, or the EventParseError it raises (any other exception propagates)."""
    try:
        return parse(raw)
    except EventParseError as exc:
        return exc


PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


class TestProperties:
    """Whatever JSON arrives, parsing returns or raises EventParseError, nothing else."""

    @PROPERTY_SETTINGS
    @given(JSON)
    def test_parse_event_any_json(self, raw: Any) -> None:
        """parse_event on any JSON value returns an Event or raises EventParseError."""
        result = outcome(parse_event, raw)
        assert isinstance(result, Event | EventParseError)

    @PROPERTY_SETTINGS
    @given(EVENT_BODIES)
    def test_parse_event_typed_bodies(self, raw: dict[str, Any]) -> None:
        """parse_event on objects with a known or random Type returns an Event or raises EventParseError."""
        event = outcome(parse_event, raw)
        if isinstance(event, EventParseError):
            assert event.code in {"missing_type", "invalid_fields"}
            return
        for handle in ("type", "event_id", "timestamp", "folder", "job_state", "process", "robot", "message"):
            getattr(event, handle)
        assert event.entity_key is None or isinstance(event.entity_key, str)

    @PROPERTY_SETTINGS
    @given(JSON)
    def test_parse_log_entries_any_json(self, raw: Any) -> None:
        """parse_log_entries on any JSON value returns RobotLogEvents or raises EventParseError."""
        events = outcome(parse_log_entries, raw)
        if isinstance(events, EventParseError):
            assert events.code == "invalid_logs"
            return
        assert all(isinstance(event, RobotLogEvent) for event in events)

    @PROPERTY_SETTINGS
    @given(st.dictionaries(LOG_KEYS, JSON | st.text(max_size=30).map(json.dumps), max_size=6))
    def test_parse_log_entries_log_like(self, raw: dict[str, Any]) -> None:
        """parse_log_entries on log-like objects returns RobotLogEvents or raises EventParseError."""
        events = outcome(parse_log_entries, raw)
        if isinstance(events, EventParseError):
            assert events.code == "invalid_logs"
            return
        assert all(event.level is None or isinstance(event.level, LogLevel) for event in events)
