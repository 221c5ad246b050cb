"""Tests of matching: every operator and combinator, enums by meaning, paths, explain, the index."""

from __future__ import annotations

import json
import re
import tempfile
import time
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiver.errors import RulesError
from receiver.events import Event, parse_event, parse_log_entries
from receiver.noise import Matcher, MatcherError, compile_matchers
from receiver.rules import RuleSet, load_rules
from receiver.rules.match import Subject
from receiver.rules.values import compile_glob

DATA = Path(__file__).resolve().parent / "data"


@cache
def _event(name: str) -> Event:
    """Load a fixture from tests/data or tests/data/events (robot logs through parse_log_entries)."""
    path = DATA / f"{name}.json"
    if not path.exists():
        path = DATA / "events" / f"{name}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    if "Type" in raw:
        return parse_event(raw)
    return parse_log_entries(raw)[0]


ALL_EVENTS = sorted(
    {p.stem for p in DATA.glob("*.json")}
    | {p.stem for p in (DATA / "events").glob("*.json")} - {"job.faulted.long-info"}
)


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: a tenth of the pure-Python time per rules file


def _ruleset(rules: list[dict[str, Any]], channels: tuple[str, ...] = ("ops", "dev")) -> RuleSet:
    document = {"channels": dict.fromkeys(channels, "log://"), "rules": rules}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.dump(document, Dumper=_DUMPER, sort_keys=False), encoding="utf-8")
        return load_rules(path, environ={})


def _matches(block: dict[str, Any], event: str, source: str = "uipath") -> bool:
    ruleset = _ruleset([{"name": "r", "match": block, "notify": ["ops"]}])
    return bool(ruleset.match(_event(event), source))


def _reason(block: dict[str, Any], event: str) -> str | None:
    ruleset = _ruleset([{"name": "r", "match": block, "notify": ["ops"]}])
    return ruleset.explain(_event(event), "uipath")[0].reason


CASES = [
    # type
    pytest.param({"type": "job.faulted"}, "job.faulted", True, id="type-exact"),
    pytest.param({"type": "JOB.Faulted"}, "job.faulted", True, id="type-any-casing"),
    pytest.param({"type": "job.*"}, "job.stopped", True, id="type-glob"),
    pytest.param({"type": "queueItem.transaction*"}, "queueItem.transactionFailed", True, id="type-glob-camel"),
    pytest.param({"type": "*.faulted"}, "job.faulted", True, id="type-glob-leading-wildcard"),
    pytest.param({"type": ["job.stopped", "job.faulted"]}, "job.faulted", True, id="type-list"),
    pytest.param({"type": "job.faulted"}, "job.completed", False, id="type-miss"),
    pytest.param({"type": "job.?aulted"}, "job.faulted", True, id="type-glob-question-mark"),
    # job.state: enums by meaning
    pytest.param({"job.state": "Faulted"}, "job.faulted", True, id="job-state-name"),
    pytest.param({"job.state": "faulted"}, "job.faulted", True, id="job-state-lower-case"),
    pytest.param({"job.state": 4}, "job.faulted", True, id="job-state-number"),
    pytest.param({"job.state": "4"}, "job.faulted", True, id="job-state-number-string"),
    pytest.param({"job_state": "Faulted"}, "job.faulted", True, id="job-state-snake"),
    pytest.param({"Job.State": "Faulted"}, "job.faulted", True, id="job-state-pascal"),
    pytest.param({"job.state": ["Faulted", "Stopped"]}, "job.stopped", True, id="job-state-list-jobs-array"),
    pytest.param({"job.state": 5}, "job.faulted", False, id="job-state-other-number"),
    pytest.param({"job.state": "Faulted"}, "robot-log-error", False, id="job-state-absent"),
    # level
    pytest.param({"level": {"gte": "Error"}}, "robot-log-error", True, id="level-gte-error"),
    pytest.param({"level": {"gte": "Error"}}, "robot-log-warn", False, id="level-gte-error-on-warn"),
    pytest.param({"level": {"gte": "Warning"}}, "robot-log-warn", True, id="level-gte-alias"),
    pytest.param({"level": {"gte": 3}}, "robot-log-warn", True, id="level-gte-number"),
    pytest.param({"level": {"gt": "Warn"}}, "robot-log-warn", False, id="level-gt"),
    pytest.param({"level": {"lt": "Critical"}}, "robot-log-error", True, id="level-lt-alias"),
    pytest.param({"level": {"lte": "Information"}}, "robot-log-warn", False, id="level-lte"),
    pytest.param({"level": {"gte": "Warn", "lte": "Error"}}, "robot-log-error", True, id="level-range"),
    pytest.param({"level": "Error"}, "robot-log-error", True, id="level-eq"),
    pytest.param({"level": "error"}, "robot-log-error", True, id="level-eq-lower-case"),
    # handle shortcuts
    pytest.param({"process": "InvoiceProcessing"}, "job.faulted", True, id="process-exact"),
    pytest.param({"process": "invoiceprocessing"}, "job.faulted", True, id="process-any-casing"),
    pytest.param({"process": "Invoice*"}, "job.faulted", True, id="process-glob"),
    pytest.param({"process": "Vendor*"}, "job.faulted", False, id="process-glob-miss"),
    pytest.param({"process": "InvoiceProcessing"}, "robot-log-error", True, id="process-of-a-log"),
    pytest.param({"process": "InvoiceProcessing"}, "schedule.failed", True, id="process-of-a-schedule"),
    pytest.param({"robot": "FIN-UNATT-01"}, "job.faulted", True, id="robot"),
    pytest.param({"machine": "RPAVM01"}, "job.faulted", True, id="machine"),
    pytest.param({"folder": 1}, "job.faulted", True, id="folder-number"),
    pytest.param({"folder": "1"}, "job.faulted", True, id="folder-number-string"),
    pytest.param({"folder": 2}, "job.faulted", False, id="folder-other"),
    pytest.param({"tenant": 1}, "job.faulted", True, id="tenant"),
    pytest.param({"queue": "Invoices_IN"}, "queueItem.transactionFailed", True, id="queue"),
    pytest.param({"message": "*SAP login failed*"}, "robot-log-error", True, id="message-glob"),
    pytest.param({"exception_type": "BusinessException"}, "queueItem.transactionFailed", True, id="exception-type"),
    pytest.param({"robot_down": True}, "robot.status", True, id="robot-down"),
    pytest.param({"robot_down": True}, "robot.status.available", False, id="robot-down-available"),
    # dotted paths
    pytest.param({"Job.Release.ProcessKey": "InvoiceProcessing"}, "job.faulted", True, id="path-pascal"),
    pytest.param({"job.release.process_key": "InvoiceProcessing"}, "job.faulted", True, id="path-snake"),
    pytest.param({"JOB.RELEASE.PROCESSKEY": "InvoiceProcessing"}, "job.faulted", True, id="path-upper"),
    pytest.param({"Jobs.Robot.Name": "FIN-UNATT-02"}, "job.created", True, id="path-through-list-any-element"),
    pytest.param({"Sessions.State": "Disconnected"}, "robot.status", True, id="path-enum-in-list"),
    pytest.param({"Sessions.State": 2}, "robot.status", True, id="path-enum-number"),
    pytest.param({"Sessions.IsUnresponsive": True}, "robot.status.unresponsive", True, id="path-bool"),
    pytest.param(
        {"QueueItem.ProcessingException.Type": "BusinessException"},
        "queueItem.transactionFailed",
        True,
        id="path-exception-type",
    ),
    pytest.param(
        {"QueueItem.ProcessingException.Type": 1}, "queueItem.transactionFailed", True, id="path-exception-type-number"
    ),
    pytest.param({"QueueItem.SpecificContent.Urgent": True}, "queueItem.transactionFailed", True, id="path-into-bag"),
    pytest.param(
        {"QueueItem.SpecificContent.urgent": True}, "queueItem.transactionFailed", True, id="path-into-bag-any-casing"
    ),
    pytest.param(
        {"QueueItem.SpecificContent.Amount": {"gt": 50}}, "queueItem.transactionFailed", True, id="path-number-gt"
    ),
    pytest.param(
        {"QueueItem.SpecificContent.Amount": {"gt": 100}},
        "queueItem.transactionFailed",
        False,
        id="path-number-gt-miss",
    ),
    pytest.param({"Job.Info": {"contains": "selector"}}, "job.faulted", True, id="path-contains"),
    pytest.param({"ProcessSchedule.TimeZoneIana": "Europe/Berlin"}, "schedule.failed", True, id="path-schedule"),
    pytest.param({"raw_fields.fileName": "Process"}, "robot-log-error", True, id="path-robot-raw-fields"),
    # operators
    pytest.param({"process": {"eq": "InvoiceProcessing"}}, "job.faulted", True, id="op-eq"),
    pytest.param({"process": {"eq": "Invoice*"}}, "job.faulted", False, id="op-eq-is-literal"),
    pytest.param({"process": {"glob": "Invoice[PQ]*"}}, "job.faulted", True, id="op-glob-class"),
    pytest.param({"process": {"glob": "Invoice[!P]*"}}, "job.faulted", False, id="op-glob-negated-class"),
    pytest.param({"process": {"glob": ["X*", "I*"]}}, "job.faulted", True, id="op-glob-list"),
    pytest.param({"message": {"regex": "login failed"}}, "robot-log-error", True, id="op-regex-unanchored"),
    pytest.param({"message": {"regex": "^login failed"}}, "robot-log-error", False, id="op-regex-anchored"),
    pytest.param({"message": {"regex": "SAP LOGIN"}}, "robot-log-error", False, id="op-regex-case-sensitive"),
    pytest.param({"message": {"regex": "(?i)SAP LOGIN"}}, "robot-log-error", True, id="op-regex-ignore-case-flag"),
    pytest.param({"job.state": {"regex": "^Fault"}}, "job.faulted", True, id="op-regex-on-enum-name"),
    pytest.param({"message": {"contains": "USER IS LOCKED"}}, "robot-log-error", True, id="op-contains-any-casing"),
    pytest.param({"message": {"contains": ["nope", "locked"]}}, "robot-log-error", True, id="op-contains-list"),
    pytest.param({"process": {"not": "InvoiceProcessing"}}, "job.faulted", False, id="op-not"),
    pytest.param({"process": {"not": ["A", "B"]}}, "job.faulted", True, id="op-not-list"),
    pytest.param({"process": {"not": "Vendor*"}}, "job.faulted", True, id="op-not-glob"),
    pytest.param({"queue": {"exists": True}}, "queueItem.added", True, id="op-exists-true"),
    pytest.param({"queue": {"exists": False}}, "job.faulted", True, id="op-exists-false"),
    pytest.param({"queue": None}, "job.faulted", True, id="null-means-not-set"),
    pytest.param({"robot": {"exists": True}}, "queueItem.added", False, id="op-exists-missing"),
    pytest.param({"job_id": {"gte": 90000, "lt": 90300}}, "job.faulted", True, id="op-number-range"),
    pytest.param({"timestamp": {"gte": "2019-03-14T09:00:00Z"}}, "job.faulted", True, id="op-datetime-gte"),
    pytest.param({"timestamp": {"lt": "2019-03-14"}}, "job.faulted", False, id="op-datetime-date"),
    pytest.param({"Job.EndTime": {"gt": "2019-03-14T10:24:00+01:00"}}, "job.faulted", True, id="op-datetime-offset"),
    pytest.param({"source": "uipath"}, "job.faulted", True, id="source"),
    pytest.param({"source": "other"}, "job.faulted", False, id="source-miss"),
    # combinators
    pytest.param({"any": [{"process": "X"}, {"robot": "FIN-*"}]}, "job.faulted", True, id="any"),
    pytest.param({"any": [{"process": "X"}, {"robot": "Y"}]}, "job.faulted", False, id="any-none"),
    pytest.param({"all": [{"process": "Invoice*"}, {"robot": "FIN-*"}]}, "job.faulted", True, id="all"),
    pytest.param({"all": [{"process": "Invoice*"}, {"robot": "Y"}]}, "job.faulted", False, id="all-one-fails"),
    pytest.param({"not": {"process": "Invoice*"}}, "job.faulted", False, id="not"),
    pytest.param({"not": {"process": "Invoice*", "robot": "Y"}}, "job.faulted", True, id="not-of-a-conjunction"),
    pytest.param({"not": [{"process": "X"}, {"robot": "Y"}]}, "job.faulted", True, id="not-of-a-list"),
    pytest.param(
        {"type": "job.*", "any": [{"not": {"process": "Vendor*"}}, {"all": [{"robot": "Z"}, {"folder": 1}]}]},
        "job.faulted",
        True,
        id="nested",
    ),
    pytest.param(
        {"any": [{"all": [{"type": "robot.status"}, {"Sessions.State": "Disconnected"}]}, {"level": {"gte": "Error"}}]},
        "robot-log-error",
        True,
        id="nested-any-of-all",
    ),
]


@pytest.mark.parametrize(("block", "event", "expected"), CASES)
def test_match(block: dict[str, Any], event: str, expected: bool) -> None:
    """A match block holds for a sample event exactly when expected."""
    assert expected == _matches(block, event)


@pytest.mark.parametrize(("block", "event", "expected"), CASES)
def test_explain_agrees_with_match(block: dict[str, Any], event: str, expected: bool) -> None:
    """explain() reports a match exactly when match() matches, and a reason otherwise."""
    reason = _reason(block, event)
    assert expected == (reason is None)


REASONS = [
    pytest.param(
        {"job.state": ["Faulted", "Stopped"]},
        "job.completed",
        "job.state: Successful is not one of [Faulted, Stopped]",
        id="one-of",
    ),
    pytest.param({"type": "job.faulted"}, "job.completed", "type: job.completed is not job.faulted", id="type"),
    pytest.param({"type": "robot.*"}, "job.completed", "type: job.completed does not match robot.*", id="glob"),
    pytest.param({"level": {"gte": "Error"}}, "robot-log-warn", "level: Warn is not >= Error", id="threshold"),
    pytest.param({"job.state": "Faulted"}, "robot-log-error", "job.state: not set (expected Faulted)", id="not-set"),
    pytest.param(
        {"message": {"regex": "^x"}},
        "robot-log-error",
        "message: Invoice INV-20931: SAP login failed, user is locked does not match regex '^x'",
        id="regex",
    ),
    pytest.param(
        {"message": {"contains": "zzz"}},
        "robot-log-error",
        "message: Invoice INV-20931: SAP login failed, user is locked does not contain 'zzz'",
        id="contains",
    ),
    pytest.param(
        {"process": {"not": "Invoice*"}}, "job.faulted", "process: InvoiceProcessing must not be Invoice*", id="not"
    ),
    pytest.param({"queue": {"exists": True}}, "job.faulted", "queue: not set", id="exists"),
    pytest.param({"queue": {"exists": False}}, "queueItem.added", "queue: is set (Invoices_IN)", id="exists-false"),
    pytest.param(
        {"process": ["A", "B*"]}, "job.faulted", "process: InvoiceProcessing matches none of [A, B*]", id="any-of-mixed"
    ),
    pytest.param(
        {"any": [{"process": "A"}, {"robot": "B"}]},
        "job.faulted",
        "any: none held (process: InvoiceProcessing is not A; robot: FIN-UNATT-01 is not B)",
        id="any",
    ),
    pytest.param({"not": {"process": "Invoice*"}}, "job.faulted", "not: process is Invoice* holds", id="not-block"),
    pytest.param(
        {"type": "job.faulted", "robot": "X"}, "job.faulted", "robot: FIN-UNATT-01 is not X", id="first-failing-clause"
    ),
    pytest.param(
        {"Jobs.Robot.Name": "X"},
        "job.created",
        "Jobs.Robot.Name: [FIN-UNATT-01, FIN-UNATT-02] is not X",
        id="several-values",
    ),
]


@pytest.mark.parametrize(("block", "event", "expected"), REASONS)
def test_explain_reason(block: dict[str, Any], event: str, expected: str) -> None:
    """A miss is explained by the first failing clause, in words."""
    assert expected == _reason(block, event)


class TestOrder:
    """First match wins, unless continue: true (Alertmanager)."""

    RULES: list[dict[str, Any]] = [  # noqa: RUF012 - read only
        {"name": "first", "match": {"type": "job.*"}, "notify": ["ops"], "continue": True},
        {"name": "second", "match": {"job.state": "Faulted"}, "notify": ["ops", "dev"]},
        {"name": "third", "match": {"type": "job.faulted"}, "notify": ["dev"]},
        {"name": "logs", "match": {"type": "robot.log"}, "notify": ["dev"]},
    ]

    def test_continue_then_stop(self) -> None:
        """A continuing match lets the next one match; the next stops evaluation."""
        routes = _ruleset(self.RULES).match(_event("job.faulted"), "uipath")
        assert [("first", ("ops",)), ("second", ("ops", "dev"))] == [
            (r.rule.name, tuple(c.name for c in r.channels)) for r in routes
        ]

    def test_explain_marks_rules_after_the_stop(self) -> None:
        """Rules after a stopping match are reported as not evaluated, naming the rule that stopped."""
        decisions = _ruleset(self.RULES).explain(_event("job.faulted"), "uipath")
        assert [True, True, False, False] == [d.matched for d in decisions]
        assert [True, True, False, False] == [d.evaluated for d in decisions]
        assert "not evaluated: stopped by rule 'second'" == decisions[2].reason

    def test_no_match(self) -> None:
        """An event no rule matches gets no route."""
        assert () == _ruleset(self.RULES).match(_event("queueItem.added"), "uipath")

    def test_rule_without_match_matches_everything(self) -> None:
        """A rule with no match block is a catch-all."""
        ruleset = _ruleset([{"name": "all", "notify": ["ops"]}])
        assert all(ruleset.match(_event(name), "uipath") for name in ALL_EVENTS)

    def test_rule_without_channels_swallows(self) -> None:
        """A matching rule with notify: [] stops evaluation and notifies nobody."""
        ruleset = _ruleset(
            [{"name": "drop", "match": {"process": "Invoice*"}, "notify": []}, {"name": "all", "notify": ["ops"]}]
        )
        routes = ruleset.match(_event("job.faulted"), "uipath")
        assert [("drop", ())] == [(r.rule.name, r.channels) for r in routes]


# --- the index: same answers as a linear scan ----------------------------------------------

_TYPES = [
    "job.faulted",
    "job.stopped",
    "job.completed",
    "robot.log",
    "robot.status",
    "queueItem.transactionFailed",
    "schedule.failed",
    "process.updated",
    "ping",
    "queueItem.added",
]
_TYPE_SPECS = st.one_of(
    st.sampled_from(_TYPES),
    st.sampled_from(["job.*", "queueItem.*", "*.failed", "robot.*", "*", "JOB.FAULTED", "queueitem.transaction*"]),
    st.lists(st.sampled_from([*_TYPES, "job.*"]), min_size=1, max_size=3),
    st.just({"not": "job.faulted"}),
)
_PROCESS_SPECS = st.one_of(
    st.sampled_from(["InvoiceProcessing", "invoiceprocessing", "VendorMasterSync", "Other", "Invoice*", "*Sync"]),
    st.lists(
        st.sampled_from(["InvoiceProcessing", "VendorMasterSync", "InvoiceApproval.Orchestration", "X"]),
        min_size=1,
        max_size=3,
    ),
    st.just({"not": "InvoiceProcessing"}),
)
_OTHER: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [
        {"job.state": ["Faulted", "Stopped"]},
        {"level": {"gte": "Error"}},
        {"robot": "FIN-*"},
        {"folder": 1},
        {"source": "uipath"},
        {"any": [{"process": "Vendor*"}, {"queue": {"exists": True}}]},
    ]
)


@st.composite
def _rule_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    rules = []
    for i in range(draw(st.integers(min_value=1, max_value=25))):
        block: dict[str, Any] = {}
        if draw(st.booleans()):
            block["type"] = draw(_TYPE_SPECS)
        if draw(st.booleans()):
            block["process"] = draw(_PROCESS_SPECS)
        if draw(st.integers(0, 3)) == 0:
            block.update(draw(_OTHER))
        if not block:
            block["source"] = draw(st.sampled_from(["uipath", "other"]))
        rules.append({"name": f"r{i}", "match": block, "notify": ["ops"], "continue": draw(st.booleans())})
    return rules


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=_rule_lists(), source=st.sampled_from(["uipath", "other"]))
def test_index_equals_linear_scan(rules: list[dict[str, Any]], source: str) -> None:
    """The indexed match returns exactly what a linear scan of every rule returns, for every sample."""
    ruleset = _ruleset(rules)
    for name in ALL_EVENTS:
        event = _event(name)
        assert [r.rule.name for r in ruleset.match_linear(event, source)] == [
            r.rule.name for r in ruleset.match(event, source)
        ]
        # Twice: the second answer comes from the candidate cache.
        assert [r.rule.name for r in ruleset.match_linear(event, source)] == [
            r.rule.name for r in ruleset.match(event, source)
        ]


def test_index_skips_rules_of_other_types() -> None:
    """Rules on other types and processes are not even candidates for an event."""
    rules = [
        {"name": f"p{i}", "match": {"type": "job.faulted", "process": f"P{i}"}, "notify": ["ops"]} for i in range(50)
    ]
    rules += [{"name": f"t{i}", "match": {"type": "queueItem.added"}, "notify": ["ops"]} for i in range(50)]
    rules.append({"name": "hit", "match": {"type": "job.*", "process": "InvoiceProcessing"}, "notify": ["ops"]})
    ruleset = _ruleset(rules)
    candidates = ruleset._index.candidates("job.faulted", "invoiceprocessing")
    assert ["hit"] == [ruleset.rules[i].name for i in candidates]


# --- globs: linear in the text, the same answers as the regex they replace -------------------


def _regex_glob(pattern: str, *, classes: bool) -> re.Pattern[str]:
    """The glob compiler before it was made linear (``.*`` runs, fullmatch): the reference."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and classes:
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                raise ValueError(f"unclosed '[' at position {i + 1}")
            body = pattern[i + 1 : end]
            if body in ("", "!"):
                raise ValueError(f"empty character class at position {i + 1}")
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


# Letters with case quirks (long s is s, the Kelvin sign is k), class syntax, newlines.
_GLOB_ALPHABET = "*?[]!-aAbBsS\u017fkK\\\n."
_TEXT_ALPHABET = "aAbBsS\u017fkK\u212a\n.-]["


def _compiled(compile_: Any, pattern: str, classes: bool) -> Any:
    """The compiled pattern, or the type of the error that refused it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "possible nested set" of some classes, as before
            return compile_(pattern, classes=classes)
    except (ValueError, re.error) as exc:
        return type(exc)


class TestGlob:
    """Globs match in time linear in the text, with the answers the ``.*`` regexes gave."""

    @settings(max_examples=3000, deadline=None)
    @given(
        pattern=st.text(_GLOB_ALPHABET, min_size=1, max_size=8),
        texts=st.lists(st.text(_TEXT_ALPHABET, max_size=10), min_size=1, max_size=5),
        classes=st.booleans(),
    )
    def test_same_answers_as_the_regex(self, pattern: str, texts: list[str], classes: bool) -> None:
        """For any small pattern and text, the linear matcher and the old regex agree (or both refuse the pattern)."""
        reference = _compiled(_regex_glob, pattern, classes)
        glob = _compiled(compile_glob, pattern, classes)
        if isinstance(reference, type):
            assert glob is ValueError  # a bad class ([b-a]) was a re.error that crashed the loader
            return
        for text in texts:
            assert (reference.fullmatch(text) is not None) == glob.matches(text), (pattern, text)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("invoice " * 131_072, False, id="1MiB-invoices-no-failed"),
            pytest.param("x" * 500_000 + "INVOICE" + "y" * 500_000 + "failed" + "z", True, id="1MB-far-apart"),
            pytest.param("Failed " * 100_000 + "Invoice", False, id="wrong-order"),
            pytest.param("Invoice" + "Failed" * 100_000, True, id="adjacent-then-more"),
        ],
    )
    def test_three_stars_over_a_megabyte(self, text: str, expected: bool) -> None:
        """``*Invoice*Failed*`` gives the right answer on texts of a megabyte (the regex took minutes)."""
        assert expected == compile_glob("*Invoice*Failed*", classes=False).matches(text)

    @pytest.mark.parametrize(
        ("pattern", "text", "expected"),
        [
            pytest.param("Invoice*Failed", "invoice " * 100_000 + "FAILED", True, id="anchored-ends"),
            pytest.param("Invoice*Failed", "invoice " * 100_000 + "FAILED.", False, id="tail-must-end"),
            pytest.param("?*[0-9]", "a" * 1_000_000 + "7", True, id="class-at-the-end"),
            pytest.param("a*a", "a", False, id="head-and-tail-may-not-overlap"),
            pytest.param("a*a", "aa", True, id="head-and-tail-touch"),
            pytest.param("*", "", True, id="star-matches-empty"),
            pytest.param("**", "anything", True, id="double-star"),
        ],
    )
    def test_edges(self, pattern: str, text: str, expected: bool) -> None:
        """Head and tail are anchored and never share a character; stars match the empty text."""
        assert expected == compile_glob(pattern, classes=True).matches(text)

    def test_a_bad_class_is_a_load_error(self) -> None:
        """``[z-a]`` is reported with the rule, not raised as a regex error out of the loader."""
        with pytest.raises(RulesError, match=r"bad glob '\[z-a\]': bad character class"):
            _ruleset([{"name": "r", "match": {"process": {"glob": "[z-a]"}}, "notify": ["ops"]}])

    def test_rules_use_the_linear_matcher(self) -> None:
        """A rule's three-star glob decides on a megabyte of robot log message at once."""
        entry = {"Level": "Error", "ProcessName": "P", "Message": "invoice " * 125_000 + "then it Failed"}
        event = parse_log_entries(entry)[0]
        ruleset = _ruleset([{"name": "r", "match": {"message": "*Invoice*Failed*"}, "notify": ["ops"]}])
        assert ["r"] == [route.rule.name for route in ruleset.match(event, "uipath")]


# --- regexes: linear in the text whatever the pattern (RE2) ------------------------------------


class TestRegexTime:
    """A rule's ``regex`` reads untrusted event text: it decides in time linear in that text.

    Python's backtracking engine took cubic time for ``.*connection.*refused`` on a message of
    repeated ``connection`` (84 s for 16,384 characters, holding the GIL, so the whole server,
    webhooks and ``/healthz`` included, stood still) and exponential time for nested repetition.
    """

    @pytest.mark.parametrize(
        ("pattern", "text", "expected"),
        [
            pytest.param(".*connection.*refused", "connection " * 600, False, id="cubic-in-python"),
            pytest.param(".*connection.*refused", "connection " * 600 + "refused", True, id="cubic-match"),
            pytest.param(r"^(\w+\s?)+$", "a" * 26 + "!", False, id="exponential-in-python"),
            pytest.param(r"(?i)^(\w+\s?)+$", "Invoice failed", True, id="exponential-match"),
            pytest.param("refused", "bad \ud800 connection refused", True, id="lone-surrogate"),
        ],
    )
    def test_a_hostile_text_is_decided_at_once(self, pattern: str, text: str, expected: bool) -> None:
        entry = {"Level": "Error", "ProcessName": "P", "Message": text}
        event = parse_log_entries(entry)[0]
        ruleset = _ruleset([{"name": "r", "match": {"message": {"regex": pattern}}, "notify": ["ops"]}])
        started = time.perf_counter()
        matched = bool(ruleset.match(event, "uipath"))
        elapsed = time.perf_counter() - started
        assert expected == matched
        assert elapsed < 0.25, f"{pattern!r} took {elapsed:.2f} s on {len(text)} characters"

    @pytest.mark.parametrize(
        ("pattern", "fragment"),
        [
            pytest.param(r"(\w+) \1", "invalid escape sequence: \\1", id="backreference"),
            pytest.param(r"Invoice(?=Failed)", "invalid perl operator: (?=", id="lookahead"),
            pytest.param(r"(?<!Test)Invoice", "invalid perl operator: (?<", id="lookbehind"),
        ],
    )
    def test_a_regex_that_needs_backtracking_is_a_load_error(self, pattern: str, fragment: str) -> None:
        with pytest.raises(RulesError) as caught:
            _ruleset([{"name": "r", "match": {"message": {"regex": pattern}}, "notify": ["ops"]}])
        message = str(caught.value)
        assert f"message: bad regex {pattern!r}" in message
        assert fragment in message
        assert "linear" in message  # says why, not only what

    def test_a_silence_regex_is_linear_too(self) -> None:
        """``message=~REGEX`` of an ad-hoc silence is compiled by the same compiler."""
        with pytest.raises(MatcherError, match="bad regex"):
            compile_matchers([Matcher("message", "=~", r"(\w+) \1")])
        compiled = compile_matchers([Matcher("message", "=~", ".*connection.*refused")])
        event = parse_log_entries({"Level": "Error", "ProcessName": "P", "Message": "connection " * 600})[0]
        started = time.perf_counter()
        assert not compiled.holds(Subject(event, "uipath"), "r")
        assert time.perf_counter() - started < 0.25
