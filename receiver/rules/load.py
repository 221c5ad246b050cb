"""Loading ``rules.yaml``: YAML with positions, schema checks, cross references, compilation.

:func:`load_rules` collects *every* problem before giving up, each located as
``PATH:LINE:COL`` from the marks of the YAML nodes (``yaml.compose``), in the spirit of
alertmanager's ``config.Load`` followed by its cross-reference checks:

1. YAML syntax (with the position PyYAML reports) and duplicate keys;
2. the top level, then each channel, source and rule on its own (pydantic, ``extra="forbid"``,
   unknown keys get a did-you-mean);
3. ``${VAR}`` expansion of channel URLs and source secrets (an unset variable names the
   channel or source and the variable), URL validation through the injected ``check_url``;
4. each rule: its ``match:`` block compiled (fields, operators, enum values, regexes, globs),
   its templates compiled and checked, its channels resolved, its name unique.
"""

from __future__ import annotations

import difflib
import gc
import re
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from receiver.errors import Problem, RulesError
from receiver.rules.fields import event_classes
from receiver.rules.match import Clause, Compiler, FieldRef
from receiver.rules.model import (
    Absence,
    Channel,
    Collapse,
    Enrich,
    Escalation,
    Expect,
    Frequency,
    GapRecovery,
    Group,
    Heartbeat,
    Inhibit,
    KeyTemplate,
    NoiseBudget,
    OrchestratorLink,
    Recover,
    Rule,
    Silence,
    Source,
    Throttle,
)
from receiver.rules.redact import (
    BUILTIN_PATTERNS,
    Redactor,
    RedactPattern,
    builtin_pattern,
    compile_user_pattern,
)
from receiver.rules.ruleset import RuleSet
from receiver.rules.schedule import (
    DateRange,
    Schedule,
    WeeklyWindow,
    parse_clock,
    parse_days,
    parse_hours,
    parse_moment,
)
from receiver.rules.spec import (
    ALLOWED_KEYS,
    NAME_CHARS,
    ChannelSpec,
    CollapseSpec,
    EnrichSpec,
    ExpectSpec,
    FileSpec,
    HeartbeatSpec,
    InhibitSpec,
    OrchestratorSpec,
    RecoverSpec,
    RedactPatternSpec,
    RedactSpec,
    RuleSpec,
    SilenceSpec,
    SourceSpec,
)
from receiver.rules.template import RECOVER_NAMES, check_template, compile_template
from receiver.rules.values import compile_glob

_SpecT = TypeVar("_SpecT", bound=BaseModel)

__all__ = ["expand_env", "load_rules"]

YamlPath = tuple[str | int, ...]

_VAR = re.compile(r"\$(\$|\{([^}]*)\}|\{)")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{NAME_CHARS - 1}}}$")
_NAME_RULE = f"names may use letters, digits, '_', '.' and '-' (at most {NAME_CHARS})"
_DEFAULT_SOURCE = "uipath"
_HTTP_URL = re.compile(r"^https?://[^/\s?#]+[^\s]*$")
_SCOPE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")

# libyaml's loader when PyYAML has it: same nodes and marks, about ten times faster.
_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_MAX_DEPTH = 100
"""Deepest nesting of YAML collections in a rules file (a rule's `match:` blocks included)."""

_MAX_ALIAS_NODES = 100_000
"""Nodes that aliases may add to a file beyond ten times its own (a "billion laughs" file adds billions)."""

_SHAPES = {
    "ChannelSpec": "an apprise URL or a mapping with `url:`",
    "RecoverSpec": "a mapping or true",
    "EnrichSpec": "a list, a mapping, true or false",
    "CollapseSpec": "a mapping or false",
    "RedactSpec": "a list or a mapping",
}
"""What a key whose model also takes a short form holds, for "expected ..., got ..." (else "a mapping")."""


class _TooLarge(Exception):
    """The YAML graph is too deep or its aliases expand too far: reported, and the file not read further."""


def _timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    # YAML reads 2026-13-24 as a date: one that does not exist is a located problem, not a ValueError.
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)  # type: ignore[arg-type]
    except (ValueError, OverflowError) as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value} is not a valid date: {exc}", node.start_mark
        ) from exc


_RulesYamlLoader: type[yaml.SafeLoader] = type("_RulesYamlLoader", (_YamlLoader,), {})
_RulesYamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def _kind(value: Any) -> str:
    """What a value is, never what it says: where a mapping belongs, a user may have written a secret."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _graph(root: yaml.Node) -> tuple[int, yaml.Node | None]:
    """The number of distinct nodes, and a node that contains itself through an alias (or None).

    Iterative, in time linear in the distinct nodes: aliases are not followed twice.
    """
    state: dict[int, bool] = {id(root): False}  # False: on the current path; True: done
    stack = [(root, iter(_children(root)))]
    while stack:
        node, rest = stack[-1]
        child = next(rest, None)
        if child is None:
            state[id(node)] = True
            stack.pop()
            continue
        seen = state.get(id(child))
        if seen is False:
            return len(state), child
        if seen is None:
            state[id(child)] = False
            stack.append((child, iter(_children(child))))
    return len(state), None


def expand_env(text: str, environ: Mapping[str, str]) -> tuple[str, list[str], list[str]]:
    """Replace ``${VAR}`` with ``environ[VAR]`` (``$$`` is a literal ``$``).

    Returns:
        The expanded text, the names that are not set, and the malformed references.
    """
    missing: list[str] = []
    malformed: list[str] = []

    def replace(m: re.Match[str]) -> str:
        if m.group(1) == "$":
            return "$"
        name = m.group(2)
        if name is None or not _VAR_NAME.match(name):
            malformed.append(m.group(0))
            return m.group(0)
        value = environ.get(name)
        if value is None:
            missing.append(name)
            return ""
        return value

    return _VAR.sub(replace, text), missing, malformed


@cache
def _zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def _kind_at(loc: tuple[Any, ...], kind: str) -> str:
    """The part of the file an unknown key at ``loc`` belongs to (``throttle`` inside a rule...)."""
    for part in reversed(loc[:-1]):
        if isinstance(part, str) and part in ALLOWED_KEYS and part not in ("file", "rule"):
            return part
    return kind


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Loader:
    def __init__(self, path: Path, environ: Mapping[str, str], check_url: Callable[[str], str | None] | None) -> None:
        self.path = path
        self.environ = environ
        self.check_url = check_url
        self.problems: list[Problem] = []
        self.marks: dict[YamlPath, tuple[int, int]] = {}
        self.key_marks: dict[YamlPath, tuple[int, int]] = {}
        self.nodes: dict[YamlPath, yaml.Node] = {}
        self._file_enrich: EnrichSpec | None = None  # the file-wide `enrich:`, the default of every rule
        self._visits_left = 0  # nodes _index_node may still visit (aliases visit theirs again)
        self._partial: set[YamlPath] = set()  # list items checked without the keys their model refused

    # --- reporting ---------------------------------------------------------------------

    def report(self, path: YamlPath, message: str, *, at_key: bool = False, line_offset: int = 0) -> None:
        line, col = self._locate(path, at_key=at_key)
        if line_offset and line:
            line, col = self._offset(path, line_offset)
        self.problems.append(Problem(str(self.path), line, col, message))

    def _locate(self, path: YamlPath, *, at_key: bool) -> tuple[int, int]:
        if at_key and path in self.key_marks:
            return self.key_marks[path]
        probe = path
        while probe:
            found = self.marks.get(probe)
            if found is not None:
                return found
            probe = probe[:-1]
        return self.marks.get((), (1, 1))

    def _offset(self, path: YamlPath, lineno: int) -> tuple[int, int]:
        """Position of line ``lineno`` (1-based) of a multi-line scalar value."""
        node = self.nodes.get(path)
        if not isinstance(node, yaml.ScalarNode):
            return self._locate(path, at_key=False)
        if node.style in ("|", ">"):
            # Block scalars start on the line after the indicator; indentation is unknown here.
            return node.start_mark.line + 1 + lineno, node.start_mark.column + 1
        return node.start_mark.line + lineno, node.start_mark.column + 1

    def _pydantic(self, exc: ValidationError, base: YamlPath, kind: str, label: str) -> None:
        prefix = f"{label}: " if label else ""
        errors = exc.errors(include_url=False)
        # A misspelt required key ("notfy") is reported once, with its did-you-mean.
        suggested = {
            (tuple(err["loc"][:-1]), close)
            for err in errors
            if err["type"] == "extra_forbidden" and err["loc"]
            for close in difflib.get_close_matches(
                str(err["loc"][-1]), ALLOWED_KEYS[_kind_at(err["loc"], kind)], n=1, cutoff=0.6
            )
        }
        for err in errors:
            loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            path = (*base, *loc)
            field = ".".join(str(p) for p in loc)
            typ = err["type"]
            if typ == "extra_forbidden":
                key = str(loc[-1]) if loc else "?"
                where = "top-level key" if kind == "file" and len(loc) == 1 else "key"
                keys = ALLOWED_KEYS[_kind_at(loc, kind)]
                hint = _did_you_mean(key, keys)
                valid = ", ".join(keys)
                self.report(path, f"{prefix}unknown {where} {key!r}{hint} (valid keys: {valid})", at_key=True)
            elif typ == "missing":
                if err["loc"] and (tuple(err["loc"][:-1]), str(err["loc"][-1])) in suggested:
                    continue
                self.report(path[:-1], f"{prefix}missing required key {field!r}")
            elif typ == "model_type":
                shape = _SHAPES.get(str(err.get("ctx", {}).get("class_name", "")), "a mapping")
                where = f"{field}: " if field else ""
                self.report(path, f"{prefix}{where}expected {shape}, got {_kind(err['input'])}")
            elif typ == "literal_error":
                expected = str(err.get("ctx", {}).get("expected", ""))
                self.report(path, f"{prefix}{field}: {err['input']!r} is not valid; valid values: {expected}")
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
                self.report(path, f"{prefix}{field}: {msg}")

    # --- YAML --------------------------------------------------------------------------

    def read(self) -> Any:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesError([Problem(str(self.path), 0, 0, f"cannot read the rules file: {exc}")]) from exc
        loader = _RulesYamlLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                self.problems.append(Problem(str(self.path), 1, 1, "the rules file is empty"))
                return None
            distinct, looped = _graph(node)
            if looped is not None:
                self._problem_at(looped, "an alias refers to a node that contains it (a loop)")
                return None
            self._visits_left = _MAX_ALIAS_NODES + 10 * distinct
            self._index_node(node, ())
            return loader.construct_document(node)
        except _TooLarge:
            return None
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
            what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            self.problems.append(Problem(str(self.path), line, col, f"YAML error: {what}"))
            return None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
            what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            self.problems.append(Problem(str(self.path), line, col, f"YAML syntax error: {what}"))
            return None
        except yaml.YAMLError as exc:
            self.problems.append(Problem(str(self.path), 0, 0, f"YAML error: {exc}"))
            return None
        finally:
            loader.dispose()

    def _problem_at(self, node: yaml.Node, message: str) -> None:
        self.problems.append(Problem(str(self.path), node.start_mark.line + 1, node.start_mark.column + 1, message))

    def _index_node(self, node: yaml.Node, path: YamlPath) -> None:
        self._visits_left -= 1
        if self._visits_left < 0:
            self._problem_at(node, f"YAML aliases expand to more than {_MAX_ALIAS_NODES:,} nodes beyond the file's own")
            raise _TooLarge
        if len(path) > _MAX_DEPTH:
            self._problem_at(node, f"nested more than {_MAX_DEPTH} levels deep")
            raise _TooLarge
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        self.nodes[path] = node
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = str(key_node.value)
                key_path = (*path, key)
                mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in seen:
                    self.problems.append(
                        Problem(str(self.path), *mark, f"duplicate key {key!r} (first at line {seen[key]})")
                    )
                    continue
                seen[key] = mark[0]
                self.key_marks[key_path] = mark
                self._index_node(value_node, key_path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index_node(item, (*path, i))

    # --- the parts ---------------------------------------------------------------------

    def load(self) -> RuleSet:
        data = self.read()
        if data is None:
            raise RulesError(self._sorted())
        if not isinstance(data, dict):
            self.report((), "the rules file must be a mapping with 'channels' and 'rules' at the top level")
            raise RulesError(self._sorted())
        top: dict[str, Any] = {}
        for key, value in data.items():
            try:
                top[key] = getattr(FileSpec.model_validate({key: value}), key)
            except ValidationError as exc:
                self._pydantic(exc, (), "file", "")
        spec = FileSpec.model_validate(top)
        timezone = self._timezone(spec.timezone)
        channels = self._channels(spec.channels)
        sources = self._sources(spec.sources, timezone)
        orchestrator_url = self._orchestrator_url(spec.orchestrator_url)
        self._file_enrich = spec.enrich
        rules = self._rules(spec.rules)
        self._enrich_needs_connection(rules, sources)
        self._check_actions(spec.rules, rules, sources)
        declared = [r["name"] for r in spec.rules if isinstance(r, dict) and isinstance(r.get("name"), str)]
        silences = self._silences(spec.silences, timezone, declared)
        inhibits = self._inhibits(spec.inhibit, declared)
        collapse = self._collapse(spec.collapse)
        redactor = self._redact(spec.redact)
        if self.problems:
            raise RulesError(self._sorted())
        return RuleSet(
            rules=tuple(rules),
            channels=channels,
            sources=sources,
            orchestrator_url=orchestrator_url,
            timezone=timezone,
            path=self.path,
            silences=tuple(silences),
            inhibits=tuple(inhibits),
            collapse=collapse,
            redactor=redactor,
        )

    def _sorted(self) -> list[Problem]:
        return sorted(self.problems, key=lambda p: (p.line, p.column))

    def _expand(self, text: str, path: YamlPath, label: str, what: str) -> str | None:
        # What is expanded is a channel URL, a secret or a token: a malformed reference is a piece
        # of it, so it is never quoted.
        value, missing, malformed = expand_env(text, self.environ)
        for name in missing:
            self.report(path, f"{label}: environment variable {name!r} is not set (used in {what})")
        if malformed:
            hint = "write ${NAME}, or $$ for a literal $"
            self.report(path, f"{label}: malformed variable reference in {what} (not shown); {hint}")
        return None if missing or malformed else value

    def _channels(self, raw: dict[str, Any]) -> dict[str, Channel]:
        channels: dict[str, Channel] = {}
        for name, value in raw.items():
            base: YamlPath = ("channels", name)
            label = f"channel {name!r}"
            if not _NAME.match(name):
                self.report(base, f"{label}: {_NAME_RULE}", at_key=True)
            try:
                spec = ChannelSpec.model_validate({"url": value} if isinstance(value, str) else value)
            except ValidationError as exc:
                self._pydantic(exc, base, "channel", label)
                continue
            url_path = base if isinstance(value, str) else (*base, "url")
            url = self._expand(spec.url, url_path, label, "its URL")
            if url is None:
                continue
            if self.check_url is not None:
                error = self.check_url(url)
                if error:
                    self.report(url_path, f"{label}: {error}")
                    continue
            channels[name] = Channel(
                name=name,
                url=SecretStr(url),
                max_attempts=spec.max_attempts,
                max_age_seconds=spec.max_age.total_seconds(),
                concurrency=spec.concurrency,
                timeout_seconds=spec.timeout.total_seconds(),
                budget=None
                if spec.budget is None
                else NoiseBudget(max=spec.budget.max, per=spec.budget.per.total_seconds()),
            )
        return channels

    def _sources(self, raw: dict[str, Any], timezone: ZoneInfo) -> dict[str, Source]:
        sources: dict[str, Source] = {}
        for name, value in raw.items():
            base: YamlPath = ("sources", name)
            label = f"source {name!r}"
            if not _NAME.match(name):
                self.report(base, f"{label}: {_NAME_RULE}", at_key=True)
            try:
                spec = SourceSpec.model_validate({} if value is None else value)
            except ValidationError as exc:
                self._pydantic(exc, base, "source", label)
                continue
            secrets: list[SecretStr] = []
            ok = True
            for i, secret in enumerate(spec.secrets):
                expanded = self._expand(secret, (*base, "secrets", i), label, f"secret #{i + 1}")
                if expanded is None:
                    ok = False
                elif not expanded.strip():
                    self.report((*base, "secrets", i), f"{label}: secret #{i + 1} is empty or blank")
                    ok = False
                else:
                    secrets.append(SecretStr(expanded))
            token = None
            if spec.logs_token is not None:
                expanded = self._expand(spec.logs_token, (*base, "logs_token"), label, "logs_token")
                if expanded is None:
                    ok = False
                elif expanded.strip():  # empty or blank (an unset ${VAR} in compose): the route stays off
                    token = SecretStr(expanded.strip())
            if ok and not secrets and not spec.insecure and name != _DEFAULT_SOURCE:
                hint = "add `secrets:` or set `insecure: true` (not recommended)"
                self.report(base, f"{label} has no secrets: {hint}", at_key=True)
                continue
            # A broken block is reported and leaves None: the load fails on the problems anyway.
            orchestrator = (
                None
                if spec.orchestrator is None
                else self._orchestrator(spec.orchestrator, name, (*base, "orchestrator"), label)
            )
            sources[name] = Source(
                name=name,
                secrets=tuple(secrets),
                logs_token=token,
                insecure=spec.insecure,
                accept_hex_signature=spec.accept_hex_signature,
                orchestrator=orchestrator,
                expect=None if spec.expect is None else self._expect(spec.expect, (*base, "expect"), label, timezone),
            )
        return sources

    def _expect(self, spec: ExpectSpec, base: YamlPath, label: str, default: ZoneInfo) -> Expect | None:
        """Check ``expect:``: declared channels, a known time zone, hours like ``mon-fri 07:00-19:00``."""
        notify = self._notify(spec.notify, base, f"{label}: expect")
        zone = self._zone(spec.timezone, base, f"{label}: expect.timezone", default)
        if zone is None:
            return None
        windows: list[WeeklyWindow] = []
        for j, text in enumerate(spec.during):
            path = (*base, "during", j) if (*base, "during", j) in self.marks else (*base, "during")
            try:
                windows.append(WeeklyWindow(*parse_hours(text)))
            except ValueError as exc:
                self.report(path, f"{label}: expect.during: {exc}")
                return None
        during = Schedule(zone, tuple(windows)) if windows else None
        return Expect(every=spec.every.total_seconds(), during=during, notify=notify)

    def _orchestrator(self, spec: OrchestratorSpec, source: str, base: YamlPath, label: str) -> OrchestratorLink | None:
        """Expand and check ``orchestrator:``; the client secret is never part of a message."""
        values: dict[str, str] = {}
        for key in ("url", "client_id", "client_secret", "public_url", "token_url", "web_url"):
            raw = getattr(spec, key)
            if raw is None:
                continue
            if key == "client_secret":
                expanded = self._expand(raw, (*base, key), label, f"orchestrator.{key}")
            else:
                expanded = self._expand(raw, (*base, key), label, f"orchestrator.{key}")
            if expanded is None:
                continue
            if not expanded.strip():  # an unset ${VAR} set to "" in compose: not a value
                self.report((*base, key), f"{label}: orchestrator.{key} is empty or blank")
                continue
            values[key] = expanded.strip()
        for key in ("url", "public_url", "token_url", "web_url"):
            if key in values and not _HTTP_URL.match(values[key]):
                shown = values[key] if len(values[key]) <= 200 else values[key][:200] + "..."
                self.report((*base, key), f"{label}: orchestrator.{key} {shown!r} must be an http:// or https:// URL")
                del values[key]
        public_url = values.get("public_url")
        if public_url is not None and not public_url.split("?", 1)[0].rstrip("/").endswith(f"/webhooks/{source}"):
            self.report(
                (*base, "public_url"),
                f"{label}: orchestrator.public_url {public_url!r} must end with /webhooks/{source} "
                "(the route Orchestrator calls for this source)",
            )
            values.pop("public_url")
        for i, scope in enumerate(spec.scopes):
            if not _SCOPE.match(scope):
                shown = scope if len(scope) <= 100 else scope[:100] + "..."
                message = f"{label}: orchestrator.scopes: {shown!r} (#{i + 1}) is not a scope name"
                self.report((*base, "scopes"), message)
                return None
        required = ("url", "client_id", "client_secret", "public_url")
        if any(k not in values for k in required) or any(
            key not in values and getattr(spec, key) is not None for key in ("token_url", "web_url")
        ):
            return None
        return OrchestratorLink(
            url=values["url"].rstrip("/"),
            client_id=values["client_id"],
            client_secret=SecretStr(values["client_secret"]),
            scopes=tuple(dict.fromkeys(spec.scopes)),
            public_url=values["public_url"],
            token_url=values.get("token_url"),
            web_url=None if "web_url" not in values else values["web_url"].rstrip("/"),
            timeout_seconds=spec.timeout.total_seconds(),
            heartbeat=self._heartbeat(spec.heartbeat, (*base, "heartbeat"), label),
            recovery=None
            if spec.recovery is None
            else GapRecovery(spec.recovery.every.total_seconds(), spec.recovery.lookback.total_seconds()),
        )

    def _heartbeat(self, spec: HeartbeatSpec | None, base: YamlPath, label: str) -> Heartbeat | None:
        """Check ``orchestrator.heartbeat:``: its channels must be declared; ``within`` must fit in ``every``."""
        if spec is None:
            return None
        notify = self._notify(spec.notify, base, f"{label}: orchestrator.heartbeat")
        if spec.within > spec.every:
            self.report(
                (*base, "within"),
                f"{label}: orchestrator.heartbeat.within must not be longer than every "
                "(a ping is asked for once per period)",
            )
        return Heartbeat(
            every=spec.every.total_seconds(),
            within=spec.within.total_seconds(),
            notify=notify,
            auto_enable=spec.auto_enable,
            health_every=spec.health_every.total_seconds(),
        )

    def _orchestrator_url(self, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        url = url.strip()
        if not re.match(r"^https?://[^/\s]+", url):
            self.report(("orchestrator_url",), f"orchestrator_url: {url!r} must start with http:// or https://")
            return None
        return url.rstrip("/")

    def _timezone(self, name: str) -> ZoneInfo:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            hint = _did_you_mean(name, _zones())
            self.report(("timezone",), f"timezone: unknown time zone {name!r}{hint}")
            return ZoneInfo("UTC")

    def _rules(self, raw: list[Any]) -> list[Rule]:
        rules: list[Rule] = []
        names: dict[str, int] = {}
        compiler_classes = event_classes()
        catch_all: str | None = None
        for base, label, spec in self._items(raw, "rules", "rule", RuleSpec, "name, match and notify", partial=True):
            line = self.marks.get(base, (0, 0))[0]
            if spec.name in names:
                self.report((*base, "name"), f"{label}: duplicate rule name (first at line {names[spec.name]})")
            else:
                names[spec.name] = line
            if catch_all is not None:
                self.report(
                    base,
                    f"{label} is never evaluated: rule {catch_all!r} above matches every event and has no "
                    "`continue: true`",
                )
            count = len(self.problems)
            compiler = Compiler(self._prefixed(label), compiler_classes)
            clause = compiler.compile(spec.match, (*base, "match"))
            notify = self._notify(spec.notify, base, label)
            title = self._template(spec.title, "text", (*base, "title"), label, "title")
            body = self._template(spec.body, spec.format, (*base, "body"), label, "body")
            if base in self._partial:
                continue  # a key its model refused: what is checked below depends on the rule's keys together
            noise = self._noise(spec, base, label, compiler)
            escalate = self._escalate(spec, base, label)
            if spec.share_across_sources and not any(
                getattr(spec, k) is not None for k in ("throttle", "group", "frequency", "absence", "recover")
            ):
                self.report(
                    (*base, "share_across_sources"),
                    f"{label}: share_across_sources needs throttle, group, frequency, absence or recover "
                    "(a rule without them keeps no state to share)",
                    at_key=True,
                )
            if len(self.problems) != count:
                continue
            rule = Rule(
                name=spec.name,
                index=len(rules),
                line=line,
                notify=notify,
                continue_=spec.continue_,
                description=spec.description,
                severity=spec.severity,
                format=spec.format,
                title_source=spec.title,
                body_source=spec.body,
                match_source=spec.match,
                title_template=title,
                body_template=body,
                clause=clause,
                share_across_sources=spec.share_across_sources,
                enrich=self._enrich(spec.enrich),
                repeat=None if spec.repeat is None else spec.repeat.total_seconds(),
                escalate=escalate,
                actions=tuple(dict.fromkeys(spec.actions)),
                resolve_after=spec.resolve_after.total_seconds(),
                **noise,
            )
            if clause is None and not spec.continue_ and catch_all is None:
                catch_all = spec.name
            rules.append(rule)
        return rules

    def _enrich(self, given: EnrichSpec | None) -> Enrich | None:
        """A rule's effective ``enrich:``: its own keys over the file's; None when it asks for nothing."""
        default = self._file_enrich
        if given is None and default is None:
            return None
        merged: dict[str, Any] = {} if default is None else dict(default)
        if given is not None:
            merged.update({name: getattr(given, name) for name in given.model_fields_set})
        spec = EnrichSpec.model_validate({("with" if k == "with_" else k): v for k, v in merged.items()})
        parts = set(spec.with_)
        if not parts:
            return None
        return Enrich(
            job="job" in parts or "arguments" in parts,
            logs="logs" in parts,
            arguments="arguments" in parts,
            log_lines=spec.log_lines,
            budget=spec.budget.total_seconds(),
        )

    def _enrich_needs_connection(self, rules: list[Rule], sources: Mapping[str, Source]) -> None:
        """``enrich:`` asks Orchestrator's API: without a source's ``orchestrator:`` block it could never work."""
        if any(s.orchestrator is not None for s in sources.values()):
            return
        if self._file_enrich is not None and self._file_enrich.with_:
            self.report(("enrich",), "enrich: needs a source with an `orchestrator:` connection", at_key=True)
        for rule in rules:
            if rule.enrich is not None and self._file_enrich is None:
                self.report(
                    ("rules", rule.index, "enrich"),
                    f"rule {rule.name!r}: enrich needs a source with an `orchestrator:` connection",
                    at_key=True,
                )

    def _prefixed(self, label: str) -> Callable[[YamlPath, str, bool], None]:
        def report(path: YamlPath, message: str, at_key: bool) -> None:
            self.report(path, f"{label}: {message}", at_key=at_key)

        return report

    def _notify(self, names: list[str], base: YamlPath, label: str) -> tuple[str, ...]:
        # Checked against the declared names: a declared but broken channel (bad URL, unset
        # variable) is reported where it is declared, not at every rule using it.
        seen: list[str] = []
        declared = self._declared_channels()
        for j, name in enumerate(names):
            path = (*base, "notify", j) if (*base, "notify", j) in self.marks else (*base, "notify")
            if name in seen:
                self.report(path, f"{label}: channel {name!r} is listed twice")
            elif name not in declared:
                hint = _did_you_mean(name, declared)
                self.report(path, f"{label}: unknown channel {name!r}{hint}")
            seen.append(name)
        return tuple(dict.fromkeys(seen))

    def _check_actions(self, raw: list[Any], rules: list[Rule], sources: dict[str, Source]) -> None:
        """``actions: [retry]`` starts a job through Orchestrator's API: some source must have a connection."""
        if any(s.orchestrator is not None for s in sources.values()):
            return
        for rule in rules:
            if "retry" in rule.actions:
                i = next((j for j, r in enumerate(raw) if isinstance(r, dict) and r.get("name") == rule.name), None)
                path: YamlPath = ("rules", i, "actions") if i is not None else ("rules",)
                self.report(
                    path,
                    f"rule {rule.name!r}: actions: [retry] needs a source with an `orchestrator:` connection "
                    "(the job is started again through its API)",
                )

    def _escalate(self, spec: RuleSpec, base: YamlPath, label: str) -> tuple[Escalation, ...]:
        """Check ``escalate:``: declared channels, steps in increasing ``after``."""
        steps: list[Escalation] = []
        for i, step in enumerate(spec.escalate):
            path = (*base, "escalate", i)
            notify = self._notify(step.notify, path, f"{label}: escalate step {i + 1}")
            after = step.after.total_seconds()
            if steps and after <= steps[-1].after:
                self.report(
                    (*path, "after"),
                    f"{label}: escalate step {i + 1} must come after step {i} (its `after` must be longer)",
                )
            steps.append(Escalation(after, notify))
        return tuple(steps)

    def _declared_channels(self) -> list[str]:
        node = self.nodes.get(("channels",))
        if isinstance(node, yaml.MappingNode):
            return [str(k.value) for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
        return []

    # --- noise control ------------------------------------------------------------------

    def _noise(self, spec: RuleSpec, base: YamlPath, label: str, compiler: Compiler) -> dict[str, Any]:
        """The compiled throttle / group / frequency / absence / recover of a rule (keyword arguments of Rule)."""
        out: dict[str, Any] = {}
        given = [k for k in ("throttle", "group", "frequency", "absence") if getattr(spec, k) is not None]
        if spec.group is not None and len(given) > 1:
            others = ", ".join(k for k in given if k != "group")
            self.report((*base, "group"), f"{label}: group cannot be combined with {others}", at_key=True)
        if spec.frequency is not None and spec.absence is not None:
            self.report((*base, "frequency"), f"{label}: frequency cannot be combined with absence", at_key=True)
        if spec.throttle is not None:
            key = self._key(spec.throttle.key, (*base, "throttle", "key"), label, "throttle.key")
            out["throttle"] = Throttle(spec.throttle.interval.total_seconds(), key)
        if spec.group is not None:
            refs = [compiler.field_ref(name, (*base, "group", "by", i)) for i, name in enumerate(spec.group.by)]
            out["group"] = Group(
                tuple(r for r in refs if r is not None),
                spec.group.wait.total_seconds(),
                spec.group.interval.total_seconds(),
            )
        if spec.frequency is not None:
            key = self._key(spec.frequency.key, (*base, "frequency", "key"), label, "frequency.key")
            out["frequency"] = Frequency(spec.frequency.count, spec.frequency.within.total_seconds(), key)
        absence: Absence | None = None
        if spec.absence is not None:
            expect = self._required_block(compiler, spec.absence.expect, (*base, "absence", "expect"), label)
            key = self._key(spec.absence.key or "{{ entity_key }}", (*base, "absence", "key"), label, "absence.key")
            if expect is not None and key is not None:
                absence = Absence(expect, spec.absence.expect, spec.absence.within.total_seconds(), key)
                out["absence"] = absence
        if spec.recover is not None:
            recover = self._recover(spec.recover, spec, base, label, compiler, absence)
            if recover is not None:
                out["recover"] = recover
        return out

    def _recover(
        self,
        given: RecoverSpec,
        spec: RuleSpec,
        base: YamlPath,
        label: str,
        compiler: Compiler,
        absence: Absence | None,
    ) -> Recover | None:
        path = (*base, "recover")
        if given.match is None and spec.absence is None:
            self.report(
                path, f"{label}: recover needs `match:` (the events that clear it), or an absence to take it from"
            )
            return None
        if given.key is None and spec.absence is None:
            self.report(path, f'{label}: recover needs `key:` (e.g. "{{{{ process }}}}"), the same on both events')
            return None
        if given.match is not None:
            clause = self._required_block(compiler, given.match, (*path, "match"), label)
        else:
            clause = None if absence is None else absence.expect
        key = (
            self._key(given.key, (*path, "key"), label, "recover.key")
            if given.key is not None
            else (None if absence is None else absence.key)
        )
        title = self._template(given.title, "text", (*path, "title"), label, "recover.title", RECOVER_NAMES)
        body = self._template(given.body, spec.format, (*path, "body"), label, "recover.body", RECOVER_NAMES)
        if clause is None or key is None:
            return None
        source = given.match if given.match is not None else spec.absence.expect if spec.absence else None
        return Recover(clause, source, key, given.title, given.body, title, body)

    def _required_block(self, compiler: Compiler, block: Any, path: YamlPath, label: str) -> Clause | None:
        if block is None or block == {}:
            self.report(path, f"{label}: give a match block here (the events it waits for)")
            return None
        return compiler.compile(block, path)

    def _key(self, source: str | None, path: YamlPath, label: str, what: str) -> KeyTemplate | None:
        if source is None:
            return None
        template = self._template(source, "text", path, label, what)
        return None if template is None else KeyTemplate(source, template)

    def _items(
        self, raw: list[Any], section: str, kind: str, model: type[_SpecT], hint: str, *, partial: bool = False
    ) -> Iterator[tuple[YamlPath, str, _SpecT]]:
        """The items of a list section (rules, silences, inhibit), each with its path and label.

        An item that is not a mapping, or fails its model, is reported and skipped; with
        ``partial``, one whose keys fail its model is reported and then yielded without those
        keys (its path put in ``self._partial``), so that the caller can still check what does not
        depend on them; when that still fails (a required key is the bad one), it is skipped.
        """
        for i, item in enumerate(raw):
            base: YamlPath = (section, i)
            name = item.get("name") if isinstance(item, dict) else None
            label = f"{kind} {name!r}" if isinstance(name, str) and name else f"{kind} #{i + 1}"
            if not isinstance(item, dict):
                self.report(base, f"{label}: expected a mapping with {hint}")
                continue
            try:
                spec = model.model_validate(item)
            except ValidationError as exc:
                self._pydantic(exc, base, kind, label)
                if not partial:
                    continue
                bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
                try:
                    spec = model.model_validate({key: value for key, value in item.items() if key not in bad})
                except ValidationError:
                    continue
                self._partial.add(base)
            yield base, label, spec

    def _silences(self, raw: list[Any], zone: ZoneInfo, rule_names: list[str]) -> list[Silence]:
        silences: list[Silence] = []
        names: dict[str, int] = {}
        classes = event_classes()
        for base, label, spec in self._items(raw, "silences", "silence", SilenceSpec, "name and weekly or dates"):
            line = self.marks.get(base, (0, 0))[0]
            count = len(self.problems)
            self._unique(spec.name, names, (*base, "name"), label, line)
            clause = Compiler(self._prefixed(label), classes).compile(spec.match, (*base, "match"))
            for j, rule in enumerate(spec.rules):
                if any(c in rule for c in "*?["):
                    try:
                        compile_glob(rule, classes=True)
                    except ValueError as exc:
                        self.report((*base, "rules", j), f"{label}: bad rule glob {rule!r}: {exc}")
                elif rule not in rule_names:
                    hint = _did_you_mean(rule, rule_names)
                    self.report((*base, "rules", j), f"{label}: unknown rule {rule!r}{hint}")
            schedule = self._schedule(spec, base, label, zone)
            if schedule is None or len(self.problems) != count:
                continue
            silences.append(Silence(spec.name, schedule, clause, tuple(spec.rules), spec.comment, line))
        return silences

    def _zone(self, name: str | None, base: YamlPath, label: str, default: ZoneInfo) -> ZoneInfo | None:
        """The time zone named at ``base``'s ``timezone`` (``default`` if none), or None once reported unknown."""
        if name is None:
            return default
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.report((*base, "timezone"), f"{label}: unknown time zone {name!r}{_did_you_mean(name, _zones())}")
            return None

    def _schedule(self, spec: SilenceSpec, base: YamlPath, label: str, default: ZoneInfo) -> Schedule | None:
        zone = self._zone(spec.timezone, base, f"{label}: timezone", default)
        if zone is None:
            return None
        if not spec.weekly and not spec.dates:
            self.report(
                base, f"{label}: give `weekly:` or `dates:` (a silence that always holds is a rule with notify: [])"
            )
            return None
        weekly: list[WeeklyWindow] = []
        for j, window in enumerate(spec.weekly):
            path = (*base, "weekly", j)
            try:
                days = parse_days(window.days)
            except ValueError as exc:
                self.report((*path, "days"), f"{label}: days: {exc}")
                continue
            clocks: list[int] = []
            for key, value in (("from", window.from_), ("to", window.to)):
                try:
                    clocks.append(parse_clock(value))
                except ValueError as exc:
                    self.report((*path, key), f"{label}: weekly {key}: {exc}")
            if len(clocks) != 2:
                continue
            start, end = clocks
            weekly.append(WeeklyWindow(days, start % 1440, end if end != start else start + 1440))
        dates: list[DateRange] = []
        for j, item in enumerate(spec.dates):
            path = (*base, "dates", j)
            try:
                start_at = parse_moment(item.from_, zone, end=False)
                end_at = parse_moment(item.to, zone, end=True)
            except ValueError as exc:
                self.report(path, f"{label}: dates: {exc}")
                continue
            if end_at <= start_at:
                self.report(path, f"{label}: dates: `to` ({item.to}) is not after `from` ({item.from_})")
                continue
            dates.append(DateRange(start_at, end_at))
        return Schedule(zone, tuple(weekly), tuple(dates))

    def _inhibits(self, raw: list[Any], rules: list[str]) -> list[Inhibit]:
        inhibits: list[Inhibit] = []
        names: dict[str, int] = {}
        classes = event_classes()
        for base, label, spec in self._items(raw, "inhibit", "inhibit", InhibitSpec, "name, source, target and equal"):
            line = self.marks.get(base, (0, 0))[0]
            count = len(self.problems)
            self._unique(spec.name, names, (*base, "name"), label, line)
            compiler = Compiler(self._prefixed(label), classes)
            source = None
            if (spec.source is None) == (spec.source_rule is None):
                self.report(base, f"{label}: give exactly one of `source:` (a match block) and `source_rule:` (a rule)")
            elif spec.source is not None:
                source = self._required_block(compiler, spec.source, (*base, "source"), label)
            elif spec.source_rule not in rules:
                hint = _did_you_mean(str(spec.source_rule), rules)
                self.report((*base, "source_rule"), f"{label}: unknown rule {spec.source_rule!r}{hint}")
            target = self._required_block(compiler, spec.target, (*base, "target"), label)
            until = None if spec.until is None else self._required_block(compiler, spec.until, (*base, "until"), label)
            if not spec.equal:
                self.report(base, f"{label}: give `equal:` (the fields source and target share, e.g. [machine])")
            refs = [compiler.field_ref(f, (*base, "equal", j)) for j, f in enumerate(spec.equal)]
            note = self._template(spec.note, "text", (*base, "note"), label, "note")
            if target is None or len(self.problems) != count:
                continue
            inhibits.append(
                Inhibit(
                    name=spec.name,
                    target=target,
                    equal=tuple(r for r in refs if isinstance(r, FieldRef)),
                    duration=spec.duration.total_seconds(),
                    source=source,
                    source_rule=spec.source_rule,
                    until=until,
                    note=note,
                    note_source=spec.note,
                    line=line,
                    share_across_sources=spec.share_across_sources,
                )
            )
        return inhibits

    def _collapse(self, raw: Any) -> Collapse | None:
        if raw is False:
            return None
        try:
            spec = CollapseSpec.model_validate({} if raw is None or raw is True else raw)
        except ValidationError as exc:
            self._pydantic(exc, ("collapse",), "collapse", "collapse")
            return None
        return Collapse(spec.window.total_seconds(), tuple(t.casefold() for t in spec.types))

    def _redact(self, raw: Any) -> Redactor:
        """Compile ``redact:`` (a list is the short form of ``patterns:``); each bad pattern is reported at its line."""
        if raw is None:
            return Redactor()
        base: YamlPath = ("redact",)
        if isinstance(raw, list | str):  # the short form: its items sit where `patterns:` items would
            raw = {"patterns": raw}
            for key in [key for key in self.marks if key[:1] == base and len(key) > 1]:
                self.marks[(*base, "patterns", *key[1:])] = self.marks[key]
        try:
            spec = RedactSpec.model_validate(raw)
        except ValidationError as exc:
            self._pydantic(exc, base, "redact", "redact")
            return Redactor()
        patterns: list[RedactPattern] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(spec.patterns):
            path: YamlPath = (*base, "patterns", i)
            if isinstance(item, dict):
                try:
                    user = RedactPatternSpec.model_validate(item)
                except ValidationError as exc:
                    self._pydantic(exc, path, "patterns", "redact")
                    continue
                replacement = user.replacement or spec.replacement
                name, compiled = user.name, compile_user_pattern(user.name, user.regex, replacement)
                path = (*path, "regex")
            elif not isinstance(item, str):
                self.report(path, "redact: each pattern is a built-in's name or a mapping {name: ..., regex: ...}")
                continue
            elif item in BUILTIN_PATTERNS:
                name, compiled = item, builtin_pattern(item, spec.replacement)
            else:
                hint = _did_you_mean(item, BUILTIN_PATTERNS)
                valid = ", ".join(BUILTIN_PATTERNS)
                self.report(
                    path,
                    f"redact: {item!r} is not a built-in pattern{hint} (built-ins: {valid}; "
                    "a regex of your own is written {name: ..., regex: ...})",
                )
                continue
            line = self._locate(path, at_key=False)[0]
            if name in seen:
                self.report(path, f"redact: pattern {name!r} is listed twice (first at line {seen[name]})")
                continue
            seen[name] = line
            if isinstance(compiled, str):
                self.report(path, f"redact: pattern {name!r}: {compiled}")
                continue
            patterns.append(compiled)
        return Redactor(tuple(patterns))

    def _unique(self, name: str, seen: dict[str, int], path: YamlPath, label: str, line: int) -> None:
        if not _NAME.match(name):
            self.report(path, f"{label}: {_NAME_RULE}")
        if name in seen:
            self.report(path, f"{label}: duplicate name (first at line {seen[name]})")
        else:
            seen[name] = line

    def _template(
        self, source: str | None, fmt: Any, path: YamlPath, label: str, what: str, extra: frozenset[str] = frozenset()
    ) -> Any:
        if source is None:
            return None
        problems = check_template(source, fmt, extra)
        for lineno, message in problems:
            self.report(path, f"{label}: {what}: {message}", line_offset=lineno)
        if problems:
            return None
        return compile_template(source, fmt)


def load_rules(
    path: str | Path,
    *,
    environ: Mapping[str, str],
    check_url: Callable[[str], str | None] | None = None,
) -> RuleSet:
    """Read, check and compile a rules file.

    Args:
        path: the ``rules.yaml`` to read (the only I/O of the rules modules).
        environ: where ``${VAR}`` in channel URLs and source secrets is read from.
        check_url: validates an expanded channel URL, returning an error message or None
            (the app passes one backed by apprise); None skips URL validation.

    Returns:
        The compiled rule set.

    Raises:
        RulesError: with every problem found, each located ``PATH:LINE:COL``.
    """
    # Loading allocates many small objects that all stay alive (YAML nodes, specs, closures):
    # the cyclic GC would rescan them again and again (10,000 rules: 2.5 s instead of 0.9 s).
    # It is paused for the load only, and left as it was found.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Loader(Path(path), environ, check_url).load()
    finally:
        if was_enabled:
            gc.enable()
