"""A source that goes quiet (``sources.<name>.expect:``): one alert, and one message when events are back. Pure.

Every event of a source with ``expect`` (whatever rule it matches, a ping included) moves the
source's row: the last event and a timer ``every`` later. When the timer fires, the time inside
``during`` since the last event is counted (by the minute, in its time zone): ``every`` or more
is one alert to ``expect.notify``; less sets the timer to when it would be. The next event after
an alert sends one "events are back" message. The row is noise state, so it survives restarts and
only the inbox worker holding the ``inbox`` lease (one replica) fires it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from receiver.noise.decision import Decision, Emitted, Result
from receiver.noise.stage import Context, describe_seconds
from receiver.noise.state import Ref, Row, StateView
from receiver.render import finish
from receiver.rules import Expect, RuleSet

__all__ = ["BACK_RULE_SUFFIX", "KIND", "QUIET_RULE_PREFIX", "SourceWatch", "fire", "ref", "seen", "watching"]

KIND = "quiet"

QUIET_RULE_PREFIX = "expect:"
"""The alert's rule name is ``expect:<source>``; the "back" message's ``expect:<source>:back``."""
BACK_RULE_SUFFIX = ":back"


@dataclass(frozen=True, slots=True)
class SourceWatch:
    """A source's row (``quiet``, the source, ``""``); ``due_at`` is the next look while events flow.

    Attributes:
        last_at: the last event's arrival.
        last_inbox_id: that event (an alert is about it).
        quiet: an alert went out and no event arrived since.
    """

    last_at: float
    last_inbox_id: int
    quiet: bool = False

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SourceWatch:
        """Read the stored ``data``."""
        return cls(float(data["last_at"]), int(data["inbox_id"]), bool(data.get("quiet", False)))

    def to_data(self) -> dict[str, Any]:
        """The stored ``data`` (``inbox_id``: retention keeps the event a timer refers to)."""
        return {"last_at": self.last_at, "inbox_id": self.last_inbox_id, "quiet": self.quiet}


def ref(source: str) -> Ref:
    """The row of a source's watch."""
    return (KIND, source, "")


def watching(source: str, last_at: float, last_inbox_id: int, expect: Expect) -> Row:
    """A new watch that last saw an event at ``last_at`` (the start, or the inbox's last event after an upgrade)."""
    return Row(*ref(source), SourceWatch(last_at, last_inbox_id).to_data(), last_at + expect.every, None)


def seen(ctx: Context, view: StateView, source: str, inbox_id: int, at: float, result: Result) -> None:
    """An event arrived from ``source``: move its watch, and say once that events are back after an alert."""
    expect = _expect(ctx.ruleset, source)
    if expect is None:
        return
    row = view.get(ref(source))
    if row is not None and row.due_at is not None and row.due_at <= at:
        fire(ctx, view, row, row.due_at, result)  # its time came before this event
        row = view.get(ref(source))
    watch = None if row is None else SourceWatch.from_data(row.data)
    if watch is not None and watch.quiet:
        silent = describe_seconds(at - watch.last_at)
        rule = QUIET_RULE_PREFIX + source + BACK_RULE_SUFFIX
        for name in expect.notify:
            channel = ctx.ruleset.channels.get(name)
            if channel is None:
                continue
            note = finish(
                f"Source {source} sends events again",
                f"The first event from {source} after {silent} without any arrived at {ctx.time(at)}.",
                "success",
                "text",
                channel,
            )
            result.emitted.append(Emitted(inbox_id, rule, name, note, at))
        result.decisions.append(
            Decision(
                "back",
                f"source {source!r} sends again after {silent} without events",
                rule=rule,
                inbox_id=inbox_id,
                at=at,
            )
        )
    if watch is None or at >= watch.last_at:
        view.put(watching(source, at, inbox_id, expect))


def fire(ctx: Context, view: StateView, row: Row, at: float, result: Result) -> None:
    """The watch's timer is due: alert when ``every`` passed inside ``during`` without an event, else look later."""
    source = row.name
    expect = _expect(ctx.ruleset, source)
    if expect is None:
        view.delete(row.ref)  # the source no longer expects events
        return
    watch = SourceWatch.from_data(row.data)
    during = expect.during
    counted = at - watch.last_at if during is None else during.active_seconds(watch.last_at, at)
    if counted < expect.every:
        left = expect.every - counted
        due = at + left if during is None else during.after_active(at, left)
        view.put(Row(*row.ref, row.data, max(due, at + 1.0), None))
        return
    view.put(Row(*row.ref, SourceWatch(watch.last_at, watch.last_inbox_id, quiet=True).to_data(), None, None))
    within = "" if during is None else f" during {during.describe()}"
    rule = QUIET_RULE_PREFIX + source
    for name in expect.notify:
        channel = ctx.ruleset.channels.get(name)
        if channel is None:
            continue
        note = finish(
            f"Source {source} is quiet: no event since {ctx.time(watch.last_at)}",
            f"No event at all arrived from source {source} for {describe_seconds(expect.every)}{within}. "
            f"The last one arrived at {ctx.time(watch.last_at)}. Orchestrator may have stopped sending "
            "(webhook disabled or deleted, network, secret rotated) or the robots stopped working.",
            "failure",
            "text",
            channel,
        )
        result.emitted.append(Emitted(watch.last_inbox_id, rule, name, note, at))
    result.decisions.append(
        Decision(
            "quiet",
            f"source {source!r}: no event for {describe_seconds(expect.every)}{within}; alerted "
            + ", ".join(expect.notify),
            rule=rule,
            inbox_id=watch.last_inbox_id,
            at=at,
        )
    )


def _expect(ruleset: RuleSet, source: str) -> Expect | None:
    configured = ruleset.sources.get(source)
    return None if configured is None else configured.expect
