"""``receiver check`` and ``receiver test``: validating rules and dry-running them on events.

Pure apart from reading the rules file, the event fixtures and the suite, and writing to the
``out`` stream it is given: nothing is sent. URL validation and masking need apprise, so they
are passed in (``check_url``, ``mask_url``) by the CLI.

``receiver test RULES EVENT.json`` prints, for each rule, whether it matched or the first
clause that failed and why, then the notifications that would be sent, rendered, per
channel (by name and masked URL, never the secret). ``--json`` prints the same as one JSON
document whose schema is documented in docs/rules.md ("receiver test --json") and kept
stable: fields may be added, never renamed or removed within ``receiver.test/2``.

``receiver test RULES --suite FILE`` runs routing tests: a YAML list of cases, each an event
fixture (relative to the suite file) and the rules / channels / title it must produce.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from receiver.errors import EventParseError, Problem, RulesError
from receiver.events import Details, Event, cap_strings, parse_event, parse_log_entries
from receiver.noise import Emitted, Entry, Result, Simulation, describe_seconds, silent_reason
from receiver.rules import HANDLE_TYPES, Channel, RuleSet, Severity, load_rules, parse_duration
from receiver.timefmt import format_local, iso_utc, parse_iso

__all__ = [
    "SCHEMA_SUITE",
    "SCHEMA_TEST",
    "check_command",
    "evaluate_event",
    "load_event_file",
    "printable",
    "test_command",
]

SCHEMA_TEST = "receiver.test/2"
SCHEMA_SUITE = "receiver.suite/2"

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
    return _events_of(_read_json(path))


def _read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EventParseError("unreadable", f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
        raise EventParseError("invalid_json", f"{str(path)!r} is not JSON: {exc}") from exc


def _events_of(raw: Any) -> list[Event]:
    raw = cap_strings(raw)  # as the worker sees them (parse_stored)
    if isinstance(raw, dict) and any(isinstance(k, str) and k.lower() == "type" for k in raw):
        return [parse_event(raw)]
    return list(parse_log_entries(raw))


def _notification_json(emitted: Emitted, ruleset: RuleSet, mask_url: MaskUrl | None) -> dict[str, Any]:
    note = emitted.notification
    if emitted.rerender is not None:  # enrich: a dry run asks Orchestrator nothing, and says so
        note = emitted.rerender(Details(unavailable="not fetched in a dry run"))
    channel = ruleset.channels.get(emitted.channel)
    return {
        "rule": emitted.rule,
        "channel": emitted.channel,
        "url": _masked(channel, mask_url) if channel is not None else "",
        "title": note.title,
        "body": note.body,
        "severity": note.severity,
        "format": note.body_format,
    }


def _later_json(entry: Entry, ruleset: RuleSet, mask_url: MaskUrl | None) -> dict[str, Any]:
    return {
        "at": iso_utc(entry.at),
        "timer": entry.label,
        "decisions": [d.to_json() for d in entry.result.decisions],
        "notifications": [_notification_json(e, ruleset, mask_url) for e in entry.result.emitted],
    }


def _alerts_json(ruleset: RuleSet, entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """The alerts the run's notifications would open, with their reminders and escalations (from the rules).

    Nothing is stored in a dry run, so every key starts with no open alert: the first notification of a
    key opens one, a recovery closes it, and the next notification opens another.
    """
    opened: list[dict[str, Any]] = []
    open_keys: set[tuple[str, str]] = set()
    for entry in entries:
        for signal in entry.result.alerts:
            ref = (signal.rule, signal.key)
            if signal.action == "recover":
                open_keys.discard(ref)
                continue
            route = ruleset.route(signal.rule)
            if signal.action != "fire" or ref in open_keys or route is None:
                continue
            open_keys.add(ref)
            rule, at = route.rule, signal.at
            opened.append(
                {
                    "rule": rule.name,
                    "key": signal.shown_key,
                    "opens_at": iso_utc(at),
                    "title": signal.title,
                    "repeat_seconds": rule.repeat,
                    "first_reminder_at": None if rule.repeat is None else iso_utc(at + rule.repeat),
                    "reminder_channels": list(rule.notify) if rule.repeat is not None else [],
                    "escalations": [
                        {"step": n, "at": iso_utc(at + step.after), "channels": list(step.notify)}
                        for n, step in enumerate(rule.escalate, start=1)
                    ],
                    "expires_at": iso_utc(at + rule.resolve_after),
                }
            )
    return opened


def event_time(event: Event, default: float) -> float:
    """When a dry run takes the event to arrive: its ``Timestamp``, else ``default``."""
    return event.timestamp.timestamp() if event.timestamp is not None else default


def evaluate_event(
    ruleset: RuleSet,
    event: Event,
    *,
    source: str,
    mask_url: MaskUrl | None,
    at: float | None = None,
    later: float = 7 * 86400.0,
) -> dict[str, Any]:
    """Dry-run one event on an empty noise state (JSON-able).

    The event arrives at ``at`` (default: its ``Timestamp``). The result has every rule's
    decision, the noise decisions, the notifications sent at once, those held back (rendered,
    with the reason), and what the timers it armed would send ``later`` seconds on if nothing
    else arrived.
    """
    decisions = ruleset.explain(event, source)
    arrival = at if at is not None else event_time(event, 0.0)
    sim = Simulation(ruleset, render_held=True)
    entry = sim.feed(event, source, arrival)
    timers = sim.run_until(arrival + later)
    return {
        "source": source,
        "at": iso_utc(arrival),
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
        "matched": entry.result.matched,
        "noise": [d.to_json() for d in entry.result.decisions],
        "notifications": [_notification_json(e, ruleset, mask_url) for e in entry.result.emitted],
        "held": [
            {**_notification_json(e, ruleset, mask_url), "action": d.action, "reason": d.reason}
            for d, e in entry.result.held
        ],
        "later": [_later_json(t, ruleset, mask_url) for t in timers],
        "alerts": _alerts_json(ruleset, [entry, *timers]),
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
    at: float | None = None,  # noqa: PT028 - see `source`
    now: Callable[[], float] = time.time,  # noqa: PT028 - see `source`
    out: TextIO,
) -> int:
    """Dry-run the rules on an event fixture, or run a routing suite. Sends nothing.

    Args:
        path: the rules file.
        event_path: the event JSON (a webhook body, or robot log entries); None with ``suite``.
        as_json: print one JSON document (schema ``receiver.test/2`` or ``receiver.suite/2``).
        suite: a YAML routing suite to run instead of a single event.
        environ: where ``${VAR}`` is read from.
        check_url: validates channel URLs, or None.
        mask_url: the privacy form of a URL for display, or None to show only the scheme.
        source: the source name events are taken to come from (default ``uipath``).
        at: when the event arrives (Unix seconds; maintenance windows are checked then); default its
            ``Timestamp``, else ``now()``.
        now: the clock for events without a ``Timestamp``.
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
            document["events"] = [
                evaluate_event(
                    ruleset, e, source=source, mask_url=mask_url, at=at if at is not None else event_time(e, now())
                )
                for e in events
            ]
            document["ok"] = True
    if as_json:
        out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        text = io.StringIO()
        _print_test(document, problems, text, ruleset)
        out.write(printable(text.getvalue()))
    return 0 if document["ok"] else 1


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters but tab and newline: C0, DEL and C1 (``\\x9b`` is a one-byte CSI)."""


def printable(text: str) -> str:
    """``text`` for a terminal: control characters from event text shown as ``\\xNN`` / ``\\r``, never obeyed.

    An event copied from Orchestrator can carry ESC sequences (clear the screen, set the window
    title, write the clipboard) or a carriage return that writes over the line before it.
    """
    text = text.replace("\r\n", "\n")
    return _CONTROL.sub(lambda m: "\\r" if m.group() == "\r" else f"\\x{ord(m.group()):02x}", text)


# The name starts with "test_" because it implements `receiver test`; keep pytest off it.
test_command.__test__ = False  # type: ignore[attr-defined]


def _print_test(document: dict[str, Any], problems: Sequence[Problem], out: TextIO, ruleset: RuleSet | None) -> None:
    for problem in problems:
        out.write(f"{problem}\n")
    if document["error"]:
        out.write(f"{document['event_file']}: {document['error']}\n")
    for result in document["events"]:
        _print_event(result, out, ruleset)


def _print_event(result: Mapping[str, Any], out: TextIO, ruleset: RuleSet | None) -> None:
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
    if any(d["action"] != "notified" for d in result["noise"]):
        out.write(f"\nnoise control (empty state, arriving {_local(result['at'], ruleset)}):\n")
        _print_decisions(result["noise"], out)
    out.write("\nnotifications (dry run, nothing sent):\n")
    if not result["notifications"]:
        silent = silent_reason(event["type"])
        out.write(f"  none{': ' + silent if silent else ''}\n")
    _print_notifications(result["notifications"], out)
    if result["held"]:
        out.write("\nheld back (not sent now):\n")
        for n in result["held"]:
            out.write(f"  {n['rule']} -> {n['channel']}: {n['action']}: {n['title']}\n")
    _print_later(result, out, ruleset)
    out.write("\n")


def _print_later(result: Mapping[str, Any], out: TextIO, ruleset: RuleSet | None) -> None:
    """What the event's timers would send, and the alerts it would open with their reminders and escalations."""
    if result["later"]:
        out.write("\nlater, if nothing else arrives:\n")
        for entry in result["later"]:
            out.write(f"  at {_local(entry['at'], ruleset)}: {entry['timer']}\n")
            _print_decisions(entry["decisions"], out, indent="    ")
            _print_notifications(entry["notifications"], out, indent="    ")
    if result.get("alerts"):
        out.write("\nalerts (would open; unless acknowledged, recovered or resolved first):\n")
        for alert in result["alerts"]:
            _print_alert(alert, out, ruleset)


def _print_alert(alert: Mapping[str, Any], out: TextIO, ruleset: RuleSet | None) -> None:
    key = f" [{alert['key']}]" if alert["key"] else ""
    out.write(f"  {alert['rule']}{key}: opens at {_local(alert['opens_at'], ruleset)}\n")
    for step in alert["escalations"]:
        channels = ", ".join(step["channels"])
        out.write(f"    escalation {step['step']} at {_local(step['at'], ruleset)} -> {channels}\n")
    if alert["first_reminder_at"] is not None:
        every = describe_seconds(alert["repeat_seconds"])
        channels = ", ".join(alert["reminder_channels"]) or "(no channels)"
        first = _local(alert["first_reminder_at"], ruleset)
        out.write(f"    reminder every {every}, the first at {first} -> {channels}\n")
    if not alert["escalations"] and alert["first_reminder_at"] is None:
        out.write("    no reminder or escalation (the rule has no repeat: or escalate:)\n")
    out.write(f"    resolved by expiry at {_local(alert['expires_at'], ruleset)} if nothing notifies for it again\n")


def _local(iso: str, ruleset: RuleSet | None) -> str:
    return format_local(parse_iso(iso), ruleset.timezone) if ruleset is not None else iso


def _print_decisions(decisions: Sequence[Mapping[str, Any]], out: TextIO, indent: str = "  ") -> None:
    width = max((len(d["action"]) for d in decisions), default=0)
    for d in decisions:
        out.write(f"{indent}{d['action']:<{width}}  {d['reason']}\n")


def _print_notifications(notes: Sequence[Mapping[str, Any]], out: TextIO, indent: str = "  ") -> None:
    for n in notes:
        out.write(f"{indent}{n['rule']} -> {n['channel']} <{n['url']}> [{n['severity']}, {n['format']}]\n")
        out.write(f"{indent}  title: {n['title']}\n")
        out.write(f"{indent}  body:\n")
        for line in n["body"].split("\n"):
            out.write(f"{indent}    | {line}".rstrip() + "\n")


# Handles left out of the one-line summary of an event (too long or already shown).
_NOT_SHOWN = frozenset({"type", "event_id", "timestamp", "message", "entity_key", "job_key"})


def _one_line(value: Any) -> str:
    text = str(value).split("\n", 1)[0].strip()
    return text if len(text) <= 60 else text[:57] + "..."


# --- suites ------------------------------------------------------------------------------


def _offset(value: Any) -> float:
    """Seconds from a suite case's start: ``0``, ``90s``, ``5m``, ``1h30m`` is not supported (one unit)."""
    if value in (0, "0", "0s"):
        return 0.0
    return parse_duration(value).total_seconds()


def _check_offset(value: Any) -> Any:
    if value is not None:
        _offset(value)
    return value


class _SentExpect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Any = None
    rule: str | None = None
    channel: str | None = None
    title_contains: str | None = None
    body_contains: str | None = None
    severity: Severity | None = None

    _at = field_validator("at")(_check_offset)


class _DecisionExpect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: int | None = Field(default=None, ge=1)
    rule: str | None = None
    action: str
    reason_contains: str | None = None


class _Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[str] | None = None
    channels: list[str] | None = None
    title_contains: str | list[str] | None = None
    body_contains: str | list[str] | None = None
    severity: Severity | None = None
    sent: list[_SentExpect] | None = None
    decisions: list[_DecisionExpect] | None = None


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str = Field(min_length=1)
    at: Any = None
    source: str | None = None
    patch: dict[str, Any] = Field(default_factory=dict)

    _at = field_validator("at")(_check_offset)


class _Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    event: str | None = Field(default=None, min_length=1)
    steps: list[_Step] | None = Field(default=None, min_length=1)
    source: str | None = None
    start: datetime | None = None
    run_for: Any = "1d"
    expect: _Expect = Field(default_factory=_Expect)

    _run_for = field_validator("run_for")(_check_offset)


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


def _check_case(case: _Case, result: dict[str, Any], ruleset: RuleSet) -> list[str]:
    """The mismatches between what a case expects of its (last) event and what the rules did."""
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


def _check_timeline(expect: _Expect, timeline: list[dict[str, Any]]) -> list[str]:
    failures: list[str] = []
    sent = [(entry["offset"], n) for entry in timeline for n in entry["notifications"]]
    if expect.sent is not None:
        got = [f"{_seconds(o)} {n['rule']} -> {n['channel']}: {n['title']}" for o, n in sent]
        if len(expect.sent) != len(sent):
            failures.append(f"sent: expected {len(expect.sent)} notifications, got {len(sent)}: {got}")
        for i, (want, (offset, note)) in enumerate(zip(expect.sent, sent, strict=False), start=1):
            problems = _sent_mismatch(want, offset, note)
            if problems:
                failures.append(f"sent #{i} ({got[i - 1]}): " + "; ".join(problems))
    for want_decision in expect.decisions or []:
        if not any(_decision_matches(want_decision, entry, d) for entry in timeline for d in entry["decisions"]):
            failures.append(f"no decision matches {want_decision.model_dump(exclude_none=True)}")
    return failures


def _sent_mismatch(want: _SentExpect, offset: float, note: Mapping[str, Any]) -> list[str]:
    problems = []
    if want.at is not None and abs(_offset(want.at) - offset) > 1e-6:
        problems.append(f"at: expected {want.at}, got {_seconds(offset)}")
    for key in ("rule", "channel", "severity"):
        expected = getattr(want, key)
        if expected is not None and expected != note[key]:
            problems.append(f"{key}: expected {expected!r}, got {note[key]!r}")
    if want.title_contains is not None and want.title_contains not in note["title"]:
        problems.append(f"title does not contain {want.title_contains!r}")
    if want.body_contains is not None and want.body_contains not in note["body"]:
        problems.append(f"body does not contain {want.body_contains!r}")
    return problems


def _decision_matches(want: _DecisionExpect, entry: Mapping[str, Any], decision: Mapping[str, Any]) -> bool:
    if want.step is not None and entry.get("step") != want.step:
        return False
    if want.rule is not None and want.rule != decision.get("rule"):
        return False
    if want.action != decision.get("action"):
        return False
    return want.reason_contains is None or want.reason_contains in str(decision.get("reason"))


def _seconds(offset: float) -> str:
    return f"+{offset:g}s"


def _patched(raw: Any, patch: Mapping[str, Any]) -> Any:
    """A copy of a fixture with dotted wire paths set (``Job.Robot.Name: FIN-02``; lists: every element)."""
    copy = json.loads(json.dumps(raw))
    for dotted, value in patch.items():
        _set(copy, dotted.split("."), value)
    return copy


def _set(node: Any, path: list[str], value: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _set(item, path, value)
        return
    if not isinstance(node, dict):
        return
    head = next((k for k in node if isinstance(k, str) and k.lower() == path[0].lower()), path[0])
    if len(path) == 1:
        node[head] = value
    else:
        _set(node.setdefault(head, {}), path[1:], value)


def _run_steps(
    case: _Case, suite: Path, ruleset: RuleSet, default_source: str, mask_url: MaskUrl | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Play a case's events through the noise engine: (the timeline, the last event's result)."""
    steps = case.steps or [_Step(event=case.event or "")]
    events: list[tuple[_Step, Event]] = []
    for step in steps:
        found = _events_of(_patched(_read_json(suite.parent / step.event), step.patch))
        if len(found) != 1:
            raise EventParseError(
                "several_events", f"{step.event}: the fixture holds {len(found)} events; a case needs exactly one"
            )
        events.append((step, found[0]))
    first = events[0][1]
    start = case.start.timestamp() if case.start is not None else event_time(first, 0.0)
    sim = Simulation(ruleset)
    timeline: list[dict[str, Any]] = []
    offset = 0.0
    last: dict[str, Any] = {}
    for number, (step, event) in enumerate(events, start=1):
        offset = _offset(step.at) if step.at is not None else offset
        source = step.source or case.source or default_source
        before = len(sim.timeline)
        entry = sim.feed(event, source, start + offset, label=step.event)
        timeline += [_entry_json(e, start, ruleset, mask_url) for e in sim.timeline[before:-1]]
        timeline.append(_entry_json(entry, start, ruleset, mask_url) | {"step": number})
        last = {
            "matched": entry.result.matched,
            "notifications": [_notification_json(e, ruleset, mask_url) for e in entry.result.emitted],
        }
    timeline += [
        _entry_json(e, start, ruleset, mask_url) for e in sim.run_until(start + offset + _offset(case.run_for))
    ]
    return timeline, last


def _entry_json(entry: Entry, start: float, ruleset: RuleSet, mask_url: MaskUrl | None) -> dict[str, Any]:
    result: Result = entry.result
    return {
        "offset": entry.at - start,
        "at": iso_utc(entry.at),
        "kind": entry.kind,
        "label": entry.label,
        "decisions": [d.to_json() for d in result.decisions],
        "notifications": [_notification_json(e, ruleset, mask_url) for e in result.emitted],
    }


def _run_case(
    raw: Any, index: int, suite: Path, ruleset: RuleSet, default_source: str, mask_url: MaskUrl | None
) -> dict[str, Any]:
    label = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else f"case #{index + 1}"
    outcome: dict[str, Any] = {"name": label, "event": None, "source": default_source, "passed": False}
    outcome.update(failures=[], rules=[], channels=[], titles=[], timeline=[])
    try:
        case = _Case.model_validate(raw)
    except ValidationError as exc:
        outcome["failures"] = [
            f"{'.'.join(str(p) for p in e['loc']) or 'case'}: {e['msg']}" for e in exc.errors(include_url=False)
        ]
        return outcome
    if (case.event is None) == (case.steps is None):
        outcome["failures"] = ["give either `event:` (one event) or `steps:` (a sequence), not both"]
        return outcome
    source = case.source or default_source
    first_event = case.event if case.event is not None else case.steps[0].event if case.steps else None
    outcome.update(event=first_event, source=source)
    try:
        timeline, last = _run_steps(case, suite, ruleset, source, mask_url)
    except EventParseError as exc:
        outcome["failures"] = [str(exc)]
        return outcome
    failures = _check_case(case, last, ruleset) + _check_timeline(case.expect, timeline)
    outcome.update(
        passed=not failures,
        failures=failures,
        rules=last["matched"],
        channels=list(dict.fromkeys(n["channel"] for n in last["notifications"])),
        titles=[n["title"] for n in last["notifications"]],
        timeline=timeline,
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
        except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as exc:  # ValueError: a date like 2026-13-01
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
            for failure in case["failures"]:  # may quote a rendered message: event text
                out.write(printable(f"      {failure}\n"))
        if document["cases"]:
            out.write(f"{document['passed']} passed, {document['failed']} failed\n")
    return 0 if document["ok"] else 1
