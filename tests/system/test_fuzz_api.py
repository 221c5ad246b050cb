"""Schemathesis against /api/openapi.json, in-process: no 5xx, and every answer is one the document describes.

The application is driven through schemathesis' ASGI transport, with a real SQLite store and
the workers running, so an accepted webhook is also parsed, matched and delivered (to ``log://``)
while the fuzzing goes on. Hypothesis is derandomized, so a run generates the same cases every
time and a failure reproduces with the same command.

Credentials are chosen per case from a hash of what was generated (deterministic as well): most
cases carry the right ones, so they get past 401 to the code behind it, and some carry none.
Webhook bodies are signed over the exact bytes sent, through a ``requests`` auth hook.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance, unsupported_method
from schemathesis.core.parameters import ParameterLocation
from starlette.applications import Starlette

from receiver.http.app import create_app
from receiver.http.openapi import document
from receiver.settings import Settings
from receiver.signature import sign

SECRET = "fuzz-webhook-secret"
ADMIN = "fuzz-admin-token"
LOGS = "fuzz-logs-token"

RULES = """
channels:
  ops: "log://"
rules:
  - name: faults
    match: {type: "job.*"}
    notify: [ops]
  - name: robot-errors
    match: {type: robot.log, level: {gte: Error}}
    notify: [ops]
"""

# Cases per operation: enough for CI in about 15 s. A deeper run, same cases first then more:
#   RECEIVER_FUZZ_EXAMPLES=1000 .venv/bin/python -m pytest tests/system/test_fuzz_api.py
MAX_EXAMPLES = int(os.environ.get("RECEIVER_FUZZ_EXAMPLES", "100"))

# Checks left out, each for a reason that is not a bug in the document or the API:
EXCLUDED_EVERYWHERE = [
    # "Return 405 for a method the document does not list" does not hold for the action routes
    # under a collection: GET /api/deliveries/retry-dead is read as GET /api/deliveries/{id} with
    # the id "retry-dead", and answered 400 invalid_id. Both answers are clear; the 405 itself (with
    # its Allow header) is checked by test_405_names_the_allowed_methods.
    unsupported_method,
]
EXCLUDED_PER_OPERATION = {
    # Schema-valid silences can still be refused, with a documented 400: matchers are a small
    # language (FIELD=VALUE, regexes that must compile) and the end must lie in the future,
    # neither of which JSON Schema can say.
    "POST /api/silences": [positive_data_acceptance],
    # Log entry fields are read with pydantic's lax rules (a TimeStamp must be a date Python can
    # hold, "12" reads as an id, true as 1): the document names each field's types, the year
    # range and the rest of the coercion table it cannot, so a schema-valid entry may get the
    # documented 400 `invalid_logs`. 5xx and undocumented answers are still checked.
    "POST /logs/{source}": [positive_data_acceptance],
}

SENT: Counter[str] = Counter()
"""Cases sent per operation, and (``… 2xx``) how many of them got past authentication to a 2xx."""


class _SignBody(requests.auth.AuthBase):
    """Sign the prepared request's final bytes, which are what the server verifies."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        request.headers["X-UiPath-Signature"] = sign(body if isinstance(body, bytes) else body.encode(), SECRET)
        return request


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    tmp = tmp_path_factory.mktemp("fuzz")
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    settings = Settings(
        rules=rules,
        database_url=f"sqlite:///{tmp / 'r.db'}",
        webhook_secret=SECRET,
        admin_token=ADMIN,
        logs_token=LOGS,
        watch_rules=False,
        poll_seconds=0.05,
        retry_initial_seconds=0.05,
        auth_failures_per_minute=1_000_000,  # the cases without credentials must not lock out the rest
    )
    return create_app(settings)


# The document is loaded at import, from the module that serves it; the application is bound per
# case below. (schemathesis.pytest.from_fixture, which would load it from a fixture, fails on
# pytest 9: "'Function' object has no attribute '_nodeid'".) test_served_without_token in
# test_api_openapi.py checks that GET /api/openapi.json serves exactly this document.
schema = schemathesis.openapi.from_dict(document())


def _choice(case: Any) -> int:
    """0-7, the same for the same case in every run (Python's hash() is salted per process).

    The count of cases already sent to the operation is mixed in: an operation without parameters
    gets the same generated case every time, and should still see both branches.
    """
    generated = repr((case.path_parameters, case.query, case.body)).encode()
    return (zlib.crc32(generated) + SENT[case.operation.label]) % 8


def _credentials(case: Any) -> dict[str, Any]:
    """The transport arguments of one case: the right credential for its route, or (1 in 8) none at all.

    No bearer token where schemathesis broke or left out ``Authorization`` on purpose (a negative
    case, or the coverage phase's "missing header" case): it expects a 401 there, and the right
    token would turn that case into a false alarm.
    """
    choice = _choice(case)
    if choice == 0:
        return {}
    if case.path.startswith("/webhooks/"):
        return {"auth": _SignBody()}
    meta = case.meta
    if meta is not None and (
        meta.is_negative_at(ParameterLocation.HEADER) or getattr(meta.phase.data, "parameter", None) == "Authorization"
    ):
        return {}
    if case.path.startswith("/logs/"):
        return {"headers": {"Authorization": f"Bearer {LOGS}"}}
    if case.path.startswith("/api/") and case.path != "/api/openapi.json":
        return {"headers": {"Authorization": f"Bearer {ADMIN}"}}
    return {}


@pytest.mark.timeout(int(os.environ.get("RECEIVER_FUZZ_TIMEOUT", "90")))
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    # Each case is a real request with a store behind it: slower than Hypothesis expects of a unit.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_document(case: Any, app: Starlette) -> None:
    """No generated request gets a 5xx, and each answer's status, content type and body are documented."""
    # Bound on the operation and its schema both: the checks that re-send a request without
    # credentials (ignored_auth) send it through the schema's transport, which must be ASGI too.
    case.operation.app = case.operation.schema.app = app
    label = case.operation.label
    if case.path.endswith("{source}") and _choice(case) != 1:
        # A random source name is a 404; most cases name the configured one to reach the checks behind.
        case.path_parameters = {**(case.path_parameters or {}), "source": "uipath"}
    response = case.call_and_validate(
        excluded_checks=EXCLUDED_EVERYWHERE + EXCLUDED_PER_OPERATION.get(label, []), **_credentials(case)
    )
    SENT[label] += 1
    if 200 <= response.status_code < 300:
        SENT[f"{label} 2xx"] += 1


def test_every_route_was_fuzzed_past_authentication() -> None:
    """The run above reached every operation, and the webhook, log and admin routes answered 2xx to some cases.

    Without this, a fuzz run that only ever met 401 (a signature computed over the wrong bytes,
    a token in the wrong header) would pass while testing nothing behind the door.
    """
    if not SENT:
        pytest.skip("runs after test_api_conforms_to_its_document (run the whole module)")
    routes = {label for label in SENT if not label.endswith(" 2xx")}
    assert 25 == len(routes), sorted(routes)
    for label in (
        "POST /webhooks/{source}",
        "POST /logs/{source}",
        "GET /api/events",
        "GET /api/rules",
        "POST /api/silences",
        "POST /api/rules/reload",
        "GET /api/alerts",
    ):
        assert SENT[f"{label} 2xx"] > 0, f"no case of {label} got past authentication and validation"


def test_405_names_the_allowed_methods(app: Starlette) -> None:
    """RFC 9110: a 405 answer carries `Allow` with the methods the route supports."""
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        reply = client.put("/webhooks/uipath")
    assert 405 == reply.status_code
    assert "POST" in reply.headers.get("allow", "")
