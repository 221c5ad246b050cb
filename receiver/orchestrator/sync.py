"""Registration from the rules: the webhook a source needs, compared with the one Orchestrator holds.

The desired webhook: ``Url`` = the source's ``public_url`` (found by exact match, as the
reference advises), ``Enabled``, ``Secret`` = the source's first secret, and exactly the event
types the rules can use from that source plus ``ping`` (every event when some rule can use any
type). :func:`plan_sync` is pure; :func:`apply_sync` makes the one call the plan needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from receiver.events import EVENT_TYPES
from receiver.orchestrator.client import OrchestratorClient
from receiver.orchestrator.errors import OrchestratorError
from receiver.orchestrator.webhooks import Webhook, create_webhook, update_webhook
from receiver.rules import RuleSet, Source, needed_event_types

__all__ = ["Change", "SyncPlan", "apply_sync", "desired_events", "plan_sync"]

_SECRET_NEW = "the source's first secret"  # noqa: S105  # display text, not a secret
_DESCRIPTION = "Managed by receiver from rules.yaml (receiver orchestrator sync)"


@dataclass(frozen=True, slots=True)
class Change:
    """One field that differs; values are display text (a secret is never shown).

    Attributes:
        field: the ``WebhookDto`` field.
        before: what Orchestrator holds.
        after: what the rules want.
    """

    field: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """What sync would do for one source.

    Attributes:
        source: the source name.
        url: the ``public_url`` the webhook is found by.
        action: ``create``, ``update`` or ``none`` (already as the rules need).
        webhook: the webhook that would be updated, or None.
        changes: the differences, in display form.
        duplicates: Ids of further webhooks with the same URL (left alone; each would deliver twice).
        fields: the DTO fields to send (holds the secret: not in the repr).
    """

    source: str
    url: str
    action: Literal["create", "update", "none"]
    webhook: Webhook | None
    changes: tuple[Change, ...]
    duplicates: tuple[int, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict, repr=False)

    def lines(self) -> list[str]:
        """The plan as text: a heading, then one line per changed field."""
        if self.webhook is None:
            head = f"source {self.source!r}: no webhook at {self.url}; create one:"
        else:
            name = f" ({self.webhook.name})" if self.webhook.name else ""
            verdict = "up to date" if self.action == "none" else "update:"
            head = f"source {self.source!r}: webhook {self.webhook.id}{name} at {self.url}: {verdict}"
        out = [head]
        width = max((len(c.field) for c in self.changes), default=0) + 1
        for change in self.changes:
            label = f"{change.field}:"
            if change.before:
                out.append(f"  {label:<{width}} {change.before} -> {change.after}")
            else:
                out.append(f"  {label:<{width}} {change.after}")
        for other in self.duplicates:
            out.append(f"  note: webhook {other} has the same URL and is left alone (every event arrives twice)")
        return out


def desired_events(ruleset: RuleSet, source: str) -> tuple[bool, tuple[str, ...]]:
    """Return (subscribe to every event, the event types) the rules need from ``source``, ``ping`` included."""
    needed = needed_event_types(ruleset, source, EVENT_TYPES)
    if needed is None:
        return True, ()
    return False, tuple(sorted(needed | {"ping"}))


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _events_change(current: Webhook, subscribe_all: bool, events: Sequence[str]) -> Change | None:
    if subscribe_all:
        return None
    have, want = set(current.events), set(events)
    if have == want:
        return None
    diff = [f"+ {t}" for t in sorted(want - have)] + [f"- {t}" for t in sorted(have - want)]
    return Change("Events", "", ", ".join(diff))


def plan_sync(source: Source, ruleset: RuleSet, webhooks: Sequence[Webhook], *, secret: str | None) -> SyncPlan:
    """Compare the webhooks Orchestrator holds with what the rules need for ``source``.

    Args:
        source: a source with an ``orchestrator:`` block.
        ruleset: the compiled rules.
        webhooks: the tenant's webhooks (those with another URL are ignored).
        secret: the source's first secret as the server resolves it (for ``uipath``,
            ``RECEIVER_WEBHOOK_SECRET`` comes first), or None for an unsigned source.

    Returns:
        The plan; nothing is changed.
    """
    if source.orchestrator is None:
        raise ValueError(f"source {source.name!r} has no orchestrator block")
    url = source.orchestrator.public_url
    subscribe_all, events = desired_events(ruleset, source.name)
    fields: dict[str, Any] = {
        "Url": url,
        "Enabled": True,
        "SubscribeToAllEvents": subscribe_all,
        "Events": [{"EventType": t} for t in events],
    }
    if secret:
        fields["Secret"] = secret
    same = sorted((w for w in webhooks if w.url == url), key=lambda w: (not w.enabled, w.id))
    if not same:
        fields |= {"Name": f"receiver {source.name}"[:128], "Description": _DESCRIPTION, "AllowInsecureSsl": False}
        new = [Change("Enabled", "", "true")]
        new.append(Change("Events", "", "every event" if subscribe_all else ", ".join(events)))
        if secret:
            new.append(Change("Secret", "", _SECRET_NEW))
        return SyncPlan(source.name, url, "create", None, tuple(new), fields=fields)
    current = same[0]
    found: list[Change | None] = []
    if not current.enabled:
        found.append(Change("Enabled", "false", "true"))
    if current.subscribe_to_all != subscribe_all:
        found.append(Change("SubscribeToAllEvents", _flag(current.subscribe_to_all), _flag(subscribe_all)))
    found.append(_events_change(current, subscribe_all, events))
    if secret:
        have = current.secret.get_secret_value() if current.secret is not None else None
        if have is None:
            found.append(Change("Secret", "not set or not readable", _SECRET_NEW))
        elif have != secret:
            found.append(Change("Secret", "differs", _SECRET_NEW))
    changes = tuple(c for c in found if c is not None)
    duplicates = tuple(w.id for w in same[1:])
    return SyncPlan(source.name, url, "update" if changes else "none", current, changes, duplicates, fields)


async def apply_sync(client: OrchestratorClient, plan: SyncPlan) -> Webhook | None:
    """Carry out a plan: create or update the webhook; nothing for ``none``.

    Returns:
        The webhook as Orchestrator holds it afterwards, or None when nothing was needed.

    Raises:
        OrchestratorError: as the client's calls.
    """
    if plan.action == "none":
        return None
    if plan.action == "create":
        return await create_webhook(client, plan.fields)
    if plan.webhook is None:  # pragma: no cover  # an update plan always names its webhook
        raise OrchestratorError(plan.source, "update without a webhook")
    return await update_webhook(client, plan.webhook, plan.fields)
