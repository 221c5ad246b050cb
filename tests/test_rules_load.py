"""Tests of loading rules.yaml: the example, every rejected config, secrets and options."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.errors import Problem, RulesError
from receiver.rules import Channel, RuleSet, Source, expand_env, load_rules

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
RULES = DATA / "rules"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path, environ: dict[str, str] | None = None, **kwargs: object) -> list[Problem]:
    with pytest.raises(RulesError) as info:
        load_rules(path, environ=environ or {}, **kwargs)  # type: ignore[arg-type]
    return info.value.problems


class TestExample:
    """The shipped rules.yaml."""

    def test_loads_without_environment(self) -> None:
        """The example loads with no environment variables and no URL checker."""
        ruleset = load_rules(ROOT / "rules.yaml", environ={})
        assert isinstance(ruleset, RuleSet)
        assert ["ignore-test-processes", "invoice-faults", "robot-down"] == [r.name for r in ruleset.rules[:3]]
        assert {"finance", "ops", "ops-urgent", "oncall"} == set(ruleset.channels)

    def test_loads_with_the_real_url_checker(self) -> None:
        """Every channel of the example is a URL apprise accepts (log://)."""
        notifier = pytest.importorskip("receiver.delivery.notifier")
        ruleset = load_rules(ROOT / "rules.yaml", environ={}, check_url=notifier.check_url)
        assert {"log"} == {c.scheme for c in ruleset.channels.values()}

    def test_covers_the_design_core(self) -> None:
        """The DESIGN core rules (invoice-faults, stopped-or-faulted, robot-errors) are in the example."""
        names = {r.name for r in load_rules(ROOT / "rules.yaml", environ={}).rules}
        assert {"invoice-faults", "stopped-or-faulted", "robot-errors"} <= names


class TestDesignCore:
    """The rules.yaml core of DESIGN.md keeps loading."""

    def test_design_core_loads(self, tmp_path: Path) -> None:
        """The DESIGN.md example loads once its variables are set."""
        path = _write(
            tmp_path,
            """
channels:
  finance-slack: "slack://${SLACK_A}/${SLACK_B}/${SLACK_C}/#rpa-finance"
  ops-mail: "mailtos://${SMTP_USER}:${SMTP_PASS}@smtp.example.com?to=rpa-ops@example.com"
  ops-teams: "workflows://${TEAMS_HOST}/${TEAMS_WORKFLOW}/${TEAMS_SIG}/"
rules:
  - name: invoice-faults
    match:
      type: job.faulted
      process: "Invoice*"
    notify: [finance-slack, ops-mail]
  - name: stopped-or-faulted
    match:
      job.state: [Faulted, Stopped]
    notify: [ops-teams]
  - name: robot-errors
    match:
      type: robot.log
      level: {gte: Error}
    notify: [ops-teams]
""",
        )
        names = ["SLACK_A", "SLACK_B", "SLACK_C", "SMTP_USER", "SMTP_PASS", "TEAMS_HOST", "TEAMS_WORKFLOW", "TEAMS_SIG"]
        env = {name: f"v{i}" for i, name in enumerate(names)}
        ruleset = load_rules(path, environ=env)
        assert "slack://v0/v1/v2/#rpa-finance" == ruleset.channels["finance-slack"].url_value()
        assert ("finance-slack", "ops-mail") == ruleset.rules[0].notify


# Every rejected config: file, expected line, a fragment of the message.
INVALID = [
    pytest.param("yaml_syntax", 7, "YAML syntax error", id="yaml-syntax"),
    pytest.param(
        "unknown_top_key", 1, "unknown top-level key 'chanels'; did you mean 'channels'?", id="unknown-top-key"
    ),
    pytest.param("unknown_rule_key", 6, "unknown key 'notfy'; did you mean 'notify'?", id="unknown-rule-key"),
    pytest.param("unknown_channel", 6, "unknown channel 'ops-mial'; did you mean 'ops-mail'?", id="unknown-channel"),
    pytest.param("bad_regex", 6, "message: bad regex 'SAP (login|logon'", id="bad-regex"),
    pytest.param("bad_glob", 6, "process: bad glob 'Invoice[ABC': unclosed '['", id="bad-glob"),
    pytest.param("template_syntax", 7, "title: template syntax error", id="template-syntax"),
    pytest.param(
        "template_undefined", 9, "unknown name 'robt' in template; did you mean 'robot'?", id="template-undefined"
    ),
    pytest.param("template_private", 7, "private attribute '__class__'", id="template-private"),
    pytest.param("template_filter", 7, "No filter named 'shout'", id="template-unknown-filter"),
    pytest.param(
        "enum_value", 6, "job.state: 'Faulty' is not a valid JobState; valid names: Pending (0)", id="enum-value"
    ),
    pytest.param("level_value", 7, "'Eror' is not a valid LogLevel; valid names: Trace (0)", id="level-value"),
    pytest.param("env_unset", 2, "channel 'team': environment variable 'SLACK_A' is not set", id="env-unset"),
    pytest.param("env_malformed", 2, "malformed variable reference in", id="env-malformed"),
    pytest.param("duplicate_rule", 7, "rule 'faults': duplicate rule name (first at line 4)", id="duplicate-rule"),
    pytest.param("duplicate_key", 3, "duplicate key 'ops' (first at line 2)", id="duplicate-key"),
    pytest.param(
        "unknown_field",
        6,
        "unknown field 'Job.Relase.ProcessKey': no event has it; did you mean 'Job.Release.ProcessKey'?",
        id="unknown-field",
    ),
    pytest.param("unknown_shortcut", 6, "unknown field 'proces'", id="unknown-shortcut"),
    pytest.param("unknown_operator", 6, "unknown operator 'gtee'; did you mean 'gte'?", id="unknown-operator"),
    pytest.param("bad_severity", 7, "severity: 'critical' is not valid; valid values: 'info'", id="bad-severity"),
    pytest.param("bad_format", 7, "format: 'rtf' is not valid", id="bad-format"),
    pytest.param("bad_duration", 4, "timeout: '5x' is not a duration", id="bad-duration"),
    pytest.param("missing_notify", 4, "missing required key 'notify'", id="missing-notify"),
    pytest.param("unreachable", 6, "rule 'faults' is never evaluated: rule 'everything' above", id="unreachable"),
    pytest.param("source_no_secret", 3, "source 'finance-tenant' has no secrets", id="source-without-secret"),
    pytest.param(
        "bad_timezone", 1, "unknown time zone 'Europe/Berln'; did you mean 'Europe/Berlin'?", id="bad-timezone"
    ),
    pytest.param("not_a_number", 6, "folder: 'Finance' is not a number", id="not-a-number"),
    pytest.param("bad_orchestrator_url", 1, "must start with http:// or https://", id="bad-orchestrator-url"),
    pytest.param("rules_not_a_list", 3, "rules: Input should be a valid list", id="rules-not-a-list"),
    pytest.param("empty_any", 6, "'any' needs at least one block", id="empty-any"),
    pytest.param("exists_not_bool", 6, "exists takes true or false", id="exists-not-bool"),
    pytest.param("not_a_mapping", 1, "must be a mapping", id="not-a-mapping"),
    pytest.param("empty", 1, "the rules file is empty", id="empty-file"),
    pytest.param("noise_group_with_throttle", 8, "group cannot be combined with throttle", id="group-with-throttle"),
    pytest.param("noise_unknown_key", 7, "unknown key 'intervall'; did you mean 'interval'?", id="noise-unknown-key"),
    pytest.param(
        "noise_key_template", 7, "frequency.key: unknown name 'proces' in template; did you mean", id="key-template"
    ),
    pytest.param("noise_group_by_field", 7, "unknown field 'proces'", id="group-by-unknown-field"),
    pytest.param("noise_absence_expect", 8, "robot_state: 'Availble' is not a valid RobotState", id="absence-expect"),
    pytest.param("noise_recover_without_key", 8, "recover needs `key:`", id="recover-without-key"),
    pytest.param(
        "noise_frequency_count", 7, "frequency.count: Input should be greater than or equal to 2", id="count-one"
    ),
    pytest.param("silence_without_window", 4, "give `weekly:` or `dates:`", id="silence-without-window"),
    pytest.param("silence_bad_time", 7, "weekly from: '25:00' is not a time of day", id="silence-bad-time"),
    pytest.param("silence_bad_day", 6, "'feiertag' is not a day", id="silence-bad-day"),
    pytest.param("silence_unknown_rule", 5, "unknown rule 'falts'; did you mean 'faults'?", id="silence-unknown-rule"),
    pytest.param(
        "inhibit_unknown_rule", 5, "unknown rule 'robot-dwn'; did you mean 'robot-down'?", id="inhibit-unknown-rule"
    ),
    pytest.param("inhibit_without_equal", 4, "give `equal:`", id="inhibit-without-equal"),
    pytest.param("collapse_unknown_key", 3, "unknown key 'windw'; did you mean 'window'?", id="collapse-unknown-key"),
    pytest.param(
        "redact_backreference",
        10,
        "is not accepted: invalid escape sequence: \\1 (redaction runs on RE2, in time linear in the text: "
        "no backreferences",
        id="redact-backreference",
    ),
    pytest.param("redact_lookahead", 9, "invalid perl operator: (?=", id="redact-lookahead"),
    pytest.param(
        "redact_unknown_builtin",
        10,
        "redact: 'ibn' is not a built-in pattern; did you mean 'iban'?",
        id="redact-builtin",
    ),
    pytest.param("redact_unknown_key", 9, "unknown key 'regx'; did you mean 'regex'?", id="redact-unknown-key"),
    pytest.param(
        "redact_empty_match", 11, "pattern 'digits': the regex '[0-9]*' matches the empty text", id="redact-empty"
    ),
    pytest.param(
        "alert_escalate_order",
        10,
        "rule 'faults': escalate step 2 must come after step 1 (its `after` must be longer)",
        id="escalate-order",
    ),
    pytest.param(
        "alert_escalate_channel",
        8,
        "rule 'faults': escalate step 1: unknown channel 'oncall-sms'",
        id="escalate-unknown-channel",
    ),
    pytest.param(
        "alert_retry_without_orchestrator",
        7,
        "rule 'faults': actions: [retry] needs a source with an `orchestrator:` connection",
        id="retry-without-orchestrator",
    ),
    pytest.param("alert_action", 7, "actions.0: 'restart' is not valid; valid values: 'retry'", id="unknown-action"),
    pytest.param(
        "noise_share_without_state",
        7,
        "rule 'faults': share_across_sources needs throttle, group, frequency, absence or recover",
        id="share-without-state",
    ),
    pytest.param(
        "noise_share_typo",
        8,
        "unknown key 'share_across_source'; did you mean 'share_across_sources'?",
        id="share-typo",
    ),
]


@pytest.mark.parametrize(("case", "line", "message"), INVALID)
def test_invalid_config_is_rejected(case: str, line: int, message: str) -> None:
    """Each invalid_<case>.yaml is rejected with a located problem saying what is wrong."""
    path = RULES / f"invalid_{case}.yaml"
    problems = _problems(path)
    matching = [p for p in problems if message in p.message]
    assert matching, f"no problem contains {message!r}: {[str(p) for p in problems]}"
    assert line == matching[0].line
    assert str(path) == matching[0].path
    assert matching[0].column >= 1


def test_every_invalid_file_is_in_the_table() -> None:
    """No invalid_<case>.yaml is left without an expected message."""
    cases = {p.stem.removeprefix("invalid_") for p in RULES.glob("invalid_*.yaml")}
    assert {str(param.values[0]) for param in INVALID} == cases


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    """A file with several mistakes gets every one of them, sorted by position."""
    path = _write(
        tmp_path,
        """
chanels: {}
channels:
  ops: "${MISSING_URL}"
rules:
  - name: a
    match: {job.state: Faulty}
    notify: [ops]
  - name: b
    match: {level: {gte: Loud}}
    notify: [nowhere]
    title: "{{ proces }}"
""",
    )
    problems = _problems(path)
    assert 6 == len(problems)
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    text = "\n".join(str(p) for p in problems)
    for fragment in ("chanels", "MISSING_URL", "Faulty", "Loud", "nowhere", "proces"):
        assert fragment in text


def test_a_key_of_the_wrong_type_does_not_hide_the_rest_of_its_rule(tmp_path: Path) -> None:
    """A bad duration or an unknown key in a rule is reported with the rule's other problems, not instead of them."""
    path = _write(
        tmp_path,
        """
channels:
  ops: "log://"
rules:
  - name: a
    match: {type: job.faulted, proces: x}
    notify: [ops, nowhere]
    throttle: {interval: forever}
  - name: b
    mach: {type: job.faulted}
    notify: [ops]
    title: "{{ robt }}"
  - name: a
    match: {type: job.stopped}
    notify: [ops]
silences:
  - name: s
    weekly: [{days: funday, from: "25:00", to: "02:00"}]
    match: {proces: x}
""",
    )
    text = "\n".join(str(p) for p in _problems(path))
    for fragment in (
        "6:32: rule 'a': unknown field 'proces'",
        "7:19: rule 'a': unknown channel 'nowhere'",
        "8:26: rule 'a': throttle.interval: 'forever' is not a duration",
        "10:5: rule 'b': unknown key 'mach'; did you mean 'match'?",
        "12:12: rule 'b': title: unknown name 'robt' in template",
        "13:11: rule 'a': duplicate rule name (first at line 5)",
        "18:21: silence 's': days: 'funday' is not a day",
        "19:13: silence 's': unknown field 'proces'",
    ):
        assert fragment in text, text
    # `b` lost its `match:` to a typo: it is not taken for a rule that matches everything.
    assert "never evaluated" not in text


def test_a_refused_key_brings_no_follow_on_problems(tmp_path: Path) -> None:
    """A key of the wrong type is one problem: not also "give weekly or dates", "give equal" or "recover needs"."""
    path = _write(
        tmp_path,
        """
channels: {a: "log://"}
silences:
  - {name: s, weekly: 5}
inhibit:
  - {name: j, source_rule: q, target: {type: job.faulted}, equal: 5}
rules:
  - {name: q, match: {type: job.faulted}, notify: a, absence: {within: 5m}, recover: true}
""",
    )
    messages = [p.message for p in _problems(path)]
    assert [
        "silence 's': weekly: Input should be a valid list",
        "inhibit 'j': equal: Input should be a valid list",
        "rule 'q': missing required key 'absence.expect'",
    ] == messages


def test_problem_string_is_path_line_column_message() -> None:
    """Problems print as PATH:LINE:COL: message, as `receiver check` shows them."""
    problem = _problems(RULES / "invalid_unknown_channel.yaml")[0]
    assert f"{RULES / 'invalid_unknown_channel.yaml'}:6:14: {problem.message}" == str(problem)


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    """A missing file is a RulesError naming the path, not an OSError."""
    problems = _problems(tmp_path / "nope.yaml")
    assert 1 == len(problems)
    assert "cannot read the rules file" in problems[0].message


class TestChannels:
    """Channels: URLs, ${VAR}, options, validation, secrecy."""

    def test_env_expansion(self, tmp_path: Path) -> None:
        """${VAR} is read from the environ argument; $$ is a literal dollar."""
        path = _write(tmp_path, 'channels:\n  a: "json://${HOST}/p$$th"\nrules: []\n')
        ruleset = load_rules(path, environ={"HOST": "example.com"})
        assert "json://example.com/p$th" == ruleset.channels["a"].url_value()

    def test_mapping_form_with_options(self, tmp_path: Path) -> None:
        """A channel written as a mapping takes delivery options with durations."""
        path = _write(
            tmp_path,
            """
channels:
  ops:
    url: "log://"
    max_attempts: 3
    max_age: 2h
    concurrency: 2
    timeout: 1m
  plain: "log://"
rules: []
""",
        )
        channels = load_rules(path, environ={}).channels
        assert (3, 7200.0, 2, 60.0) == (
            channels["ops"].max_attempts,
            channels["ops"].max_age_seconds,
            channels["ops"].concurrency,
            channels["ops"].timeout_seconds,
        )
        assert (100, 86400.0, 4, 30.0) == (
            channels["plain"].max_attempts,
            channels["plain"].max_age_seconds,
            channels["plain"].concurrency,
            channels["plain"].timeout_seconds,
        )

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            pytest.param("30s", 30.0, id="seconds"),
            pytest.param("5m", 300.0, id="minutes"),
            pytest.param("2h", 7200.0, id="hours"),
            pytest.param("1d", 86400.0, id="days"),
            pytest.param("250ms", 0.25, id="milliseconds"),
            pytest.param(45, 45.0, id="number"),
        ],
    )
    def test_durations(self, tmp_path: Path, value: object, seconds: float) -> None:
        """Durations are written with a unit or as a number of seconds."""
        path = _write(tmp_path, f'channels:\n  a: {{url: "log://", timeout: {value}}}\nrules: []\n')
        assert seconds == load_rules(path, environ={}).channels["a"].timeout_seconds

    def test_check_url_rejection_names_the_channel(self, tmp_path: Path) -> None:
        """The injected URL checker's message is reported against the channel."""
        path = _write(tmp_path, 'channels:\n  teams: "msteams://a/b/c"\nrules: []\n')

        def check(url: str) -> str | None:
            return "msteams:// was removed from apprise; use workflows://" if url.startswith("msteams") else None

        problems = _problems(path, check_url=check)
        assert ["channel 'teams': msteams:// was removed from apprise; use workflows://"] == [
            p.message for p in problems
        ]
        assert 2 == problems[0].line

    def test_check_url_gets_the_expanded_url(self, tmp_path: Path) -> None:
        """The checker sees the URL after ${VAR} expansion."""
        seen: list[str] = []
        path = _write(tmp_path, 'channels:\n  a: "json://${H}/"\nrules: []\n')

        def check(url: str) -> None:
            seen.append(url)

        load_rules(path, environ={"H": "host"}, check_url=check)
        assert ["json://host/"] == seen

    def test_url_is_secret_in_repr(self, tmp_path: Path) -> None:
        """A channel's repr and str never show its URL."""
        path = _write(tmp_path, 'channels:\n  a: "slack://${TOKEN}/B/C"\nrules: []\n')
        channel = load_rules(path, environ={"TOKEN": "xoxb-secret-token"}).channels["a"]
        assert isinstance(channel, Channel)
        assert "xoxb-secret-token" not in repr(channel)
        assert "xoxb-secret-token" not in str(channel)
        assert "slack" == channel.scheme

    def test_problem_never_echoes_a_secret(self, tmp_path: Path) -> None:
        """An unset variable next to a set one does not print the set value."""
        path = _write(tmp_path, 'channels:\n  a: "slack://${SET}/${UNSET}/C"\nrules: []\n')
        problems = _problems(path, environ={"SET": "s3cret-value"})
        assert all("s3cret-value" not in str(p) for p in problems)


class TestSources:
    """Sources: secrets (several), tokens, flags."""

    def test_source_with_rotation(self, tmp_path: Path) -> None:
        """A source keeps every secret (rotation) and its logs token, expanded."""
        path = _write(
            tmp_path,
            """
sources:
  finance:
    secrets: ["${NEW}", "${OLD}"]
    logs_token: "${TOKEN}"
    accept_hex_signature: true
  uipath: {}
  lab: {insecure: true}
rules: []
""",
        )
        sources = load_rules(path, environ={"NEW": "n", "OLD": "o", "TOKEN": "t"}).sources
        finance = sources["finance"]
        assert isinstance(finance, Source)
        assert ("n", "o") == finance.secret_values()
        assert "t" == finance.logs_token_value()
        assert finance.accept_hex_signature
        assert () == sources["uipath"].secret_values()
        assert sources["lab"].insecure
        assert "'n'" not in repr(finance)

    def test_unset_secret_names_source_and_variable(self, tmp_path: Path) -> None:
        """An unset ${VAR} in a secret names the source and the variable."""
        path = _write(tmp_path, 'sources:\n  finance:\n    secrets: ["${FIN_SECRET}"]\nrules: []\n')
        problems = _problems(path)
        assert "source 'finance': environment variable 'FIN_SECRET' is not set" in problems[0].message


class TestRules:
    """Rule options."""

    def test_options_are_read(self, tmp_path: Path) -> None:
        """Severity, format, continue and templates end up on the rule."""
        path = _write(
            tmp_path,
            """
channels: {ops: "log://"}
rules:
  - name: a
    description: first
    match: {type: job.faulted}
    notify: ops
    continue: true
    severity: Warning
    format: Markdown
    title: "{{ process }}"
""",
        )
        rule = load_rules(path, environ={}).rules[0]
        assert ("a", ("ops",), True, "warning", "markdown", "first") == (
            rule.name,
            rule.notify,
            rule.continue_,
            rule.severity,
            rule.format,
            rule.description,
        )
        assert rule.title_template is not None
        assert 4 == rule.line

    def test_null_sections_are_empty(self, tmp_path: Path) -> None:
        """`channels:` with every entry commented out is an empty section."""
        ruleset = load_rules(_write(tmp_path, "channels:\nsources:\nrules:\n"), environ={})
        assert ((), {}, {}) == (ruleset.rules, dict(ruleset.channels), dict(ruleset.sources))

    def test_timezone_and_orchestrator_url(self, tmp_path: Path) -> None:
        """timezone becomes a ZoneInfo; a trailing slash of orchestrator_url is dropped."""
        path = _write(
            tmp_path, 'timezone: Europe/Berlin\norchestrator_url: "https://orch.example/acme/t/orchestrator_/"\n'
        )
        ruleset = load_rules(path, environ={})
        assert "Europe/Berlin" == ruleset.timezone.key
        assert "https://orch.example/acme/t/orchestrator_" == ruleset.orchestrator_url

    def test_ruleset_is_frozen(self) -> None:
        """A RuleSet cannot be changed after loading (reloads swap a new one in)."""
        ruleset = load_rules(ROOT / "rules.yaml", environ={})
        with pytest.raises(AttributeError):
            ruleset.rules = ()  # type: ignore[misc]
        with pytest.raises(TypeError):
            ruleset.channels["x"] = ruleset.channels["ops"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a${X}b", ("a1b", [], []), id="set"),
        pytest.param("${Y}", ("", ["Y"], []), id="unset"),
        pytest.param("$${X}", ("${X}", [], []), id="escaped"),
        pytest.param("${1X}", ("${1X}", [], ["${1X}"]), id="bad-name"),
        pytest.param("cost: 5$", ("cost: 5$", [], []), id="lone-dollar"),
    ],
)
def test_expand_env(text: str, expected: tuple[str, list[str], list[str]]) -> None:
    """${VAR} expansion reports unset and malformed references."""
    assert expected == expand_env(text, {"X": "1"})


_ENRICH_SOURCE = """\
channels:
  ops: "json://127.0.0.1:9/x"
sources:
  uipath:
    secrets: ["s"]
    orchestrator:
      url: "https://orch.example.com"
      client_id: a
      client_secret: b
      public_url: "https://receiver.example.com/webhooks/uipath"
"""


class TestEnrich:
    def test_forms_and_the_file_default(self, tmp_path: Path) -> None:
        """A list, a mapping, true and false; a rule's keys win over the file's, the rest is inherited."""
        text = _ENRICH_SOURCE + (
            "enrich: {with: [job, logs], log_lines: 7, budget: 2s}\n"
            "rules:\n"
            "  - {name: inherits, notify: ops, continue: true}\n"
            "  - {name: arguments, notify: ops, continue: true, enrich: [arguments]}\n"
            "  - {name: disabled, notify: ops, continue: true, enrich: false}\n"
            "  - {name: lines, notify: ops, continue: true, enrich: {log_lines: 2}}\n"
            "  - {name: defaults, notify: ops, continue: true, enrich: true}\n"
        )
        rules = {r.name: r.enrich for r in load_rules(_write(tmp_path, text), environ={}).rules}
        inherits, arguments, lines, defaults = rules["inherits"], rules["arguments"], rules["lines"], rules["defaults"]
        assert inherits is not None
        assert (True, True, False, 7, 2.0) == (
            inherits.job,
            inherits.logs,
            inherits.arguments,
            inherits.log_lines,
            inherits.budget,
        )
        assert arguments is not None
        assert (True, False, True, 7) == (
            arguments.job,
            arguments.logs,
            arguments.arguments,
            arguments.log_lines,
        )
        assert rules["disabled"] is None
        assert lines is not None
        assert (True, True, 2, 2.0) == (lines.job, lines.logs, lines.log_lines, lines.budget)
        assert defaults is not None
        assert (True, True, 7) == (defaults.job, defaults.logs, defaults.log_lines)

    def test_without_a_file_default_a_rule_has_none(self, tmp_path: Path) -> None:
        text = _ENRICH_SOURCE + "rules:\n  - {name: a, notify: ops}\n"
        assert [None] == [r.enrich for r in load_rules(_write(tmp_path, text), environ={}).rules]

    def test_problems_are_located(self, tmp_path: Path) -> None:
        """Unknown parts, keys and a budget past 30 s are reported where they are written."""
        text = _ENRICH_SOURCE + (
            "rules:\n"
            "  - {name: a, notify: ops, continue: true, enrich: [job, log]}\n"
            "  - {name: b, notify: ops, continue: true, enrich: {with: job, lines: 3}}\n"
            "  - {name: c, notify: ops, enrich: {budget: 1m}}\n"
        )
        messages = [(p.line, p.message) for p in _problems(_write(tmp_path, text))]
        assert any(line == 12 and "enrich.with.1: 'log' is not valid" in m for line, m in messages), messages
        assert any(line == 13 and "unknown key 'lines'; did you mean 'log_lines'?" in m for line, m in messages)
        assert any(
            line == 14 and "enrich.budget: Input should be less than or equal to 30 seconds" in m
            for line, m in messages
        )

    def test_enrich_needs_an_orchestrator_connection(self, tmp_path: Path) -> None:
        text = 'channels:\n  ops: "json://127.0.0.1:9/x"\nrules:\n  - {name: a, notify: ops, enrich: [job, logs]}\n'
        [problem] = _problems(_write(tmp_path, text))
        assert (4, "rule 'a': enrich needs a source with an `orchestrator:` connection") == (
            problem.line,
            problem.message,
        )


class TestShapesAndHostileFiles:
    """A value of the wrong shape, an impossible date, aliases and nesting: located problems, in bounded time."""

    def test_a_value_of_the_wrong_shape_says_what_is_expected(self, tmp_path: Path) -> None:
        """`channel: 5`, `throttle: 5`, `enrich: 5`: what the key takes, in the file's words, not a pydantic class."""
        path = _write(
            tmp_path,
            'channels:\n  ops: "log://"\n  bad: 5\n'
            "rules:\n  - name: r\n    match: {type: job.faulted}\n    notify: ops\n    throttle: 5\n"
            "    recover: [1]\n",
        )
        text = "\n".join(str(p) for p in _problems(path))
        assert f"{path}:3:8: channel 'bad': expected an apprise URL or a mapping with `url:`, got a number" in text
        assert f"{path}:8:15: rule 'r': throttle: expected a mapping, got a number" in text
        assert f"{path}:9:14: rule 'r': recover: expected a mapping or true, got a list" in text
        assert "Spec" not in text
        assert ": :" not in text

    def test_a_value_of_the_wrong_shape_is_not_quoted(self, tmp_path: Path) -> None:
        """A source written as a string (a secret where a mapping belongs) is reported without the string."""
        path = _write(
            tmp_path,
            'channels:\n  ops: "log://"\nsources:\n  x: "literal-secret-1"\n'
            '  y: {secrets: [s], orchestrator: "literal-secret-2"}\nrules: []\n',
        )
        text = "\n".join(str(p) for p in _problems(path))
        assert "source 'x': expected a mapping, got a string" in text
        assert "source 'y': orchestrator: expected a mapping, got a string" in text
        assert "literal-secret" not in text

    def test_an_impossible_date_is_a_located_problem(self, tmp_path: Path) -> None:
        """A date YAML reads as one but that does not exist (month 13) is a problem at its line, not a ValueError."""
        path = _write(
            tmp_path,
            'channels:\n  ops: "log://"\nsilences:\n  - name: xmas\n    dates:\n'
            "      - {from: 2026-13-24, to: 2026-12-26}\nrules: []\n",
        )
        problems = _problems(path)
        assert [(6, 16)] == [(p.line, p.column) for p in problems]
        assert "2026-13-24 is not a valid date: month must be in 1..12" in problems[0].message

    def test_an_alias_bomb_is_refused_quickly(self, tmp_path: Path) -> None:
        """Nested aliases that expand to billions of nodes are refused at once, naming the limit."""
        import time

        lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
        path = _write(tmp_path, "\n".join(lines) + '\nchannels:\n  ops: "log://"\nrules: []\n')
        started = time.monotonic()
        problems = _problems(path)
        assert time.monotonic() - started < 5
        assert any("aliases expand to more than" in p.message for p in problems), problems

    def test_a_recursive_alias_is_refused(self, tmp_path: Path) -> None:
        """An alias inside its own anchor (`&r [*r]`) is a problem at the anchor, not a RecursionError."""
        path = _write(tmp_path, 'channels:\n  ops: "log://"\nrules: &r [*r]\n')
        problems = _problems(path)
        assert [(3, 8)] == [(p.line, p.column) for p in problems]
        assert "an alias refers to a node that contains it (a loop)" == problems[0].message

    def test_aliases_in_ordinary_use_still_work(self, tmp_path: Path) -> None:
        """A match block written once and reused by alias loads as before."""
        path = _write(
            tmp_path,
            'channels:\n  ops: "log://"\nrules:\n'
            "  - {name: a, match: &m {type: job.faulted}, notify: ops, continue: true}\n"
            "  - {name: b, match: *m, notify: ops}\n",
        )
        assert ["a", "b"] == [r.name for r in load_rules(path, environ={}).rules]

    def test_match_nested_too_deeply_is_a_problem(self, tmp_path: Path) -> None:
        """500 nested `not:` blocks: one problem where the nesting passes the limit, not a RecursionError."""
        lines = ['channels:\n  ops: "log://"\nrules:\n  - name: deep\n    notify: ops\n    match:']
        indent = "      "
        for _ in range(500):
            lines.append(f"{indent}not:")
            indent += "  "
        lines.append(f"{indent}type: job.faulted")
        problems = _problems(_write(tmp_path, "\n".join(lines) + "\n"))
        assert 1 == len(problems), problems
        assert (105, 203, "nested more than 100 levels deep") == (
            problems[0].line,
            problems[0].column,
            problems[0].message,
        )
