"""Talking back to Orchestrator: one connection per source (outbound I/O, like delivery/).

Modules: ``config`` (deployment kind and token endpoint from the ``url``), ``auth`` (client
credentials and the token cache), ``circuit`` (the breaker), ``observe`` (metrics seam),
``client`` (HTTP with retries, time budget, circuit and OData paging), ``webhooks`` (the
Webhooks API), ``details`` (an event's job, log lines and queue item, for ``enrich:``),
``sync`` (the webhook the rules need, compared and applied), ``errors``.
httpx2 is imported here only. docs/orchestrator.md is the user's guide.
"""

from __future__ import annotations

from receiver.orchestrator.auth import Token
from receiver.orchestrator.circuit import Circuit
from receiver.orchestrator.client import FOLDER_HEADER, PAGE_LIMITS, Collection, OrchestratorClient, RetryPolicy
from receiver.orchestrator.config import Deployment, Endpoints, endpoints
from receiver.orchestrator.details import Wanted, fetch_details, unavailable_reason
from receiver.orchestrator.errors import OrchestratorAuthError, OrchestratorError, OrchestratorUnavailableError
from receiver.orchestrator.jobs import StartedJob, start_job
from receiver.orchestrator.observe import NullObserver, Observer, Outcome, PrometheusObserver
from receiver.orchestrator.sync import Change, SyncPlan, apply_sync, desired_events, plan_sync
from receiver.orchestrator.webhooks import (
    PingResult,
    Webhook,
    create_webhook,
    get_webhook,
    list_event_types,
    list_webhooks,
    ping_webhook,
    update_webhook,
)

__all__ = [
    "FOLDER_HEADER",
    "PAGE_LIMITS",
    "Change",
    "Circuit",
    "Collection",
    "Deployment",
    "Endpoints",
    "NullObserver",
    "Observer",
    "OrchestratorAuthError",
    "OrchestratorClient",
    "OrchestratorError",
    "OrchestratorUnavailableError",
    "Outcome",
    "PingResult",
    "PrometheusObserver",
    "RetryPolicy",
    "StartedJob",
    "SyncPlan",
    "Token",
    "Wanted",
    "Webhook",
    "apply_sync",
    "create_webhook",
    "desired_events",
    "endpoints",
    "fetch_details",
    "get_webhook",
    "list_event_types",
    "list_webhooks",
    "ping_webhook",
    "plan_sync",
    "start_job",
    "unavailable_reason",
    "update_webhook",
]
