"""The package layers of docs/architecture.md hold: import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent


def test_imports_follow_the_layers(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """import-linter keeps every contract: no import back up a layer, sideways or past a fence."""
    # In-process (unit tests start no processes); the tree under test comes first on the path.
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", [str(ROOT), *sys.path])
    exit_code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert 0 == exit_code, capsys.readouterr().out
