"""The distribution as a user gets it: build sdist and wheel, check them, install the wheel in a fresh venv, run it.

Installing with dependencies takes about a minute (PyPI or the local index); the whole test is bounded.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from support import free_port

from receiver import __version__

ROOT = Path(__file__).parent.parent.parent
DIST_NAME = "orchestrator_alert_receiver"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel built from the checkout, as CI builds them."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], check=True, timeout=300)
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob(f"{DIST_NAME}-*.whl")
    return wheel


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    """Both artefacts carry the new name and metadata PyPI accepts (README renders)."""
    artefacts = sorted(str(p) for p in dist.iterdir())
    assert 2 == len(artefacts)
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *artefacts], capture_output=True, text=True, timeout=120
    )
    assert 0 == done.returncode, done.stdout + done.stderr


def test_wheel_holds_the_templates_stylesheet_and_example(dist: Path) -> None:
    """Every file of the web page and the example rules file are in the wheel, not only the Python modules."""
    names = set(zipfile.ZipFile(_wheel(dist)).namelist())
    page_files = {f"receiver/http/ui/{p.name}" for p in (ROOT / "receiver/http/ui").iterdir() if p.is_file()}
    assert "receiver/http/ui/ui.css" in page_files
    assert set() == page_files - names
    assert {"receiver/examples/rules.yaml", "receiver/rules/rules.schema.json"} <= names


@pytest.mark.timeout(600)
def test_installed_wheel_checks_the_example_and_serves(dist: Path, tmp_path: Path) -> None:
    """A fresh venv with the wheel (and its dependencies) runs --version, check on the example, and serve to /readyz."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, receiver = venv / "bin/python", venv / "bin/receiver"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(_wheel(dist))],
        check=True,
        timeout=420,
    )
    # Away from the checkout, so that nothing resolves to the source tree.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}

    version = subprocess.run([str(receiver), "--version"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert (0, f"receiver {__version__}") == (version.returncode, version.stdout.strip()), version.stderr

    locate = "import importlib.resources as r; print(r.files('receiver') / 'examples' / 'rules.yaml')"
    example = subprocess.run(
        [str(python), "-c", locate], capture_output=True, text=True, env=env, cwd=tmp_path, check=True
    ).stdout.strip()
    assert str(venv) in example
    check = subprocess.run([str(receiver), "check", example], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert 0 == check.returncode, check.stdout + check.stderr

    port = free_port()
    serve_env = {**env, "RECEIVER_WEBHOOK_SECRET": "package-test-secret"}
    command = [str(receiver), "serve", "--rules", example, "--port", str(port), "--database", "sqlite:///r.db"]
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(command, env=serve_env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert _ready(f"http://127.0.0.1:{port}/readyz", server, timeout=30), (tmp_path / "serve.log").read_text()
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _ready(url: str, server: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:  # noqa: S310 - loopback
                if 200 == reply.status:
                    return True
        except OSError:
            time.sleep(0.2)
    return False
