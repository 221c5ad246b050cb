"""The JSON Schema of ``rules.yaml``, generated from the pydantic models of :mod:`receiver.rules.spec`.

Editors use it to complete keys and flag mistakes as one types (``# yaml-language-server: $schema=...``).
It judges the file's shape: keys, types, ranges, durations. What needs the loader (``match:`` clauses,
templates, references between rules and channels, ``${VAR}``) stays with ``receiver check``.
The checked-in copy is ``receiver/rules/rules.schema.json``; a test keeps it equal to :func:`rules_json_schema`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import create_model
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from receiver.rules.redact import BUILTIN_PATTERNS as BUILTIN_NAMES
from receiver.rules.spec import (
    ENRICH_PARTS,
    ChannelSpec,
    CollapseSpec,
    FileSpec,
    InhibitSpec,
    RedactPatternSpec,
    RedactSpec,
    RuleSpec,
    SilenceSpec,
    SourceSpec,
    _as_list,
    _enrich,
    _lower,
    _recover,
    _split_scopes,
    parse_duration,
)

__all__ = ["SCHEMA_ID", "SCHEMA_PATH", "rules_json_schema"]

SCHEMA_PATH = Path(__file__).with_name("rules.schema.json")
"""Where the generated schema ships, inside the package."""

SCHEMA_ID = "https://receiver.invalid/rules.schema.json"
"""A stable identifier (not fetched): editors are pointed at the file by a relative path."""

# parse_duration's grammar, spelled without the IGNORECASE flag that JSON Schema patterns lack.
_DURATION_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*([mM][sS]|[sSmMhHdDwW])?\s*$"
_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def _duration_text(value: timedelta) -> str | float:
    seconds = value.total_seconds()
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return seconds


def _case_blind(schema: JsonSchemaValue) -> JsonSchemaValue:
    if "anyOf" in schema:
        return {**schema, "anyOf": [_case_blind(member) for member in schema["anyOf"]]}
    if "enum" not in schema:
        return schema
    spelled = ("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in name) for name in schema["enum"])
    return {"anyOf": [schema, {"type": "string", "pattern": rf"^\s*({'|'.join(spelled)})\s*$"}]}


class _RulesSchema(GenerateJsonSchema):
    """Describes what the file may say, not what the models hold after their before-validators ran."""

    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema) -> JsonSchemaValue:
        function: Callable[..., Any] = schema["function"]["function"]
        inner = self.generate_inner(schema["schema"])
        if function is parse_duration:
            return {
                "anyOf": [
                    {"type": "string", "pattern": _DURATION_PATTERN},
                    {"type": "number", "exclusiveMinimum": 0},
                ],
                "description": "a duration: 250ms, 30s, 5m, 2h, 1d, 1w or a number of seconds",
            }
        if function in (_as_list, _split_scopes):  # one string stands for a list of one (or of words)
            return {"anyOf": [{"type": "string"}, inner]}
        if function is _recover:  # `recover: true` / `false`
            return {"anyOf": [{"type": "boolean"}, inner]}
        if function is _enrich:  # `enrich: [job, logs]`, `enrich: logs`, `enrich: true` / `false`
            parts = _case_blind({"type": "string", "enum": list(ENRICH_PARTS)})
            return {"anyOf": [{"type": "boolean"}, parts, {"type": "array", "items": parts}, inner]}
        if function is _lower:  # severity, format: editors offer the names, any case passes
            return _case_blind(inner)
        return inner

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return _duration_text(dft)
        return super().encode_default(dft)


_BuiltinName = Literal[BUILTIN_NAMES]  # type: ignore[valid-type]
_RedactPatterns = list[_BuiltinName | RedactPatternSpec]
_RedactFile = create_model(
    "Redact",
    __base__=RedactSpec,
    __doc__=RedactSpec.__doc__,
    patterns=(_RedactPatterns, ...),
)

# The top level with its items typed: FileSpec keeps them Any so that the loader can validate
# (and report) each item on its own; an editor wants them described.
_RulesFile = create_model(
    "RulesFile",
    __base__=FileSpec,
    __doc__="rules.yaml: which Orchestrator events notify whom, and how the messages look (docs/rules.md).",
    channels=(dict[str, str | ChannelSpec] | None, None),
    sources=(dict[str, SourceSpec | None] | None, None),
    rules=(list[RuleSpec] | None, None),
    silences=(list[SilenceSpec] | None, None),
    inhibit=(list[InhibitSpec] | None, None),
    collapse=(CollapseSpec | bool | None, None),
    redact=(_RedactFile | _RedactPatterns | None, None),
)


def rules_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``rules.yaml``.

    Returns:
        The schema as a JSON-ready dict, the same on every call.
    """
    schema = _RulesFile.model_json_schema(by_alias=True, mode="validation", schema_generator=_RulesSchema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "rules.yaml",
    }
