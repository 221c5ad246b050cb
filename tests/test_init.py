"""`receiver init`: a starter rules.yaml for the channels named, valid once its variables are set."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from receiver.admin.dryrun import check_command
from receiver.cli import main
from receiver.delivery.notifier import check_url
from receiver.rules import STARTER_CHANNELS, starter_rules

# Plausible values for every placeholder a starter file may use.
VALUES = {
    "SLACK_TOKEN_A": "T0001",
    "SLACK_TOKEN_B": "B0001",
    "SLACK_TOKEN_C": "abcdefabcdefabcdefabcdef",
    "SLACK_CHANNEL": "rpa-alerts",
    "TEAMS_HOST": "example.westeurope.logic.azure.com",
    "TEAMS_WORKFLOW": "abc123",
    "TEAMS_SIG": "signature",
    "SMTP_USER": "alerts",
    "SMTP_PASSWORD": "secret",
    "SMTP_HOST": "smtp.example.com",
    "ALERT_EMAIL_TO": "ops@example.com",
}

KINDS = [
    pytest.param([], id="none"),
    *(pytest.param([kind], id=kind) for kind in STARTER_CHANNELS),
    pytest.param(list(STARTER_CHANNELS), id="all"),
]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("kinds", KINDS)
def test_written_file_passes_check_once_its_variables_are_set(here: Path, kinds: list[str]) -> None:
    """The file written for the flags given is valid with its variables set, and has one channel per flag."""
    assert 0 == main(["init", *(f"--{kind}" for kind in kinds)])
    out = io.StringIO()
    assert 0 == check_command(here / "rules.yaml", environ=VALUES, check_url=check_url, out=out), out.getvalue()
    assert f"{max(len(kinds), 1)} channels" in out.getvalue()


@pytest.mark.parametrize("kinds", KINDS[1:])
def test_every_variable_is_needed_and_named(here: Path, kinds: list[str]) -> None:
    """Without its variables the file fails the check, naming each variable the starter lists."""
    assert 0 == main(["init", *(f"--{kind}" for kind in kinds)])
    out = io.StringIO()
    assert 1 == check_command(here / "rules.yaml", environ={}, check_url=check_url, out=out)
    variables = starter_rules(kinds).variables
    assert variables
    assert [] == [name for name in variables if name not in out.getvalue()]


def test_refuses_to_overwrite_without_force(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An existing rules.yaml is left alone (exit 1, a message naming --force); --force replaces it."""
    (here / "rules.yaml").write_text("mine\n")
    assert 1 == main(["init", "--slack"])
    assert "--force" in capsys.readouterr().err
    assert "mine\n" == (here / "rules.yaml").read_text()
    assert 0 == main(["init", "--slack", "--force"])
    assert "slack://" in (here / "rules.yaml").read_text()


def test_prints_the_variables_and_the_orchestrator_steps(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The output names every variable to set, the webhook URL path and `receiver orchestrator sync`."""
    assert 0 == main(["init", "starter.yaml", "--teams"])
    printed = capsys.readouterr().out
    assert (here / "starter.yaml").exists()
    assert [] == [name for name in ("RECEIVER_WEBHOOK_SECRET", "TEAMS_HOST", "TEAMS_SIG") if name not in printed]
    assert "/webhooks/uipath" in printed
    assert "receiver orchestrator sync" in printed
    assert "receiver check starter.yaml" in printed


def test_unknown_kind_is_refused() -> None:
    """A kind the starter does not know is a ValueError naming it."""
    with pytest.raises(ValueError, match="'pager'"):
        starter_rules(["pager"])
