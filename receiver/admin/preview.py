"""What each rule's message looks like: rendered for a sample event, in each of its channels.

The rules page shows it, so a person editing ``rules.yaml`` sees the title and body a rule
sends before an event does. The sample is the first of the built-in :data:`SAMPLES` (minimal
webhook payloads of Orchestrator's documented shapes, made up here so the package needs no data
files) that the rule's own ``match`` accepts; a rule whose clause none of them meets (a clause
on a process name, say) is shown with a fault of a job and says so. Nothing is sent: the
message is rendered as the worker would (``receiver.render.render``), per channel, since each
channel bounds the length.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from receiver.errors import EventParseError
from receiver.events import Event, parse_event, parse_log_entries
from receiver.render import render
from receiver.rules import Rule, RuleSet, Subject, event_budget

__all__ = ["SAMPLES", "ChannelPreview", "RulePreview", "preview_rules"]

_ROBOT = {"Id": 112, "Name": "FIN-UNATT-01", "MachineName": "RPAVM01"}
_RELEASE = {"Id": 77, "Key": "5c8e2f31-7a44-4f0b-9d6e-1b2a3c4d5e6f", "ProcessKey": "InvoiceProcessing"}


def _job(kind: str, state: str, info: str) -> dict[str, Any]:
    job = {
        "Id": 90211,
        "Key": "0f3c9a7e-2d41-4b8e-9c55-7a1e6d2b4f10",
        "State": state,
        "StartTime": "2026-03-14T09:21:11.011Z",
        "EndTime": "2026-03-14T09:24:52.625Z",
        "Info": info,
        "Robot": _ROBOT,
        "Release": _RELEASE,
    }
    body: dict[str, Any] = {"Type": kind, "EventId": f"sample-{kind}", "Timestamp": "2026-03-14T09:24:52.660Z"}
    if kind == "job.faulted":
        body["Job"] = job
    else:
        body["Jobs"] = [job]
    return body | {"TenantId": 1, "OrganizationUnitId": 1}


def _queue_item(kind: str, status: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "Id": 512880,
        "Key": "4b8f2c6e-0a1d-4e37-95b3-c7e1a9d5f240",
        "QueueDefinitionId": 40112,
        "Status": status,
        "Reference": "INV-10445",
        "Priority": "High",
        "RetryNumber": 0,
        "Robot": {"Id": 112, "Name": "FIN-UNATT-01", "MachineName": "RPAVM01"},
        "SpecificContent": {"InvoiceNumber": "INV-10445"},
    }
    if status == "Failed":
        item["ProcessingException"] = {
            "Reason": "Vendor is blocked for posting",
            "Details": "Vendor 300912 has posting block flag set in SAP (company code 1000).",
            "Type": "BusinessException",
        }
    return {
        "Type": kind,
        "EventId": f"sample-{kind}",
        "Timestamp": "2026-03-14T09:33:48.226Z",
        "QueueItem": item,
        "Queue": {"Id": 40112, "Name": "Invoices_IN"},
        "TenantId": 1,
    }


_SELECTOR = "Cannot find the UI element corresponding to this selector: <wnd app='saplogon.exe' />"
SAMPLES: tuple[Mapping[str, Any], ...] = (
    _job("job.faulted", "Faulted", _SELECTOR),
    _queue_item("queueItem.transactionFailed", "Failed"),
    {
        "Type": "schedule.failed",
        "EventId": "sample-schedule.failed",
        "Timestamp": "2026-03-14T06:00:05.446Z",
        "ProcessSchedule": {"Id": 214, "Name": "InvoiceProcessing - weekday 06:00", "Release": _RELEASE},
        "Reason": "The robots already have pending jobs for this Process",
        "TenantId": 1,
    },
    _job("job.stopped", "Stopped", "Job canceled"),
    _job("job.suspended", "Suspended", "Waiting for an approval"),
    {
        "Type": "robot.status",
        "EventId": "sample-robot.status",
        "Timestamp": "2026-03-14T12:47:05.334Z",
        "Sessions": [
            {
                "SessionId": 112,
                "RobotId": 112,
                "HostMachineName": "RPAVM01",
                "State": "Disconnected",
                "ReportingTime": "2026-03-14T12:47:05.319Z",
                "IsUnresponsive": False,
            }
        ],
        "TenantId": 1,
    },
    _job("job.completed", "Successful", "Job completed"),
    _job("job.started", "Running", "Job started"),
    _queue_item("queueItem.transactionCompleted", "Successful"),
    _queue_item("queueItem.added", "New"),
    {"Type": "ping", "EventId": "sample-ping", "Timestamp": "2026-03-14T09:00:00.000Z"},
)
"""Minimal webhook bodies, one per common event type, the faults first (the rules page's samples)."""

_LOG_SAMPLE: Mapping[str, Any] = {
    "Level": "Error",
    "ProcessName": "InvoiceProcessing",
    "TimeStamp": "2026-03-14T07:43:40.982Z",
    "Message": "Invoice INV-20931: SAP login failed, user is locked",
    "JobKey": "a61f3d9b-2c7e-4b50-8d14-6e9a2c0f7b35",
    "RobotName": "svc_rpa01-unattended",
    "HostMachineName": "RPAVM01",
    "Id": 1290443812,
}


@dataclass(frozen=True, slots=True)
class ChannelPreview:
    """One channel's message: its name, the body format, the rendered title and body (as sent)."""

    channel: str
    body_format: str
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class RulePreview:
    """A rule's messages for one sample event.

    Attributes:
        rule: the rule's name.
        event_type: the sample's type.
        matched: the rule's ``match`` accepts the sample (False: no sample does; shown anyway).
        channels: one message per channel the rule notifies.
        error: why nothing could be rendered, or None.
    """

    rule: str
    event_type: str
    matched: bool
    channels: list[ChannelPreview]
    error: str | None = None


def _samples() -> list[Event]:
    events = [parse_event(dict(raw)) for raw in SAMPLES]
    events += parse_log_entries([dict(_LOG_SAMPLE)])
    return events


def _sample_for(rule: Rule, events: list[Event], source: str) -> tuple[Event, bool]:
    for event in events:
        if rule.clause is None or rule.clause.explain(Subject(event, source)) is None:
            return event, True
    return events[0], False


def preview_rules(ruleset: RuleSet, *, source: str = "uipath", budget: float | None = None) -> list[RulePreview]:
    """Every rule's message for its sample event, per channel it notifies, in file order.

    Args:
        ruleset: the rules in force.
        source: the source name the samples come from (``{{ source }}`` in templates, ``source:`` clauses).
        budget: seconds each rule's messages may take (``RECEIVER_EVENT_BUDGET_SECONDS``, as for an
            event); past it the rule's preview is the budget's error. None: no limit.
    """
    try:
        events = _samples()
    except EventParseError as exc:  # pragma: no cover - the samples are fixed and tested
        return [RulePreview(r.name, "", False, [], f"the samples cannot be read: {exc}") for r in ruleset.rules]
    previews = []
    for rule in ruleset.rules:
        event, matched = _sample_for(rule, events, source)
        channels = []
        error = None
        for name in rule.notify:
            channel = ruleset.channels.get(name)
            if channel is None:  # pragma: no cover - the loader refuses an unknown channel
                continue
            try:
                with event_budget(budget):
                    note = render(event, rule, channel, ruleset, source=source)
            except Exception as exc:  # noqa: BLE001 - a preview must not break the page; the reason is shown
                error = f"{type(exc).__name__}: {exc}"[:500]
                break
            channels.append(ChannelPreview(name, note.body_format, note.title, note.body))
        previews.append(RulePreview(rule.name, event.type, matched, channels, error))
    return previews
