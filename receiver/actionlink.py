"""Signed action links: one alert, one action, an expiry, under a server key (HMAC-SHA256).

A token is ``base64url(alert_id.action.expires)`` ``.`` ``base64url(HMAC(key, that))``. It names
what it does and until when, so it needs no state; anyone who alters one part breaks the MAC.
Opening a link (GET) only shows what it would do; its POST acts (see ``receiver.http.actions``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence

__all__ = ["ACTIONS", "LinkError", "LinkSigner", "action_links"]

ACTIONS = ("ack", "silence", "retry")
"""What a link may do: acknowledge the alert, silence its process (or robot) for an hour, retry its job."""

_LABELS = {"ack": "Acknowledge", "retry": "Retry the job"}
_ID = re.compile(r"^[0-9a-f]{1,64}$")
_TOKEN_CHARS = 400


class LinkError(ValueError):
    """A token that is malformed, altered or expired (``reason``: ``invalid`` or ``expired``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """Makes and checks action tokens.

    Args:
        key: the server key (``RECEIVER_LINK_KEY``); never empty.
        ttl: seconds a link stays valid.
    """

    def __init__(self, key: str, ttl: float) -> None:
        if not key:
            raise ValueError("an action link key must not be empty")
        self._key = key.encode()
        self.ttl = ttl

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, f"receiver-action:{payload}".encode(), hashlib.sha256).digest()

    def token(self, alert_id: str, action: str, *, now: float) -> str:
        """A token for ``action`` on ``alert_id``, valid ``ttl`` seconds from ``now``."""
        payload = f"{alert_id}.{action}.{int(now + self.ttl)}"
        return f"{_b64(payload.encode())}.{_b64(self._mac(payload))}"

    def verify(self, token: str, *, now: float) -> tuple[str, str, float]:
        """The (alert id, action, expiry) a token names.

        Raises:
            LinkError: ``invalid`` (malformed or altered) or ``expired``.
        """
        if len(token) > _TOKEN_CHARS or token.count(".") != 1:
            raise LinkError("invalid", "the link is malformed")
        encoded, mac = token.split(".")
        try:
            payload = _unb64(encoded).decode("ascii")
            given = _unb64(mac)
        except (binascii.Error, ValueError):
            raise LinkError("invalid", "the link is malformed") from None
        if not hmac.compare_digest(given, self._mac(payload)):
            raise LinkError("invalid", "the link's signature does not match: it was altered or made with another key")
        parts = payload.split(".")
        if len(parts) != 3 or not _ID.match(parts[0]) or parts[1] not in ACTIONS or not parts[2].isdigit():
            raise LinkError("invalid", "the link is malformed")
        expires = float(parts[2][:12])
        if now >= expires:
            raise LinkError("expired", "the link has expired")
        return parts[0], parts[1], expires


def action_links(
    base_url: str, signer: LinkSigner, alert_id: str, *, now: float, silence_what: str | None, retry: bool
) -> list[tuple[str, str]]:
    """The (label, URL) links of an alert message.

    Args:
        base_url: the receiver's public URL (``RECEIVER_PUBLIC_URL``).
        signer: the link signer.
        alert_id: the alert.
        now: when the message is made (links expire ``ttl`` after).
        silence_what: ``process`` or ``robot`` (what "silence" silences), or None for no silence link.
        retry: offer "retry the job".
    """
    actions: Sequence[str] = ["ack", *(["silence"] if silence_what else []), *(["retry"] if retry else [])]
    base = base_url.rstrip("/")
    links = []
    for action in actions:
        label = f"Silence this {silence_what} for 1 h" if action == "silence" else _LABELS[action]
        links.append((label, f"{base}/act/{signer.token(alert_id, action, now=now)}"))
    return links
