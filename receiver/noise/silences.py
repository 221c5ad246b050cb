"""The silence stage: maintenance windows of ``rules.yaml`` and ad-hoc silences created at run time. Pure.

:class:`Silencer` decides whether a rule's notification about an event is silenced; the stage
(:func:`silenced`) records it. Silences keep no noise state: windows are in ``rules.yaml``,
ad-hoc silences in the store's ``silences`` table.

An ad-hoc silence (``receiver silence add``, ``POST /api/silences``) is a list of matchers, a
creator, a comment and a time range. Matchers are written ``FIELD OP VALUE``, several in one
string separated by spaces (quote a value with spaces: ``message="disk full"``):

======== ===================================================================
``=``    equal, or a glob when the value has ``*`` or ``?`` (as in rules.yaml)
``!=``   not that
``=~``   a regular expression found in the value (RE2, linear in the text; anchor with ``^…$``)
``!~``   the regular expression is not found
======== ===================================================================

``FIELD`` is any field of rules.yaml (``process``, ``robot``, ``folder``, ``job.state``, a dotted
path such as ``Job.Robot.Name``), or ``rule``: the name of the rule that would notify. Every
matcher must hold. Values are checked like rule values (``job.state=Faulty`` is refused).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from receiver.rules import (
    Clause,
    Compiler,
    RuleSet,
    Subject,
    compile_glob,
    compile_regex,
    event_classes,
    is_plain_glob,
)
from receiver.timefmt import local_text

if TYPE_CHECKING:  # the stage context imports the Silencer
    from receiver.noise.decision import Result
    from receiver.noise.plan import Plan, RoutePlan
    from receiver.noise.stage import Context

__all__ = [
    "AdHocSilence",
    "Matcher",
    "MatcherError",
    "Silencer",
    "compile_matchers",
    "parse_matchers",
    "silenced",
]

_MATCHER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(=~|!~|!=|=)(.*)$", re.DOTALL)


class MatcherError(ValueError):
    """Matchers that cannot be read; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class Matcher:
    """One ``FIELD OP VALUE``."""

    field: str
    op: str
    value: str

    def __str__(self) -> str:
        value = self.value if self.value and not re.search(r"\s|[\"']", self.value) else shlex.quote(self.value)
        return f"{self.field}{self.op}{value}"


def parse_matchers(texts: Sequence[str]) -> list[Matcher]:
    """Read matchers: each text holds one or more, separated by spaces (shell-style quoting).

    Raises:
        MatcherError: a text that is not ``FIELD OP VALUE``, or no matcher at all.
    """
    matchers: list[Matcher] = []
    problems: list[str] = []
    for text in texts:
        try:
            words = shlex.split(text)
        except ValueError as exc:
            problems.append(f"{text!r}: {exc}")
            continue
        for word in words:
            m = _MATCHER.match(word)
            if m is None:
                problems.append(
                    f"{word!r} is not a matcher; write FIELD=VALUE, FIELD!=VALUE, FIELD=~REGEX or FIELD!~REGEX"
                )
                continue
            matchers.append(Matcher(m.group(1), m.group(2), m.group(3)))
    if not matchers and not problems:
        problems.append("give at least one matcher, e.g. process=Invoice* robot=BOT01")
    if problems:
        raise MatcherError(problems)
    return matchers


@dataclass(frozen=True, slots=True, eq=False)
class CompiledMatchers:
    """Matchers ready to test: a clause over the event, and tests on the rule name."""

    clause: Clause | None
    rule_tests: tuple[Callable[[str], bool], ...] = field(default=())

    def holds(self, subject: Subject, rule: str) -> bool:
        """True when every matcher holds for the event and the rule."""
        if not all(test(rule) for test in self.rule_tests):
            return False
        return self.clause is None or self.clause.test(subject)


def _value_spec(matcher: Matcher) -> Any:
    if matcher.op == "=":
        return matcher.value
    if matcher.op == "!=":
        return {"not": matcher.value}
    if matcher.op == "=~":
        return {"regex": matcher.value}
    return {"not": {"regex": matcher.value}}


def _rule_test(matcher: Matcher) -> Callable[[str], bool]:
    if matcher.op in ("=", "!="):
        value = matcher.value
        if is_plain_glob(value):
            positive: Callable[[str], bool] = compile_glob(value, classes=False).matches
        else:
            positive = lambda name: name.casefold() == value.casefold()  # noqa: E731
    else:
        rx = compile_regex(matcher.value)
        positive = lambda name: rx.search(name) is not None  # noqa: E731
    if matcher.op in ("!=", "!~"):
        return lambda name: not positive(name)
    return positive


def compile_matchers(matchers: Sequence[Matcher]) -> CompiledMatchers:
    """Compile matchers with the rules' compiler, so that fields and values are checked the same way.

    Raises:
        MatcherError: unknown fields (with a did-you-mean), invalid enum values, bad regexes...
    """
    problems: list[str] = []

    def report(_: tuple[str | int, ...], message: str, __: bool) -> None:
        problems.append(message)

    compiler = Compiler(report, event_classes())
    blocks: list[dict[str, Any]] = []
    rule_tests: list[Callable[[str], bool]] = []
    for matcher in matchers:
        if matcher.field == "rule":
            try:
                rule_tests.append(_rule_test(matcher))
            except ValueError as exc:
                problems.append(f"rule: bad pattern {matcher.value!r}: {exc}")
            continue
        blocks.append({matcher.field: _value_spec(matcher)})
    clause = compiler.compile({"all": blocks}, ()) if blocks else None
    if problems:
        raise MatcherError(problems)
    return CompiledMatchers(clause, tuple(rule_tests))


@dataclass(frozen=True, slots=True)
class AdHocSilence:
    """A silence created at run time (the store's ``silences`` table).

    Attributes:
        id: its number.
        matchers: the matchers as written (one per item).
        comment: why.
        created_by: who.
        created_at: when it was created (Unix seconds).
        starts_at: when it starts holding.
        ends_at: when it stops (expiring it sets this to the time of expiry).
    """

    id: int
    matchers: tuple[str, ...]
    comment: str
    created_by: str
    created_at: float
    starts_at: float
    ends_at: float

    def active(self, at: float) -> bool:
        """True when the silence holds at ``at``."""
        return self.starts_at <= at < self.ends_at


class Silencer:
    """Decides whether a notification of a rule about an event is silenced at a time.

    Args:
        ruleset: its ``silences:`` (maintenance windows).
        adhoc: the ad-hoc silences that may hold in the period being processed.
    """

    def __init__(self, ruleset: RuleSet, adhoc: Sequence[AdHocSilence] = ()) -> None:
        self._ruleset = ruleset
        self._adhoc: list[tuple[AdHocSilence, CompiledMatchers]] = []
        for silence in adhoc:
            try:
                compiled = compile_matchers(parse_matchers(silence.matchers))
            except MatcherError:
                # Checked when it was created; a field renamed since then makes it match nothing.
                continue
            self._adhoc.append((silence, compiled))
        self._rule_globs = {
            s.name: tuple(compile_glob(pattern, classes=True) for pattern in s.rules) for s in ruleset.silences
        }

    def check(self, subject: Subject, rule: str, at: float) -> str | None:
        """The reason the notification is silenced (naming the silence), or None when it is not."""
        for window in self._ruleset.silences:
            globs = self._rule_globs[window.name]
            if globs and not any(g.matches(rule) for g in globs):
                continue
            if not window.schedule.active(at):
                continue
            if window.clause is not None and not window.clause.test(subject):
                continue
            comment = f": {window.comment}" if window.comment else ""
            return f"silenced by maintenance window {window.name!r} ({window.schedule.describe()}){comment}"
        for silence, compiled in self._adhoc:
            if silence.active(at) and compiled.holds(subject, rule):
                until = local_text(silence.ends_at, self._ruleset.timezone)
                matchers = " ".join(silence.matchers)
                return (
                    f"silenced by silence #{silence.id} ({matchers}) of {silence.created_by} until {until}: "
                    f"{silence.comment}"
                )
        return None


def silenced(ctx: Context, plan: Plan, rp: RoutePlan, result: Result) -> bool:
    """True when a silence holds for the rule's notification about the event (recorded as ``silenced``)."""
    reason = ctx.silencer.check(plan.subject, rp.rule.name, plan.at)
    if not reason:
        return False
    decision = ctx.decide(result, plan, "silenced", reason, rule=rp.rule.name)
    ctx.held(plan, rp, decision, result)
    return True
