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

    from receiver.rules.match import Clause, FieldRef, Subject
    from receiver.rules.schedule import Schedule

__all__ = [
    "Absence",
    "BodyFormat",
    "Channel",
    "Collapse",
    "Enrich",
    "Escalation",
    "Expect",
    "Frequency",
    "Group",
    "Heartbeat",
    "Inhibit",
    "KeyTemplate",
    "NoiseBudget",
    "OrchestratorLink",
    "Recover",
    "Route",
    "Rule",
    "RuleDecision",
    "Severity",
    "Silence",
    "Source",
    "Throttle",
]

Severity = Literal["info", "success", "warning", "failure"]
"""How bad a notification is; apprise's notify types (colour in Slack, icon in Teams)."""

BodyFormat = Literal["text", "markdown", "html"]
"""The markup of a notification body, passed to apprise as ``body_format``."""


@dataclass(frozen=True, slots=True)
class NoiseBudget:
    """A channel's noise budget (``budget:``): at most ``max`` notifications per ``per`` seconds.

    Past it, notifications are held and sent as one digest when the window ends.
    """

    max: int
    per: float


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
        budget: at most this many notifications per window (the rest in one digest), or None.
    """

    name: str
    url: SecretStr
    max_attempts: int = 100
    max_age_seconds: float = 24 * 3600.0
    concurrency: int = 4
    timeout_seconds: float = 30.0
    budget: NoiseBudget | None = None

    def url_value(self) -> str:
        """Return the expanded URL, secrets included (only for apprise itself)."""
        return self.url.get_secret_value()

    @property
    def scheme(self) -> str:
        """The URL scheme in lower case (``slack``, ``mailtos``, ``workflows``...); not secret."""
        return self.url_value().partition("://")[0].lower()


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The end-to-end check of a source's webhook path (``orchestrator.heartbeat:``).

    Attributes:
        every: seconds between two pings asked of Orchestrator.
        within: seconds the signed ``ping`` has to arrive at ``/webhooks/{source}``.
        notify: the channels of the path's alerts (they should not depend on that path).
        auto_enable: enable the webhook again when it is found disabled.
        health_every: seconds between two reads of the source's webhooks (enabled, event types).
    """

    every: float
    within: float
    notify: tuple[str, ...]
    auto_enable: bool = False
    health_every: float = 300.0


@dataclass(frozen=True, slots=True)
class GapRecovery:
    """Gap recovery of a source (``orchestrator.recovery:``): job ends read back from the API.

    Attributes:
        every: seconds between two runs (the first runs soon after start).
        lookback: how far back a run looks at most.
    """

    every: float = 600.0
    lookback: float = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Enrich:
    """``enrich:`` as it applies to one rule: what is asked of Orchestrator before the message goes out.

    Attributes:
        job: the job as Orchestrator has it now (full Info, host machine, robot, times).
        logs: the job's last ``log_lines`` Error and Fatal robot log lines.
        arguments: the job's input arguments too (they may hold business data: only when asked).
        log_lines: how many log lines at most.
        budget: seconds the message waits for the details at most; then it goes without them.
    """

    job: bool = True
    logs: bool = True
    arguments: bool = False
    log_lines: int = 5
    budget: float = 3.0


@dataclass(frozen=True, slots=True)
class OrchestratorLink:
    """A source's connection back to Orchestrator (``sources.<name>.orchestrator:``), values expanded.

    Attributes:
        url: the Orchestrator API base (``.../{org}/{tenant}/orchestrator_`` or a standalone host), no
            trailing slash.
        client_id: the external application's id.
        client_secret: its secret (masked in every repr).
        scopes: the scopes asked for with each token.
        public_url: the URL Orchestrator calls for this source (the receiver's own ``/webhooks/{name}``), byte
            for byte as registered.
        token_url: the token endpoint when given explicitly; None derives it from ``url``.
        web_url: the Orchestrator web UI that messages link to, when it differs from ``url`` (no trailing slash).
        timeout_seconds: timeout of one HTTP request to Orchestrator.
        heartbeat: the end-to-end check of the webhook path, or None.
        recovery: gap recovery in the background, or None (``receiver orchestrator reconcile`` by hand).
    """

    url: str
    client_id: str
    client_secret: SecretStr
    scopes: tuple[str, ...]
    public_url: str
    token_url: str | None = None
    web_url: str | None = None
    timeout_seconds: float = 10.0
    heartbeat: Heartbeat | None = None
    recovery: GapRecovery | None = None

    def client_secret_value(self) -> str:
        """Return the client secret in clear (only for the token request)."""
        return self.client_secret.get_secret_value()


@dataclass(frozen=True, slots=True)
class Expect:
    """A source's expected traffic (``sources.<name>.expect:``): one alert when it goes quiet, one when it is back.

    Attributes:
        every: seconds (counted within ``during``) after which no event at all is an alert.
        during: the hours the source is expected to send, or None for always.
        notify: the channels of the alert and of the "back" message.
    """

    every: float
    during: Schedule | None
    notify: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Source:
    """A sender of webhooks and robot logs (``POST /webhooks/{name}``, ``POST /logs/{name}``).

    Attributes:
        name: the source's name, the last segment of its URLs.
        secrets: webhook secrets; any of them may sign a body (several during a rotation).
        logs_token: the bearer token of ``POST /logs/{name}``; None turns that route off.
        insecure: accept unsigned webhooks (only when set explicitly).
        accept_hex_signature: also accept the ``sha256=<hex>`` signature form.
        orchestrator: the connection back to Orchestrator, or None.
        expect: alert when the source goes quiet (``expect:``), or None.
    """

    name: str
    secrets: tuple[SecretStr, ...] = ()
    logs_token: SecretStr | None = None
    insecure: bool = False
    accept_hex_signature: bool = False
    orchestrator: OrchestratorLink | None = None
    expect: Expect | None = None

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
        throttle: at most one notification per key and interval (``throttle:``), or None.
        group: matches become one digest per group and window (``group:``), or None.
        frequency: notify only once N matches arrived within a window (``frequency:``), or None.
        absence: notify when no follow-up event arrived within a time (``absence:``), or None.
        recover: send one "recovered" message when the condition clears (``recover:``), or None.
        share_across_sources: one throttle window, counter, group, absence timer and alert flag per
            key for events of every source (``share_across_sources: true``); by default each source
            has its own, so that one source cannot steer another's alerts.
        enrich: the details asked of Orchestrator for its job and queue item messages (its own
            ``enrich:`` or the file's), or None.
        repeat: seconds after which a firing, unacknowledged alert of the rule is notified again, or None.
        escalate: the channels notified while an alert stays unacknowledged and unresolved, by delay.
        actions: what the alert message's links may do besides acknowledge and silence (``retry``).
        resolve_after: seconds without a notification after which an open alert is resolved by expiry.
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
    throttle: Throttle | None = None
    group: Group | None = None
    frequency: Frequency | None = None
    absence: Absence | None = None
    recover: Recover | None = None
    share_across_sources: bool = False
    enrich: Enrich | None = None
    repeat: float | None = None
    escalate: tuple[Escalation, ...] = ()
    actions: tuple[str, ...] = ()
    resolve_after: float = 24 * 3600.0

    @property
    def stateful(self) -> bool:
        """True when the rule keeps state between events (anything but notify-on-every-match)."""
        return any(x is not None for x in (self.throttle, self.group, self.frequency, self.absence, self.recover))

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


# --- noise control ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class KeyTemplate:
    """A key written as a template (``"{{ process }}"``): which events share a window, a counter, a timer.

    Attributes:
        source: the template as written.
        template: the compiled template (text format).
    """

    source: str
    template: Template = field(repr=False)


@dataclass(frozen=True, slots=True)
class Escalation:
    """One step of ``escalate:``: ``after`` seconds from the alert's opening, notify ``notify`` (channel names)."""

    after: float
    notify: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Throttle:
    """``throttle:``: at most one notification per key per interval; the next one says how many were held.

    Attributes:
        interval: seconds a notification keeps later ones of the same key back.
        key: the key template, or None for one window per rule.
    """

    interval: float
    key: KeyTemplate | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """``group:``: the matches of one group become one digest (Alertmanager's group_by and timers).

    Attributes:
        by: the fields whose values make the group (none: one group per rule).
        wait: seconds from a group's first event to its first digest (``group_wait``).
        interval: seconds between two digests of the same group (``group_interval``).
    """

    by: tuple[FieldRef, ...]
    wait: float
    interval: float


@dataclass(frozen=True, slots=True)
class Frequency:
    """``frequency:``: notify when ``count`` matches of one key arrived within ``within`` seconds.

    Attributes:
        count: matches needed (at least 2).
        within: the sliding window, in seconds.
        key: the key template, or None for one counter per rule.
    """

    count: int
    within: float
    key: KeyTemplate | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Absence:
    """``absence:``: a match arms a timer per key; an ``expect`` event of the same key disarms it.

    When the timer runs out, the rule notifies about the event that armed it.

    Attributes:
        expect: the follow-up events that cancel the timer.
        expect_source: the ``expect`` block as written (for display).
        within: seconds the follow-up may take.
        key: the key template, evaluated on both events (default ``{{ entity_key }}``).
    """

    expect: Clause = field(repr=False)
    expect_source: Any
    within: float
    key: KeyTemplate


@dataclass(frozen=True, slots=True, eq=False)
class Recover:
    """``recover:``: one "recovered" message when an event shows the condition cleared.

    Attributes:
        clause: the events that clear it (the absence ``expect`` with ``recover: true``).
        match_source: the block as written (for display).
        key: the key template, evaluated on the alerting and on the clearing event.
        title_source: the ``title`` template as written, or None for the default.
        body_source: the ``body`` template as written, or None for the default.
        title_template: the compiled ``title``.
        body_template: the compiled ``body``.
    """

    clause: Clause = field(repr=False)
    match_source: Any
    key: KeyTemplate
    title_source: str | None = None
    body_source: str | None = None
    title_template: Template | None = field(default=None, repr=False)
    body_template: Template | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, eq=False)
class Silence:
    """A maintenance window of ``rules.yaml`` (``silences:``).

    Attributes:
        name: unique name, shown in every suppression it causes.
        schedule: when it holds.
        clause: the events it silences (None: every event).
        rules: rule-name globs it is limited to (empty: every rule).
        comment: free text.
        line: 1-based line in the file.
    """

    name: str
    schedule: Schedule
    clause: Clause | None = field(default=None, repr=False)
    rules: tuple[str, ...] = ()
    comment: str | None = None
    line: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class Inhibit:
    """An inhibition (``inhibit:``): while a source is active, target events with equal fields are muted.

    Attributes:
        name: unique name, shown in every suppression it causes.
        target: the events it mutes.
        equal: the fields that must be equal on the source and the target (their key).
        duration: seconds an inhibition lasts at most without a clearing event.
        source: the events that start it (None with ``source_rule``).
        source_rule: the rule whose notifications start it (None with ``source``).
        until: the events that clear it, or None.
        note: template of the sentence added to the source's notification, or None for the default.
        note_source: that template as written.
        line: 1-based line in the file.
        share_across_sources: an event of any source starts, meets and clears it
            (``share_across_sources: true``); by default only events of the source that started it.
    """

    name: str
    target: Clause = field(repr=False)
    equal: tuple[FieldRef, ...]
    duration: float
    source: Clause | None = field(default=None, repr=False)
    source_rule: str | None = None
    until: Clause | None = field(default=None, repr=False)
    note: Template | None = field(default=None, repr=False)
    note_source: str | None = None
    line: int = 0
    share_across_sources: bool = False


@dataclass(frozen=True, slots=True)
class Collapse:
    """Folder fan-out collapse (``collapse:``): the same entity, type and state within ``window`` is one event.

    Attributes:
        window: seconds after an event in which its copies are collapsed.
        types: type globs it applies to (folded to lower case).
    """

    window: float
    types: tuple[str, ...]
