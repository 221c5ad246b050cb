"""The Dockerfile cannot be built here (no Docker engine), so its promises are read and checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """The arguments of every instruction ``name`` in the final stage."""
    final_stage = DOCKERFILE.split("\nFROM ")[-1]
    joined = re.sub(r"\\\n\s*", " ", final_stage)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.split(None, 1)[:1] == [name]]


def test_runs_as_non_root_user() -> None:
    """The final stage switches to a named, non-root user."""
    users = instructions("USER")
    assert users, "no USER instruction"
    assert users[-1] not in {"root", "0", "0:0"}


def test_state_on_a_volume_matching_the_database_url() -> None:
    """The SQLite file lives on the declared volume."""
    volumes = instructions("VOLUME")
    assert ['["/var/lib/receiver"]'] == volumes
    assert "RECEIVER_DATABASE_URL=sqlite:////var/lib/receiver/" in DOCKERFILE


def test_exposes_the_port_it_listens_on() -> None:
    """The exposed port is the port receiver is told to use, on all interfaces."""
    assert ["8000"] == instructions("EXPOSE")
    assert "RECEIVER_PORT=8000" in DOCKERFILE
    assert "RECEIVER_HOST=0.0.0.0" in DOCKERFILE


def test_healthcheck_probes_healthz() -> None:
    """The health check asks /healthz on the exposed port."""
    (check,) = instructions("HEALTHCHECK")
    assert "http://127.0.0.1:8000/healthz" in check


def test_entrypoint_and_command_serve_the_shipped_rules() -> None:
    """The image runs `receiver serve` on the rules file it copies in."""
    assert ['["receiver"]'] == instructions("ENTRYPOINT")
    assert ['["serve", "--rules", "/etc/receiver/rules.yaml"]'] == instructions("CMD")
    assert "COPY rules.yaml /etc/receiver/rules.yaml" in DOCKERFILE


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "receiver", "rules.yaml"])
def test_copied_paths_exist(path: str) -> None:
    """Every path the build copies exists in the repository."""
    assert (ROOT / path).exists()
