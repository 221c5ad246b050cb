"""Alerts for people: list, acknowledge, resolve, and the actions of an alert message's links
(silence its process or robot for an hour, retry its job), each written to the alert's trail.

Shared by the admin API, the web page, the action links and ``receiver alerts`` (docs/alerts.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from receiver.errors import EventParseError
from receiver.events import JobEvent
from receiver.metrics import Metrics
from receiver.noise import Matcher, budget_refs, held_now, parse_stored
from receiver.orchestrator import (
    OrchestratorClient,
    OrchestratorError,
    OrchestratorUnavailableError,
    RetryPolicy,
    start_job,
)
from receiver.rules import RuleSet
from receiver.store import AlertEventRow, AlertRow, NewAlertEvent, NewSilence, Store

__all__ = [
    "SILENCE_SECONDS",
    "ActionResult",
    "acknowledge",
    "alert_json",
    "held_by_channel",
    "resolve",
    "retry_job",
    "silence_for",
    "trail_json",
    "valid_id",
]

log = structlog.get_logger()

SILENCE_SECONDS = 3600.0
"""How long "silence this process (or robot)" silences."""

_ID = re.compile(r"^[0-9a-f]{1,64}$")
_ACTOR_CHARS = 100
_RETRY_BUDGET = 20.0
_SILENCES_READ = 1000
"""Active silences read to find one an alert's link already made (newest first)."""


def valid_id(text: str) -> bool:
    """Whether ``text`` can be an alert id (checked before any store query)."""
    return bool(_ID.match(text))


def actor_name(text: str) -> str:
    """Who acted, as typed or as the proxy said: one line, bounded."""
    return " ".join(text.split())[:_ACTOR_CHARS]


def alert_json(alert: AlertRow) -> dict[str, Any]:
    """An alert as the admin API shows it."""
    return {
        "id": alert.id,
        "rule": alert.rule,
        "source": alert.source,
        "key": alert.shown_key,
        "state": alert.state,
        "title": alert.title,
        "event": alert.inbox_id,
        "event_type": alert.event_type,
        "last_event": alert.last_inbox_id,
        "process": alert.process,
        "robot": alert.robot,
        "count": alert.count,
        "opened_at": alert.opened_at,
        "last_at": alert.last_at,
        "expires_at": alert.expires_at,
        "next_at": alert.due_at,
        "reminders": alert.reminders,
        "escalations": alert.escalations,
        "acknowledged_at": alert.acked_at,
        "acknowledged_by": alert.acked_by,
        "resolved_at": alert.resolved_at,
        "resolved_by": alert.resolved_by,
        "resolution": alert.resolution,
    }


def trail_json(rows: list[AlertEventRow]) -> list[dict[str, Any]]:
    """An alert's trail as the admin API shows it."""
    return [
        {
            "alert": r.event.alert_id,
            "at": r.event.at,
            "action": r.event.action,
            "by": r.event.actor,
            "via": r.event.via,
            "detail": r.event.detail,
            "event": r.event.inbox_id,
        }
        for r in rows
    ]


def _counted(metrics: Metrics | None, action: str, via: str) -> None:
    if metrics is not None:
        metrics.alert_actions.labels(action, via).inc()


async def acknowledge(
    store: Store, alert_id: str, *, actor: str, via: str, now: float, metrics: Metrics | None = None
) -> AlertRow | None:
    """Acknowledge a firing alert (its reminders and escalations stop); None when it is not firing."""
    row = await store.acknowledge_alert(alert_id, actor=actor_name(actor) or via, via=via, now=now)
    if row is not None:
        log.info("alert_acknowledged", alert_id=alert_id, by=row.acked_by, via=via)
        _counted(metrics, "acknowledged", via)
    return row


async def resolve(
    store: Store, alert_id: str, *, actor: str, via: str, now: float, metrics: Metrics | None = None
) -> AlertRow | None:
    """Resolve an open alert by hand; None when it is not open."""
    row = await store.resolve_alert(alert_id, actor=actor_name(actor) or via, via=via, now=now)
    if row is not None:
        log.info("alert_resolved", alert_id=alert_id, by=row.resolved_by, via=via)
        _counted(metrics, "resolved", via)
    return row


async def held_by_channel(store: Store, ruleset: RuleSet) -> dict[str, int]:
    """Notifications channel budgets hold right now for their digests, by channel (one row per budgeted channel)."""
    refs = budget_refs(ruleset)
    if not refs:
        return {}
    rows = await store.load_noise(refs)
    return held_now((row.name, json.loads(row.data)) for row in rows)


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action did: ``ok``, and one sentence for the person who asked."""

    ok: bool
    message: str


def _matcher(field: str, value: str) -> str:
    if any(c in value for c in "*?"):  # a glob character in a name: match the name itself
        return str(Matcher(field, "=~", f"^{re.escape(value)}$"))
    return str(Matcher(field, "=", value))


async def silence_for(
    store: Store, alert: AlertRow, *, actor: str, via: str, now: float, metrics: Metrics | None = None
) -> ActionResult:
    """Silence the alert's process (or its robot, for an event without one) for an hour.

    While a silence made from this alert still holds, nothing is added: a link anyone in the
    channel has, replayed, must not fill the silences every notification is tested against.
    """
    actor = actor_name(actor) or via
    if alert.process:
        what, matcher = f"process {alert.process}", _matcher("process", alert.process)
    elif alert.robot:
        what, matcher = f"robot {alert.robot}", _matcher("robot", alert.robot)
    else:
        return ActionResult(False, "This alert names no process and no robot: there is nothing to silence.")
    origin = f"silenced from alert {alert.id} ("
    for held in await store.list_silences(active_at=now, limit=_SILENCES_READ):
        if held.comment.startswith(origin) and held.starts_at <= now:
            left = max(1, round((held.ends_at - now) / 60))
            return ActionResult(
                True,
                f"The {what} is already silenced from this alert (silence {held.id}, {left} more minutes): "
                "nothing was added.",
            )
    silence = NewSilence(
        matchers=(matcher,),
        comment=f"{origin}{alert.title})"[:500],
        created_by=actor,
        starts_at=now,
        ends_at=now + SILENCE_SECONDS,
    )
    row = await store.add_silence(silence, now=now)
    detail = f"silence {row.id}: {matcher} for 1 h"
    await store.record_alert_event(NewAlertEvent(alert.id, now, "silenced", actor, via, detail, alert.inbox_id))
    log.info("alert_silenced", alert_id=alert.id, silence_id=row.id, by=actor, via=via)
    _counted(metrics, "silenced", via)
    return ActionResult(True, f"The {what} is silenced for 1 hour (silence {row.id}).")


@dataclass(frozen=True, slots=True)
class _Job:
    release_key: str
    robot_id: int | None
    folder_id: int | None


async def _job_of(store: Store, alert: AlertRow) -> _Job | None:
    row = await store.get_event(alert.inbox_id)
    if row is None:
        return None
    try:
        event = parse_stored(row.type, row.body)
    except EventParseError:
        return None
    if not isinstance(event, JobEvent) or event.job is None:
        return None
    job = event.job
    key = job.release.key if job.release is not None else None
    if not key:
        return None
    robot_id = job.robot.id if job.robot is not None else None
    return _Job(key, robot_id, event.folder)


async def retry_job(
    store: Store,
    alert: AlertRow,
    ruleset: RuleSet,
    *,
    actor: str,
    via: str,
    now: float,
    client: Callable[[str], OrchestratorClient | None] | None = None,
    metrics: Metrics | None = None,
) -> ActionResult:
    """Start the alert's job again (same release, same robot) through Orchestrator's API, once per alert.

    The first request writes ``retry_started`` to the trail (unique per alert) before it calls
    Orchestrator, so a repeated or concurrent request finds it and starts nothing.

    Args:
        client: the Orchestrator client of a source (None: built from the rules' connection).
        metrics: where a started job is counted (``retried``).
    """
    actor = actor_name(actor) or via
    route = ruleset.route(alert.rule)
    source = ruleset.sources.get(alert.source)
    if route is None or "retry" not in route.rule.actions or source is None or source.orchestrator is None:
        return ActionResult(False, "Retrying is not allowed for this alert (rule actions or Orchestrator connection).")
    job = await _job_of(store, alert)
    if job is None:
        return ActionResult(False, "The event of this alert names no job to retry.")
    started = NewAlertEvent(alert.id, now, "retry_started", actor, via, f"release {job.release_key}", alert.inbox_id)
    if not await store.record_alert_event(started, once=True):
        return ActionResult(False, "This job was already retried from this alert: nothing was started again.")
    made = client(source.name) if client is not None else None
    orchestrator = made or OrchestratorClient(
        source.name, source.orchestrator, policy=RetryPolicy(budget=_RETRY_BUDGET)
    )
    try:
        result = await start_job(
            orchestrator, release_key=job.release_key, robot_id=job.robot_id, folder_id=job.folder_id
        )
    except OrchestratorError as exc:
        await store.record_alert_event(
            NewAlertEvent(alert.id, now, "retry_failed", actor, via, str(exc)[:500], alert.inbox_id)
        )
        log.warning("alert_retry_failed", alert_id=alert.id, error=str(exc))
        if isinstance(exc, OrchestratorUnavailableError) and exc.maybe_done:
            return ActionResult(
                False,
                "Orchestrator did not confirm that the job started, and it may have: look at the "
                f"folder's jobs in Orchestrator before starting it by hand. ({exc})",
            )
        return ActionResult(False, f"Orchestrator did not start the job: {exc}")
    finally:
        if made is None:
            await orchestrator.aclose()
    detail = f"job {result.id} started (release {job.release_key}, robot {job.robot_id})"
    await store.record_alert_event(NewAlertEvent(alert.id, now, "retried", actor, via, detail, alert.inbox_id))
    log.info("alert_job_retried", alert_id=alert.id, job_id=result.id, by=actor, via=via)
    _counted(metrics, "retried", via)
    return ActionResult(True, f"Job {result.id} was started (same release, same robot).")
