"""The package layers of docs/architecture.md hold: import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_imports_follow_the_layers() -> None:
    """``lint-imports`` keeps every contract: no import back up a layer, sideways or past a fence."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    # The tree under test, whichever receiver is installed in the environment.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert 0 == result.returncode, result.stdout + result.stderr
