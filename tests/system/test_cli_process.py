"""The command line as a separate process: standard input, the environment, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_cli import PING

from receiver.signature import sign


def test_sign_reads_stdin_and_the_environment() -> None:
    """`receiver sign -` signs standard input with RECEIVER_WEBHOOK_SECRET when --secret is absent."""
    done = subprocess.run(
        [sys.executable, "-m", "receiver", "sign", "-"],
        input=PING,
        capture_output=True,
        env={"RECEIVER_WEBHOOK_SECRET": "my-webhook-secret", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert (0, sign(PING, "my-webhook-secret")) == (done.returncode, done.stdout.decode().strip())


def test_serve_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    """No RECEIVER_WEBHOOK_SECRET and no insecure source: exit 1 with a message saying what to do."""
    rules = tmp_path / "rules.yaml"
    rules.write_text('channels:\n  ops: "log://"\nrules: []\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "receiver",
            "serve",
            "--rules",
            str(rules),
            "--database",
            f"sqlite:///{tmp_path / 'r.db'}",
        ],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert 1 == done.returncode
    assert b"RECEIVER_WEBHOOK_SECRET" in done.stderr
