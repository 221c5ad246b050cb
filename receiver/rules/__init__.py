"""The rule engine: ``rules.yaml`` loaded into a :class:`RuleSet` that routes events to channels.

Pure apart from :func:`load_rules` reading one file: no apprise, no database, no settings.
Anything that needs apprise (URL validation) is passed in as a callable.

Modules: ``spec`` (the YAML schema), ``load`` (reading and checking), ``match`` (clauses, the
compiler and the explanations), ``values`` (value specs: equality, globs, regexes,
comparisons...), ``fields`` (handles and dotted paths), ``ruleset`` (the index and
first-match-wins evaluation), ``template`` (sandboxed Jinja2), ``model`` (the runtime types),
``json_schema`` (the JSON Schema for editors), ``starter`` (``receiver init``), ``redact``
(``redact:``, what message text must not show).
The reference for users is docs/rules.md. Other packages import only the names below, never a module.
"""

from __future__ import annotations

from receiver.rules.budget import BudgetExceededError, event_budget
from receiver.rules.fields import HANDLE_TYPES, event_classes
from receiver.rules.json_schema import SCHEMA_PATH, rules_json_schema
from receiver.rules.load import expand_env, load_rules
from receiver.rules.match import Clause, Compiler, Subject
from receiver.rules.model import (
    BodyFormat,
    Channel,
    Enrich,
    Escalation,
    Expect,
    GapRecovery,
    Heartbeat,
    Inhibit,
    KeyTemplate,
    NoiseBudget,
    OrchestratorLink,
    Route,
    Rule,
    RuleDecision,
    Severity,
    Source,
)
from receiver.rules.reach import needed_event_types
from receiver.rules.redact import BUILTIN_PATTERNS, Redactor
from receiver.rules.ruleset import RuleSet
from receiver.rules.spec import DEFAULT_ORCHESTRATOR_SCOPES, parse_duration
from receiver.rules.starter import STARTER_CHANNELS, StarterRules, starter_rules
from receiver.rules.template import context_names, escape_markdown, firstlines, localtime, neutralise
from receiver.rules.values import compile_glob, compile_regex, is_plain_glob

__all__ = [
    "BUILTIN_PATTERNS",
    "DEFAULT_ORCHESTRATOR_SCOPES",
    "HANDLE_TYPES",
    "SCHEMA_PATH",
    "STARTER_CHANNELS",
    "BodyFormat",
    "BudgetExceededError",
    "Channel",
    "Clause",
    "Compiler",
    "Enrich",
    "Escalation",
    "Expect",
    "GapRecovery",
    "Heartbeat",
    "Inhibit",
    "KeyTemplate",
    "NoiseBudget",
    "OrchestratorLink",
    "Redactor",
    "Route",
    "Rule",
    "RuleDecision",
    "RuleSet",
    "Severity",
    "Source",
    "StarterRules",
    "Subject",
    "compile_glob",
    "compile_regex",
    "context_names",
    "escape_markdown",
    "event_budget",
    "event_classes",
    "expand_env",
    "firstlines",
    "is_plain_glob",
    "load_rules",
    "localtime",
    "needed_event_types",
    "neutralise",
    "parse_duration",
    "rules_json_schema",
    "starter_rules",
]
