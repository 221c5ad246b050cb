"""``orchestrator.heartbeat`` in rules.yaml, and the outage logic of one source's webhook path."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.errors import RulesError
from receiver.orchestrator.path import PathState
from receiver.rules import Heartbeat, load_rules

RULES = """
channels:
  ops: "json://127.0.0.1:1/hook"
sources:
  uipath:
    secrets: [s]
    orchestrator:
      url: https://cloud.uipath.com/acme/DefaultTenant/orchestrator_
      client_id: app
      client_secret: app-secret
      public_url: https://receiver.example.com/webhooks/uipath
      heartbeat: HEARTBEAT
rules:
  - name: faults
    match: {type: job.faulted}
    notify: ops
"""


def _load(tmp_path: Path, heartbeat: str) -> Heartbeat | None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.replace("HEARTBEAT", heartbeat))
    link = load_rules(path, environ={}).sources["uipath"].orchestrator
    assert link is not None
    return link.heartbeat


def test_heartbeat_is_read_with_sub_minute_durations(tmp_path: Path) -> None:
    beat = _load(tmp_path, "{every: 2s, within: 500ms, notify: [ops], auto_enable: true}")
    assert beat == Heartbeat(every=2.0, within=0.5, notify=("ops",), auto_enable=True, health_every=300.0)


@pytest.mark.parametrize(
    ("heartbeat", "message"),
    [
        ("{every: 5m, notify: [pager]}", "orchestrator.heartbeat: unknown channel 'pager'"),
        ("{every: 1m, within: 2m, notify: [ops]}", "within must not be longer than every"),
        ("{every: 5m}", "notify"),
        ("{every: 5m, notify: [ops], evry: 1m}", "evry"),
    ],
)
def test_a_wrong_heartbeat_is_refused_with_its_reason(tmp_path: Path, heartbeat: str, message: str) -> None:
    with pytest.raises(RulesError) as caught:
        _load(tmp_path, heartbeat)
    assert message in str(caught.value)


def test_one_alert_per_outage_and_one_restored_message_naming_the_time_down() -> None:
    state = PathState("uipath", "https://orch/acme/t/orchestrator_", "https://r/webhooks/uipath")
    assert state.succeeded(asked_at=0.0, now=1.0, roundtrip=0.2, matched_by="event_id") is None
    down = state.failed("nothing_arrived", asked_at=100.0, now=160.0, within=60.0)
    assert down is not None
    assert down.kind == "down"
    assert "suspended" in down.body
    assert state.failed("nothing_arrived", asked_at=400.0, now=460.0, within=60.0) is None
    restored = state.succeeded(asked_at=700.0, now=730.0, roundtrip=0.3, matched_by="time")
    assert restored is not None
    assert "down for 10 min 30 s" in restored.body
    assert state.succeeded(asked_at=1000.0, now=1001.0, roundtrip=0.3, matched_by="time") is None


def test_an_api_that_fails_once_is_no_outage_yet() -> None:
    state = PathState("uipath", "https://orch", "https://r/webhooks/uipath")
    assert state.failed("api_unavailable", asked_at=0.0, now=1.0, threshold=2, detail="timed out") is None
    alert = state.failed("api_unavailable", asked_at=300.0, now=301.0, threshold=2, detail="timed out")
    assert alert is not None
    assert "did not answer: timed out" in alert.body
