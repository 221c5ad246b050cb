"""The last stage, channel budget: at most ``max`` notifications per channel and window; the rest in one digest. Pure.

A channel with ``budget: {max: 30, per: 1h}`` counts what noise control lets through to it, as
the deliveries are created (so a restart, a retry or a slow channel changes nothing). A window
starts with the first notification after the last one ended. Past ``max``, a notification is
held: recorded as ``held`` (the reason names the budget) and counted per rule and subject (the
robot, else the process, else the key) in the channel's row, and the row's timer sends one
digest when the window ends ("41 more alerts: 30 robot-errors on BOT07, ..."). Nothing is
dropped: every held notification is in the digest's counts and in the decision log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from receiver.noise.decision import Decision, Emitted, Result
from receiver.noise.digest import worst
from receiver.noise.stage import Context, describe_seconds
from receiver.noise.state import Ref, Row, StateView
from receiver.render import Notification, escaper, finish
from receiver.rules import Channel, NoiseBudget, RuleSet, Severity
from receiver.timefmt import local_text

__all__ = ["DIGEST_RULE_PREFIX", "KIND", "BudgetState", "flush", "held_now", "hold", "refs"]

KIND = "budget"

DIGEST_RULE_PREFIX = "budget:"
"""The digest's rule name is ``budget:<channel>`` (a rule of the file cannot have a colon in its name)."""

COUNTED = 50
"""Pairs counted per window: 49 distinct (rule, subject) pairs, and "other" for the rest."""

SHOWN = 10
"""Pairs listed in the digest's body; its title names the first three."""

_SUBJECT_CHARS = 100


@dataclass(frozen=True, slots=True)
class BudgetState:
    """A channel's window (row ``budget``, the channel, ``""``); ``due_at`` is the digest once one is held.

    Attributes:
        since: when the window began.
        sent: notifications let through in it.
        held: notifications held in it.
        counts: held ones per ``[rule, subject]``, in order of first appearance.
        severity: the worst severity among the held ones.
        first_inbox_id: the event of the first held notification (the digest is about it).
        first_held_at: when the first was held, and ``last_held_at`` the last.
    """

    since: float
    sent: int = 0
    held: int = 0
    counts: tuple[tuple[str, str, int], ...] = ()
    severity: str = "success"
    first_inbox_id: int | None = None
    first_held_at: float | None = None
    last_held_at: float | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> BudgetState:
        """Read the stored ``data``."""
        first, first_at, last_at = data.get("first_inbox_id"), data.get("first_held_at"), data.get("last_held_at")
        return cls(
            since=float(data.get("since", 0.0)),
            sent=int(data.get("sent", 0)),
            held=int(data.get("held", 0)),
            counts=tuple((str(r), str(s), int(n)) for r, s, n in data.get("counts", [])),
            severity=str(data.get("severity", "success")),
            first_inbox_id=None if first is None else int(first),
            first_held_at=None if first_at is None else float(first_at),
            last_held_at=None if last_at is None else float(last_at),
        )

    def to_data(self) -> dict[str, Any]:
        """The stored ``data``."""
        return {
            "since": self.since,
            "sent": self.sent,
            "held": self.held,
            "counts": [list(c) for c in self.counts],
            "severity": self.severity,
            "first_inbox_id": self.first_inbox_id,
            "first_held_at": self.first_held_at,
            "last_held_at": self.last_held_at,
        }

    def holding(self, emitted: Emitted, subject: str) -> BudgetState:
        """The window with one more held notification."""
        counts = list(self.counts)
        pair = (emitted.rule, subject)
        index = next((i for i, (r, s, _) in enumerate(counts) if (r, s) == pair), None)
        if index is None and len(counts) >= COUNTED - 1:  # the last place is "other"
            pair = ("other", "")
            index = next((i for i, (r, s, _) in enumerate(counts) if (r, s) == pair), None)
        if index is None:
            counts.append((*pair, 1))
        else:
            rule, subj, n = counts[index]
            counts[index] = (rule, subj, n + 1)
        first = self.first_inbox_id is None
        return replace(
            self,
            held=self.held + 1,
            counts=tuple(counts),
            severity=worst(self.severity, emitted.notification.severity),
            first_inbox_id=emitted.inbox_id if first else self.first_inbox_id,
            first_held_at=emitted.at if first else self.first_held_at,
            last_held_at=emitted.at,
        )


def refs(ruleset: RuleSet) -> set[Ref]:
    """The rows of every channel with a budget (load them before the engine may emit)."""
    return {(KIND, name, "") for name, channel in ruleset.channels.items() if channel.budget is not None}


def held_now(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, int]:
    """Notifications held right now (their digest not sent yet), by channel, from (channel, row data) pairs."""
    held: dict[str, int] = {}
    for channel, data in rows:
        state = BudgetState.from_data(data)
        if state.held:
            held[channel] = state.held
    return held


def hold(ctx: Context, view: StateView, result: Result, subject: Callable[[Emitted], str]) -> None:
    """Let each emitted notification through its channel's budget, or hold it for the window's digest.

    Args:
        ctx: the rules.
        view: the state (every row of :func:`refs` loaded).
        result: what was decided; held notifications leave ``result.emitted``.
        subject: what a notification is about, for the digest's counts (``on BOT07``).
    """
    kept: list[Emitted] = []
    for emitted in result.emitted:
        channel = ctx.ruleset.channels.get(emitted.channel)
        budget = None if channel is None else channel.budget
        if budget is None or emitted.rule.startswith(DIGEST_RULE_PREFIX):
            kept.append(emitted)
            continue
        ref = (KIND, emitted.channel, "")
        row = view.get(ref)
        if row is not None and row.due_at is not None and row.due_at <= emitted.at:
            kept.extend(flush(ctx, view, row, row.due_at, result))  # the window ended before this one
            row = view.get(ref)
        state = None if row is None else BudgetState.from_data(row.data)
        if state is None or state.since + budget.per <= emitted.at:
            state = BudgetState(since=emitted.at)
        ends = state.since + budget.per
        if state.sent < budget.max:
            state = replace(state, sent=state.sent + 1)
            kept.append(emitted)
            view.put(Row(*ref, state.to_data(), ends if state.held else None, ends))
            continue
        state = state.holding(emitted, subject(emitted)[:_SUBJECT_CHARS])
        view.put(Row(*ref, state.to_data(), ends, None))
        result.decisions.append(
            Decision(
                "held",
                f"held by channel budget: {emitted.channel!r} sent its {budget.max} notification(s) of the "
                f"{describe_seconds(budget.per)} window that began at {ctx.time(state.since)}; "
                f"in the digest due at {ctx.time(ends)} ({state.held} held so far)",
                rule=emitted.rule,
                key=emitted.channel,
                inbox_id=emitted.inbox_id,
                at=emitted.at,
                due_at=ends,
            )
        )
    result.emitted[:] = kept


def flush(ctx: Context, view: StateView, row: Row, at: float, result: Result) -> list[Emitted]:
    """The window's digest of held notifications (its timer is due); the channel's next window starts afresh."""
    state = BudgetState.from_data(row.data)
    view.delete(row.ref)
    if not state.held or state.first_inbox_id is None:
        return []
    channel = ctx.ruleset.channels.get(row.name)
    if channel is None:
        result.decisions.append(
            Decision(
                "dropped",
                f"channel budget digest of {row.name!r} dropped: the channel is no longer configured "
                f"({state.held} held notification(s))",
                key=row.name,
                inbox_id=state.first_inbox_id,
                at=at,
            )
        )
        return []
    note = render_budget_digest(state, channel, ctx.ruleset, at)
    result.decisions.append(
        Decision(
            "flushed",
            f"channel budget of {row.name!r}: a digest of {state.held} held notification(s) sent",
            rule=DIGEST_RULE_PREFIX + row.name,
            key=row.name,
            inbox_id=state.first_inbox_id,
            at=at,
        )
    )
    emitted = Emitted(state.first_inbox_id, DIGEST_RULE_PREFIX + row.name, row.name, note, at)
    result.emitted.append(emitted)
    return [emitted]


def _pair(rule: str, subject: str, n: int) -> str:
    return f"{n} {rule}" + (f" {subject}" if subject else "")


def render_budget_digest(state: BudgetState, channel: Channel, ruleset: RuleSet, at: float) -> Notification:
    """``41 more alerts: 30 robot-errors on BOT07, 11 job-faulted of Invoices`` and the counts, bounded."""
    ranked = sorted(state.counts, key=lambda c: -c[2])
    title = f"{state.held} more alert{'s' if state.held != 1 else ''}: " + ", ".join(_pair(*c) for c in ranked[:3])
    if len(ranked) > 3:
        title += ", ..."
    budget = channel.budget or NoiseBudget(max=state.sent, per=at - state.since)
    esc = escaper("text")
    first = state.first_held_at if state.first_held_at is not None else state.since
    last = state.last_held_at if state.last_held_at is not None else first
    zone = ruleset.timezone
    lines = [
        f"Channel {channel.name} sent {state.sent} notification(s) from {local_text(state.since, zone)}, "
        f"its budget of {budget.max} per {describe_seconds(budget.per)}.",
        f"Held from {local_text(first, zone)} to {local_text(last, zone)}:",
        *(f"- {esc(_pair(*c))}" for c in ranked[:SHOWN]),
    ]
    if len(ranked) > SHOWN:
        rest = sum(c[2] for c in ranked[SHOWN:])
        lines.append(f"- ... and {rest} more in {len(ranked) - SHOWN} other group(s)")
    lines.append("Each held alert is in the event's history (GET /api/events/{id}) as held by channel budget.")
    return finish(title, "\n".join(lines), cast("Severity", state.severity), "text", channel)
