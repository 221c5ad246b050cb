"""Logging of a real ``receiver serve``: uvicorn's lines and ours in one JSON stream, without secrets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support import ServerProcess, Sink, free_port, fresh, wait_until

CANARY_SECRET = "CanarySecret-7f3a9Q"
CANARY_ADMIN = "CanaryAdmin-2b8eW"
CANARY_URL_PASSWORD = "CanaryUrlPass-9d4eX"
CANARY_URL_TOKEN = "CanaryUrlTok-3e6fY"
CANARIES = (CANARY_SECRET, CANARY_ADMIN, CANARY_URL_PASSWORD, CANARY_URL_TOKEN)

RULES = """
channels:
  sink:
    url: "json://receiver:{password}@127.0.0.1:{sink_port}/hook?token={token}"
  broken:
    url: "json://receiver:{password}@127.0.0.1:{closed_port}/hook?token={token}"
    max_attempts: 1
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: [sink, broken]
"""


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text``, each of which must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_real_server_writes_one_json_stream(tmp_path: Path, sink: Sink) -> None:
    """A real ``receiver serve``: uvicorn's lines and ours are JSON lines of one stream, without secrets."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        RULES.format(password=CANARY_URL_PASSWORD, token=CANARY_URL_TOKEN, sink_port=sink.port, closed_port=free_port())
    )
    server = ServerProcess(
        rules=rules,
        database=tmp_path / "receiver.db",
        env={"RECEIVER_WEBHOOK_SECRET": CANARY_SECRET, "RECEIVER_ADMIN_TOKEN": CANARY_ADMIN},
    ).start()
    try:
        assert 202 == server.post_signed(fresh("job.faulted.json"), CANARY_SECRET)[0]
        assert wait_until(lambda: len(sink.received) >= 1)
    finally:
        server.stop()
    lines = json_lines(server.log())
    assert any(line.get("logger", "").startswith("uvicorn") for line in lines)
    assert {"receiver_started", "webhook_received", "event_processed", "notification_sent"} <= {
        line["event"] for line in lines
    }
    for canary in CANARIES:
        assert canary not in server.log()
