"""A Kubernetes ConfigMap update of rules.yaml reaches the running app (deploy/kubernetes/, docs/deploy.md).

The kubelet mounts a ConfigMap as a directory in which ``rules.yaml -> ..data/rules.yaml`` and
``..data -> ..<timestamp>``; an update writes a new timestamped directory, points a temporary
symlink at it, renames that over ``..data`` (the one atomic step) and removes the old directory.
The files the app opened never change in place: only the symlink does.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support import wait_until

from receiver.http import app as app_module
from receiver.http.app import create_app
from receiver.pipeline.rulewatch import watch_rules
from receiver.settings import Settings

ADMIN = "cm-admin"

ONE_RULE = """
channels:
  ops: "log://"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
"""

TWO_RULES = (
    ONE_RULE
    + """
  - name: stopped
    match: {type: job.stopped}
    notify: [ops]
"""
)


class ConfigMapVolume:
    """A directory laid out and updated as the kubelet's atomic writer does it."""

    def __init__(self, root: Path, content: str) -> None:
        self.root = root
        self.generation = 0
        self.root.mkdir()
        self._write(content)
        (self.root / "rules.yaml").symlink_to("..data/rules.yaml")

    def _write(self, content: str) -> None:
        self.generation += 1
        stamped = f"..2026_12_06_06_00_{self.generation:02d}.{self.generation:09d}"
        (self.root / stamped).mkdir()
        (self.root / stamped / "rules.yaml").write_text(content)
        old = os.readlink(self.root / "..data") if (self.root / "..data").is_symlink() else None
        (self.root / "..data_tmp").symlink_to(stamped)
        os.replace(self.root / "..data_tmp", self.root / "..data")
        if old is not None:
            shutil.rmtree(self.root / old)

    def update(self, content: str) -> None:
        self._write(content)

    @property
    def path(self) -> Path:
        return self.root / "rules.yaml"


@pytest.fixture
def volume(tmp_path: Path) -> ConfigMapVolume:
    return ConfigMapVolume(tmp_path / "config", ONE_RULE)


@pytest.fixture
def client(tmp_path: Path, volume: ConfigMapVolume, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    # The app's watcher looks every 50 ms rather than every 500: each update is seen in a tenth of the time.
    monkeypatch.setattr(app_module, "watch_rules", functools.partial(watch_rules, poll=0.05))
    settings = Settings(
        rules=volume.path,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        webhook_secret="cm-secret",
        admin_token=ADMIN,
        watch_rules=True,
        poll_seconds=0.05,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def readiness(client: TestClient) -> dict[str, Any]:
    """What /readyz tells the admin about the rules in force."""
    return dict(client.get("/readyz", headers={"Authorization": f"Bearer {ADMIN}"}).json()["rules"])


def rules_loaded(client: TestClient) -> int:
    return int(readiness(client)["loaded"])


def test_a_configmap_update_is_loaded_by_the_running_app(client: TestClient, volume: ConfigMapVolume) -> None:
    """The ..data swap is seen and the new rules are in force; a second update (back to one rule) too."""
    assert 1 == rules_loaded(client)
    volume.update(TWO_RULES)
    assert wait_until(lambda: rules_loaded(client) == 2, timeout=10), readiness(client)
    volume.update(ONE_RULE)
    assert wait_until(lambda: rules_loaded(client) == 1, timeout=10), readiness(client)


def test_a_broken_configmap_keeps_the_rules_in_force(client: TestClient, volume: ConfigMapVolume) -> None:
    """A ConfigMap edited into an invalid file is refused with its problems; the running rules stay."""
    volume.update(TWO_RULES)
    assert wait_until(lambda: rules_loaded(client) == 2, timeout=10)
    volume.update(TWO_RULES.replace("notify: [ops]", "notify: [nowhere]"))
    assert wait_until(lambda: readiness(client)["last_reload_problems"], timeout=10)
    assert 2 == rules_loaded(client)
