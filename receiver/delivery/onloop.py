"""The common webhook plugins sent on the event loop, with no thread (docs/performance.md, "Fast paths").

A direct send (``notifier``) of a plugin named here runs its ``notify()`` on the loop's thread
through ``receiver.delivery.bridge``; its ``requests`` calls go out on the loop's kept-alive
connections (``keepalive`` → ``loop_http``), and what that path does not implement (a proxy, files,
a mounted or mocked adapter, a redirect to follow) is sent by a thread and awaited. A thread per
send cost ~5 times the CPU of the same send on the loop (wake-ups, GIL hand-offs).

A plugin is named here only if all it does besides computing is ``requests.*`` calls: no
``time.sleep`` or ``throttle(wait=...)`` (Discord sleeps out rate limits), no other network client
(e-mail's smtplib), no disk (apprise's persistent store stays in memory without a storage path,
which receiver never sets; Slack and Workflows templates, read from a file, keep the thread).
``tests/test_loop_send.py`` fails when an apprise upgrade breaks that. Every other plugin, and every
send before ``install()``, keeps the thread path.
"""

from __future__ import annotations

from typing import Final

from apprise import NotifyBase
from apprise.plugins.custom_form import NotifyForm
from apprise.plugins.custom_json import NotifyJSON
from apprise.plugins.custom_xml import NotifyXML
from apprise.plugins.google_chat import NotifyGoogleChat
from apprise.plugins.mattermost import NotifyMattermost
from apprise.plugins.ntfy import NotifyNtfy
from apprise.plugins.opsgenie import NotifyOpsgenie
from apprise.plugins.pagerduty import NotifyPagerDuty
from apprise.plugins.rocketchat import NotifyRocketChat
from apprise.plugins.slack import NotifySlack
from apprise.plugins.workflows import NotifyWorkflows

from receiver.delivery import keepalive

__all__ = ["ON_LOOP", "install", "installed", "runs_on_loop"]

ON_LOOP: Final[frozenset[type[NotifyBase]]] = frozenset(
    {
        NotifyJSON,
        NotifyXML,
        NotifyForm,
        NotifySlack,
        NotifyWorkflows,
        NotifyGoogleChat,
        NotifyMattermost,
        NotifyRocketChat,
        NotifyNtfy,
        NotifyPagerDuty,
        NotifyOpsgenie,
    }
)
"""The plugins whose only I/O is ``requests.*`` and that never sleep (exactly these classes, not subclasses)."""

_installed = False


def install() -> None:
    """Send the plugins of ``ON_LOOP`` on the event loop from now on (installs keep-alive too). Idempotent."""
    global _installed
    keepalive.install()  # the loop path goes through its patch of requests
    _installed = True


def installed() -> bool:
    """Whether ``install()`` is in effect (and keep-alive's patch still in place)."""
    return _installed and keepalive.installed()


def runs_on_loop(plugin: NotifyBase) -> bool:
    """Whether a direct send of ``plugin`` runs on the event loop."""
    return (
        type(plugin) in ON_LOOP
        and installed()
        and not getattr(plugin, "template", None)
        and plugin.asset.storage_path is None
    )
