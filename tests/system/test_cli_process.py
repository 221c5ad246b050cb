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


def test_output_into_a_closed_pipe_is_not_a_traceback() -> None:
    """`receiver test ... | head -1`: the reader leaving before the output ends the command quietly."""
    data = Path(__file__).parent.parent / "data"
    rules = Path(__file__).parent.parent.parent / "rules.yaml"
    # `true` reads nothing and is gone long before the rules are loaded: every write meets a closed pipe.
    command = f"{sys.executable} -m receiver test {rules} {data / 'robot.status.json'} | true"
    done = subprocess.run(
        ["/bin/sh", "-c", command], capture_output=True, env={"PATH": "/usr/bin:/bin"}, timeout=60, check=False
    )
    assert b"" == done.stderr, done.stderr.decode()
