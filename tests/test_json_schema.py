"""The JSON Schema of rules.yaml: generated from the rule models, shipped up to date, and agreeing with the loader."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from support import DATA

from receiver.admin.dryrun import check_command
from receiver.cli import main
from receiver.rules import SCHEMA_PATH, STARTER_CHANNELS, rules_json_schema, starter_rules

ROOT = Path(__file__).parent.parent
RULES = DATA / "rules"
VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))

# The invalid files whose fault is the file's shape (unknown keys, wrong types, ranges, durations);
# the others need the loader (match clauses, templates, references, ${VAR}) and pass the schema.
STRUCTURAL = [
    "bad_duration",
    "bad_format",
    "bad_severity",
    "collapse_unknown_key",
    "empty",
    "missing_notify",
    "noise_frequency_count",
    "noise_share_typo",
    "noise_unknown_key",
    "not_a_mapping",
    "rules_not_a_list",
    "unknown_rule_key",
    "unknown_top_key",
]


def _errors(document: Any) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(document)]


def test_checked_in_schema_is_up_to_date() -> None:
    """receiver/rules/rules.schema.json is what the models generate now (regenerate: receiver schema > it)."""
    assert rules_json_schema() == json.loads(SCHEMA_PATH.read_text())


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The generated schema is itself valid JSON Schema."""
    jsonschema.Draft202012Validator.check_schema(rules_json_schema())


def test_schema_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`receiver schema` prints the schema as JSON."""
    assert 0 == main(["schema"])
    assert rules_json_schema() == json.loads(capsys.readouterr().out)


def test_schema_knows_every_top_level_key() -> None:
    """Every key the loader accepts at the top level is described (nothing is lost by retyping the items)."""
    properties = rules_json_schema()["properties"]
    assert {
        "channels",
        "sources",
        "rules",
        "orchestrator_url",
        "timezone",
        "silences",
        "inhibit",
        "collapse",
        "redact",
        "enrich",
    } == set(properties)


def test_example_references_the_schema_on_its_first_line() -> None:
    """The example's first line points editors at the shipped schema by a path that exists."""
    first = (ROOT / "rules.yaml").read_text().splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    assert SCHEMA_PATH.resolve() == (ROOT / first.removeprefix(prefix)).resolve()


VALID = [
    pytest.param(ROOT / "rules.yaml", id="example"),
    *(pytest.param(path, id=path.stem) for path in sorted(RULES.glob("valid_*.yaml"))),
]


@pytest.mark.parametrize("path", VALID)
def test_valid_files_pass_the_loader_and_the_schema(path: Path) -> None:
    """Each valid rules file of the suite passes `receiver check` and the schema."""
    out = io.StringIO()
    assert 0 == check_command(path, environ={}, check_url=None, out=out), out.getvalue()
    assert [] == _errors(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("kinds", [pytest.param([], id="log"), *(pytest.param([k], id=k) for k in STARTER_CHANNELS)])
def test_starter_files_pass_the_schema(kinds: list[str]) -> None:
    """What `receiver init` writes passes the schema."""
    assert [] == _errors(yaml.safe_load(starter_rules(kinds).text))


@pytest.mark.parametrize("case", STRUCTURAL)
def test_structural_mistakes_fail_the_schema(case: str) -> None:
    """An invalid file whose mistake is its shape is flagged by the schema, as by the loader."""
    path = RULES / f"invalid_{case}.yaml"
    assert 1 == check_command(path, environ={}, check_url=None, out=io.StringIO())
    assert _errors(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    ("snippet", "valid"),
    [
        pytest.param("throttle: {interval: 250ms}", True, id="duration-ms"),
        pytest.param("throttle: {interval: 90}", True, id="duration-seconds"),
        pytest.param("throttle: {interval: 0}", False, id="duration-zero"),
        pytest.param("throttle: {interval: 5 minutes}", False, id="duration-words"),
        pytest.param("severity: WARNING", True, id="severity-any-case"),
        pytest.param("severity: urgent", False, id="severity-unknown"),
        pytest.param("recover: false", True, id="recover-false"),
        pytest.param("notify: 3", False, id="notify-number"),
    ],
)
def test_short_forms_the_loader_reads(snippet: str, valid: bool, tmp_path: Path) -> None:
    """The schema and the loader agree on the short forms (one string, a number of seconds, any case)."""
    text = 'channels: {ops: "log://"}\nrules:\n  - name: r\n    match: {type: job.faulted}\n    notify: [ops]\n'
    text = text.replace("    notify: [ops]\n", "" if snippet.startswith("notify") else "    notify: [ops]\n")
    text += f"    {snippet}\n"
    (tmp_path / "rules.yaml").write_text(text)
    loader = 0 == check_command(tmp_path / "rules.yaml", environ={}, check_url=None, out=io.StringIO())
    assert (valid, valid) == (loader, not _errors(yaml.safe_load(text)))
