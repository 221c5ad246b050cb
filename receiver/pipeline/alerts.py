"""Alerts as the inbox worker keeps them: opened, notified again and recovered by events; reminded,
escalated and expired by their timers (docs/alerts.md).

The noise engine reports :class:`~receiver.noise.AlertSignal` s; :class:`AlertBook` turns a
batch's signals into the store's :class:`~receiver.store.AlertChange` s, committed in the
transaction that marks the events processed, and puts the alert's action links into the messages
it sent. :func:`fire_alert_timers` sends the reminders (``repeat:``) and escalations
(``escalate:``) of firing alerts whose time has come; the store writes each only if the alert is
still firing and its timer as it was read, so an acknowledgement or a recovery that came first
stops it, and a restart neither loses nor repeats one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import structlog

from receiver.actionlink import LinkSigner, action_links
from receiver.events import Details
from receiver.metrics import Metrics
from receiver.noise import AlertSignal, Emitted
from receiver.render import Notification, escaper, finish, with_links
from receiver.rules import Rule, RuleSet, Severity
from receiver.store import (
    AlertChange,
    AlertRow,
    AlertStore,
    AlertTimer,
    LateDelivery,
    NewAlertEvent,
    NewDelivery,
)
from receiver.timefmt import local_text

__all__ = ["AlertBook", "Links", "fire_alert_timers", "next_due"]

log = structlog.get_logger()

_ACTOR = "receiver"
_BATCH = 100


@dataclass(frozen=True, slots=True)
class Links:
    """What action links need: the receiver's public URL and the signer (both set, or no links)."""

    base_url: str
    signer: LinkSigner

    def for_alert(self, alert: AlertRow, rule: Rule | None, ruleset: RuleSet, now: float) -> list[tuple[str, str]]:
        """The links of one alert's message: acknowledge, silence, and retry where the rule allows it."""
        source = ruleset.sources.get(alert.source)
        retry = (
            rule is not None
            and "retry" in rule.actions
            and source is not None
            and source.orchestrator is not None
            and alert.event_type.startswith("job.")
        )
        what = "process" if alert.process else "robot" if alert.robot else None
        return action_links(self.base_url, self.signer, alert.id, now=now, silence_what=what, retry=retry)


def next_due(alert: AlertRow, rule: Rule | None) -> float | None:
    """When the alert's next reminder or escalation is due (None: none, or it is not firing)."""
    if alert.state != "firing" or rule is None:
        return None
    times = []
    if rule.repeat is not None and alert.next_repeat_at is not None:
        times.append(alert.next_repeat_at)
    if alert.escalations < len(rule.escalate):
        times.append(alert.opened_at + rule.escalate[alert.escalations].after)
    return min(times) if times else None


def _new_id() -> str:
    return secrets.token_hex(8)


def _opened(alert_id: str, signal: AlertSignal, rule: Rule | None) -> AlertRow:
    """A new firing alert, opened by ``signal``'s notification."""
    resolve_after = 24 * 3600.0 if rule is None else rule.resolve_after
    return AlertRow(
        id=alert_id,
        rule=signal.rule,
        source=signal.source,
        key=signal.key,
        shown_key=signal.shown_key,
        state="firing",
        title=signal.title,
        inbox_id=signal.inbox_id,
        last_inbox_id=signal.inbox_id,
        process=signal.process,
        robot=signal.robot,
        count=1,
        opened_at=signal.at,
        last_at=signal.at,
        expires_at=signal.at + resolve_after,
        next_repeat_at=None if rule is None or rule.repeat is None else signal.at + rule.repeat,
        event_type=signal.event_type,
    )


@dataclass(slots=True)
class _Live:
    """An alert while the batch changes it (one ``AlertRow`` is made of it at the end)."""

    row: AlertRow
    kind: Literal["open", "touch", "resolve", "none"]
    last_inbox_id: int
    last_at: float
    count: int
    expires_at: float
    next_repeat_at: float | None
    trail: list[NewAlertEvent] = field(default_factory=list)
    resolved_at: float | None = None
    notified: list[AlertSignal] = field(default_factory=list)  # this batch's notifications for a stored alert

    @classmethod
    def of(cls, row: AlertRow, kind: Literal["open", "touch", "resolve", "none"]) -> _Live:
        return cls(row, kind, row.last_inbox_id, row.last_at, row.count, row.expires_at, row.next_repeat_at)

    def alert(self, rule: Rule | None) -> AlertRow:
        """The alert as it ends the batch."""
        row = replace(
            self.row,
            last_inbox_id=self.last_inbox_id,
            last_at=self.last_at,
            count=self.count,
            expires_at=self.expires_at,
            next_repeat_at=self.next_repeat_at,
        )
        if self.resolved_at is None:
            return replace(row, due_at=next_due(row, rule))
        return replace(
            row, state="resolved", due_at=None, resolved_at=self.resolved_at, resolved_by=_ACTOR, resolution="recovered"
        )


class AlertBook:
    """The alerts one batch of events touches, and what the batch changes about them.

    Args:
        stored: the open alerts of the batch's keys, as stored.
        ruleset: the rules in force.
        links: action links, or None (no public URL or no key).
        new_id: makes the id of a new alert.
    """

    def __init__(
        self,
        stored: Iterable[AlertRow],
        ruleset: RuleSet,
        links: Links | None,
        *,
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        self._open: dict[tuple[str, str], _Live] = {(a.rule, a.key): _Live.of(a, "none") for a in stored}
        self._ruleset = ruleset
        self._links = links
        self._new_id = new_id
        self._changed: list[_Live] = []
        self._links_of: dict[tuple[int, str, str], list[tuple[str, str]]] = {}

    @staticmethod
    def keys(signals: Iterable[AlertSignal]) -> set[tuple[str, str]]:
        """The (rule, key) pairs whose open alerts the book needs."""
        return {(s.rule, s.key) for s in signals}

    @property
    def links(self) -> bool:
        """Whether some message of the batch gets links (see :meth:`decorate`)."""
        return bool(self._links_of)

    def apply(self, signals: Sequence[AlertSignal]) -> None:
        """Apply signals in the order they happened."""
        for signal in signals:
            rule = self._rule(signal.rule)
            if signal.action == "fire":
                self._fire(signal, rule)
            elif signal.action == "touch":
                self._touch(signal, rule)
            else:
                self._recover(signal)

    def _rule(self, name: str) -> Rule | None:
        route = self._ruleset.route(name)
        return None if route is None else route.rule

    def _mark(self, live: _Live, kind: Literal["touch", "resolve"]) -> None:
        if live.kind == "none":
            self._changed.append(live)
        if live.kind != "open":
            live.kind = kind

    def _fire(self, signal: AlertSignal, rule: Rule | None) -> None:
        ref = (signal.rule, signal.key)
        live = self._open.get(ref)
        resolve_after = 24 * 3600.0 if rule is None else rule.resolve_after
        repeat = None if rule is None or rule.repeat is None else signal.at + rule.repeat
        if live is None:
            row = _opened(self._new_id(), signal, rule)
            live = self._open[ref] = _Live.of(row, "open")
            self._changed.append(live)
            detail = f"rule {signal.rule!r} notified for key {signal.shown_key or '-'!r}"
            live.trail.append(NewAlertEvent(row.id, signal.at, "opened", _ACTOR, "rule", detail, row.inbox_id))
        else:
            live.last_inbox_id, live.last_at, live.count = signal.inbox_id, signal.at, live.count + 1
            live.expires_at = signal.at + resolve_after
            if live.row.state == "firing":
                live.next_repeat_at = repeat  # a new notification starts the reminder interval again
            if live.kind != "open":
                live.notified.append(signal)
            self._mark(live, "touch")
        if self._links is not None and signal.emitted:
            links = self._links.for_alert(live.row, rule, self._ruleset, signal.at)
            for emitted in signal.emitted:
                self._links_of[(emitted.inbox_id, emitted.rule, emitted.channel)] = links

    def _touch(self, signal: AlertSignal, rule: Rule | None) -> None:
        live = self._open.get((signal.rule, signal.key))
        if live is None:
            return  # held back with no open alert (resolved by hand meanwhile): nothing to keep alive
        live.last_inbox_id, live.last_at, live.count = signal.inbox_id, signal.at, live.count + 1
        live.expires_at = signal.at + (24 * 3600.0 if rule is None else rule.resolve_after)
        self._mark(live, "touch")

    def _recover(self, signal: AlertSignal) -> None:
        live = self._open.pop((signal.rule, signal.key), None)
        if live is None:
            return
        live.resolved_at = signal.at
        live.last_at, live.last_inbox_id = signal.at, signal.inbox_id
        detail = f"an event matched the recover clause of rule {signal.rule!r}"
        live.trail.append(NewAlertEvent(live.row.id, signal.at, "recovered", _ACTOR, "rule", detail, signal.inbox_id))
        self._mark(live, "resolve")

    def changes(self) -> list[AlertChange]:
        """What to commit: one change per alert (a new one is inserted as it ends the batch)."""
        out = []
        for live in self._changed:
            kind = live.kind
            if kind == "none":
                continue
            rule = self._rule(live.row.rule)
            reopen = self._reopen(live, rule) if kind == "touch" and live.notified else None
            out.append(AlertChange(kind, live.alert(rule), tuple(live.trail), reopen))
        return out

    def _reopen(self, live: _Live, rule: Rule | None) -> AlertChange:
        """The alert this batch's notifications open if the stored one was resolved meanwhile (by hand)."""
        first, *rest = live.notified
        row = _opened(self._new_id(), first, rule)
        for signal in rest:
            row = replace(row, last_inbox_id=signal.inbox_id, last_at=signal.at, count=row.count + 1)
        last = live.notified[-1]
        resolve_after = 24 * 3600.0 if rule is None else rule.resolve_after
        repeat = None if rule is None or rule.repeat is None else last.at + rule.repeat
        row = replace(row, expires_at=last.at + resolve_after, next_repeat_at=repeat)
        row = replace(row, due_at=next_due(row, rule))
        detail = (
            f"rule {first.rule!r} notified for key {first.shown_key or '-'!r} while alert {live.row.id} "
            "was being resolved: a new alert"
        )
        trail = (NewAlertEvent(row.id, first.at, "opened", _ACTOR, "rule", detail, first.inbox_id),)
        return AlertChange("open", row, trail)

    def decorate(self, inbox_id: int, delivery: NewDelivery) -> NewDelivery:
        """The delivery with its alert's action links (unchanged when it has none)."""
        links = self._links_of.get((inbox_id, delivery.rule, delivery.channel))
        if not links:
            return delivery
        channel = self._ruleset.channels.get(delivery.channel)
        if channel is None:
            return delivery
        return replace(delivery, body=with_links(delivery.body, delivery.body_format, links, channel))

    def decorate_held(self, emitted: Emitted) -> Emitted:
        """A message held for enrichment, whose text is rendered again later: that text keeps the links too."""
        links = self._links_of.get((emitted.inbox_id, emitted.rule, emitted.channel))
        channel = self._ruleset.channels.get(emitted.channel)
        rerender = emitted.rerender
        if not links or channel is None or rerender is None:
            return emitted

        def with_alert_links(details: Details | None) -> Notification:
            note = rerender(details)
            return replace(note, body=with_links(note.body, note.body_format, links, channel))

        return replace(emitted, rerender=with_alert_links)


# --- timers ----------------------------------------------------------------------------------


def _message(
    alert: AlertRow, rule: Rule, channel_name: str, ruleset: RuleSet, *, what: str, at: float, links: Links | None
) -> NewDelivery | None:
    channel = ruleset.channels.get(channel_name)
    if channel is None:
        return None
    esc = escaper(rule.format)
    since = local_text(alert.opened_at, ruleset.timezone)
    lines = [
        f"Still firing since {since} and not acknowledged ({alert.count} notification(s)).",
        f"Rule {rule.name}, key {alert.shown_key or '-'}, alert {alert.id}.",
    ]
    joiner = "<br>\n" if rule.format == "html" else "\n"
    body = joiner.join(esc(line) for line in lines)
    severity: Severity = "failure" if what == "Escalation" else "warning"
    note = finish(f"{what}: {alert.title}", body, severity, rule.format, channel)
    body = note.body
    if links is not None:
        body = with_links(body, note.body_format, links.for_alert(alert, rule, ruleset, at), channel)
    return NewDelivery(
        rule=f"{rule.name}:{what.lower()} {alert.reminders if what == 'Reminder' else alert.escalations}",
        channel=channel_name,
        title=note.title,
        body=body,
        severity=note.severity,
        body_format=note.body_format,
    )


def _count(metrics: Metrics, fired: Iterable[AlertTimer]) -> None:
    """Count the reminders and escalations of the timers the store wrote (not those an acknowledgement stopped)."""
    for timer in fired:
        for entry in timer.trail:
            if entry.action == "reminded":
                metrics.alert_reminders.labels(timer.alert.rule).inc()
            elif entry.action == "escalated":
                metrics.alert_escalations.labels(timer.alert.rule).inc()


def _fire_one(alert: AlertRow, ruleset: RuleSet, links: Links | None) -> AlertTimer:
    """The reminder and escalations due at the alert's timer, and its next timer."""
    at = float(alert.due_at or 0.0)
    was_due = at
    route = ruleset.route(alert.rule)
    if route is None:
        return AlertTimer(replace(alert, due_at=None), was_due)  # the rule is gone: its timers stop
    rule = route.rule
    deliveries: list[LateDelivery] = []
    trail: list[NewAlertEvent] = []
    if rule.repeat is not None and alert.next_repeat_at is not None and alert.next_repeat_at <= at:
        alert = replace(alert, reminders=alert.reminders + 1, next_repeat_at=at + rule.repeat)
        sent = [m for c in rule.notify if (m := _message(alert, rule, c, ruleset, what="Reminder", at=at, links=links))]
        deliveries.extend(LateDelivery(alert.inbox_id, d) for d in sent)
        channels = ", ".join(rule.notify) or "no channels"
        trail.append(
            NewAlertEvent(alert.id, at, "reminded", _ACTOR, "timer", f"reminder {alert.reminders} to {channels}")
        )
    while alert.escalations < len(rule.escalate) and alert.opened_at + rule.escalate[alert.escalations].after <= at:
        step = rule.escalate[alert.escalations]
        alert = replace(alert, escalations=alert.escalations + 1)
        sent = [
            m for c in step.notify if (m := _message(alert, rule, c, ruleset, what="Escalation", at=at, links=links))
        ]
        deliveries.extend(LateDelivery(alert.inbox_id, d) for d in sent)
        detail = f"escalation step {alert.escalations} to {', '.join(step.notify)}"
        trail.append(NewAlertEvent(alert.id, at, "escalated", _ACTOR, "timer", detail, alert.inbox_id))
    alert = replace(alert, due_at=next_due(alert, rule))
    if alert.due_at is not None and alert.due_at <= at:
        alert = replace(alert, due_at=None)  # a rule changed under it: never loop on the same time
    return AlertTimer(alert, was_due, deliveries, tuple(trail))


async def fire_alert_timers(
    store: AlertStore,
    ruleset: RuleSet,
    *,
    until: float,
    now: float,
    links: Links | None,
    metrics: Metrics | None = None,
) -> int:
    """Resolve expired alerts, then send every reminder and escalation due at or before ``until``; how many fired."""
    first = await store.next_alert_time()
    if first is None or first > until:
        return 0  # the common case: one read, no write transaction
    expired = await store.expire_alerts(now=until, limit=_BATCH)
    for alert in expired:
        log.info("alert_expired", alert_id=alert.id, rule=alert.rule)
    total = 0
    while True:
        due = await store.due_alerts(until=until, limit=_BATCH)
        if not due:
            return total
        timers = [_fire_one(a, ruleset, links) for a in due]
        fired = await store.fire_alert_timers(timers, now=now)
        if metrics is not None:
            _count(metrics, fired)
        for timer in timers:
            log.info(
                "alert_timer_fired",
                alert_id=timer.alert.id,
                rule=timer.alert.rule,
                deliveries=len(timer.deliveries),
                next_due_at=timer.alert.due_at,
            )
        total += len(fired)
        if len(due) < _BATCH:
            return total
