"""The runtime objects of a loaded rules file: channels, sources, rules, routes and decisions.

They are plain frozen dataclasses built by :func:`receiver.rules.load_rules`; code past the
loader trusts them and never re-checks. Secrets (channel URLs, webhook secrets, log tokens)
are held as ``SecretStr`` so that a ``repr``, a log line or an error message never shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import SecretStr

if TYPE_CHECKING:
    from jinja2 import Template

    from receiver.rules.match import Clause, Subject

__all__ = [
    "BodyFormat",
    "Channel",
    "Route",
    "Rule",
    "RuleDecision",
    "Severity",
    "Source",
]

Severity = Literal["info", "success", "warning", "failure"]
"""How bad a notification is; apprise's notify types (colour in Slack, icon in Teams)."""

BodyFormat = Literal["text", "markdown", "html"]
"""The markup of a notification body, passed to apprise as ``body_format``."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A named place notifications go to (one apprise URL) with its delivery options.

    Attributes:
        name: the channel's name in ``rules.yaml``.
        url: the apprise URL with ``${VAR}`` expanded; a secret (use :meth:`url_value`).
        max_attempts: deliveries are tried at most this many times before the dead letter.
        max_age_seconds: a delivery still failing this long after it was due is dead-lettered.
        concurrency: deliveries to this channel in flight at once.
        timeout_seconds: the budget of one delivery attempt.
    """

    name: str
    url: SecretStr
    max_attempts: int = 8
    max_age_seconds: float = 24 * 3600.0
    concurrency: int = 4
    timeout_seconds: float = 30.0

    def url_value(self) -> str:
        """Return the expanded URL, secrets included (only for apprise itself)."""
        return self.url.get_secret_value()

    @property
    def scheme(self) -> str:
        """The URL scheme in lower case (``slack``, ``mailtos``, ``workflows``...); not secret."""
        return self.url_value().partition("://")[0].lower()


@dataclass(frozen=True, slots=True)
class Source:
    """A sender of webhooks and robot logs (``POST /webhooks/{name}``, ``POST /logs/{name}``).

    Attributes:
        name: the source's name, the last segment of its URLs.
        secrets: webhook secrets; any of them may sign a body (several during a rotation).
        logs_token: the bearer token of ``POST /logs/{name}``; None turns that route off.
        insecure: accept unsigned webhooks (only when set explicitly).
        accept_hex_signature: also accept the ``sha256=<hex>`` signature form.
    """

    name: str
    secrets: tuple[SecretStr, ...] = ()
    logs_token: SecretStr | None = None
    insecure: bool = False
    accept_hex_signature: bool = False

    def secret_values(self) -> tuple[str, ...]:
        """Return the webhook secrets in clear (only for signature verification)."""
        return tuple(s.get_secret_value() for s in self.secrets)

    def logs_token_value(self) -> str | None:
        """Return the robot-log token in clear, or None when there is none."""
        return None if self.logs_token is None else self.logs_token.get_secret_value()


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """One compiled rule: when it matches, what it notifies and how the message looks.

    Attributes:
        name: unique name (used in logs, metrics, the store and ``receiver test``).
        index: position in the file, 0-based (evaluation order).
        line: 1-based line of the rule in the file (0 when unknown).
        notify: the names of the channels it notifies, in the order written.
        continue_: keep evaluating the rules below after this one matched (``continue: true``).
        description: free text from the file.
        severity: the fixed severity, or None for the default of the event.
        format: markup of the body.
        title_source: the ``title`` template as written, or None for the default title.
        body_source: the ``body`` template as written, or None for the default body.
        match_source: the ``match`` block as written (for display).
        title_template: the compiled ``title`` template.
        body_template: the compiled ``body`` template.
        clause: the compiled ``match`` block.
    """

    name: str
    index: int
    line: int
    notify: tuple[str, ...]
    continue_: bool = False
    description: str | None = None
    severity: Severity | None = None
    format: BodyFormat = "text"
    title_source: str | None = None
    body_source: str | None = None
    match_source: Any = field(default=None, repr=False)
    title_template: Template | None = field(default=None, repr=False)
    body_template: Template | None = field(default=None, repr=False)
    clause: Clause | None = field(default=None, repr=False)

    @property
    def test(self) -> Callable[[Subject], bool]:
        """The compiled predicate of the ``match`` block."""
        if self.clause is None:
            return _always
        return self.clause.test


def _always(_: Subject) -> bool:
    return True


class Route(NamedTuple):
    """A matched rule and the channels it notifies (in the rule's order)."""

    rule: Rule
    channels: tuple[Channel, ...]


@dataclass(frozen=True, slots=True)
class RuleDecision:
    """What one rule decided about one event, for ``receiver test`` and the admin API.

    Attributes:
        rule: the rule.
        matched: True when the rule matched.
        evaluated: False when an earlier matching rule without ``continue`` stopped evaluation.
        reason: for a miss, the first clause that failed and why
            (``job.state: Successful is not one of [Faulted, Stopped]``); for a rule not
            evaluated, ``not evaluated: stopped by rule 'x'``; None for a match.
    """

    rule: Rule
    matched: bool
    evaluated: bool = True
    reason: str | None = None
