"""A starter ``rules.yaml`` for the channels a new user names (``receiver init --slack --teams --email``).

Pure: returns the text and the environment variables it needs; the CLI writes the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["STARTER_CHANNELS", "StarterRules", "starter_rules"]


@dataclass(frozen=True)
class _Kind:
    url: str
    variables: tuple[str, ...]
    comment: str


# Apprise URLs, each secret part a ${VAR} read from the environment when the file is loaded.
_KINDS: dict[str, _Kind] = {
    "slack": _Kind(
        "slack://${SLACK_TOKEN_A}/${SLACK_TOKEN_B}/${SLACK_TOKEN_C}/#${SLACK_CHANNEL}",
        ("SLACK_TOKEN_A", "SLACK_TOKEN_B", "SLACK_TOKEN_C", "SLACK_CHANNEL"),
        "Slack incoming webhook https://hooks.slack.com/services/A/B/C: the three tokens and the channel",
    ),
    "teams": _Kind(
        "workflows://${TEAMS_HOST}/${TEAMS_WORKFLOW}/${TEAMS_SIG}/",
        ("TEAMS_HOST", "TEAMS_WORKFLOW", "TEAMS_SIG"),
        "Microsoft Teams (Workflows): the host, workflow id and sig of the workflow's HTTP trigger URL",
    ),
    "email": _Kind(
        "mailtos://${SMTP_USER}:${SMTP_PASSWORD}@${SMTP_HOST}?to=${ALERT_EMAIL_TO}",
        ("SMTP_USER", "SMTP_PASSWORD", "SMTP_HOST", "ALERT_EMAIL_TO"),
        "e-mail over SMTP with TLS: the account, its password, the server and the recipients",
    ),
}

STARTER_CHANNELS: tuple[str, ...] = tuple(_KINDS)
"""The channel kinds ``receiver init`` knows, in the order they are written."""


@dataclass(frozen=True)
class StarterRules:
    """A starter rules file.

    Attributes:
        text: the YAML text to write.
        variables: the environment variables its channels read (``${VAR}``), in file order.
    """

    text: str
    variables: tuple[str, ...]


def starter_rules(channels: Sequence[str]) -> StarterRules:
    """Build a starter ``rules.yaml`` that sends job faults and failed queue items to ``channels``.

    Args:
        channels: kinds from :data:`STARTER_CHANNELS`; none gives one ``log://`` channel, so the
            file works with no account and no variable.

    Returns:
        The file's text and the variables it needs.

    Raises:
        ValueError: a kind that is not in :data:`STARTER_CHANNELS`.
    """
    unknown = [name for name in channels if name not in _KINDS]
    if unknown:
        raise ValueError(f"unknown channel kind {unknown[0]!r}; known: {', '.join(STARTER_CHANNELS)}")
    chosen = [name for name in STARTER_CHANNELS if name in channels]
    lines = [
        "# rules.yaml written by `receiver init`. Reference: docs/rules.md; check it: receiver check rules.yaml",
        "timezone: UTC            # times in messages, e.g. Europe/Berlin",
        "",
        "channels:",
    ]
    if not chosen:
        lines.append('  log: "log://"   # the server\'s log; receiver init --slack/--teams/--email for real ones')
    for name in chosen:
        kind = _KINDS[name]
        lines += [f"  # {kind.comment}", f'  {name}: "{kind.url}"']
    targets = ", ".join(chosen or ["log"])
    lines += [
        "",
        "rules:",
        "  # Any job that ended Faulted or Stopped.",
        "  - name: job-faults",
        "    match:",
        "      job.state: [Faulted, Stopped]",
        f"    notify: [{targets}]",
        "",
        "  # Queue items that failed (business or application exception).",
        "  - name: queue-item-failures",
        "    match:",
        "      type: queueItem.transactionFailed",
        f"    notify: [{targets}]",
        "",
    ]
    variables = tuple(variable for name in chosen for variable in _KINDS[name].variables)
    return StarterRules("\n".join(lines), variables)
