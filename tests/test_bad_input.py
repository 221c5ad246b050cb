"""Bad input at the edge: every corpus file, any Content-Type (every field of every sample given a wrong
type: tests/system/test_bad_input_fields.py).

The process stays up and answers each with a clear 4xx, except a signed JSON object with a
``Type`` whose fields are wrong: that is accepted, kept whole and marked unparsed (Orchestrator
disables a webhook for an hour after a refusal, dropping everything in that hour).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support import DATA

from receiver.http.app import create_app
from receiver.settings import Settings
from receiver.signature import sign

SECRET = "bad-input-secret"
ADMIN = "bad-input-admin"
BAD = DATA / "bad"

EXPECTED = {
    "array.json": (400, "not_an_object"),
    "bom-prefixed.json": (202, None),
    "deep-nesting.json": (400, "invalid_json"),
    "duplicate-keys.json": (400, "duplicate_keys"),
    "duplicate-nested-keys.json": (400, "duplicate_keys"),
    "empty.json": (400, "invalid_json"),
    "invalid-utf8.json": (400, "invalid_json"),
    "nan.json": (202, None),
    "no-type.json": (400, "missing_type"),
    "null.json": (400, "not_an_object"),
    "scalar-number.json": (400, "not_an_object"),
    "scalar-string.json": (400, "not_an_object"),
    "truncated.json": (400, "invalid_json"),
    "type-number.json": (400, "missing_type"),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("bad")
    rules = tmp / "rules.yaml"
    rules.write_text('channels:\n  ops: "log://"\nrules:\n  - name: all\n    match: {type: "*"}\n    notify: [ops]\n')
    settings = Settings(
        rules=rules,
        database_url=f"sqlite:///{tmp / 'r.db'}",
        webhook_secret=SECRET,
        admin_token=ADMIN,
        watch_rules=False,
        poll_seconds=0.05,
        max_event_age_seconds=10**10,  # the samples are years old
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def post(client: TestClient, body: bytes, **headers: str) -> Any:
    return client.post("/webhooks/uipath", content=body, headers={"X-UiPath-Signature": sign(body, SECRET), **headers})


def test_corpus_is_complete() -> None:
    """Every file of the corpus has an expectation (and every expectation a file)."""
    assert set(EXPECTED) == {p.name for p in BAD.glob("*.json")}


@pytest.mark.parametrize(("name", "expected"), sorted(EXPECTED.items()), ids=sorted(EXPECTED))
def test_corpus_file(client: TestClient, name: str, expected: tuple[int, str | None]) -> None:
    """Each bad body gets its documented answer; refusals carry the JSON error shape."""
    reply = post(client, (BAD / name).read_bytes())
    status, code = expected
    assert status == reply.status_code, reply.text
    if code is not None:
        assert {"error": code} == {"error": reply.json()["error"]}
        assert reply.json()["detail"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=latin-1", "multipart/form-data"],
)
def test_content_type_does_not_matter(client: TestClient, content_type: str, tmp_path: Path) -> None:
    """Orchestrator documents no Content-Type: the signed bytes decide, whatever the header says."""
    body = json.dumps({"Type": "ping", "EventId": f"ct-{content_type}"}).encode()
    assert 202 == post(client, body, **{"Content-Type": content_type}).status_code


LONE_SURROGATE_RULES = """
redact: [email]
channels:
  ops: "log://"
rules:
  - name: all
    match: {type: "*"}
    notify: [ops]
    body: "{{ message }}"
"""


def test_a_lone_surrogate_is_stored_and_notified(tmp_path: Path) -> None:
    """JSON allows ``"\\ud83d"`` alone (what a cut through an emoji leaves, say UiPath's 10,000-character cut).

    A robot-log entry with one was a 500 (the entry was re-encoded as UTF-8, which cannot hold it)
    and a webhook with one, on a file with ``redact:``, was set aside as ``internal_error``:
    neither alert went out.
    """
    from support import RecordingNotifier, fresh, wait_until

    notifier = RecordingNotifier()
    sent = notifier.sent

    rules = tmp_path / "rules.yaml"
    rules.write_text(LONE_SURROGATE_RULES)
    settings = Settings(
        rules=rules,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret=SECRET,
        logs_token="logs",
        admin_token=ADMIN,
        watch_rules=False,
        poll_seconds=0.05,
    )
    webhook = fresh("job.faulted.json").replace(b'"Info": "', b'"Info": "webhook \\ud83d jo@example.com ')
    entry = b'{"Level": "Error", "ProcessName": "P", "Message": "log \\ud83d jo@example.com"}'
    with TestClient(create_app(settings, notifier=notifier), raise_server_exceptions=False) as client:
        assert b"\\ud83d" in webhook
        reply = post(client, webhook)
        assert 202 == reply.status_code, reply.text
        reply = client.post("/logs/uipath", content=entry, headers={"Authorization": "Bearer logs"})
        assert 202 == reply.status_code, reply.text
        assert wait_until(lambda: len(sent) == 2, timeout=10), [n.body for n in sent]
        events = client.get("/api/events", headers={"Authorization": f"Bearer {ADMIN}"}).json()["events"]
    assert {"processed"} == {e["state"] for e in events}, events
    bodies = sorted(n.body for n in sent)
    assert bodies[0].startswith("log \ufffd [redacted:email]"), bodies
    assert bodies[1].startswith("webhook \ufffd [redacted:email]"), bodies
