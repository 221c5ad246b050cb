"""Noise state as users' stores hold it: rows written before the stages were split still load and act alike.

``WRITTEN`` is the state, byte for byte as the inbox worker stores it (``json.dumps`` with the
worker's separators), that the engine wrote for each scenario before it was split into stages
(generated with the code of that time). The tests check that the engine still writes exactly
those bytes, that each stage's typed payload reads them and writes them back unchanged, and that
an engine handed those stored rows carries on from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from noise_support import payload

from receiver.admin import audit
from receiver.events import parse_event
from receiver.noise import Row, StateView
from receiver.noise.simulate import Entry, Simulation
from receiver.rules import RuleSet, load_rules
from receiver.store import EventRow

T = 1_767_000_000.0
HEAD = 'channels:\n  ops: "log://"\n'

SCENARIOS: dict[str, tuple[str, list[tuple[float, str, dict[str, Any]]]]] = {
    "throttle": (
        """
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    throttle: {interval: 10m, key: "{{ process }}"}
""",
        [(0, "job.faulted.json", {}), (60, "job.faulted.json", {}), (120, "job.faulted.json", {})],
    ),
    "frequency": (
        """
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    frequency: {count: 3, within: 10m, key: "{{ process }}"}
""",
        [(0, "job.faulted.json", {}), (60, "job.faulted.json", {})],
    ),
    "group": (
        """
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    group: {by: [process], wait: 30s, interval: 5m}
""",
        [
            (0, "job.faulted.json", {}),
            (10, "job.faulted.json", {"Job__Robot__Name": "FIN-UNATT-02"}),
            (400, "job.faulted.json", {}),
        ],
    ),
    "firing": (
        """
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    recover: {match: {type: job.completed}, key: "{{ process }}"}
""",
        [(0, "job.faulted.json", {}), (60, "job.faulted.json", {})],
    ),
    "collapse": (
        """
collapse: {window: 30s}
rules:
  - name: queue-failures
    match: {type: queueItem.transactionFailed}
    notify: [ops]
""",
        [(0, "queueItem.transactionFailed.json", {})],
    ),
    "absence-inhibit": (
        """
inhibit:
  - name: down-mutes-faults
    source_rule: robot-down
    target: {type: job.faulted}
    equal: [machine]
rules:
  - name: robot-down
    match: {type: robot.status, robot_down: true}
    notify: [ops]
    absence: {expect: {type: robot.status, robot_down: false}, within: 5m}
    recover: true
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
""",
        [(0, "robot.status.json", {}), (400, "job.faulted.json", {})],
    ),
    "followed": (
        """
rules:
  - name: robot-down
    match: {type: robot.status, robot_down: true}
    notify: [ops]
    absence: {expect: {type: robot.status, robot_down: false}, within: 5m}
""",
        [(0, "events/robot.status.available.json", {})],
    ),
}


def _ruleset(tmp_path: Path, name: str) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + SCENARIOS[name][0])
    return load_rules(path, environ={})


def _stored(row: Row) -> list[Any]:
    """A row as the store keeps it: the data as the inbox worker writes it."""
    return [*row.ref, json.dumps(row.data, separators=(",", ":"), ensure_ascii=False), row.due_at, row.expires_at]


def play(ruleset: RuleSet, steps: list[tuple[float, str, dict[str, Any]]]) -> list[list[list[Any]]]:
    """The rows after each step (timers due by then fire first), in the stored form, times relative to T."""
    sim = Simulation(ruleset, render_held=False)
    written: list[list[list[Any]]] = []
    for offset, fixture, patch in steps:
        raw = payload(fixture, **patch)
        sim.feed(parse_event(raw), "uipath", T + offset)
        written.append([_relative(_stored(row)) for row in sorted(sim.view.rows(), key=lambda r: r.ref)])
    return written


def _relative(stored: list[Any]) -> list[Any]:
    kind, name, key, data, due_at, expires_at = stored
    return [
        kind,
        name,
        key,
        data,
        None if due_at is None else due_at - T,
        None if expires_at is None else expires_at - T,
    ]


WRITTEN_FILE = Path(__file__).parent / "data" / "state" / "noise_state_v1.json"  # apart from the glob-ed samples
WRITTEN: dict[str, list[list[list[Any]]]] = json.loads(WRITTEN_FILE.read_text()) if WRITTEN_FILE.exists() else {}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_engine_writes_the_bytes_it_wrote_before(tmp_path: Path, name: str) -> None:
    """Each scenario leaves the same stored rows, byte for byte, as before the engine was split into stages."""
    assert WRITTEN[name] == play(_ruleset(tmp_path, name), SCENARIOS[name][1])


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_stage_reads_the_stored_rows_and_writes_them_back_unchanged(name: str) -> None:
    """The typed payload of every kind round-trips the stored JSON of before, byte for byte."""
    # Imported here: the module runs on the code before the stages to regenerate WRITTEN.
    from receiver.noise import absence, collapse, frequency, group, inhibit, recovery, throttle

    loaders: dict[str, Any] = {
        "throttle": throttle.ThrottleState.from_data,
        "frequency": frequency.FrequencyState.from_data,
        "group": group.GroupState.from_data,
        "firing": recovery.FiringState.from_data,
        "collapse": collapse.CollapseState.from_data,
        "inhibit": inhibit.InhibitState.from_data,
        "absence": absence.load,
    }
    for kind, _, _, data, _, _ in (row for step in WRITTEN[name] for row in step):
        state = loaders[kind](json.loads(data))
        assert data == json.dumps(state.to_data(), separators=(",", ":"), ensure_ascii=False)


def _resume(tmp_path: Path, name: str) -> Simulation:
    """A simulation whose state is the rows stored after the scenario's last step (as a restarted worker loads them)."""
    sim = Simulation(_ruleset(tmp_path, name), render_held=False)
    sim.view = StateView(
        Row(
            kind,
            rule,
            key,
            json.loads(data),
            None if due is None else T + due,
            None if expires is None else T + expires,
        )
        for kind, rule, key, data, due, expires in WRITTEN[name][-1]
    )
    sim._next_id = 100  # the stored rows name events 1 to 3
    return sim


def _feed(sim: Simulation, offset: float, fixture: str, **patch: Any) -> Entry:
    return sim.feed(parse_event(payload(fixture, **patch)), "uipath", T + offset)


def test_a_stored_throttle_window_holds_back_and_then_counts_what_it_held(tmp_path: Path) -> None:
    """A window stored with two held notifications holds the next one, and the first after it tells of three."""
    sim = _resume(tmp_path, "throttle")
    assert ["throttled"] == [d.action for d in _feed(sim, 300, "job.faulted.json").result.decisions]
    after = _feed(sim, 700, "job.faulted.json")
    [sent] = after.result.emitted
    assert "3 more notification(s) of rule faults for key InvoiceProcessing were held back" in sent.notification.body


def test_a_stored_frequency_window_notifies_at_its_third_match(tmp_path: Path) -> None:
    """Two stored matches and one new within the window reach the count."""
    sim = _resume(tmp_path, "frequency")
    [sent] = _feed(sim, 120, "job.faulted.json").result.emitted
    assert "3 matching events within 10m" in sent.notification.body


def test_a_stored_group_sends_its_digest_when_due(tmp_path: Path) -> None:
    """A stored pending group (one event) sends that event's own message at its due time."""
    sim = _resume(tmp_path, "group")
    [timer] = sim.run_until(T + 3600)
    assert ["flushed"] == [d.action for d in timer.result.decisions]
    [sent] = timer.result.emitted
    assert "Job faulted: InvoiceProcessing on FIN-UNATT-01" == sent.notification.title
    assert 3 == timer.inbox_id  # the group's first event, as stored


def test_a_stored_alert_recovers_once_with_its_count(tmp_path: Path) -> None:
    """A stored alert flag (two alerts) gives one recovery message that counts them."""
    sim = _resume(tmp_path, "firing")
    [sent] = _feed(sim, 600, "job.completed.json").result.emitted
    assert "faults:recovered" == sent.rule
    assert "2 times" in sent.notification.body
    assert [] == _feed(sim, 700, "job.completed.json").result.emitted


def test_a_stored_collapse_window_collapses_a_copy(tmp_path: Path) -> None:
    """A copy of the stored first event within the window is collapsed into it."""
    sim = _resume(tmp_path, "collapse")
    copy = _feed(sim, 5, "queueItem.transactionFailed.json", OrganizationUnitId=7)
    assert ["collapsed"] == [d.action for d in copy.result.decisions]
    assert "collapsed into event #1" in copy.result.decisions[0].reason


def test_a_stored_inhibition_mutes_and_tells_how_many_when_cleared(tmp_path: Path) -> None:
    """A stored inhibition (one muted) mutes the next fault; the recovery says two were muted."""
    sim = _resume(tmp_path, "absence-inhibit")
    assert ["inhibited"] == [d.action for d in _feed(sim, 500, "job.faulted.json").result.decisions]
    back = _feed(sim, 900, "events/robot.status.available.json")
    [sent] = back.result.emitted
    assert "While it lasted, 2 event(s) for machine=RPAVM01 were muted" in sent.notification.body


def test_a_stored_armed_timer_fires_about_its_event(tmp_path: Path) -> None:
    """An absence timer stored armed notifies about the event that armed it when it runs out."""
    sim = Simulation(_ruleset(tmp_path, "absence-inhibit"), render_held=False)
    [[kind, rule, key, data, due_at, _]] = WRITTEN["absence-inhibit"][0]
    stored = json.loads(data)
    stored["body"] = json.dumps(payload("robot.status.json"))  # the simulation keeps no body; a worker does
    sim.view = StateView([Row(kind, rule, key, stored, T + due_at, None)])
    [timer] = sim.run_until(T + 300)
    assert ["fired", "inhibiting", "notified"] == [d.action for d in timer.result.decisions]
    assert 1 == timer.inbox_id
    [sent] = timer.result.emitted
    assert "No event where" in sent.notification.body


def test_a_stored_follow_up_keeps_an_older_start_from_arming(tmp_path: Path) -> None:
    """A follow-up stored before its start (out of order) stops the older start from arming."""
    sim = _resume(tmp_path, "followed")
    late = _feed(sim, 10, "robot.status.json", Timestamp="2019-03-14T00:00:00Z")
    assert ["not_armed"] == [d.action for d in late.result.decisions]


def test_an_outcome_stored_before_shows_its_decisions_in_the_one_form() -> None:
    """An event outcome written before (``inbox_id``, null fields left out) reads as today's decisions."""
    old = {
        "parsed": True,
        "matched": ["faults"],
        "deliveries": 0,
        "unknown_type": False,
        "noise": [
            {
                "action": "throttled",
                "rule": "faults",
                "key": "InvoiceProcessing",
                "reason": "throttled by rule 'faults' for key 'InvoiceProcessing': 1 held back until ...",
                "suppressed": True,
                "inbox_id": 7,
                "at": T,
            }
        ],
    }
    row = EventRow(7, "uipath", "e7", "job.faulted", b"{}", T, None, "processed", T + 1, json.dumps(old))
    shown = audit.event_json(row)
    assert "suppressed" == shown["result"]
    assert (
        [
            {
                "action": "throttled",
                "rule": "faults",
                "key": "InvoiceProcessing",
                "reason": old["noise"][0]["reason"],
                "suppressed": True,
                "event": 7,
                "at": T,
                "due_at": None,
            }
        ]
        == shown["decisions"]
        == shown["outcome"]["noise"]
    )


if __name__ == "__main__":  # regenerate WRITTEN (only ever from the code whose format it pins)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = {name: play(_ruleset(Path(tmp), name), steps) for name, (_, steps) in SCENARIOS.items()}
    WRITTEN_FILE.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
