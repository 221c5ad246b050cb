"""The rules page's message previews: built-in samples, the sample each rule gets, one message per channel."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.admin.preview import SAMPLES, preview_rules
from receiver.events import UnknownEvent, parse_event
from receiver.rules import load_rules

RULES = """
timezone: UTC
channels:
  slack: "slack://T000/B000/XXXX/#ops"
  mail: "mailtos://user:pass@example.com?to=ops@example.com"
rules:
  - name: queue-failures
    match: {type: queueItem.transactionFailed}
    format: html
    title: "Failed: {{ event.queue_item.reference }}"
    notify: [slack, mail]
  - name: robots
    match: {type: robot.status}
    format: markdown
    notify: [slack]
  - name: logs
    match: {type: robot.log}
    notify: [mail]
  - name: special-folder
    match: {folder: 4242}
    notify: [mail]
  - name: swallow
    notify: []
"""


@pytest.mark.parametrize("raw", [pytest.param(raw, id=str(raw["Type"])) for raw in SAMPLES])
def test_every_sample_is_a_known_event(raw: dict[str, object]) -> None:
    """The built-in samples parse as their own type, not as an unknown one."""
    event = parse_event(dict(raw))
    assert raw["Type"] == event.type
    assert not isinstance(event, UnknownEvent)


def test_each_rule_gets_a_matching_sample_rendered_per_channel(tmp_path: Path) -> None:
    """The first sample each rule's match accepts, rendered in the rule's format for each of its channels."""
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    previews = {p.rule: p for p in preview_rules(load_rules(path, environ={}))}
    queue = previews["queue-failures"]
    assert ("queueItem.transactionFailed", True, None) == (queue.event_type, queue.matched, queue.error)
    assert [("slack", "html"), ("mail", "html")] == [(c.channel, c.body_format) for c in queue.channels]
    assert "Failed: INV-10445" == queue.channels[0].title
    assert "Vendor is blocked for posting" in queue.channels[0].body
    assert ("robot.status", "markdown") == (previews["robots"].event_type, previews["robots"].channels[0].body_format)
    assert ("robot.log", True) == (previews["logs"].event_type, previews["logs"].matched)
    assert "SAP login failed" in previews["logs"].channels[0].body
    special = previews["special-folder"]
    assert ("job.faulted", False) == (special.event_type, special.matched)  # no sample is in folder 4242
    assert 1 == len(special.channels)
    assert [] == previews["swallow"].channels
