"""What the noise stages decide: :class:`Decision` (with its one JSON form), :class:`Emitted`, :class:`Result`.

A decision is written to JSON in one place (:meth:`Decision.to_json`) and read back in one place
(:meth:`Decision.from_json`): the event's stored outcome, ``noise_log`` rows, ``receiver test
--json``, ``GET /api/events``, ``GET /api/suppressions`` and the web page all show that form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from receiver.events import Details
from receiver.render import Notification
from receiver.rules import Enrich

__all__ = ["SUPPRESSED", "AlertSignal", "Decision", "Emitted", "Result"]

SUPPRESSED = frozenset(
    {
        "collapsed",
        "throttled",
        "grouped",
        "counted",
        "armed",
        "already_armed",
        "not_armed",
        "silenced",
        "inhibited",
        "held",
    }
)
"""Decisions that mean: this rule sent nothing for this event (now)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One noise decision, for the event's outcome, the audit log, the admin API and ``receiver test``.

    Attributes:
        action: notified, throttled, grouped, counted, armed, already_armed, not_armed,
            cancelled, fired, flushed, recovered, silenced, inhibited, inhibiting, cleared,
            collapsed, dropped, held (by a channel budget), quiet (a source sent nothing) or back.
        reason: one sentence naming the rule, silence or inhibition and the key.
        rule: the rule (or inhibition) it is about, or None.
        key: the key inside it, or None.
        inbox_id: the event it is about.
        at: when (the event's arrival, or the timer's due time), Unix seconds.
        due_at: for grouped / armed: when the digest or the timer is due.
    """

    action: str
    reason: str
    rule: str | None = None
    key: str | None = None
    inbox_id: int | None = None
    at: float = 0.0
    due_at: float | None = None

    @property
    def suppressed(self) -> bool:
        """True when the rule sent nothing for the event because of this decision."""
        return self.action in SUPPRESSED

    def to_json(self) -> dict[str, Any]:
        """The decision's one JSON form: ``action``, ``rule``, ``key``, ``reason``, ``suppressed``,
        ``event`` (the inbox id), ``at`` and ``due_at`` (Unix seconds)."""
        return {
            "action": self.action,
            "rule": self.rule,
            "key": self.key,
            "reason": self.reason,
            "suppressed": self.suppressed,
            "event": self.inbox_id,
            "at": self.at,
            "due_at": self.due_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        """Read :meth:`to_json`'s form back, and the forms stored before it (``inbox_id``, fields left out).

        Raises:
            ValueError: ``data`` has no ``action`` or ``reason`` text.
        """
        action, reason = data.get("action"), data.get("reason")
        if not isinstance(action, str) or not isinstance(reason, str):
            raise ValueError("a decision needs an action and a reason")
        inbox_id = data.get("event", data.get("inbox_id"))
        at, due_at = data.get("at"), data.get("due_at")
        return cls(
            action,
            reason,
            rule=_text(data.get("rule")),
            key=_text(data.get("key")),
            inbox_id=inbox_id if isinstance(inbox_id, int) and not isinstance(inbox_id, bool) else None,
            at=float(at) if isinstance(at, int | float) and not isinstance(at, bool) else 0.0,
            due_at=float(due_at) if isinstance(due_at, int | float) and not isinstance(due_at, bool) else None,
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Emitted:
    """A notification to deliver: ``rule`` is the rule's name (``NAME:recovered`` for a recovery).

    With ``enrich`` set, ``notification`` is the message without Orchestrator's details (it says
    they are unavailable: timeout) and ``rerender`` renders it again with the details found (None:
    the message without any word about them).
    """

    inbox_id: int
    rule: str
    channel: str
    notification: Notification
    at: float
    enrich: Enrich | None = None
    rerender: Callable[[Details | None], Notification] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class AlertSignal:
    """What an event means for the alert of a rule's key (the caller keeps the alerts).

    Attributes:
        action: ``fire`` (the rule notified: ``emitted`` are its messages), ``touch`` (it held a
            notification back: the condition still holds) or ``recover`` (an event cleared it).
        rule: the rule.
        key: the alert key as the rule's state stores it (``source|key`` unless shared).
        shown_key: the key as rendered.
        source: the event's source.
        inbox_id: the event.
        at: its time.
        title: the title of the first message (``fire``).
        emitted: the messages sent (``fire``), to carry the alert's links.
        process: the event's process; robot: its robot (to silence them from the message).
        event_type: the event's type (a job's alert may offer "retry the job").
    """

    action: Literal["fire", "touch", "recover"]
    rule: str
    key: str
    shown_key: str
    source: str
    inbox_id: int
    at: float
    title: str = ""
    emitted: tuple[Emitted, ...] = ()
    process: str | None = None
    robot: str | None = None
    event_type: str = ""


@dataclass(slots=True)
class Result:
    """What processing an event or firing a timer produced."""

    matched: list[str] = field(default_factory=list)
    emitted: list[Emitted] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    held: list[tuple[Decision, Emitted]] = field(default_factory=list)
    alerts: list[AlertSignal] = field(default_factory=list)
