"""Noise control and time-based rules: throttle, group, frequency, absence, recovery, silences,
inhibition and folder fan-out collapse. Pure: no database, no clock, no settings.

``engine`` decides (one event, or one due timer, against the state so far); ``state`` holds the
rows it reads and writes; ``digest`` renders a group's digest; ``silences`` reads ad-hoc
silence matchers and decides whether a notification is silenced; ``simulate`` runs the engine
on an in-memory state for ``receiver test``. The inbox worker loads the rows an event needs from
the store and commits the engine's changes in the transaction that marks the event processed.
The reference for users is docs/rules.md ("Noise control").
"""

from __future__ import annotations

from receiver.noise.engine import SILENT_TYPES, SUPPRESSED, Decision, Emitted, Engine, Plan, Result, parse_stored
from receiver.noise.silences import AdHocSilence, Matcher, MatcherError, Silencer, compile_matchers, parse_matchers
from receiver.noise.simulate import Entry, Simulation
from receiver.noise.state import Ref, Row, StateView

__all__ = [
    "SILENT_TYPES",
    "SUPPRESSED",
    "AdHocSilence",
    "Decision",
    "Emitted",
    "Engine",
    "Entry",
    "Matcher",
    "MatcherError",
    "Plan",
    "Ref",
    "Result",
    "Row",
    "Silencer",
    "Simulation",
    "StateView",
    "compile_matchers",
    "parse_matchers",
    "parse_stored",
]
