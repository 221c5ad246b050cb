"""The JSON views of the rules in force and of stored events that the admin API and the web page
both show (``GET /api/rules``, ``/api/events``, ``/api/events/{id}``; ``/ui``'s pages).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from receiver.admin import alerting, audit
from receiver.delivery.notifier import mask_url
from receiver.http.runtime import Runtime
from receiver.store import DeliveryRow, EventRow

__all__ = ["event_detail", "event_list", "rules_json"]


def rules_json(rt: Runtime) -> dict[str, Any]:
    """The rule set in force and its load status (``GET /api/rules``, the web page's rules view)."""
    ruleset = rt.ruleset
    return {
        "path": str(rt.settings.rules),
        "rules": [r.name for r in ruleset.rules],
        "channels": sorted(ruleset.channels),
        "loaded_at": rt.rules_loaded_at,
        "last_reload_problems": rt.reload_problems,
        "rule_details": [
            {
                "name": r.name,
                "line": r.line,
                "description": r.description,
                "match": r.clause.describe() if r.clause is not None else "every event",
                "notify": list(r.notify),
                "continue": r.continue_,
                "noise": [
                    name for name in ("throttle", "group", "frequency", "absence", "recover") if getattr(r, name)
                ],
            }
            for r in ruleset.rules
        ],
        "channel_details": [
            {
                "name": c.name,
                "url": mask_url(c.url.get_secret_value()),
                "max_attempts": c.max_attempts,
                "max_age_seconds": c.max_age_seconds,
                "concurrency": c.concurrency,
                "timeout_seconds": c.timeout_seconds,
            }
            for c in sorted(ruleset.channels.values(), key=lambda c: c.name)
        ],
    }


async def event_list(rt: Runtime, rows: Sequence[EventRow], *, explain: bool = False) -> list[dict[str, Any]]:
    """Events as ``GET /api/events`` shows them, with their deliveries (one store query for all)."""
    by_event: dict[int, list[DeliveryRow]] = {r.id: [] for r in rows}
    if rows:
        for d in await rt.store.list_deliveries(inbox_ids=list(by_event), limit=len(rows) * 20):
            by_event[d.inbox_id].append(d)
    ruleset, loaded_at = rt.ruleset, rt.rules_loaded_at
    items = []
    for row in rows:
        item = audit.event_json(row, sorted(by_event[row.id], key=lambda d: d.id))
        if explain:
            item["explain"] = audit.explain_event(ruleset, row, rules_loaded_at=loaded_at)
        items.append(item)
    return items


async def event_detail(rt: Runtime, inbox_id: int) -> dict[str, Any] | None:
    """One event with its body, deliveries and their attempts, every noise decision, and the explanation."""
    row = await rt.store.get_event(inbox_id)
    if row is None:
        return None
    rows = await rt.store.deliveries_of(row.id)
    attempts = await rt.store.list_attempts([d.id for d in rows])
    noise = await rt.store.list_noise_log(inbox_id=row.id, limit=1000)
    data = audit.event_json(row, rows)
    for item in data["deliveries"]:
        item["attempt_log"] = [audit.attempt_json(a) for a in attempts if a.delivery_id == item["id"]]
    data["noise_log"] = [audit.noise_json(n) for n in reversed(noise)]
    data["explain"] = audit.explain_event(rt.ruleset, row, rules_loaded_at=rt.rules_loaded_at)
    data["body"] = audit.body_json(row)
    data["alert_trail"] = alerting.trail_json(await rt.store.alert_trail_of_event(row.id))
    return data
