"""``receiver check`` and ``receiver test``: validating rules and dry-running them on events.

Pure apart from reading the rules file, the event fixtures and the suite, and writing to the
``out`` stream it is given: nothing is sent. URL validation and masking need apprise, so they
are passed in (``check_url``, ``mask_url``) by the CLI.

``receiver test RULES EVENT.json`` prints, for each rule, whether it matched or the first
clause that failed and why, then the notifications that would be sent, rendered, per
channel (by name and masked URL, never the secret). ``--json`` prints the same as one JSON
document whose schema is documented in docs/rules.md ("receiver test --json") and kept
stable: fields may be added, never renamed or removed within ``receiver.test/1``.

``receiver test RULES --suite FILE`` runs routing tests: a YAML list of cases, each an event
fixture (relative to the suite file) and the rules / channels / title it must produce.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from receiver.errors import EventParseError, Problem, RulesError
from receiver.events import Event, parse_event, parse_log_entries
from receiver.render import render
from receiver.rules import Channel, RuleSet, Severity, load_rules
from receiver.rules.fields import HANDLE_TYPES

__all__ = [
    "SCHEMA_SUITE",
    "SCHEMA_TEST",
    "check_command",
    "evaluate_event",
    "load_event_file",
    "test_command",
]

SCHEMA_TEST = "receiver.test/1"
SCHEMA_SUITE = "receiver.suite/1"

MaskUrl = Callable[[str], str]
CheckUrl = Callable[[str], str | None]


# --- shared ------------------------------------------------------------------------------


def _load(
    path: str | Path, environ: Mapping[str, str], check_url: CheckUrl | None
) -> tuple[RuleSet | None, list[Problem]]:
    try:
        return load_rules(path, environ=environ, check_url=check_url), []
    except RulesError as exc:
        return None, list(exc.problems)


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {"path": problem.path, "line": problem.line, "column": problem.column, "message": problem.message}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _masked(channel: Channel, mask_url: MaskUrl | None) -> str:
    if mask_url is None:
        return f"{channel.scheme}://…"
    return mask_url(channel.url_value())


def load_event_file(path: str | Path) -> list[Event]:
    """Read an event fixture: a webhook body (parse_event) or robot log entries (parse_log_entries).

    A JSON object with a ``Type`` is a webhook; an array, a ``{"logs": [...]}`` object or an
    object without ``Type`` is read as robot log entries.

    Raises:
        EventParseError: the file cannot be read, is not JSON, or is not an event.
    """
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EventParseError("unreadable", f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise EventParseError("invalid_json", f"{str(path)!r} is not JSON: {exc}") from exc
    if isinstance(raw, dict) and any(isinstance(k, str) and k.lower() == "type" for k in raw):
        return [parse_event(raw)]
    return list(parse_log_entries(raw))


def evaluate_event(ruleset: RuleSet, event: Event, *, source: str, mask_url: MaskUrl | None) -> dict[str, Any]:
    """Dry-run one event: the decisions of every rule and the rendered notifications (JSON-able)."""
    decisions = ruleset.explain(event, source)
    routes = {route.rule.name: route for route in ruleset.match(event, source)}
    notifications = []
    for route in routes.values():
        for channel in route.channels:
            note = render(event, route.rule, channel, ruleset, source=source)
            notifications.append(
                {
                    "rule": route.rule.name,
                    "channel": channel.name,
                    "url": _masked(channel, mask_url),
                    "title": note.title,
                    "body": note.body,
                    "severity": note.severity,
                    "format": note.body_format,
                }
            )
    return {
        "source": source,
        "event": {
            "type": event.type,
            "event_id": event.event_id,
            "timestamp": _jsonable(event.timestamp),
            "handles": {
                name: _jsonable(getattr(event, name, None))
                for name in HANDLE_TYPES
                if getattr(event, name, None) is not None
            },
        },
        "decisions": [
            {
                "rule": d.rule.name,
                "line": d.rule.line,
                "matched": d.matched,
                "evaluated": d.evaluated,
                "reason": d.reason,
                "continue": d.rule.continue_,
                "channels": list(d.rule.notify) if d.matched else [],
            }
            for d in decisions
        ],
        "matched": list(routes),
        "notifications": notifications,
    }


# --- receiver check ----------------------------------------------------------------------


def check_command(path: str | Path, *, environ: Mapping[str, str], check_url: CheckUrl | None, out: TextIO) -> int:
    """Validate a rules file: print every problem as ``PATH:LINE:COL: message``.

    Args:
        path: the rules file.
        environ: where ``${VAR}`` is read from.
        check_url: validates channel URLs (apprise), or None.
        out: where to print.

    Returns:
        0 when the file is valid (after a one-line summary), 1 otherwise.
    """
    ruleset, problems = _load(path, environ, check_url)
    if ruleset is None:
        for problem in problems:
            out.write(f"{problem}\n")
        return 1
    out.write(
        f"{path}: OK: {len(ruleset.rules)} rules, {len(ruleset.channels)} channels, {len(ruleset.sources)} sources\n"
    )
    return 0


# --- receiver test -----------------------------------------------------------------------


def test_command(
    path: str | Path,
    event_path: str | Path | None,
    *,
    as_json: bool,
    suite: str | Path | None,
    environ: Mapping[str, str],
    check_url: CheckUrl | None,
    mask_url: MaskUrl | None,
    source: str = "uipath",  # noqa: PT028 - not a pytest test; the CLI's `receiver test`
    out: TextIO,
) -> int:
    """Dry-run the rules on an event fixture, or run a routing suite. Sends nothing.

    Args:
        path: the rules file.
        event_path: the event JSON (a webhook body, or robot log entries); None with ``suite``.
        as_json: print one JSON document (schema ``receiver.test/1`` or ``receiver.suite/1``).
        suite: a YAML routing suite to run instead of a single event.
        environ: where ``${VAR}`` is read from.
        check_url: validates channel URLs, or None.
        mask_url: the privacy form of a URL for display, or None to show only the scheme.
        source: the source name events are taken to come from (default ``uipath``).
        out: where to print.

    Returns:
        0 when everything ran (and every suite case passed), 1 on a rules problem, an
        unreadable event or a failed case, 2 when neither an event nor a suite was given.
    """
    if suite is not None:
        return _run_suite(path, Path(suite), as_json, environ, check_url, mask_url, source, out)
    if event_path is None:
        out.write("receiver test: give an EVENT.json or --suite FILE\n")
        return 2
    ruleset, problems = _load(path, environ, check_url)
    document: dict[str, Any] = {
        "schema": SCHEMA_TEST,
        "ok": False,
        "rules_file": str(path),
        "event_file": str(event_path),
        "problems": [_problem_json(p) for p in problems],
        "error": None,
        "events": [],
    }
    if ruleset is not None:
        try:
            events = load_event_file(event_path)
        except EventParseError as exc:
            document["error"] = str(exc)
        else:
            document["events"] = [evaluate_event(ruleset, e, source=source, mask_url=mask_url) for e in events]
            document["ok"] = True
    if as_json:
        out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        _print_test(document, problems, out)
    return 0 if document["ok"] else 1


# The name starts with "test_" because it implements `receiver test`; keep pytest off it.
test_command.__test__ = False  # type: ignore[attr-defined]


def _print_test(document: dict[str, Any], problems: Sequence[Problem], out: TextIO) -> None:
    for problem in problems:
        out.write(f"{problem}\n")
    if document["error"]:
        out.write(f"{document['event_file']}: {document['error']}\n")
    for result in document["events"]:
        event = result["event"]
        handles = " ".join(f"{k}={_one_line(v)}" for k, v in event["handles"].items() if k not in _NOT_SHOWN)
        out.write(f"event {event['type']} {event['event_id'] or ''} (source {result['source']!r})\n")
        if handles:
            out.write(f"  {handles}\n")
        out.write("\nrules:\n")
        width = max((len(d["rule"]) for d in result["decisions"]), default=0)
        for d in result["decisions"]:
            if d["matched"]:
                more = " (continue)" if d["continue"] else ""
                out.write(f"  MATCH  {d['rule']:<{width}}  -> {', '.join(d['channels']) or '(no channels)'}{more}\n")
            elif not d["evaluated"]:
                out.write(f"  skip   {d['rule']:<{width}}  {d['reason']}\n")
            else:
                out.write(f"  miss   {d['rule']:<{width}}  {d['reason']}\n")
        if not result["decisions"]:
            out.write("  (the file has no rules)\n")
        out.write("\nnotifications (dry run, nothing sent):\n")
        if not result["notifications"]:
            out.write("  none\n")
        for n in result["notifications"]:
            out.write(f"  {n['rule']} -> {n['channel']} <{n['url']}> [{n['severity']}, {n['format']}]\n")
            out.write(f"    title: {n['title']}\n")
            out.write("    body:\n")
            for line in n["body"].split("\n"):
                out.write(f"      | {line}".rstrip() + "\n")
        out.write("\n")


# Handles left out of the one-line summary of an event (too long or already shown).
_NOT_SHOWN = frozenset({"type", "event_id", "timestamp", "message", "entity_key", "job_key"})


def _one_line(value: Any) -> str:
    text = str(value).split("\n", 1)[0].strip()
    return text if len(text) <= 60 else text[:57] + "..."


# --- suites ------------------------------------------------------------------------------


class _Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[str] | None = None
    channels: list[str] | None = None
    title_contains: str | list[str] | None = None
    body_contains: str | list[str] | None = None
    severity: Severity | None = None


class _Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    event: str = Field(min_length=1)
    source: str | None = None
    expect: _Expect = Field(default_factory=_Expect)


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


def _check_case(case: _Case, result: dict[str, Any], ruleset: RuleSet) -> list[str]:
    """The mismatches between what a case expects and what the rules did."""
    return _check_routing(case.expect, result, ruleset) + _check_text(case.expect, result)


def _check_routing(expect: _Expect, result: dict[str, Any], ruleset: RuleSet) -> list[str]:
    failures: list[str] = []
    matched = result["matched"]
    notes = result["notifications"]
    if expect.rules is not None:
        unknown = [r for r in expect.rules if r not in {rule.name for rule in ruleset.rules}]
        if unknown:
            failures.append(f"expect.rules names rules the file does not have: {unknown}")
        if set(expect.rules) != set(matched):
            failures.append(f"rules: expected {sorted(expect.rules)}, got {matched}")
    if expect.channels is not None:
        unknown = [c for c in expect.channels if c not in ruleset.channels]
        if unknown:
            failures.append(f"expect.channels names channels the file does not have: {unknown}")
        got = list(dict.fromkeys(n["channel"] for n in notes))
        if set(expect.channels) != set(got):
            failures.append(f"channels: expected {sorted(expect.channels)}, got {got}")
    return failures


def _check_text(expect: _Expect, result: dict[str, Any]) -> list[str]:
    failures: list[str] = []
    notes = result["notifications"]
    for needle in _as_list(expect.title_contains):
        if not any(needle in n["title"] for n in notes):
            titles = [n["title"] for n in notes]
            failures.append(f"no notification title contains {needle!r} (titles: {titles})")
    for needle in _as_list(expect.body_contains):
        if not any(needle in n["body"] for n in notes):
            failures.append(f"no notification body contains {needle!r}")
    if expect.severity is not None:
        got_severities = sorted({n["severity"] for n in notes})
        if got_severities != [expect.severity]:
            failures.append(f"severity: expected {expect.severity!r}, got {got_severities}")
    return failures


def _run_case(
    raw: Any, index: int, suite: Path, ruleset: RuleSet, default_source: str, mask_url: MaskUrl | None
) -> dict[str, Any]:
    label = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else f"case #{index + 1}"
    outcome: dict[str, Any] = {"name": label, "event": None, "source": default_source, "passed": False}
    outcome.update(failures=[], rules=[], channels=[], titles=[])
    try:
        case = _Case.model_validate(raw)
    except ValidationError as exc:
        outcome["failures"] = [
            f"{'.'.join(str(p) for p in e['loc']) or 'case'}: {e['msg']}" for e in exc.errors(include_url=False)
        ]
        return outcome
    source = case.source or default_source
    outcome.update(event=case.event, source=source)
    try:
        events = load_event_file(suite.parent / case.event)
    except EventParseError as exc:
        outcome["failures"] = [str(exc)]
        return outcome
    if len(events) != 1:
        outcome["failures"] = [f"the fixture holds {len(events)} events; a case needs exactly one"]
        return outcome
    result = evaluate_event(ruleset, events[0], source=source, mask_url=mask_url)
    failures = _check_case(case, result, ruleset)
    outcome.update(
        passed=not failures,
        failures=failures,
        rules=result["matched"],
        channels=list(dict.fromkeys(n["channel"] for n in result["notifications"])),
        titles=[n["title"] for n in result["notifications"]],
    )
    return outcome


def _run_suite(
    path: str | Path,
    suite: Path,
    as_json: bool,
    environ: Mapping[str, str],
    check_url: CheckUrl | None,
    mask_url: MaskUrl | None,
    source: str,
    out: TextIO,
) -> int:
    ruleset, problems = _load(path, environ, check_url)
    document: dict[str, Any] = {
        "schema": SCHEMA_SUITE,
        "ok": False,
        "rules_file": str(path),
        "suite": str(suite),
        "problems": [_problem_json(p) for p in problems],
        "error": None,
        "passed": 0,
        "failed": 0,
        "cases": [],
    }
    cases: Any = None
    if ruleset is not None:
        try:
            cases = yaml.safe_load(suite.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            document["error"] = f"cannot read the suite: {exc}"
        else:
            if not isinstance(cases, list) or not cases:
                document["error"] = "the suite must be a non-empty YAML list of cases"
    if ruleset is not None and document["error"] is None:
        results = [_run_case(raw, i, suite, ruleset, source, mask_url) for i, raw in enumerate(cases)]
        document["cases"] = results
        document["passed"] = sum(1 for r in results if r["passed"])
        document["failed"] = len(results) - document["passed"]
        document["ok"] = document["failed"] == 0
    if as_json:
        out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        for problem in problems:
            out.write(f"{problem}\n")
        if document["error"]:
            out.write(f"{suite}: {document['error']}\n")
        for case in document["cases"]:
            out.write(f"{'PASS' if case['passed'] else 'FAIL'}  {case['name']}\n")
            for failure in case["failures"]:
                out.write(f"      {failure}\n")
        if document["cases"]:
            out.write(f"{document['passed']} passed, {document['failed']} failed\n")
    return 0 if document["ok"] else 1
