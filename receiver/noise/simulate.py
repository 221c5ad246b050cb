"""The noise engine on an in-memory state, for ``receiver test`` (one event, or a timed sequence). Pure.

A :class:`Simulation` plays events at given times; before each event (and when asked to run
on), every timer due by then fires at its due time, exactly as the inbox worker does with the
store. Nothing is sent: the timeline records what would have been.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from receiver.events import Event
from receiver.noise.decision import Result
from receiver.noise.engine import Engine
from receiver.noise.silences import AdHocSilence
from receiver.noise.state import StateView
from receiver.rules import RuleSet

__all__ = ["Entry", "Simulation"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One moment of the timeline: an event processed, or a timer fired.

    Attributes:
        at: when (Unix seconds).
        kind: ``event`` or ``timer``.
        label: the event's label (its step or file), or the timer (``group invoice-faults [process=X]``).
        inbox_id: the event's number in the simulation (for timers: the event it is about).
        result: the engine's result.
    """

    at: float
    kind: str
    label: str
    inbox_id: int
    result: Result


class Simulation:
    """Events and timers through the engine, on a state that starts empty.

    Args:
        ruleset: the rules.
        silences: ad-hoc silences that hold during the simulation.
        render_held: render what a rule held back too (shown by ``receiver test``).
    """

    def __init__(self, ruleset: RuleSet, silences: Sequence[AdHocSilence] = (), *, render_held: bool = True) -> None:
        self.engine = Engine(ruleset, silences, render_held=render_held)
        self.view = StateView()
        self.timeline: list[Entry] = []
        self._next_id = 1

    def run_until(self, until: float) -> list[Entry]:
        """Fire every timer due at or before ``until``, in order; returns their entries."""
        fired: list[Entry] = []
        while True:
            due = self.view.due(until)
            if not due:
                return fired
            row = due[0]
            result = self.engine.fire(self.view, row)
            inbox_id = self.engine.timer_event(row)
            entry = Entry(
                float(row.due_at or until), "timer", f"{row.kind} {row.name} [{row.shown_key}]", inbox_id, result
            )
            self.timeline.append(entry)
            fired.append(entry)

    def feed(self, event: Event, source: str, at: float, *, label: str = "") -> Entry:
        """Process one event arriving at ``at`` (timers due by then fire first)."""
        self.run_until(at)
        inbox_id = self._next_id
        self._next_id += 1
        plan = self.engine.plan(event, source, inbox_id=inbox_id, at=at)
        entry = Entry(at, "event", label or event.type, inbox_id, self.engine.process(self.view, plan))
        self.timeline.append(entry)
        return entry

    def pending(self) -> list[tuple[float, str]]:
        """Timers still armed: (due time, description)."""
        return [(float(r.due_at or 0.0), f"{r.kind} {r.name} [{r.shown_key}]") for r in self.view.due(float("inf"))]
