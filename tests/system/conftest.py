"""Every test under tests/system starts real processes (servers, browsers, databases): all are ``slow``.

``pytest -m "not slow"`` runs the unit tests alone; the root conftest refuses a process started by
a test outside this folder, so the marker cannot drift from the truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Sink

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the items collected from this folder ``slow`` (the hook sees every item of the session)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A loopback HTTP endpoint that records what the receiver sends it (a module may define its own)."""
    server = Sink().start()
    yield server
    server.stop()
