"""Every field of every sample given a wrong type, through the whole pipeline: accepted, stored, never lost.

About 3,000 signed webhooks through the in-process app of tests/test_bad_input.py: seconds of CPU,
so it runs with the system tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from support import DATA
from test_bad_input import ADMIN, post
from test_bad_input import client as client  # the module-wide app (a fixture)


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaf_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _leaf_paths(child, (*path, index))
    else:
        yield path


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copy


WRONG = [{"unexpected": [1, 2]}, [None], 10**100, True, "🙂" * 3]

SAMPLES = sorted(p.name for p in DATA.glob("*.json") if not p.name.startswith("robot-log"))


@pytest.mark.parametrize("name", SAMPLES)
def test_every_field_with_a_wrong_type_is_kept(client: TestClient, name: str) -> None:
    """Every leaf of a sample replaced by each wrong type: accepted and stored, never a 5xx, never lost."""
    sample = json.loads((DATA / name).read_text())
    sent: list[str] = []
    for number, path in enumerate(p for p in _leaf_paths(sample) if p not in {("Type",)}):
        for variant, wrong in enumerate(WRONG):
            event_id = f"{name}-{number}-{variant}"
            body = _replace(_replace(sample, path, wrong), ("EventId",), event_id)
            reply = post(client, json.dumps(body).encode())
            assert 202 == reply.status_code, (path, wrong, reply.text)
            sent.append(reply.json()["event_id"])
    assert len(set(sent)) == len(sent)
    deadline = time.monotonic() + 30
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        events = client.get("/api/events?limit=1000", headers={"Authorization": f"Bearer {ADMIN}"}).json()["events"]
        states = {e["event_id"]: e["state"] for e in events if e["event_id"] in set(sent)}
        if len(states) == len(sent) and "new" not in states.values():
            break
        time.sleep(0.1)
    assert set(sent) == set(states)
    assert {"processed", "unparsed"} >= set(states.values())
