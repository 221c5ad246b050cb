"""The rule engine: ``rules.yaml`` loaded into a :class:`RuleSet` that routes events to channels.

Pure apart from :func:`load_rules` reading one file: no apprise, no database, no settings.
Anything that needs apprise (URL validation) is passed in as a callable.

Modules: ``spec`` (the YAML schema), ``load`` (reading and checking), ``match`` (clauses, the
compiler and the explanations), ``values`` (value specs: equality, globs, regexes,
comparisons...), ``fields`` (handles and dotted paths), ``ruleset`` (the index and
first-match-wins evaluation), ``template`` (sandboxed Jinja2), ``model`` (the runtime types).
The reference for users is docs/rules.md.
"""

from __future__ import annotations

from receiver.rules.load import expand_env, load_rules
from receiver.rules.model import BodyFormat, Channel, Route, Rule, RuleDecision, Severity, Source
from receiver.rules.ruleset import RuleSet

__all__ = [
    "BodyFormat",
    "Channel",
    "Route",
    "Rule",
    "RuleDecision",
    "RuleSet",
    "Severity",
    "Source",
    "expand_env",
    "load_rules",
]
