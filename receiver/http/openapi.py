"""The OpenAPI 3.1 document of ``/api/openapi.json``: the admin API and the routes Orchestrator calls.

Written by hand, as data, rather than generated: the routes are few, their answers are plain
dicts, and a hand-written document can say what matters to an operator (what ``duplicate``
means, why a 503 should be retried). ``tests/test_api_openapi.py`` keeps it honest: it validates
the document against the OpenAPI 3.1 schema and checks that it names exactly the routes of the
application, with the same methods.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from receiver import __version__

__all__ = ["document"]

_JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _param(name: str, where: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "description": description, "schema": schema, **extra}


# Row ids are signed 64-bit integers in both stores; a larger number cannot name a row.
_ID = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def _id(what: str) -> dict[str, Any]:
    return _param("id", "path", f"The {what} id.", _ID, required=True)


def _or_empty(schema: dict[str, Any]) -> dict[str, Any]:
    """A query value that may also be empty (`?before=`), which means the same as leaving it out, as forms send."""
    return {"anyOf": [schema, {"const": ""}]}


_LIMIT = _param(
    "limit",
    "query",
    "At most this many: an integer, clamped to 1-1000 (`invalid_query` otherwise).",
    {**_or_empty({"type": "integer"}), "default": 100},
)
_BEFORE = _param("before", "query", "Only ids below this one: the `next_before` of the previous page.", _or_empty(_ID))
_TIME = {
    "description": (
        "Unix seconds, an ISO 8601 date-time (UTC without an offset), or a duration back from now; empty: no bound."
    ),
    "anyOf": [
        {"const": ""},
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
        {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
        {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?[smhdw]$"},
    ],
    "examples": ["2026-01-31T08:00:00Z", "1769846400", "2h"],
}
_ADMIN_ERRORS = {
    "401": _error("Missing or wrong bearer token (`unauthorized`)."),
    "404": _error("Not found, or the admin API is off (`admin_api_disabled`: no RECEIVER_ADMIN_TOKEN)."),
    "429": _error(
        "Too many failed token checks from this address (`too_many_failures`); `Retry-After` says when to try again."
    ),
}


def _admin(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"tags": ["admin"], "summary": summary, "responses": {**responses, **_ADMIN_ERRORS}, **extra}


# The fields of a robot log entry the edge reads, by type (receiver.events.logs).
_LOG_TEXT_FIELDS = (
    "ProcessName",
    "RobotName",
    "MachineName",
    "HostMachineName",
    "MachineKey",
    "WindowsIdentity",
    "JobKey",
    "RuntimeType",
    "FileName",
    "LogType",
    "ProcessVersion",
    "Fingerprint",
)
_LOG_ID_FIELDS = ("MachineId", "TenantId", "OrganizationUnitId", "Id")


def _schemas() -> dict[str, Any]:
    nullable_number = {"type": ["number", "null"]}
    nullable_string = {"type": ["string", "null"]}
    decision = {
        "type": "object",
        "description": "A noise-control decision about the event (silenced, throttled, grouped, notified...).",
        "properties": {
            "action": {"type": "string"},
            "rule": nullable_string,
            "key": nullable_string,
            "reason": {"type": "string"},
            "suppressed": {"type": "boolean", "description": "The rule sent nothing for the event because of it."},
            "event": {"type": ["integer", "null"], "description": "The event (inbox id) it is about."},
            "at": {
                "type": "number",
                "description": "When it applies (the event's arrival, a timer's due time), Unix seconds.",
            },
            "due_at": {**nullable_number, "description": "For grouped and armed: when the digest or the timer is due."},
        },
        "required": ["action", "reason"],
    }
    attempt = {
        "type": "object",
        "properties": {
            "at": {"type": "number", "description": "Unix seconds."},
            "status": {"type": "string", "enum": ["sent", "failed", "dead"]},
            "reason": {**nullable_string, "description": "The channel's reason (secrets removed)."},
            "elapsed": {"type": "number", "description": "Seconds the attempt took."},
        },
        "required": ["at", "status", "reason", "elapsed"],
    }
    delivery = {
        "type": "object",
        "description": "One notification due to one channel: an outbox row.",
        "properties": {
            "id": {"type": "integer"},
            "inbox_id": {"type": "integer", "description": "The event it came from."},
            "rule": {"type": "string"},
            "channel": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "sent", "dead"]},
            "attempts": {"type": "integer", "description": "Attempts since it was created or last re-driven."},
            "last_error": nullable_string,
            "created_at": {"type": "number"},
            "next_attempt_at": {**nullable_number, "description": "When it is tried next (pending only)."},
            "sent_at": nullable_number,
            "title": {"type": "string"},
            "severity": {"type": "string"},
            "body": {"type": "string", "description": "The rendered message (GET /api/deliveries/{id} only)."},
            "attempt_log": {"type": "array", "items": _ref("Attempt")},
        },
        "required": ["id", "inbox_id", "rule", "channel", "state", "attempts", "last_error", "created_at"],
    }
    explanation = {
        "type": "object",
        "description": (
            "Why each rule did or did not match, evaluated now on the stored body against the rules in "
            "force now (loaded at `rules_loaded_at`), which may differ from the rules that processed the event."
        ),
        "properties": {
            "evaluated_with": {"type": "string", "const": "rules in force now"},
            "rules_loaded_at": {"type": "number"},
            "note": {"type": "string"},
            "error": {"type": "string", "description": "The stored body cannot be read as its type."},
            "silent": {
                "type": "string",
                "description": "Present for a type that never notifies (`ping`), whichever rules match it: why.",
            },
            "rules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "rule": {"type": "string"},
                        "matched": {"type": "boolean"},
                        "evaluated": {"type": "boolean", "description": "False: an earlier match stopped evaluation."},
                        "reason": {**nullable_string, "description": "For a miss: the first clause that failed."},
                    },
                    "required": ["rule", "matched", "evaluated", "reason"],
                },
            },
        },
        "required": ["evaluated_with", "rules_loaded_at", "rules"],
    }
    event = {
        "type": "object",
        "description": "An accepted event and what became of it.",
        "properties": {
            "id": {"type": "integer"},
            "source": {"type": "string"},
            "event_id": {
                "type": "string",
                "description": "Orchestrator's EventId (or sha256 of the body); job:<JobKey>:<State> for a job's end"
                " on a source with an orchestrator: block.",
            },
            "type": {"type": "string"},
            "received_at": {"type": "number"},
            "event_time": nullable_number,
            "state": {"type": "string", "enum": ["new", "processed", "unparsed"]},
            "processed_at": nullable_number,
            "process": nullable_string,
            "robot": nullable_string,
            "result": {
                "type": "string",
                "enum": [
                    "waiting",
                    "unparsed",
                    "notified",
                    "sending",
                    "failing",
                    "dead",
                    "suppressed",
                    "matched",
                    "unmatched",
                ],
                "description": "What became of it, in one word.",
            },
            "matched_rules": {"type": "array", "items": {"type": "string"}},
            "decisions": {"type": "array", "items": _ref("Decision")},
            "outcome": {"type": ["object", "null"], "description": "The worker's record of processing."},
            "deliveries": {"type": "array", "items": _ref("Delivery")},
            "explain": _ref("Explanation"),
            "noise_log": {"type": "array", "items": _ref("LoggedDecision")},
            "alert_trail": {
                "type": "array",
                "items": _ref("AlertTrailEntry"),
                "description": "What was done about the alerts of this event (GET /api/events/{id} only).",
            },
            "body": {"description": "The stored body (GET /api/events/{id} only)."},
        },
        "required": ["id", "source", "event_id", "type", "received_at", "state", "result", "matched_rules"],
    }
    present = {"not": {"enum": [None, ""]}}  # the edge reads null and "" as absent
    log_entry = {
        "type": "object",
        "description": (
            "A RobotLogs `LogDto` or an NLog JSON entry. Names in any casing (`_`, `-`, `.` ignored), values "
            'possibly strings (`"LevelOrdinal": "4"`). A field below that cannot be read as its type refuses the '
            "whole request (`invalid_logs`); other fields are kept as sent."
        ),
        "properties": {
            "Message": {"type": ["string", "number", "null"], "description": "null or empty: no message."},
            **{key: {"type": ["string", "number", "null"]} for key in _LOG_TEXT_FIELDS},
            # Numbers in text are read (NLog sends every value as a string); true reads as 1.
            **{
                key: {"type": ["integer", "boolean", "string", "null"], "pattern": "^-?[0-9]*$"}
                for key in _LOG_ID_FIELDS
            },
            "TimeStamp": {
                "description": (
                    "ISO 8601, NLog's `${date}` (yyyy/MM/dd HH:mm:ss.fff) or Unix seconds; a value in any "
                    "other form is left out of the event and the entry kept (NLog would resend it for ever)."
                ),
            },
            "Level": {
                "description": "A LogLevel name or number; an unreadable one is kept as text.",
                "examples": ["Error"],
            },
            "RawMessage": {"description": "The robot's own entry (a JSON string): it fills fields the entry lacks."},
        },
        # A key `logs` (any casing) makes the object the {"logs": [...]} wrapper, not an entry.
        "propertyNames": {"not": {"pattern": "^[Ll][Oo][Gg][Ss]$"}},
        "anyOf": [
            {"required": ["Message"], "properties": {"Message": present}},
            {"required": ["Level"], "properties": {"Level": present}},
            {"required": ["RawMessage"], "properties": {"RawMessage": present}},
        ],
    }
    error = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        "required": ["error", "detail"],
    }
    return {
        "Error": error,
        "LogEntry": log_entry,
        "Event": event,
        "Delivery": delivery,
        "Attempt": attempt,
        "Decision": decision,
        "LoggedDecision": {
            "description": "A stored noise decision: a Decision with its row number and when it was recorded.",
            "allOf": [
                _ref("Decision"),
                {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "recorded_at": {"type": "number"}},
                    "required": ["id", "recorded_at"],
                },
            ],
        },
        "Explanation": explanation,
        "Silence": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "matchers": {"type": "array", "items": {"type": "string"}},
                "comment": {"type": "string"},
                "created_by": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "starts_at": {"type": "string", "format": "date-time"},
                "ends_at": {"type": "string", "format": "date-time"},
                "state": {"type": "string", "enum": ["pending", "active", "expired"]},
            },
            "required": ["id", "matchers", "comment", "created_by", "starts_at", "ends_at", "state"],
        },
        "Alert": {
            "type": "object",
            "description": "A rule's key that is firing (docs/alerts.md). Times are Unix seconds.",
            "properties": {
                "id": {"type": "string"},
                "rule": {"type": "string"},
                "source": {"type": "string"},
                "key": {"type": "string"},
                "state": {"type": "string", "enum": ["firing", "acknowledged", "resolved"]},
                "title": {"type": "string"},
                "event": {"type": "integer", "description": "The event that opened it."},
                "event_type": {"type": "string", "description": "Its type; a job's alert may offer a retry."},
                "last_event": {"type": "integer"},
                "process": nullable_string,
                "robot": nullable_string,
                "count": {"type": "integer"},
                "opened_at": {"type": "number"},
                "last_at": {"type": "number"},
                "expires_at": {"type": "number"},
                "next_at": {**nullable_number, "description": "Its next reminder or escalation."},
                "reminders": {"type": "integer"},
                "escalations": {"type": "integer"},
                "acknowledged_at": nullable_number,
                "acknowledged_by": nullable_string,
                "resolved_at": nullable_number,
                "resolved_by": nullable_string,
                "resolution": {"type": ["string", "null"], "enum": ["recovered", "by_hand", "expired", None]},
            },
            "required": ["id", "rule", "state", "title", "event", "opened_at"],
        },
        "AlertTrailEntry": {
            "type": "object",
            "properties": {
                "alert": {"type": "string"},
                "at": {"type": "number"},
                "action": {
                    "type": "string",
                    "description": "opened, recovered, reminded, escalated, acknowledged, resolved, expired, silenced, "
                    "retry_started, retried, retry_failed",
                },
                "by": {"type": "string"},
                "via": {"type": "string", "description": "rule, timer, api, ui, cli or link"},
                "detail": {"type": "string"},
                "event": {"type": ["integer", "null"]},
            },
            "required": ["alert", "at", "action", "by", "via"],
        },
        "Accepted": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["accepted", "duplicate"]},
                "event_id": {"type": "string"},
            },
            "required": ["status", "event_id"],
        },
        "LogsAccepted": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "const": "accepted"},
                "accepted": {"type": "integer"},
                "duplicates": {"type": "integer"},
            },
            "required": ["status", "accepted", "duplicates"],
        },
    }


def _edge_paths() -> dict[str, Any]:
    source = _param(
        "source",
        "path",
        "The source name (`uipath` by default).",
        {"type": "string", "examples": ["uipath"]},
        required=True,
    )
    return {
        "/webhooks/{source}": {
            "post": {
                "tags": ["edge"],
                "summary": "Receive an Orchestrator webhook",
                "description": (
                    "Verifies `X-UiPath-Signature` (Base64 HMAC-SHA256 of the raw body), checks the body is a "
                    "JSON object with a `Type`, stores it and answers. Matching and delivery happen afterwards."
                ),
                "security": [{"uipathSignature": []}, {}],
                "parameters": [source],
                "requestBody": {
                    "required": True,
                    "content": {
                        _JSON: {
                            "schema": {
                                "type": "object",
                                # The edge refuses a Type that is not a string with some text in it
                                # (`missing_type`); every other field is kept as sent.
                                "properties": {
                                    "Type": {"type": "string", "pattern": "\\S", "examples": ["job.faulted"]}
                                },
                                "required": ["Type"],
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json(_ref("Accepted"), "Stored (`accepted`), or already stored (`duplicate`)."),
                    "400": _error(
                        "Not JSON, not an object, a key twice (`duplicate_keys`), no `Type`, or an old `Timestamp` "
                        "(`stale_event`)."
                    ),
                    "401": _error("Missing, wrong or malformed signature."),
                    "404": _error("Unknown source."),
                    "408": _error(
                        "The request head or body did not arrive within RECEIVER_BODY_TIMEOUT_SECONDS "
                        "(`head_timeout`, `body_timeout`); the connection is closed."
                    ),
                    "413": _error("Body over RECEIVER_MAX_BODY_BYTES."),
                    "503": _error(
                        "The store cannot write (`store_unavailable`, Retry-After), or more requests are in progress "
                        "than RECEIVER_MAX_CONCURRENCY (`over_capacity`): retry."
                    ),
                },
            }
        },
        "/logs/{source}": {
            "post": {
                "tags": ["edge"],
                "summary": "Receive robot log entries",
                "description": 'One entry, an array, or `{"logs": [...]}`; each entry becomes a `robot.log` event.',
                "security": [{"bearer": []}],
                "parameters": [source],
                "requestBody": {
                    "required": True,
                    "content": {
                        _JSON: {
                            "schema": {
                                "anyOf": [
                                    _ref("LogEntry"),
                                    {"type": "array", "items": _ref("LogEntry")},
                                    {
                                        "type": "object",
                                        "properties": {"logs": {"type": "array", "items": _ref("LogEntry")}},
                                        "required": ["logs"],
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json(_ref("LogsAccepted"), "Stored."),
                    "400": _error("Not log entries, or an entry whose fields cannot be read (`invalid_logs`)."),
                    "401": _error("Missing or wrong bearer token."),
                    "404": _error("No robot-log token is configured for the source."),
                    "408": _error(
                        "The request head or body did not arrive within RECEIVER_BODY_TIMEOUT_SECONDS "
                        "(`head_timeout`, `body_timeout`); the connection is closed."
                    ),
                    "413": _error(
                        "Body over RECEIVER_MAX_BODY_BYTES (`body_too_large`), or more entries than "
                        "RECEIVER_LOGS_MAX_ENTRIES (`too_many_entries`): nothing of it is stored; send fewer at a time."
                    ),
                    "429": _error(
                        "The source is over its robot-log rate (RECEIVER_LOGS_RATE_PER_SECOND entries/s, bursts of "
                        "RECEIVER_LOGS_BURST; `rate_limited`): nothing of it is stored; retry after `Retry-After` s."
                    ),
                    "503": _error(
                        "The store cannot write (`store_unavailable`), or more requests are in progress than "
                        "RECEIVER_MAX_CONCURRENCY (`over_capacity`): retry."
                    ),
                },
            }
        },
    }


def _ops_paths() -> dict[str, Any]:
    plain = {"description": "The answer.", "content": {_JSON: {"schema": {"type": "object"}}}}
    return {
        "/healthz": {
            "get": {
                "tags": ["operations"],
                "summary": "The process is alive",
                "security": [],
                "responses": {"200": plain},
            }
        },
        "/readyz": {
            "get": {
                "tags": ["operations"],
                "summary": (
                    "The store answers and rules are loaded; `failing` names what is not ready. With the admin "
                    "token: the store's error and the last reload's problems too"
                ),
                "security": [],
                "responses": {"200": plain, "503": _json({"type": "object"}, "Not ready, with what fails.")},
            }
        },
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {"200": {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
            }
        },
        "/api/openapi.json": {
            "get": {
                "tags": ["operations"],
                "summary": "This document",
                "security": [],
                "responses": {"200": plain},
            }
        },
    }


def _alert_id() -> dict[str, Any]:
    return _param(
        "id", "path", "The alert id (hex text).", {"type": "string", "pattern": "^[0-9a-f]{1,64}$"}, required=True
    )


def _actor_body() -> dict[str, Any]:
    return {
        "required": False,
        "description": "Who acts (kept in the alert's trail); empty body: `api`.",
        "content": {
            _JSON: {
                "schema": {
                    "type": "object",
                    "properties": {"by": {"type": "string", "maxLength": 100}},
                    "additionalProperties": False,
                }
            }
        },
    }


def _admin_paths() -> dict[str, Any]:
    events = {"type": "array", "items": _ref("Event")}
    deliveries = {"type": "array", "items": _ref("Delivery")}
    page = {"type": ["integer", "null"], "description": "Pass as `before` for the next page; null on the last."}
    glob = {"type": "string", "description": "Any casing; `*` matches any text."}
    silences = {"type": "array", "items": _ref("Silence")}
    return {
        "/api/events": {
            "get": _admin(
                "Recent events and what became of them",
                {
                    "200": _json(
                        {"type": "object", "properties": {"events": events, "next_before": page}},
                        "Newest first.",
                    ),
                    "400": _error("A filter that cannot be read (`invalid_query`)."),
                },
                parameters=[
                    _param(
                        "type", "query", "Event types (repeat or comma-separate; `*` wildcard).", {"type": "string"}
                    ),
                    _param("process", "query", "Process name.", glob),
                    _param("robot", "query", "Robot name.", glob),
                    _param("source", "query", "Source name.", {"type": "string"}),
                    _param("state", "query", "Processing state.", {"enum": ["new", "processed", "unparsed", ""]}),
                    _param("since", "query", "Received at or after: Unix seconds, ISO 8601, or `2h` ago.", _TIME),
                    _param("until", "query", "Received before (same forms).", _TIME),
                    _param("explain", "query", "`1`: add why each rule did or did not match.", {"type": "string"}),
                    _LIMIT,
                    _BEFORE,
                ],
            )
        },
        "/api/events/{id}": {
            "get": _admin(
                "One event: body, deliveries with attempts, noise decisions, and why each rule did or did not match",
                {"200": _json(_ref("Event"), "The event."), "400": _error("Not an id.")},
                parameters=[_id("event")],
            )
        },
        "/api/deliveries": {
            "get": _admin(
                "Deliveries with their attempt counts and last errors",
                {
                    "200": _json(
                        {"type": "object", "properties": {"deliveries": deliveries, "next_before": page}},
                        "Newest first.",
                    ),
                    "400": _error("Unknown state, a bad id, or a `limit` that is not an integer."),
                },
                parameters=[
                    _param(
                        "state",
                        "query",
                        "`failing` = pending with at least one failed attempt.",
                        {"enum": ["pending", "failing", "sent", "dead", ""]},
                    ),
                    _param("channel", "query", "Channel name.", {"type": "string"}),
                    _param("rule", "query", "Rule name.", {"type": "string"}),
                    _param("event", "query", "Only the deliveries of this event (its `id`).", _or_empty(_ID)),
                    _LIMIT,
                    _BEFORE,
                ],
            )
        },
        "/api/deliveries/{id}": {
            "get": _admin(
                "One delivery with its message and attempt log",
                {"200": _json(_ref("Delivery"), "The delivery."), "400": _error("Not an id.")},
                parameters=[_id("delivery")],
            )
        },
        "/api/deliveries/{id}/retry": {
            "post": _admin(
                "Re-drive a failing or dead delivery now, with a fresh attempt budget",
                {"200": _json({"type": "object"}, "`retrying`."), "400": _error("Not an id.")},
                parameters=[_id("delivery")],
            )
        },
        "/api/deliveries/retry-dead": {
            "post": _admin("Re-drive every dead delivery", {"200": _json({"type": "object"}, "`retrying`, `count`.")})
        },
        "/api/silences": {
            "get": _admin(
                "Ad-hoc silences not ended yet (pending ones included), or every one with `all=1`",
                {
                    "200": _json({"type": "object", "properties": {"silences": silences}}, "Newest first."),
                    "400": _error("`limit` is not an integer (`invalid_query`)."),
                },
                parameters=[_param("all", "query", "`1`: expired ones too.", {"type": "string"}), _LIMIT],
            ),
            "post": _admin(
                "Create an ad-hoc silence",
                {
                    "201": _json({"type": "object", "properties": {"silence": _ref("Silence")}}, "Created."),
                    "400": _error("Unreadable matchers, no comment or creator, or a bad time range."),
                },
                requestBody={
                    "required": True,
                    "content": {
                        _JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "matchers": {
                                        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                                        "examples": ["process=Invoice* robot=BOT01"],
                                    },
                                    # Blank text is refused: the next person on call reads both.
                                    "comment": {"type": "string", "pattern": "\\S"},
                                    "created_by": {"type": "string", "pattern": "\\S"},
                                    "for": {
                                        "type": "string",
                                        "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*(ms|s|m|h|d|w)?\\s*$",
                                        "examples": ["2h"],
                                    },
                                    "starts_at": {"type": ["string", "number"]},
                                    "ends_at": {"type": ["string", "number"]},
                                },
                                "required": ["matchers", "comment", "created_by"],
                                # A duration or an end time, never both.
                                "oneOf": [{"required": ["for"]}, {"required": ["ends_at"]}],
                                "additionalProperties": False,
                            }
                        }
                    },
                },
            ),
        },
        "/api/silences/{id}": {
            "delete": _admin(
                "Expire an ad-hoc silence now",
                {
                    "200": _json({"type": "object", "properties": {"silence": _ref("Silence")}}, "Expired."),
                    "400": _error("Not an id."),
                },
                parameters=[_id("silence")],
            )
        },
        "/api/silences/{id}/expire": {
            "post": _admin(
                "Expire an ad-hoc silence now (the same as DELETE, for clients that only POST)",
                {
                    "200": _json({"type": "object", "properties": {"silence": _ref("Silence")}}, "Expired."),
                    "400": _error("Not an id."),
                },
                parameters=[_id("silence")],
            )
        },
        "/api/suppressions": {
            "get": _admin(
                "Noise decisions, newest first: suppressions only, or every decision with `all=1`",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"suppressions": {"type": "array", "items": _ref("LoggedDecision")}},
                        },
                        "Newest first.",
                    ),
                    "400": _error("`event` is not an id, or `limit` is not an integer."),
                },
                parameters=[
                    _param("event", "query", "Only decisions about this event (its `id`).", _or_empty(_ID)),
                    _param("all", "query", "`1`: every decision, not only suppressions.", {"type": "string"}),
                    _LIMIT,
                ],
            )
        },
        "/api/alerts": {
            "get": _admin(
                "Alerts: open ones first (oldest first), then resolved ones (latest first)",
                {
                    "200": _json(
                        {"type": "object", "properties": {"alerts": {"type": "array", "items": _ref("Alert")}}},
                        "Open first.",
                    ),
                    "400": _error("`state` or `limit` cannot be read (`invalid_query`)."),
                },
                parameters=[
                    _param("state", "query", "`open`: open alerts only.", {"enum": ["open", ""]}),
                    _LIMIT,
                ],
            )
        },
        "/api/alerts/{id}": {
            "get": _admin(
                "One alert and its trail: who did what, when, through what",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "alert": _ref("Alert"),
                                "trail": {"type": "array", "items": _ref("AlertTrailEntry")},
                            },
                        },
                        "The alert.",
                    ),
                    "404": _error("No such alert."),
                },
                parameters=[_alert_id()],
            )
        },
        "/api/alerts/{id}/ack": {
            "post": _admin(
                "Acknowledge a firing alert: its reminders and escalations stop",
                {
                    "200": _json({"type": "object", "properties": {"alert": _ref("Alert")}}, "Acknowledged."),
                    "404": _error("No such alert."),
                    "409": _error("The alert is not firing (already acknowledged or resolved)."),
                    "400": _error('A body that is not empty or `{"by": NAME}` (`invalid_json`).'),
                },
                parameters=[_alert_id()],
                requestBody=_actor_body(),
            )
        },
        "/api/alerts/{id}/resolve": {
            "post": _admin(
                "Resolve an open alert by hand",
                {
                    "200": _json({"type": "object", "properties": {"alert": _ref("Alert")}}, "Resolved."),
                    "404": _error("No such alert."),
                    "409": _error("The alert is resolved already."),
                    "400": _error('A body that is not empty or `{"by": NAME}` (`invalid_json`).'),
                },
                parameters=[_alert_id()],
                requestBody=_actor_body(),
            )
        },
        "/api/rules": {
            "get": _admin(
                "The rules in force, their channels (URLs masked) and the last reload's problems",
                {"200": _json({"type": "object"}, "The rule set.")},
            )
        },
        "/api/rules/reload": {
            "post": _admin(
                "Reload rules.yaml; on any problem the running rules stay",
                {
                    "200": _json({"type": "object"}, "`reloaded`."),
                    "422": _json(
                        {"allOf": [_ref("Error"), {"type": "object", "properties": {"problems": {"type": "array"}}}]},
                        "`invalid_rules` (`status`: `failed`) with every problem in `problems`.",
                    ),
                },
            )
        },
    }


@functools.cache
def _action_paths() -> dict[str, Any]:
    token = _param(
        "token",
        "path",
        "The signed token of the link: one alert, one action, an expiry.",
        {"type": "string"},
        required=True,
    )
    html = {"text/html": {"schema": {"type": "string"}}}
    refused = {
        "403": {"description": "An altered or malformed link: a page that says so.", "content": html},
        "404": {"description": "Links are off (no key), or the alert no longer exists.", "content": html},
        "410": {"description": "An expired link: a page that says so.", "content": html},
    }
    return {
        "/act/{token}": {
            "get": {
                "tags": ["actions"],
                "summary": "The confirmation page of an action link; changes nothing (links are prefetched)",
                "security": [],
                "parameters": [token],
                "responses": {
                    "200": {"description": "What the link would do, and its button.", "content": html},
                    **refused,
                },
            },
            "post": {
                "tags": ["actions"],
                "summary": "Do what the link names (acknowledge, silence for 1 h, retry the job), once",
                "security": [],
                "parameters": [token],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object", "properties": {"by": {"type": "string", "maxLength": 100}}}
                        }
                    },
                },
                "responses": {
                    "200": {"description": "Done (or nothing left to do), as a page.", "content": html},
                    "400": {"description": "No name given (and none from a trusted proxy).", "content": html},
                    "409": {"description": "The action could not be done (e.g. already retried).", "content": html},
                    **refused,
                },
            },
        }
    }


def _build() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "receiver",
            "version": __version__,
            "description": (
                "Turns UiPath Orchestrator webhooks and robot logs into alerts. Every error body is "
                '`{"error": CODE, "detail": MESSAGE}`. Times are Unix seconds (UTC).'
            ),
        },
        "tags": [
            {"name": "edge", "description": "What Orchestrator and robots call."},
            {"name": "admin", "description": "Bearer RECEIVER_ADMIN_TOKEN; off without one."},
            {"name": "operations", "description": "Health, metrics and this document: no token."},
            {"name": "actions", "description": "Signed action links of alert messages: HTML pages, no token."},
        ],
        "security": [{"bearer": []}],
        "paths": {**_edge_paths(), **_ops_paths(), **_admin_paths(), **_action_paths()},
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "uipathSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-UiPath-Signature",
                    "description": "Base64 HMAC-SHA256 of the raw body with the source's secret.",
                },
            },
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_build())
