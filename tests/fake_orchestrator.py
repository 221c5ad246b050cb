"""A fake UiPath Orchestrator for tests, following the documented API rather than our client.

The facts come from /work/shared/reference/orchestrator-api.md ("the reference"; sections cited
as §N) and uipath-webhooks.md ("webhooks.md"). It serves, on 127.0.0.1 and a free port, in a
background thread of the test process (a ``receiver serve`` subprocess reaches it over loopback):

- tokens (§2.1): ``POST /{org}/identity_/connect/token``, ``/identity_/connect/token`` and the
  standalone ``/identity/connect/token``; form-encoded client credentials; only the scopes the
  registered application has; tokens expire (``token_lifetime``, ``expire_tokens()``);
- the Orchestrator API under ``/{org}/{tenant}/orchestrator_/`` (and the standalone ``/odata``,
  ``/api`` at the root): Webhooks (list/get/create/PUT/PATCH/delete, GetEventTypes, Ping,
  TriggerCustom), Folders, Jobs, RobotLogs, QueueItems, ``/api/health``; OData ``$filter``,
  ``$top``, ``$skip``, ``$orderby``, ``$select``, ``$count`` (tests/fake_odata.py);
- webhook deliveries signed like Orchestrator's (``X-UiPath-Signature``, webhooks.md §1), only to
  loopback URLs, with the circuit breaker of §7 (a failed delivery suspends the webhook while it
  still reads ``Enabled: true``);
- fault injection (429 + ``Retry-After``, 5xx, slow answers) and a request log without secrets.

Usage::

    from fake_orchestrator import FakeOrchestrator

    with FakeOrchestrator(org="acme", tenant="DefaultTenant") as orch:
        orch.add_client("app-id", "app-secret", scopes="OR.Webhooks OR.Jobs.Read OR.Folders.Read")
        folder = orch.add_folder("Shared")
        hook = orch.add_webhook("http://127.0.0.1:8080/webhooks/uipath", secret="s3cret", events=["job.faulted"])
        orch.add_job(folder["Id"], State="Faulted", ReleaseName="Invoices")
        orch.orchestrator_url  # http://127.0.0.1:PORT/acme/DefaultTenant/orchestrator_
        orch.token_url         # http://127.0.0.1:PORT/acme/identity_/connect/token
        orch.edit_webhook(hook["Id"], Enabled=False)   # as a person in the web UI would (no ping)
        orch.edit_webhook(hook["Id"], Secret="other")  # secret changed on Orchestrator's side only
        orch.suspend_webhook(hook["Id"])               # Orchestrator's breaker: looks enabled, delivers nothing
        orch.resume_webhook(hook["Id"])                # close it (any non-2xx answer or timeout opens it, §7)
        orch.send_event("job.faulted", Job={...})      # a signed event to every subscribed webhook
        orch.rate_limit(100)                           # §6: 429 past 100 GET /odata/Jobs|QueueItems a minute
        orch.fail_next(3, status=429, retry_after=2)   # or fail_for(5.0, status=503); slow_down(2.0, count=1)
        orch.slow_down(3.0, count=1, after=True)       # carried out at once, answered 3 s later (a loaded server)
        orch.trickle(0.5, count=1)                     # the next answer written a byte every 0.5 s (a choked link)
        orch.redirect_next(1, "https://login.example.com/") # a proxy in front answers 302 (not Orchestrator's doing)
        orch.expire_tokens()                           # or orch.token_lifetime = 2
        orch.wait_for_deliveries(1)                    # what reached (or did not reach) the webhook URLs
        orch.request_log                               # RecordedRequest(method, path, query, headers, ...)

Behaviour the reference leaves open is a switch (attribute) with the default named here:
``top_over_max`` ("reject": 400, or "clamp"), ``top_max`` ({}: a lower ``$top`` maximum per entity,
as QueueItems' went from 1000 to 100), ``next_link`` (False: ``@odata.nextLink`` when more rows
remain, §4), ``folder_optional`` ({"Jobs"}: cross-folder list
without a folder header, §3), ``ping_when_disabled`` ("drop": 202 and nothing sent, or "refuse"),
``secret_on_read`` ("clear": a webhook's ``Secret`` as the docs example shows it, or "null" / "masked"
``********``: whether Cloud masks it is unconfirmed, §7; a PUT stores what it is sent),
``ping_on_change`` (True: a ping follows an API create/update, §5.4), ``ping_reuses_event_id``
(True), ``breaker_seconds`` (3600), ``invalid_client_status`` (400).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import itertools
import json
import math
import queue
import re
import secrets as secrets_module
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from fake_odata import ODataError, compile_filter, order, select

__all__ = ["EVENT_TYPES", "Delivery", "FakeOrchestrator", "RecordedRequest", "sign"]

# GetEventTypes (§5.4), from the event table of webhooks.md §2 (the subscribable, documented ones).
_EVENT_GROUPS = {
    "Jobs": "job.created job.started job.completed job.faulted job.stopped job.suspended job.resumed job.stopping"
    " job.terminating",
    "Robots": "robot.created robot.updated robot.deleted robot.status",
    "Queues": "queue.created queue.updated queue.deleted",
    "Queue items": "queueItem.added queueItem.transactionStarted queueItem.transactionCompleted"
    " queueItem.transactionFailed queueItem.transactionAbandoned queueItem.deferred queueItem.deleted"
    " queueItem.retried queueItem.updated queueItem.reviewStatusChanged",
    "Processes": "process.created process.updated process.deleted",
    "Triggers": "schedule.failed",
    "Tasks": "task.created task.completed task.assignmentChanged task.forwarded task.saved task.deleted task.updated",
    "Storage buckets": "blobfile.uploaded blobfile.deleted",
    "Other": "ping custom",
}
EVENT_TYPES: tuple[tuple[str, str], ...] = tuple(
    (name, group) for group, names in _EVENT_GROUPS.items() for name in names.split()
)
_EVENT_NAMES = frozenset(name for name, _ in EVENT_TYPES)

_ODATA_NS = "UiPath.Server.Configuration.OData"
_MAX_BODY = 1_000_000
_MAX_SLOW = 30.0  # a slow answer is bounded: a test can never hang on the fake
_MAX_LOG = 10_000
_SECRET_HEADERS = frozenset({"authorization", "cookie", "x-uipath-signature"})
_SECRET_FIELDS = frozenset({"client_secret", "Secret", "access_token"})
# §4: $top max 1000 on most entities, 100 on QueueItems since the 2024-12 OAS.
_TOP_MAX = {"QueueItems": 100}
_TOP_MAX_DEFAULT = 1000
# §2.1 scope table: either the family scope or its .Read/.Write half.
_READ, _WRITE = ".Read", ".Write"
_SCOPES = {
    "Jobs": "OR.Jobs",
    "RobotLogs": "OR.Monitoring",
    "QueueItems": "OR.Queues",
    "Folders": "OR.Folders",
    "Webhooks": "OR.Webhooks",
}
_FOLDER_SCOPED = frozenset({"Jobs", "RobotLogs", "QueueItems"})  # §3 table (the subset the fake serves)
# §2.1: User-Agent of standalone's webhook service; Content-Type is undocumented (JSON body).
_DELIVERY_HEADERS = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "UiPath-WebhookService/Webhooks"}


def sign(body: bytes, secret: str) -> str:
    """``X-UiPath-Signature`` as webhooks.md §1.1 documents it: Base64(HMAC-SHA256(UTF-8 secret, raw body)).

    Written here from the reference, independently of receiver.signature, so that the fake checks it.
    """
    return base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()).decode("ascii")


def _now_iso() -> str:
    # Orchestrator writes UTC with Z and up to 7 fraction digits (§4 Dates).
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake answered, secrets removed (Authorization, client_secret, Secret)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON or form, with secrets replaced by "***"; None when empty
    status: int
    at: float  # time.monotonic() when it arrived

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name."""
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Delivery:
    """One webhook event Orchestrator sent, or decided not to send.

    ``outcome``: "delivered" (2xx), "failed" (non-2xx, timeout or refused: opens the breaker),
    "disabled" (webhook Enabled false), "suspended" (breaker open), "not_loopback" (the fake only
    posts to loopback addresses).
    """

    webhook_id: int
    url: str
    event: dict[str, Any]
    body: bytes
    signature: str | None
    outcome: str
    status: int | None
    at: float


@dataclass
class _Client:
    secret: str
    scopes: frozenset[str]


@dataclass
class _Token:
    client_id: str
    scopes: frozenset[str]
    expires: float


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    remaining: int | None  # calls left; None = until ``until``
    until: float | None
    scope: str
    path_contains: str | None
    location: str | None = None  # a redirect's target

    def live(self, now: float) -> bool:
        return (self.remaining is None or self.remaining > 0) and (self.until is None or self.until > now)

    def applies(self, kind: str, path: str) -> bool:
        if self.scope != "all" and self.scope != kind:
            return False
        return self.path_contains is None or self.path_contains in path


class _ApiError(Exception):
    def __init__(self, status: int, message: str, code: int = 0, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


@dataclass
class _Reply:
    status: int
    body: Any = None  # JSON-able, or None for no body
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Call:
    """What a route handler gets: the parsed request and the token's scopes."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: Any
    scopes: frozenset[str]
    client_id: str

    def option(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


class FakeOrchestrator:
    """An Orchestrator tenant with its identity server, on a loopback port (see the module docstring)."""

    def __init__(self, org: str = "acme", tenant: str = "DefaultTenant", *, tenant_id: int = 1) -> None:
        self.org = org
        self.tenant = tenant
        self.tenant_id = tenant_id
        self.token_lifetime: float = 3600.0  # §2.1: one hour
        self.top_over_max: Literal["reject", "clamp"] = "reject"
        self.top_max: dict[str, int] = {}  # a lower $top maximum per entity (QueueItems went 1000 → 100 in 2024, §4)
        self.secret_on_read: Literal["clear", "null", "masked"] = "clear"
        self.next_link = False
        self.folder_optional: set[str] = {"Jobs"}
        self.ping_when_disabled: Literal["drop", "refuse"] = "drop"
        self.ping_on_change = True
        self.ping_reuses_event_id = True
        self.breaker_seconds: float = 3600.0
        self.delivery_timeout: float = 10.0
        self.delivery_delay: float = 0.0
        """Seconds between an event and its POST (Orchestrator's webhook service queues them)."""
        self.invalid_client_status = 400
        self._lock = threading.RLock()
        self._clients: dict[str, _Client] = {}
        self._tokens: dict[str, _Token] = {}
        self._folders: dict[int, dict[str, Any]] = {}
        self._webhooks: dict[int, dict[str, Any]] = {}
        self._suspended_until: dict[int, float] = {}
        self._jobs: dict[int, dict[str, Any]] = {}
        self._logs: dict[int, dict[str, Any]] = {}
        self._queue_items: dict[int, dict[str, Any]] = {}
        self._started: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._event_ids = itertools.count(78936220)  # 2023+ EventIds are numeric strings (webhooks.md §3.1)
        self._faults: list[_Fault] = []
        self._slow: tuple[float, int | None, bool] | None = None
        self._trickle: tuple[float, int | None] | None = None
        self._rate_limit: int | None = None
        self._rate_window: list[float] = []
        self._log: list[RecordedRequest] = []
        self._deliveries: list[Delivery] = []
        # One sender, in order: a failed delivery opens the breaker before the next one is tried.
        self._outbox: queue.Queue[tuple[int, dict[str, Any]] | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeOrchestrator:
        """Listen on 127.0.0.1 (a free port) in a daemon thread."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-orchestrator", daemon=True
        )
        self._thread.start()
        self._sender = threading.Thread(target=self._send_loop, name="fake-orchestrator-webhooks", daemon=True)
        self._sender.start()
        return self

    def stop(self) -> None:
        """Stop listening and wait (bounded) for deliveries in flight."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join(timeout=self.delivery_timeout + 1)
            self._sender = None

    def __enter__(self) -> FakeOrchestrator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._server is None:
            raise RuntimeError("FakeOrchestrator is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (also the standalone Orchestrator base, §1)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def orchestrator_url(self) -> str:
        """The Automation Cloud form ``{base}/{org}/{tenant}/orchestrator_`` (§1), no trailing slash."""
        return f"{self.base_url}/{self.org}/{self.tenant}/orchestrator_"

    @property
    def token_url(self) -> str:
        """The current Automation Cloud token endpoint ``{base}/{org}/identity_/connect/token`` (§2.1)."""
        return f"{self.base_url}/{self.org}/identity_/connect/token"

    @property
    def token_urls(self) -> tuple[str, str, str]:
        """Every token endpoint of §2.1: org-prefixed, un-prefixed (Cloud, Suite), standalone."""
        return (
            self.token_url,
            f"{self.base_url}/identity_/connect/token",
            f"{self.base_url}/identity/connect/token",
        )

    # ---- identity ---------------------------------------------------------------------------

    def add_client(self, client_id: str, client_secret: str, scopes: str | Iterable[str]) -> None:
        """Register a confidential external application with its application scopes (§2.1)."""
        granted = scopes.split() if isinstance(scopes, str) else list(scopes)
        with self._lock:
            self._clients[client_id] = _Client(client_secret, frozenset(granted))

    def expire_tokens(self) -> None:
        """Make every token issued so far expired (the next API call with one gets 401)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires = 0.0

    @property
    def tokens_issued(self) -> int:
        """How many tokens the identity server handed out."""
        with self._lock:
            return len(self._tokens)

    # ---- seeded data ------------------------------------------------------------------------

    def add_folder(
        self, display_name: str, *, fully_qualified_name: str | None = None, parent_id: int | None = None
    ) -> dict[str, Any]:
        """A folder (FolderDto of §3); returns a copy with its ``Id`` and ``Key``."""
        with self._lock:
            folder_id = next(self._ids)
            parent = self._folders.get(parent_id) if parent_id is not None else None
            path = fully_qualified_name or (
                f"{parent['FullyQualifiedName']}/{display_name}" if parent else display_name
            )
            folder = {
                "Key": str(uuid.uuid4()),
                "DisplayName": display_name,
                "FullyQualifiedName": path,
                "Description": None,
                "FolderType": "Standard",
                "IsPersonal": False,
                "ProvisionType": "Automatic",
                "PermissionModel": "FineGrained",
                "ParentId": parent_id,
                "ParentKey": parent["Key"] if parent else None,
                "FeedType": "Processes",
                "Id": folder_id,
            }
            self._folders[folder_id] = folder
            return dict(folder)

    def add_job(self, folder_id: int, **fields: Any) -> dict[str, Any]:
        """A job in a folder (JobDto fields of §5.1 and §9.6); ``fields`` override the defaults."""
        with self._lock:
            folder = self._folder(folder_id)
            job_id = next(self._ids)
            now = _now_iso()
            job: dict[str, Any] = {
                "Key": str(uuid.uuid4()),
                "StartTime": now,
                "EndTime": now,
                "State": "Successful",
                "SubState": None,
                "JobPriority": "Normal",
                "SpecificPriorityValue": 45,
                "Source": "Manual",
                "SourceType": "Manual",
                "BatchExecutionKey": str(uuid.uuid4()),
                "Info": "Job completed",
                "CreationTime": now,
                "StartingScheduleId": None,
                "ReleaseName": "Process",
                "Type": "Unattended",
                "InputArguments": None,
                "OutputArguments": None,
                "HostMachineName": "ROBOT-01",
                "HasMediaRecorded": False,
                "PersistenceId": None,
                "ResumeVersion": None,
                "StopStrategy": None,
                "RuntimeType": "Unattended",
                "RequiresUserInteraction": True,
                "ReleaseVersionId": None,
                "EntryPointPath": None,
                "OrganizationUnitId": folder_id,
                "OrganizationUnitFullyQualifiedName": folder["FullyQualifiedName"],
                "Reference": "",
                "ProcessType": "Process",
                "ErrorCode": None,
                "LastModificationTime": now,
                "Robot": None,
                "Release": {"Key": str(uuid.uuid4()), "ProcessKey": "Process", "ProcessVersion": "1.0.0", "Name": None},
                "Id": job_id,
            }
            job.update(fields)
            if job["Release"] is not None and job["Release"].get("Name") is None:
                job["Release"] = {**job["Release"], "Name": job["ReleaseName"]}
            self._jobs[job_id] = job
            return dict(job)

    def add_robot_log(self, folder_id: int, **fields: Any) -> dict[str, Any]:
        """A robot log entry (LogDto of §5.2); ``fields`` override the defaults."""
        with self._lock:
            self._folder(folder_id)
            log_id = next(self._ids)
            entry: dict[str, Any] = {
                "Level": "Info",
                "WindowsIdentity": "ROBOT-01\\robot",
                "ProcessName": "Process",
                "TimeStamp": _now_iso(),
                "Message": "Process started",
                "JobKey": str(uuid.uuid4()),
                "RawMessage": None,
                "RobotName": "robot",
                "HostMachineName": "ROBOT-01",
                "MachineId": 1,
                "MachineKey": str(uuid.uuid4()),
                "RuntimeType": "Unattended",
                "Id": log_id,
            }
            entry.update(fields)
            if entry["RawMessage"] is None:
                raw = {"message": entry["Message"], "level": entry["Level"], "timeStamp": entry["TimeStamp"]}
                entry["RawMessage"] = json.dumps(raw)  # a JSON *string* (§5.2)
            self._logs[log_id] = {**entry, "_folder": folder_id}
            return dict(entry)

    def add_queue_item(self, folder_id: int, **fields: Any) -> dict[str, Any]:
        """A queue item (QueueItemDto of §5.3); ``fields`` override the defaults."""
        with self._lock:
            folder = self._folder(folder_id)
            item_id = next(self._ids)
            now = _now_iso()
            item: dict[str, Any] = {
                "QueueDefinitionId": 1,
                "Status": "New",
                "ReviewStatus": "None",
                "Key": str(uuid.uuid4()),
                "UniqueKey": str(uuid.uuid4()),
                "Reference": None,
                "ProcessingExceptionType": None,
                "ProcessingException": None,
                "Priority": "Normal",
                "SpecificContent": {},
                "Output": None,
                "CreationTime": now,
                "StartProcessing": None,
                "EndProcessing": None,
                "DeferDate": None,
                "DueDate": None,
                "RetryNumber": 0,
                "AncestorId": None,
                "CreatorJobKey": None,
                "ExecutorJobKey": None,
                "Robot": None,
                "RowVersion": base64.b64encode(item_id.to_bytes(8, "big")).decode(),
                "OrganizationUnitId": folder_id,
                "OrganizationUnitFullyQualifiedName": folder["FullyQualifiedName"],
                "Id": item_id,
            }
            item.update(fields)
            self._queue_items[item_id] = item
            return dict(item)

    # ---- webhooks (test side) ---------------------------------------------------------------

    def add_webhook(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: Iterable[str] = (),
        enabled: bool = True,
        subscribe_to_all: bool = False,
        name: str | None = None,
        allow_insecure_ssl: bool = False,
    ) -> dict[str, Any]:
        """A webhook that already exists in Orchestrator (no ping sent); returns a copy (WebhookDto, §5.4)."""
        with self._lock:
            webhook_id = next(self._ids)
            webhook = {
                "Url": url,
                "Enabled": enabled,
                "Secret": secret,
                "SubscribeToAllEvents": subscribe_to_all,
                "AllowInsecureSsl": allow_insecure_ssl,
                "Events": [{"EventType": event} for event in events],
                "Id": webhook_id,
                "Key": str(uuid.uuid4()),
                "Name": name or f"webhook-{webhook_id}",
                "Description": None,
            }
            self._webhooks[webhook_id] = webhook
            return _copy(webhook)

    def webhook(self, webhook_id: int) -> dict[str, Any]:
        """A copy of the webhook as Orchestrator holds it now (KeyError when there is none)."""
        with self._lock:
            return _copy(self._webhooks[webhook_id])

    def webhooks(self) -> list[dict[str, Any]]:
        """Copies of every webhook, by Id."""
        with self._lock:
            return [_copy(self._webhooks[key]) for key in sorted(self._webhooks)]

    def edit_webhook(self, webhook_id: int, **fields: Any) -> dict[str, Any]:
        """Change a webhook behind the client's back, as a person in the web UI would (no ping is sent).

        ``Events`` may be given as a list of names. ``Enabled=False`` disables it; ``Secret="x"``
        rotates the secret on Orchestrator's side only.
        """
        with self._lock:
            webhook = self._webhooks[webhook_id]
            if "Events" in fields:
                fields["Events"] = [e if isinstance(e, Mapping) else {"EventType": e} for e in fields["Events"]]
            webhook.update(fields)
            return _copy(webhook)

    def suspend_webhook(self, webhook_id: int, seconds: float | None = None) -> None:
        """Open Orchestrator's circuit breaker for a webhook (§7): ``Enabled`` stays true, nothing is sent.

        Args:
            webhook_id: the webhook.
            seconds: how long; ``breaker_seconds`` (an hour) by default.
        """
        with self._lock:
            if webhook_id not in self._webhooks:
                raise KeyError(webhook_id)
            self._suspended_until[webhook_id] = time.monotonic() + (
                self.breaker_seconds if seconds is None else seconds
            )

    def resume_webhook(self, webhook_id: int) -> None:
        """Close the breaker of a webhook now."""
        with self._lock:
            self._suspended_until.pop(webhook_id, None)

    def is_suspended(self, webhook_id: int) -> bool:
        """Whether the breaker of a webhook is open."""
        with self._lock:
            return self._suspended_until.get(webhook_id, 0.0) > time.monotonic()

    def send_event(self, event_type: str, **fields: Any) -> list[Delivery]:
        """Emit an event as Orchestrator would: to every webhook subscribed to it, signed, synchronously.

        Args:
            event_type: e.g. ``job.faulted``.
            fields: the event's body beyond the envelope (``Job={...}``, ``OrganizationUnitId=3``).

        Returns:
            One Delivery per subscribed webhook.
        """
        event = {"Type": event_type, "EventId": self._event_id(), "Timestamp": _now_iso(), **fields}
        event.setdefault("TenantId", self.tenant_id)
        with self._lock:
            targets = [w["Id"] for w in self._webhooks.values() if _subscribed(w, event_type)]
        return [self._deliver(webhook_id, dict(event)) for webhook_id in targets]

    # ---- faults -----------------------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int = 429,
        *,
        retry_after: float | None = None,
        scope: Literal["api", "token", "all"] = "api",
        path_contains: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching calls with ``status``.

        ``Retry-After`` (whole seconds, rounded up) is sent when ``retry_after`` is given; a 429 gets 1 s by default.
        """
        if retry_after is None and status == 429:
            retry_after = 1
        with self._lock:
            self._faults.append(_Fault(status, retry_after, count, None, scope, path_contains))

    def fail_for(
        self,
        seconds: float,
        status: int = 503,
        *,
        retry_after: float | None = None,
        scope: Literal["api", "token", "all"] = "api",
        path_contains: str | None = None,
    ) -> None:
        """Answer every matching call with ``status`` for ``seconds``."""
        with self._lock:
            self._faults.append(_Fault(status, retry_after, None, time.monotonic() + seconds, scope, path_contains))

    def slow_down(self, seconds: float, *, count: int | None = None, after: bool = False) -> None:
        """Delay answers by ``seconds`` (at most 30), for the next ``count`` requests or until cleared.

        ``after=True`` carries the request out first and then holds the answer back (a loaded
        server): a client that gives up meanwhile does not know that the job was started or the
        webhook created. By default the delay comes first and a client that gives up changed nothing.
        """
        with self._lock:
            self._slow = (min(seconds, _MAX_SLOW), count, after)

    def trickle(self, interval: float, *, count: int | None = None) -> None:
        """Write the next ``count`` answers (or all, until cleared) one byte every ``interval`` seconds.

        A choked link or a stalled proxy: bytes keep coming, so no single read waits long. Each
        answer is cut off after 30 s of trickling (a test never hangs on the fake).
        """
        with self._lock:
            self._trickle = (max(0.0, interval), count)

    def redirect_next(self, count: int, location: str, *, status: int = 302) -> None:
        """Answer the next ``count`` API calls with a redirect to ``location``.

        Orchestrator's API does not redirect; a proxy or an SSO gateway in front of it does (an
        ``http://`` url sent to ``https://``, a login page).
        """
        with self._lock:
            self._faults.append(_Fault(status, None, count, None, "api", None, location))

    def rate_limit(self, per_minute: int | None) -> None:
        """The Cloud limit of §6: ``GET /odata/Jobs`` and ``/odata/QueueItems`` past ``per_minute`` → 429.

        ``None`` turns it off (the default, as on standalone).
        """
        with self._lock:
            self._rate_limit = per_minute
            self._rate_window.clear()

    def clear_faults(self) -> None:
        """No more injected errors, delays or rate limit."""
        with self._lock:
            self._faults.clear()
            self._slow = None
            self._trickle = None
            self._rate_limit = None

    # ---- observation ------------------------------------------------------------------------

    @property
    def request_log(self) -> list[RecordedRequest]:
        """Every request answered so far (the newest last; at most 10,000 kept)."""
        with self._lock:
            return list(self._log)

    def clear_request_log(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self._log.clear()

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook event sent or withheld so far."""
        with self._lock:
            return list(self._deliveries)

    def wait_for_deliveries(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """Wait until ``count`` deliveries (any outcome) are recorded or ``timeout`` passes; returns them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._deliveries) >= count:
                    return list(self._deliveries)
            time.sleep(0.02)
        return self.deliveries

    # ---- internals: request handling --------------------------------------------------------

    def _folder(self, folder_id: int) -> dict[str, Any]:
        if folder_id not in self._folders:
            raise KeyError(f"no folder {folder_id}: add_folder() first")
        return self._folders[folder_id]

    def _event_id(self) -> str:
        with self._lock:
            return str(next(self._event_ids))

    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._log.append(entry)
            del self._log[:-_MAX_LOG]

    def _take_delay(self) -> tuple[float, bool]:
        """(seconds, after): how long the next answer waits, and whether the request is carried out first."""
        with self._lock:
            if self._slow is None:
                return 0.0, False
            seconds, count, after = self._slow
            if count is not None:
                self._slow = (seconds, count - 1, after) if count > 1 else None
            return seconds, after

    def _take_trickle(self) -> float | None:
        with self._lock:
            if self._trickle is None:
                return None
            interval, count = self._trickle
            if count is not None:
                self._trickle = (interval, count - 1) if count > 1 else None
            return interval

    def _injected(self, kind: str, path: str) -> _Reply | None:
        with self._lock:
            now = time.monotonic()
            self._faults = [
                f
                for f in self._faults
                if (f.remaining is None or f.remaining > 0) and (f.until is None or f.until > now)
            ]
            for fault in self._faults:
                if fault.applies(kind, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    if fault.location is not None:
                        return _Reply(fault.status, None, {"Location": fault.location})
                    return _fault_reply(fault.status, fault.retry_after)
        return None

    def _rate_limited(self, method: str, entity: str, key: int | None) -> _Reply | None:
        # §6: the per-minute limit counts GET /odata/Jobs and /odata/QueueItems lists, never Jobs({id}).
        if method != "GET" or entity not in {"Jobs", "QueueItems"} or key is not None:
            return None
        with self._lock:
            if self._rate_limit is None:
                return None
            now = time.monotonic()
            self._rate_window = [t for t in self._rate_window if t > now - 60]
            if len(self._rate_window) >= self._rate_limit:
                retry = max(1, int(self._rate_window[0] + 60 - now) + 1)
                reply = _fault_reply(429, retry)
                reply.headers["X-RateLimit-Remaining"] = "0"
                return reply
            self._rate_window.append(now)
            remaining = self._rate_limit - len(self._rate_window)
        return _Reply(0, headers={"X-RateLimit-Remaining": str(remaining if remaining >= 10 else 0)})

    def _token(self, form: Mapping[str, list[str]], headers: Mapping[str, str]) -> _Reply:
        """§2.1: client credentials, form-encoded; errors in the OAuth2 shape (RFC 6749 §5.2)."""

        def value(name: str) -> str:
            values = form.get(name)
            return values[-1] if values else ""

        client_id, client_secret = value("client_id"), value("client_secret")
        basic = headers.get("authorization", "")
        if basic.lower().startswith("basic "):  # RFC 6749 §2.3.1 also allows HTTP Basic
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                client_id = client_secret = ""
        if value("grant_type") != "client_credentials":
            return _Reply(400, {"error": "unsupported_grant_type"})
        with self._lock:
            client = self._clients.get(client_id)
            if client is None or not hmac.compare_digest(client.secret.encode(), client_secret.encode()):
                return _Reply(self.invalid_client_status, {"error": "invalid_client"})
            asked = value("scope").split()
            # "Asking for a scope not granted to the app makes the token request fail" (§2.1).
            if any(scope not in client.scopes for scope in asked):
                return _Reply(400, {"error": "invalid_scope"})
            granted = frozenset(asked) if asked else client.scopes
            access_token = secrets_module.token_urlsafe(32)
            self._tokens[access_token] = _Token(client_id, granted, time.monotonic() + self.token_lifetime)
        body = {
            "access_token": access_token,
            "expires_in": int(self.token_lifetime),
            "token_type": "Bearer",
            "scope": " ".join(sorted(granted)),
        }
        return _Reply(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _authenticate(self, headers: Mapping[str, str]) -> _Token:
        value = headers.get("authorization", "")
        scheme, _, credential = value.partition(" ")
        with self._lock:
            token = self._tokens.get(credential.strip()) if scheme.lower() == "bearer" else None
            if token is None or token.expires <= time.monotonic():
                # §6: no/expired/invalid bearer → 401. The body text is ABP's (unconfirmed in the reference).
                raise _ApiError(401, "You are not authenticated!", 0, {"WWW-Authenticate": "Bearer"})
            return token

    def _folder_from(self, headers: Mapping[str, str]) -> dict[str, Any] | None:
        """§3: the folder from X-UIPATH-OrganizationUnitId / FolderKey / FolderPath(-Encoded)."""
        unit = headers.get("x-uipath-organizationunitid")
        key = headers.get("x-uipath-folderkey")
        path = headers.get("x-uipath-folderpath")
        encoded = headers.get("x-uipath-folderpath-encoded")
        if encoded is not None:
            try:
                path = base64.b64decode(encoded).decode("utf-16-le")
            except ValueError:
                raise _ApiError(400, "Invalid organization unit.", 1100) from None
        if unit is None and key is None and path is None:
            return None
        with self._lock:
            for folder in self._folders.values():
                if (
                    (unit is not None and unit.strip() == str(folder["Id"]))
                    or (key is not None and key.strip().lower() == folder["Key"])
                    or (path is not None and path.strip().strip("/") == folder["FullyQualifiedName"])
                ):
                    return folder
        raise _ApiError(400, "Invalid organization unit.", 1100)

    def _api(self, call: _Call, route: str) -> _Reply:
        match = _ROUTE.fullmatch(route)
        if match is None:
            raise _ApiError(404, f"No resource at {route!r}.", 0)
        entity = _ENTITIES.get(match["entity"].lower())
        if entity is None:
            raise _ApiError(404, f"No resource at {route!r}.", 0)
        key = int(match["key"]) if match["key"] is not None else None
        action = match["action"]
        is_api = match["base"].lower() == "api"
        if is_api != (entity == "Folders" and (action or "").lower() == "getallforcurrentuser"):
            raise _ApiError(404, f"No resource at {route!r}.", 0)
        limited = self._rate_limited(call.method, entity, key)
        if limited is not None and limited.status:
            return limited
        self._require_scope(call, entity, write=call.method != "GET")
        folder = None
        if entity in _FOLDER_SCOPED:
            folder = self._folder_from(call.headers)
            if folder is None and not (entity in self.folder_optional and key is None and action is None):
                raise _ApiError(400, "A folder is required for this action.", 1101)  # §3, §9.2
        reply = self._dispatch(call, entity, key, action, folder)
        if limited is not None:
            reply.headers.update(limited.headers)
        return reply

    def _require_scope(self, call: _Call, entity: str, *, write: bool) -> None:
        family = _SCOPES[entity]
        wanted = {family, family + (_WRITE if write else _READ), "OR.Default"}
        if not wanted & call.scopes:
            # §6: "token lacks the scope" → 403; body and errorCode unconfirmed.
            raise _ApiError(403, f"The token lacks the scope {family}{_WRITE if write else _READ}.", 0)

    def _dispatch(
        self, call: _Call, entity: str, key: int | None, action: str | None, folder: dict[str, Any] | None
    ) -> _Reply:
        if entity == "Webhooks":
            return self._webhooks_route(call, key, action)
        if entity == "Jobs" and key is None and (action or "").lower() == _START_JOBS.lower():
            if call.method != "POST":
                raise _ApiError(405, f"{call.method} is not supported on StartJobs.", 0)
            assert folder is not None
            return self._start_jobs(call.body, folder)
        if call.method != "GET":
            raise _ApiError(405, f"{call.method} is not supported on {entity}.", 0)
        if entity == "Folders":
            if action is not None and action.lower() == "getallforcurrentuser" and key is None:
                return self._folders_for_current_user(call)
            if action is not None:
                raise _ApiError(404, f"No action {action!r} on Folders.", 0)
            return self._read(call, "Folders", self._folders, key, None)
        table = {"Jobs": self._jobs, "RobotLogs": self._logs, "QueueItems": self._queue_items}[entity]
        if action is not None:
            return self._get_by_key(call, entity, table, action, folder)
        return self._read(call, entity, table, key, folder)

    def _start_jobs(self, body: Any, folder: dict[str, Any]) -> _Reply:
        """§5.1 StartJobs: ``{"startInfo": {ReleaseKey | ReleaseName, Strategy, RobotIds, JobsCount, ...}}`` → 201."""
        info = body.get("startInfo") if isinstance(body, dict) else None
        if not isinstance(info, dict):
            raise _ApiError(400, "startInfo is required.", 0)
        release_key, release_name = info.get("ReleaseKey"), info.get("ReleaseName")
        if not isinstance(release_key, str) and not isinstance(release_name, str):
            raise _ApiError(400, "ReleaseKey or ReleaseName is required.", 0)
        strategy = info.get("Strategy")
        if strategy not in ("All", "Specific", "RobotCount", "JobsCount", "ModernJobsCount"):
            raise _ApiError(400, f"Invalid Strategy {strategy!r}.", 0)
        robots = info.get("RobotIds") or []
        if not isinstance(robots, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in robots):
            raise _ApiError(400, "RobotIds must be a list of integers.", 0)
        if strategy == "Specific" and not robots:
            raise _ApiError(400, "The Specific strategy needs RobotIds.", 0)
        arguments = info.get("InputArguments")
        if arguments is not None and not isinstance(arguments, str):
            raise _ApiError(400, "InputArguments must be a string of JSON.", 0)  # §8.6
        count = len(robots) if strategy == "Specific" else int(info.get("JobsCount") or 1)
        started = []
        for i in range(count):
            fields: dict[str, Any] = {
                "State": "Pending",
                "EndTime": None,
                "StartTime": None,
                "Info": None,
                "Source": str(info.get("Source") or "Manual"),
                "InputArguments": arguments,
                "Release": {"Key": release_key, "ProcessKey": release_name or "Process", "ProcessVersion": "1.0.0"},
            }
            if release_name:
                fields["ReleaseName"] = release_name
            if strategy == "Specific":
                fields["Robot"] = {"Id": robots[i], "Name": None, "MachineName": None}
            job = self.add_job(folder["Id"], **fields)
            with self._lock:
                self._started.append(dict(job))
            started.append(job)
        return _Reply(201, {"@odata.context": self._context("Jobs"), "value": started})

    def started_jobs(self) -> list[dict[str, Any]]:
        """The jobs StartJobs created, in order."""
        with self._lock:
            return [dict(job) for job in self._started]

    def _rows(self, table: Mapping[int, dict[str, Any]], folder: dict[str, Any] | None) -> list[dict[str, Any]]:
        with self._lock:
            rows = [_copy(row) for row in table.values()]
        if folder is not None:
            rows = [row for row in rows if row.get("OrganizationUnitId", row.get("_folder")) == folder["Id"]]
        return [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]

    def _read(
        self,
        call: _Call,
        entity: str,
        table: Mapping[int, dict[str, Any]],
        key: int | None,
        folder: dict[str, Any] | None,
    ) -> _Reply:
        rows = self._rows(table, folder)
        if key is not None:
            found = [row for row in rows if row["Id"] == key]
            if not found:
                raise _ApiError(404, f"{entity[:-1]} does not exist.", 1002)  # §6: 1002 ItemNotFound
            row = found[0]
            return _Reply(200, {"@odata.context": self._context(f"{entity}/$entity"), **row})
        if entity == "Jobs":
            # §5.1: the list returns InputArguments/OutputArguments as null.
            rows = [{**row, "InputArguments": None, "OutputArguments": None} for row in rows]
        return _Reply(200, self._collection(call, entity, rows))

    def _folders_for_current_user(self, call: _Call) -> _Reply:
        """§3: ``/api/Folders/GetAllForCurrentUser?skip=&take=`` → ``{PageItems, Count}`` (not OData)."""
        skip = _integer(call.option("skip"), "skip", 0)
        take = _integer(call.option("take"), "take", _TOP_MAX_DEFAULT)
        fields = (
            "Key",
            "DisplayName",
            "FullyQualifiedName",
            "Description",
            "FolderType",
            "ParentId",
            "ParentKey",
            "Id",
        )
        rows = order(self._rows(self._folders, None), None)
        items = [{name: row[name] for name in (*fields, "Id")} for row in rows[skip : skip + take]]
        return _Reply(200, {"PageItems": items, "Count": len(rows)})

    def _get_by_key(
        self,
        call: _Call,
        entity: str,
        table: Mapping[int, dict[str, Any]],
        action: str,
        folder: dict[str, Any] | None,
    ) -> _Reply:
        match = re.fullmatch(rf"{re.escape(_ODATA_NS)}\.GetByKey\(identifier=(?:'?)([0-9A-Fa-f-]{{36}})'?\)", action)
        if entity != "Jobs" or match is None:
            raise _ApiError(404, f"No action {action!r} on {entity}.", 0)
        wanted = match.group(1).lower()
        for row in self._rows(table, folder):
            if str(row.get("Key", "")).lower() == wanted:
                return _Reply(200, {"@odata.context": self._context(f"{entity}/$entity"), **row})
        raise _ApiError(404, "Job does not exist.", 1002)

    def _context(self, what: str) -> str:
        return f"{self.orchestrator_url}/odata/$metadata#{what}"

    def _collection(self, call: _Call, entity: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """§4: ``{"@odata.context", "@odata.count", "value"}``, paging by ``$top``/``$skip`` only."""
        for name in call.query:
            if name.startswith("$") and name not in _QUERY_OPTIONS:
                raise _ApiError(400, f"Invalid OData query options: {name!r} is not supported.", 1000)
        try:
            filter_text = call.option("$filter")
            if filter_text:
                predicate = compile_filter(filter_text)
                rows = [row for row in rows if predicate(row)]
            rows = order(rows, call.option("$orderby"))
        except ODataError as exc:
            raise _ApiError(400, f"Invalid OData query options: {exc}", 1000) from exc
        top_max = self.top_max.get(entity, _TOP_MAX.get(entity, _TOP_MAX_DEFAULT))
        top = _integer(call.option("$top"), "$top", top_max)
        skip = _integer(call.option("$skip"), "$skip", 0)
        if top > top_max:
            if entity in _TOP_MAX or self.top_over_max == "reject":
                # §4: QueueItems over 100 → 400; elsewhere 400-or-clamp is unconfirmed (switch).
                raise _ApiError(400, f"Invalid OData query options: $top must be at most {top_max}.", 1000)
            top = top_max
        page = select(rows[skip : skip + top], call.option("$select"))
        # §4: @odata.count appears in the doc examples even without $count=true.
        answer = {"@odata.context": self._context(entity), "@odata.count": len(rows), "value": page}
        if self.next_link and skip + top < len(rows):
            # §4: whether Orchestrator ever sends it is unconfirmed (a switch, off by default).
            answer["@odata.nextLink"] = f"{self.orchestrator_url}/odata/{entity}?$skip={skip + top}&$top={top}"
        return answer

    # ---- internals: webhooks ----------------------------------------------------------------

    def _webhooks_route(self, call: _Call, key: int | None, action: str | None) -> _Reply:
        if action is not None:
            return self._webhook_action(call, key, action)
        if key is None:
            if call.method == "GET":
                with self._lock:
                    rows = [self._shown(w) for w in self._webhooks.values()]
                return _Reply(200, self._collection(call, "Webhooks", rows))
            if call.method == "POST":
                return self._create_webhook(call.body)
            raise _ApiError(405, f"{call.method} is not supported on Webhooks.", 0)
        with self._lock:
            if key not in self._webhooks:
                raise _ApiError(404, "Webhook does not exist.", 1002)
            if call.method == "GET":
                return _Reply(
                    200, {"@odata.context": self._context("Webhooks/$entity"), **self._shown(self._webhooks[key])}
                )
            if call.method == "DELETE":
                del self._webhooks[key]
                self._suspended_until.pop(key, None)
                return _Reply(204)
            if call.method in {"PUT", "PATCH"}:
                return self._update_webhook(key, call.body, replace=call.method == "PUT")
        raise _ApiError(405, f"{call.method} is not supported on Webhooks({key}).", 0)

    def _create_webhook(self, body: Any) -> _Reply:
        dto = _webhook_dto(body, partial=False)
        with self._lock:
            webhook_id = next(self._ids)
            dto.update({"Id": webhook_id, "Key": dto.get("Key") or str(uuid.uuid4())})
            webhook = _webhook_defaults() | dto
            self._webhooks[webhook_id] = webhook
            created = self._shown(webhook)
        if self.ping_on_change:
            self._ping_later(webhook_id)
        return _Reply(201, {"@odata.context": self._context("Webhooks/$entity"), **created})

    def _update_webhook(self, key: int, body: Any, *, replace: bool) -> _Reply:
        dto = _webhook_dto(body, partial=not replace)
        dto.pop("Id", None)
        with self._lock:
            current = self._webhooks[key]
            # PUT replaces the whole DTO (an omitted Secret is cleared: §7 says that may happen).
            updated = (_webhook_defaults() | {"Key": current["Key"]} | dto) if replace else (current | dto)
            updated["Id"] = key
            self._webhooks[key] = updated
            result = self._shown(updated)
        if self.ping_on_change:
            self._ping_later(key)
        return _Reply(200, {"@odata.context": self._context("Webhooks/$entity"), **result})

    def _shown(self, webhook: Mapping[str, Any]) -> dict[str, Any]:
        """A webhook as the API shows it: its ``Secret`` in clear, null or masked (``secret_on_read``)."""
        shown = _copy(dict(webhook))
        if shown.get("Secret") and self.secret_on_read != "clear":
            shown["Secret"] = None if self.secret_on_read == "null" else "********"
        return shown

    def _webhook_action(self, call: _Call, key: int | None, action: str) -> _Reply:
        name = action.removeprefix(f"{_ODATA_NS}.")
        if key is None and name == "GetEventTypes" and call.method == "GET":
            value = [{"Name": event, "Group": group} for event, group in EVENT_TYPES]
            return _Reply(200, {"@odata.context": self._context("Collection(EventTypeDto)"), "value": value})
        if key is None and name == "TriggerCustom" and call.method == "POST":
            if not isinstance(call.body, dict):
                raise _ApiError(400, "The body must be a JSON object.", 0)
            event: dict[str, Any] = {"Type": "custom", "EventId": self._event_id(), "Timestamp": _now_iso()}
            event.update({"EventData": call.body, "TenantId": self.tenant_id})
            with self._lock:
                targets = [w["Id"] for w in self._webhooks.values() if _subscribed(w, "custom")]
            for webhook_id in targets:
                self._deliver_later(webhook_id, dict(event))
            return _Reply(202, event)
        if key is not None and name == "Ping" and call.method == "POST":
            return self._ping(key)
        raise _ApiError(404, f"No action {action!r} on Webhooks.", 0)

    def _ping(self, key: int) -> _Reply:
        """§5.4: 202 with a PingEventDto, then a signed ``ping`` POSTed to the webhook's URL."""
        with self._lock:
            webhook = self._webhooks.get(key)
            if webhook is None:
                raise _ApiError(404, "Webhook does not exist.", 1002)
            if not webhook["Enabled"] and self.ping_when_disabled == "refuse":
                raise _ApiError(400, "The webhook is disabled.", 0)  # unconfirmed (§10): a switch
        event = self._ping_event(webhook)
        delivered = dict(event)
        if not self.ping_reuses_event_id:
            delivered["EventId"] = self._event_id()
        self._deliver_later(key, delivered)
        return _Reply(202, {"@odata.context": self._context("UiPath.Server.Configuration.OData.PingEventDto"), **event})

    def _ping_event(self, webhook: Mapping[str, Any]) -> dict[str, Any]:
        # PingEventDto (§5.4; webhooks.md §3.3 "ping: envelope only").
        now = _now_iso()
        return {
            "Type": "ping",
            "EventId": self._event_id(),
            "Timestamp": now,
            "EventTime": now,
            "EntityKey": webhook["Key"],
            "EventSourceId": None,
            "TenantId": self.tenant_id,
            "OrganizationUnitId": None,
            "OrganizationUnitKey": None,
            "UserId": None,
            "UserKey": None,
        }

    def _ping_later(self, key: int) -> None:
        with self._lock:
            webhook = self._webhooks.get(key)
            event = self._ping_event(webhook) if webhook is not None else None
        if event is not None:
            self._deliver_later(key, event)

    def _deliver_later(self, webhook_id: int, event: dict[str, Any]) -> None:
        self._outbox.put((webhook_id, event))

    def _send_loop(self) -> None:
        while (item := self._outbox.get()) is not None:
            webhook_id, event = item
            with self._lock:
                exists = webhook_id in self._webhooks
            if exists:
                if self.delivery_delay:
                    time.sleep(self.delivery_delay)
                self._deliver(webhook_id, event)

    def _deliver(self, webhook_id: int, event: dict[str, Any]) -> Delivery:
        """POST one event to a webhook's URL as Orchestrator does (webhooks.md §1, §4), and record it."""
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        with self._lock:
            webhook = _copy(self._webhooks[webhook_id])
            suspended = self._suspended_until.get(webhook_id, 0.0) > time.monotonic()
        secret = webhook.get("Secret") or None
        signature = sign(body, secret) if secret else None  # webhooks.md §1.3: no secret, no header
        url = str(webhook["Url"])
        outcome, status = "delivered", None
        if not webhook["Enabled"]:
            outcome = "disabled"
        elif suspended:
            outcome = "suspended"  # §7: events in the breaker's hour are skipped, never retried
        elif not _is_loopback(url):
            outcome = "not_loopback"
        else:
            status = _post(url, body, signature, self.delivery_timeout)
            if status is None or not 200 <= status < 300:
                outcome = "failed"
                with self._lock:  # §7: a failed delivery opens the breaker for an hour
                    self._suspended_until[webhook_id] = time.monotonic() + self.breaker_seconds
        delivery = Delivery(webhook_id, url, event, body, signature, outcome, status, time.monotonic())
        with self._lock:
            self._deliveries.append(delivery)
        return delivery

    # ---- internals: HTTP --------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: Mapping[str, str], raw: bytes) -> _Reply:
        split = urlsplit(target)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        delay, after = self._take_delay()
        if delay and not after:
            time.sleep(delay)
        kind, route = self._classify(path)
        body: Any = None
        reply: _Reply
        try:
            if kind == "unknown":
                raise _ApiError(404, f"No resource at {path!r}.", 0)
            injected = self._injected(kind, path)
            if injected is not None:
                reply = injected
            elif kind == "token":
                if method != "POST":
                    raise _ApiError(405, "The token endpoint takes POST.", 0)
                form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
                body = form
                reply = self._token(form, headers)
            elif kind == "health":
                reply = _Reply(200)
            else:
                body = _json_body(raw)
                token = self._authenticate(headers)
                call = _Call(method, path, query, headers, body, token.scopes, token.client_id)
                reply = self._api(call, route)
        except _ApiError as exc:
            trace = uuid.uuid4().hex
            reply = _Reply(exc.status, {"message": exc.message, "errorCode": exc.code, "traceId": trace}, exc.headers)
        if kind in {"api", "health"}:
            reply.headers.setdefault("api-supported-versions", "20.0")  # §8.10
        arrived = time.monotonic() - (0.0 if after else delay)
        self._record(RecordedRequest(method, path, query, _safe_headers(headers), _redact(body), reply.status, arrived))
        if delay and after:
            time.sleep(delay)  # carried out and recorded; the answer is late
        return reply

    def _classify(self, path: str) -> tuple[str, str]:
        """("token" | "api" | "health" | "unknown", the route below the Orchestrator base)."""
        lowered = path.lower()
        org = self.org.lower()
        if lowered in {f"/{org}/identity_/connect/token", "/identity_/connect/token", "/identity/connect/token"}:
            return "token", ""
        prefix = f"/{org}/{self.tenant.lower()}/orchestrator_"
        route = path[len(prefix) :] if lowered.startswith(prefix + "/") else path
        if route.lower() in {"/api/health", "/api/health/startup"}:
            return "health", route
        if route.lower().startswith(("/odata/", "/api/")):
            return "api", route
        return "unknown", route


# ---- module helpers -------------------------------------------------------------------------

_ENTITIES = {name.lower(): name for name in ("Webhooks", "Folders", "Jobs", "RobotLogs", "QueueItems")}
# /odata/Entity, /odata/Entity(123), /odata/Entity/Action(...), /odata/Entity(123)/Action; and the
# one /api route the fake serves, /api/Folders/GetAllForCurrentUser (handled as an action).
_START_JOBS = "UiPath.Server.Configuration.OData.StartJobs"
_ROUTE = re.compile(r"/(?P<base>odata|api)/(?P<entity>[A-Za-z]+)(?:\((?P<key>\d+)\))?(?:/(?P<action>[^/]+))?")
_QUERY_OPTIONS = frozenset({"$filter", "$top", "$skip", "$orderby", "$count", "$select", "$expand", "$format"})
_WEBHOOK_FIELDS: dict[str, type] = {
    "Url": str,
    "Enabled": bool,
    "Secret": str,
    "SubscribeToAllEvents": bool,
    "AllowInsecureSsl": bool,
    "Events": list,
    "Id": int,
    "Key": str,
    "Name": str,
    "Description": str,
}
_WEBHOOK_REQUIRED = ("Name", "Url", "Enabled", "SubscribeToAllEvents", "AllowInsecureSsl")  # §9.8
_WEBHOOK_LIMITS = {"Name": 128, "Description": 256, "Url": 2000, "Secret": 100}  # §5.4


def _webhook_defaults() -> dict[str, Any]:
    return {
        "Url": None,
        "Enabled": False,
        "Secret": None,
        "SubscribeToAllEvents": False,
        "AllowInsecureSsl": False,
        "Events": [],
        "Id": 0,
        "Key": None,
        "Name": None,
        "Description": None,
    }


def _webhook_dto(body: Any, *, partial: bool) -> dict[str, Any]:
    """A WebhookDto from a request body, validated against §5.4's field list and limits."""
    if not isinstance(body, dict):
        raise _ApiError(400, "The body must be a WebhookDto JSON object.", 0)
    unknown = sorted(set(body) - set(_WEBHOOK_FIELDS) - {"@odata.context"})
    if unknown:
        raise _ApiError(400, f"Unknown WebhookDto properties: {', '.join(unknown)}.", 0)
    dto = {k: v for k, v in body.items() if k in _WEBHOOK_FIELDS}
    if not partial:
        missing = [name for name in _WEBHOOK_REQUIRED if dto.get(name) is None]
        if missing:
            raise _ApiError(400, f"The {missing[0]} field is required.", 0)
    for name, kind in _WEBHOOK_FIELDS.items():
        value = dto.get(name)
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _ApiError(400, f"WebhookDto.{name} has the wrong type.", 0)
        if name in _WEBHOOK_LIMITS and len(str(value)) > _WEBHOOK_LIMITS[name]:
            raise _ApiError(400, f"WebhookDto.{name} is longer than {_WEBHOOK_LIMITS[name]}.", 0)
    if "Url" in dto and not str(dto["Url"]).startswith(("http://", "https://")):
        raise _ApiError(400, "WebhookDto.Url must be an absolute http(s) URL.", 0)
    if "Events" in dto:
        dto["Events"] = _webhook_events(dto["Events"] or [])
    return dto


def _webhook_events(events: list[Any]) -> list[dict[str, str]]:
    """``Events: [{EventType}]``, each a name GetEventTypes lists (§5.4)."""
    for item in events:
        event_type = item.get("EventType") if isinstance(item, dict) else None
        if not isinstance(event_type, str) or event_type not in _EVENT_NAMES:
            raise _ApiError(400, f"Unknown event type {event_type!r}.", 0)
    return [{"EventType": item["EventType"]} for item in events]


def _subscribed(webhook: Mapping[str, Any], event_type: str) -> bool:
    return bool(webhook["SubscribeToAllEvents"]) or any(e["EventType"] == event_type for e in webhook["Events"])


def _copy(value: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(value))  # type: ignore[no-any-return]


def _integer(text: str | None, name: str, default: int) -> int:
    if text is None:
        return default
    if not re.fullmatch(r"\d{1,9}", text):
        raise _ApiError(400, f"Invalid OData query options: {name} must be a non-negative integer.", 1000)
    return int(text)


def _fault_reply(status: int, retry_after: float | None) -> _Reply:
    headers = {"Retry-After": str(max(0, math.ceil(retry_after)))} if retry_after is not None else {}
    message = "Too many requests." if status == 429 else "The service is unavailable."
    return _Reply(status, {"message": message, "errorCode": 0, "traceId": uuid.uuid4().hex}, headers)


def _json_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise _ApiError(400, "The request body is not valid JSON.", 0) from None


def _safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: ("***" if name in _SECRET_HEADERS else value) for name, value in headers.items()}


def _redact(body: Any) -> Any:
    if isinstance(body, dict):
        return {
            k: ("***" if k in {"client_secret", "Secret", "access_token"} and v else _redact(v))
            for k, v in body.items()
        }
    if isinstance(body, list):
        return [_redact(item) for item in body]
    return body


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _post(url: str, body: bytes, signature: str | None, timeout: float) -> int | None:
    headers = dict(_DELIVERY_HEADERS)
    if signature is not None:
        headers["X-UiPath-Signature"] = signature
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - loopback only
            reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:  # refused, reset or timed out
        return None


class _Trickling:
    """A connection's writer that sends one byte per ``interval`` seconds, at most 30 s in all."""

    def __init__(self, raw: Any, interval: float) -> None:
        self._raw = raw
        self._interval = interval
        self._until = time.monotonic() + _MAX_SLOW

    def write(self, data: bytes) -> int:
        for i in range(len(data)):
            if time.monotonic() >= self._until:
                raise ConnectionAbortedError("trickled for 30 s")
            self._raw.write(data[i : i + 1])
            self._raw.flush()
            time.sleep(self._interval)
        return len(data)

    def flush(self) -> None:
        self._raw.flush()


def _handler(fake: FakeOrchestrator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                self._send(_Reply(413, {"message": "Request too large.", "errorCode": 0}))
                self.close_connection = True
                return
            raw = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            self._send(fake._handle(self.command, self.path, headers, raw))

        def _send(self, reply: _Reply) -> None:
            payload = b"" if reply.body is None else json.dumps(reply.body).encode("utf-8")
            interval = fake._take_trickle()
            if interval is not None:
                self.wfile = _Trickling(self.wfile, interval)  # type: ignore[assignment]
            self.send_response(reply.status)
            if payload:
                self.send_header("Content-Type", "application/json; odata.metadata=minimal; charset=utf-8")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            if isinstance(self.wfile, _Trickling):
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    return Handler
