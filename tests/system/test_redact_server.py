"""Redaction and links with a real `receiver serve`: the channel gets the redacted message, the store the original."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from support import ServerProcess, Sink, fresh

pytestmark = pytest.mark.slow

SECRET = "redact-secret"
INFO = "Mail to jane.doe@example.com bounced; refund to DE89 3704 0044 0532 0130 00 failed."


def test_the_channel_gets_a_redacted_message_with_a_link(tmp_path: Path, sink: Sink) -> None:
    """An address and an IBAN in Job.Info arrive redacted, beside the folder's Jobs link; the inbox keeps them."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"""
orchestrator_url: "https://cloud.uipath.com/acme/prod/orchestrator_"
redact: [email, iban, card]
channels:
  hook: "{sink.url()}"
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: [hook]
"""
    )
    database = tmp_path / "r.db"
    server = ServerProcess(rules=rules, database=database, env={"RECEIVER_WEBHOOK_SECRET": SECRET})
    raw = json.loads(fresh("job.faulted.json", EventId="redact-1"))
    raw["Job"]["Info"] = INFO
    server.start()
    try:
        assert 202 == server.post_signed(json.dumps(raw).encode(), SECRET)[0]
        (received,) = sink.wait_for(1, timeout=30)
    finally:
        server.stop()
    message = received["message"]
    assert "Mail to [redacted:email] bounced; refund to [redacted:iban] failed." in message
    assert "jane.doe@example.com" not in json.dumps(received)
    assert "DE89 3704" not in json.dumps(received)
    link = "https://cloud.uipath.com/acme/prod/orchestrator_/jobs?fid=1&tid=1"
    assert f"Open in Orchestrator: {link} (job 0f3c9a7e-2d41-4b8e-9c55-7a1e6d2b4f10)" in message
    with sqlite3.connect(database) as conn:
        (body,) = conn.execute("SELECT body FROM inbox WHERE event_id = 'redact-1'").fetchone()
    assert INFO == json.loads(body)["Job"]["Info"]
