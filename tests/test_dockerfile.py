"""The Dockerfile cannot be built here (no container engine), so what it runs is parsed and checked.

hadolint lints it and its install command is run for real in tests/system/test_image_build.py.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import Stage, read_dockerfile

ROOT = Path(__file__).parent.parent
STAGES = read_dockerfile(ROOT / "Dockerfile")
BUILD, FINAL = STAGES[0], STAGES[-1]


def env(stage: Stage) -> dict[str, str]:
    """The ENV settings of a stage (``KEY=VALUE`` pairs, quotes removed)."""
    pairs = [shlex.split(arguments) for arguments in stage.arguments("ENV")]
    return dict(pair.split("=", 1) for words in pairs for pair in words)


def install_command(stage: Stage) -> list[str]:
    """The words of the RUN that installs receiver: ``uv sync ...``."""
    (command,) = [shlex.split(run) for run in stage.arguments("RUN") if run.startswith("uv sync")]
    return command


def test_two_stages_and_the_final_copies_the_built_environment() -> None:
    """A build stage makes /opt/receiver; the final stage copies it and nothing of the build tools."""
    assert 2 == len(STAGES)
    assert BUILD.name is not None
    assert f"--from={BUILD.name} /opt/receiver /opt/receiver" in FINAL.arguments("COPY")
    assert "/opt/receiver" == env(BUILD)["UV_PROJECT_ENVIRONMENT"]


def test_installs_exactly_the_lock() -> None:
    """The build installs from uv.lock, refusing a stale lock, and not as an editable checkout."""
    command = install_command(BUILD)
    assert {"--locked", "--no-editable"} <= set(command)
    assert "--upgrade" not in command
    copied = " ".join(BUILD.arguments("COPY")).split()
    assert "uv.lock" in copied


def test_uv_is_pinned() -> None:
    """The uv the image installs is an exact version, so the same lock installs the same way."""
    (pip,) = [shlex.split(run) for run in BUILD.arguments("RUN") if run.startswith("pip install")]
    (pin,) = [word for word in pip if word.startswith("uv")]
    assert re.fullmatch(r"uv==\d+\.\d+\.\d+", pin)


def test_lock_is_of_this_distribution() -> None:
    """uv.lock locks the distribution pyproject.toml names (the lock goes with the rename)."""
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    editable = [p["name"] for p in lock["package"] if "editable" in p.get("source", {})]
    assert [name] == editable


def test_runs_as_the_non_root_user_it_creates() -> None:
    """The final stage switches to the numeric uid and gid its useradd created, not root."""
    (user,) = FINAL.arguments("USER")
    uid, gid = user.split(":")
    (created,) = FINAL.arguments("RUN")
    words = shlex.split(created)
    assert uid not in {"0", "root"}
    assert uid == words[words.index("--uid") + 1]
    assert gid == words[words.index("--gid", words.index("useradd")) + 1]


def test_state_on_a_volume_matching_the_database_url() -> None:
    """The SQLite file lives on the declared volume."""
    (volume,) = FINAL.arguments("VOLUME")
    (path,) = json.loads(volume)
    assert env(FINAL)["RECEIVER_DATABASE_URL"].startswith(f"sqlite:///{path}/")


def test_exposes_the_port_it_listens_on() -> None:
    """The exposed port is the port receiver is told to use, on all interfaces."""
    settings = env(FINAL)
    assert [settings["RECEIVER_PORT"]] == FINAL.arguments("EXPOSE")
    assert "0.0.0.0" == settings["RECEIVER_HOST"]  # noqa: S104 - the container listens on its own interface


def test_healthcheck_probes_healthz() -> None:
    """The health check runs python (in the image) and asks /healthz on the exposed port."""
    (check,) = FINAL.arguments("HEALTHCHECK")
    command = json.loads(check.split("CMD", 1)[1])
    assert "python" == command[0]
    assert f"http://127.0.0.1:{env(FINAL)['RECEIVER_PORT']}/healthz" in command[-1]


def test_entrypoint_and_command_serve_the_shipped_rules() -> None:
    """The image runs `receiver serve` on the rules file it copies in."""
    assert ["receiver"] == json.loads(FINAL.arguments("ENTRYPOINT")[0])
    command = json.loads(FINAL.arguments("CMD")[0])
    assert ["serve", "--rules"] == command[:2]
    assert f"rules.yaml {command[2]}" in FINAL.arguments("COPY")


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(word, id=word)
        for stage in STAGES
        for copy in stage.arguments("COPY")
        if not copy.startswith("--from=")
        for word in copy.split()[:-1]
    ],
)
def test_copied_paths_exist(source: str) -> None:
    """Every path the build copies from the context exists in the repository."""
    assert (ROOT / source).exists()
