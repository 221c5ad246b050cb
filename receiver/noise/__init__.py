"""Noise control and time-based rules: throttle, group, frequency, absence, recovery, silences,
inhibition and folder fan-out collapse, as stages (after Alertmanager's pipeline). Pure: no
database, no clock, no settings.

``engine`` fixes the order of the stages (its docstring is the one place that states it);
``plan`` matches an event and renders its keys; one module per stage, each owning the typed
state of its kind: ``collapse``, ``absence``, ``inhibit``, ``recovery`` (kind ``firing``),
``silences`` (no state: windows and ad-hoc silences), ``frequency``, ``group`` (``digest``
renders its digest), ``throttle``, ``notify``, ``channel_budget`` (kind ``budget``: a channel's
window, its held notifications and their digest) and ``quiet`` (kind ``quiet``: a source's watch,
``expect:``); ``alerting`` reports which rule key fires, fires again or recovers
(:class:`AlertSignal`; the inbox worker keeps the alerts). ``decision`` holds :class:`Decision` and its one
JSON form; ``state`` holds the rows the stages read and write; ``simulate`` runs the engine on
an in-memory state for ``receiver test``. The inbox worker loads the rows an event needs from
the store and commits the engine's changes in the transaction that marks the event processed.
The reference for users is docs/rules.md ("Noise control").
"""

from __future__ import annotations

from receiver.noise.alerting import alert_key
from receiver.noise.channel_budget import held_now
from receiver.noise.channel_budget import refs as budget_refs
from receiver.noise.decision import SUPPRESSED, AlertSignal, Decision, Emitted, Result
from receiver.noise.engine import Engine
from receiver.noise.plan import SILENT_TYPES, Plan, parse_stored, silent_reason
from receiver.noise.quiet import QUIET_RULE_PREFIX
from receiver.noise.silences import AdHocSilence, Matcher, MatcherError, Silencer, compile_matchers, parse_matchers
from receiver.noise.simulate import Entry, Simulation
from receiver.noise.stage import describe_seconds
from receiver.noise.state import Ref, Row, StateView

__all__ = [
    "QUIET_RULE_PREFIX",
    "SILENT_TYPES",
    "SUPPRESSED",
    "AdHocSilence",
    "AlertSignal",
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
    "alert_key",
    "budget_refs",
    "compile_matchers",
    "describe_seconds",
    "held_now",
    "parse_matchers",
    "parse_stored",
    "silent_reason",
]
