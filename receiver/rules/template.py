"""The Jinja2 side of rules: sandboxed environments, filters, escaping and load-time checks.

Templates run in ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``: a template can
read the event but not reach Python internals (``__class__``, ``__globals__``...) nor mutate
anything. They are compiled once, when the rules are loaded, and checked then: a syntax
error, an unknown filter, a name that is not in the context (``{{ proces }}``) or a private
attribute is a load error, not a failure at 3 a.m.

Every value a template prints goes through the environment's ``finalize``, which makes
untrusted event text harmless for the body format:

- all formats: Slack control sequences (``<!channel>``, ``<!here>``, ``<@U123>``), the
  bare ``@channel`` / ``@here`` / ``@everyone`` mentions and the other chats' mass mentions
  (``@all``, ``@room``, ``@**all**``, ``<users/all>``) are broken with a zero-width space;
- ``markdown``: ``& < >`` become entities and markdown punctuation is backslash-escaped;
- ``html``: autoescape (``& < > " '`` become entities).

Text the rule author wrote in the template itself is never escaped, and ``|safe`` marks a
value as trusted.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from receiver.rules.budget import check_budget
from receiver.rules.fields import HANDLE_TYPES
from receiver.rules.model import BodyFormat
from receiver.timefmt import TIME_FORMAT, format_local

__all__ = [
    "CONTEXT_NAMES",
    "RECOVER_NAMES",
    "RuleTemplate",
    "check_template",
    "compile_template",
    "context_names",
    "environment",
    "escape_markdown",
    "firstlines",
    "localtime",
    "neutralise",
]

CONTEXT_NAMES: frozenset[str] = frozenset(
    {*HANDLE_TYPES, "event", "source", "rule", "orchestrator_url", "link", "link_label", "severity", "timezone"}
    | {"origin", "recovered_at"}
    | {"job_detail", "job_logs", "item_detail", "details_unavailable", "logs_unavailable"}
)
"""The names a rule template may use (see docs/rules.md, "Template context")."""

RECOVER_NAMES: frozenset[str] = frozenset({"since", "count", "alert_title", "key"})
"""The names a ``recover:`` template may use besides :data:`CONTEXT_NAMES`."""


_ZWSP = "\u200b"
# Slack's <!channel> <@U1> <#C1>, Discord's <@&role>, Google Chat's <users/all>.
_SLACK_CONTROL = re.compile(r"<(?=[!@#]|users/)")
# @channel @here @everyone (Slack, Discord, Mattermost), @all (Mattermost, Rocket.Chat), @room (Matrix),
# @**all** and the like (Zulip).
_BARE_MENTION = re.compile(r"@(?=(?:channel|here|everyone|all|room)\b|\*\*)", re.IGNORECASE)
_MD_INLINE = re.compile(r"([\\`*_\[\]~|])")
_MD_LINE_MARKS = frozenset("#+-=")
_MD_DIGITS = re.compile(r"\d*")  # one greedy run and nothing after it: never backtracks


def neutralise(text: str) -> str:
    """Break mention and control syntax so that event text cannot ping anyone.

    ``<!channel>`` becomes ``<\\u200b!channel>`` and ``@here`` becomes ``@\\u200bhere``: they
    still read the same, but Slack no longer parses them. So do the mass mentions of the other
    chats apprise sends text to as is: ``@all`` (Mattermost, Rocket.Chat), ``@room`` (Matrix),
    ``@**all**`` (Zulip), ``<users/all>`` (Google Chat), ``<@&role>`` (Discord).
    """
    if "<" in text:
        text = _SLACK_CONTROL.sub("<" + _ZWSP, text)
    if "@" in text:
        text = _BARE_MENTION.sub("@" + _ZWSP, text)
    return text


def escape_markdown(text: str) -> str:
    """Escape ``text`` for a markdown body.

    ``& < >`` become HTML entities (so no raw HTML reaches an e-mail); emphasis, code, link and
    table characters are backslash-escaped, and so are headings, list markers and numbered
    lists at the start of a line. Other punctuation is left alone so that the text stays
    readable where a client shows backslashes literally.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_INLINE.sub(r"\\\1", text)
    return _escape_line_starts(text)


def _escape_line_starts(text: str) -> str:
    """Escape a heading or list marker, or the dot of a numbered list, that begins a line.

    Line by line with str methods, so linear in the text: a regex ``^\\s*#`` tried at every
    line start runs over all the blank lines that follow it, quadratic in the newlines. What
    counts as the start of a line is what ``re.MULTILINE`` says (after ``\\n``), and the
    blank before the marker is what ``\\s`` and ``str.isspace`` say; a marker after blank
    lines is escaped too.
    """
    lines = text.split("\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        body = line.lstrip()
        if not body:
            continue
        indent = len(line) - len(body)
        if body[0] in _MD_LINE_MARKS:
            lines[i] = line[:indent] + "\\" + body
            continue
        run = _MD_DIGITS.match(body)
        digits = run.end() if run else 0
        # A numbered list: digits, a dot, then a blank (on this line, or the line break itself).
        if digits and body[digits : digits + 1] == ".":
            after = body[digits + 1 : digits + 2]
            if after.isspace() or (not after and i < last):
                lines[i] = line[: indent + digits] + "\\" + body[digits:]
    return "\n".join(lines)


def localtime(value: Any, tz: ZoneInfo, fmt: str = TIME_FORMAT) -> str:
    """Format an aware datetime in ``tz`` (naive ones are taken as UTC); other values as text."""
    return format_local(value, tz, fmt)


def firstlines(value: Any, n: int = 5, width: int = 300) -> str:
    """The first ``n`` non-blank lines of ``value``, each cut at ``width`` characters, ``…`` if more."""
    if value is None:
        return ""
    lines = [line.rstrip() for line in str(value).replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    kept = [line for line in lines if line.strip()]
    out = [line if len(line) <= width else line[: width - 1] + "…" for line in kept[:n]]
    if len(kept) > n:
        out.append("…")
    return "\n".join(out)


def _tz(context: Context) -> ZoneInfo:
    tz: object = context.get("timezone")
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo("UTC")


@pass_context
def _localtime_filter(context: Context, value: Any, fmt: str = TIME_FORMAT) -> str:
    return localtime(value, _tz(context), fmt)


def _finalizer(fmt: BodyFormat) -> Callable[[Context, Any], Any]:
    @pass_context
    def finalize(context: Context, value: Any) -> Any:
        check_budget()
        if value is None:
            return ""
        if isinstance(value, Markup):
            return value
        if isinstance(value, datetime):
            value = localtime(value, _tz(context))
        text = neutralise(str(value))
        if fmt == "markdown":
            return escape_markdown(text)
        return text  # html: autoescape escapes it after finalize

    return finalize


class RuleTemplate(Template):
    """A compiled rule template that knows the context names it reads.

    So a render builds only the context it reads (docs/performance.md, "Fast paths").
    """

    names: frozenset[str] | None = None
    """The names the template reads (None: not known, so all of them)."""

    _flat_globals: dict[str, Any] | None = None

    def render(self, *args: Any, **kwargs: Any) -> str:
        """``Template.render``, without walking the globals' ChainMap twice on every call.

        The environment's globals are fixed once ``environment()`` has built it, so they are
        flattened on the first render (docs/performance.md, "Fast paths"). It copies jinja2's
        render internals: pyproject.toml bounds jinja2 and tests/test_fast_paths.py checks them.
        """
        flat = self._flat_globals
        if flat is None:
            flat = self._flat_globals = dict(self.globals)
        env = self.environment
        ctx = env.context_class(env, {**flat, **dict(*args, **kwargs)}, self.name, self.blocks, globals=flat)
        try:
            return env.concat(self.root_render_func(ctx))
        except Exception:  # noqa: BLE001 - as jinja2's render: re-raised with the template's lines in the traceback
            env.handle_exception()


def context_names(*templates: Template | None) -> frozenset[str] | None:
    """The context names these templates read together; None when one of them does not say."""
    names: set[str] = set()
    for template in templates:
        if template is None:
            continue
        read = template.names if isinstance(template, RuleTemplate) else None
        if read is None:
            return None
        names |= read
    return frozenset(names)


_MAX_REPEAT = 1_000_000
"""The longest text or list a template's ``*`` may make (a message is far shorter)."""

_MAX_POWER_BITS = 10_000
"""The largest integer (in bits) a template's ``**`` may make."""


def _repeat_size(seq: Any, times: Any) -> int:
    if isinstance(seq, str | list | tuple) and isinstance(times, int):
        return len(seq) * times
    return 0


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, which also stops a template that runs past the event's budget.

    Every attribute, item and call of a template goes through these, so a loop over a big list
    of the event (or a rule's runaway ``range``) ends at the deadline of :mod:`.budget`. ``*``
    and ``**`` are bounded too: one of them is a single C call the budget cannot interrupt
    (``message * 100000`` is gigabytes), and jinja2 would fold a constant one when it compiles,
    at load (``'x' * 300000000`` took 18 s and 1.5 GB in ``receiver check``).
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        check_budget()
        if operator == "*":
            size = max(_repeat_size(left, right), _repeat_size(right, left))
            if size > _MAX_REPEAT:
                raise SecurityError(f"the template makes a text or list of {size:,} items (at most {_MAX_REPEAT:,})")
        elif isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            bits = right * abs(left).bit_length()
            if bits > _MAX_POWER_BITS:
                raise SecurityError(f"the template makes a number of about {bits:,} bits (at most {_MAX_POWER_BITS:,})")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        check_budget()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        check_budget()
        return super().getitem(obj, argument)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        check_budget()
        return super().call(context, obj, *args, **kwargs)


@cache
def environment(fmt: BodyFormat) -> ImmutableSandboxedEnvironment:
    """The sandboxed environment for one body format (titles always use ``text``)."""
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=fmt == "html",
        finalize=_finalizer(fmt),
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["firstlines"] = firstlines
    env.filters["localtime"] = _localtime_filter
    env.template_class = RuleTemplate
    return env


def check_template(source: str, fmt: BodyFormat, extra: frozenset[str] = frozenset()) -> list[tuple[int, str]]:
    """Find the problems of a template without rendering it.

    Args:
        source: the template text.
        fmt: the body format it will be compiled for.
        extra: names the template may use besides :data:`CONTEXT_NAMES`.

    Returns:
        (1-based line inside the template, message) for every problem: syntax errors, unknown
        filters and tests, names outside the template context, private attributes.
    """
    env = environment(fmt)
    try:
        ast = env.parse(source)
        # This runs the code generator, which also rejects unknown filters and tests.
        undeclared = meta.find_undeclared_variables(ast)
    except TemplateSyntaxError as exc:
        what = "syntax error" if type(exc) is TemplateSyntaxError else "error"
        return [(exc.lineno or 1, f"template {what}: {exc.message}")]
    problems: list[tuple[int, str]] = []
    allowed = CONTEXT_NAMES | extra | set(env.globals)
    for name in sorted(undeclared - allowed):
        close = difflib.get_close_matches(name, sorted(allowed), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        line = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == name), 1)
        problems.append((line, f"unknown name {name!r} in template{hint}"))
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        attr = node.attr if isinstance(node, nodes.Getattr) else getattr(getattr(node, "arg", None), "value", None)
        if isinstance(attr, str) and attr.startswith("_"):
            problems.append((node.lineno, f"template may not use the private attribute {attr!r}"))
    for node in ast.find_all(nodes.Filter):
        arg = node.args[0] if node.name == "attr" and node.args else None
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and arg.value.startswith("_"):
            problems.append((node.lineno, f"template may not use the private attribute {arg.value!r}"))
    if not problems:
        try:
            env.from_string(source)
        except TemplateSyntaxError as exc:
            problems.append((exc.lineno or 1, f"template error: {exc.message}"))
    return problems


def compile_template(source: str, fmt: BodyFormat) -> RuleTemplate:
    """Compile a template checked with :func:`check_template` for one body format."""
    env = environment(fmt)
    ast = env.parse(source)
    # Every name the template reads, and the ones it sets itself (loop variables, {% set %}):
    # more than it needs from the context, never less, and a walk of the tree where jinja2's
    # own analysis would run its code generator once more (reloads of large files).
    names = frozenset(node.name for node in ast.find_all(nodes.Name))
    template = env.from_string(ast)
    assert isinstance(template, RuleTemplate)  # noqa: S101 - the environment's template class
    template.names = names
    return template
