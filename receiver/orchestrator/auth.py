"""OAuth2 client credentials: the token request, its answer, and a cache that renews before expiry.

Client credentials have no refresh token (the reference): a new token is asked for with the
same secret when the cached one nears its end, or once when Orchestrator answers 401.
Concurrent callers share one token request. While the identity server fails (5xx, 429 past its
rate limit, timeouts) the current token goes on serving until shortly before its end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from receiver.orchestrator.errors import OrchestratorAuthError, OrchestratorUnavailableError
from receiver.rules import OrchestratorLink

__all__ = ["Token", "TokenCache", "token_form"]

_DEFAULT_LIFETIME = 3600.0
_MAX_RENEW_MARGIN = 300.0
_MIN_LIFE_LEFT = 30.0
"""Seconds a token must still have to stand in while its renewal fails."""
_RENEW_PAUSE = 30.0
"""Seconds between renewal attempts while the identity server fails and the token still works."""


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and what came with it.

    Attributes:
        access_token: the bearer token (masked in every repr).
        expires_in: its lifetime in seconds, as the token endpoint said.
        scopes: the scopes granted (the ``scope`` of the answer; those asked for when it has none).
        obtained_at: monotonic seconds when it arrived.
    """

    access_token: SecretStr = field(repr=False)
    expires_in: float
    scopes: tuple[str, ...]
    obtained_at: float

    def renew_at(self) -> float:
        """Monotonic time from which the token is renewed: a fifth of its life (at most 5 min) early."""
        return self.obtained_at + self.expires_in - min(_MAX_RENEW_MARGIN, self.expires_in / 5)

    def usable_until(self) -> float:
        """Monotonic time until which it may stand in while its renewal fails (its end, less a margin)."""
        return self.obtained_at + self.expires_in - _MIN_LIFE_LEFT


def token_form(link: OrchestratorLink) -> dict[str, str]:
    """The form body of the token request (it carries the client secret: never log it)."""
    return {
        "grant_type": "client_credentials",
        "client_id": link.client_id,
        "client_secret": link.client_secret_value(),
        "scope": " ".join(link.scopes),
    }


def parse_token(source: str, link: OrchestratorLink, payload: Any, now: float) -> Token:
    """Read the token endpoint's JSON answer.

    Raises:
        OrchestratorAuthError: when the answer has no usable access token.
    """
    if not isinstance(payload, Mapping) or not isinstance(payload.get("access_token"), str):
        raise OrchestratorAuthError(source, "the token endpoint answered without an access_token", status=200)
    expires = payload.get("expires_in")
    lifetime = float(expires) if isinstance(expires, int | float) and not isinstance(expires, bool) else 0.0
    if lifetime <= 0:
        lifetime = _DEFAULT_LIFETIME
    granted = payload.get("scope")
    scopes = tuple(granted.split()) if isinstance(granted, str) and granted.strip() else link.scopes
    return Token(SecretStr(payload["access_token"]), lifetime, scopes, now)


class TokenCache:
    """Holds the current token; renews it before expiry, and on demand after a 401.

    Args:
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self._renew_after = float("-inf")

    @property
    def current(self) -> Token | None:
        """The cached token, fresh or not, or None."""
        return self._token

    def _fresh(self, token: Token | None) -> bool:
        return token is not None and self._clock() < token.renew_at()

    async def get(self, fetch: Callable[[bool], Awaitable[Token]]) -> Token:
        """Return a fresh token, asking ``fetch`` for a new one when needed (one request at a time).

        ``fetch(early)`` is told whether the current token still works (its renewal window): then
        a failure to reach the identity server (5xx, 429, timeouts) is not the call's failure. The
        current token is used, and renewal is tried again after a pause rather than before each
        call; a refusal of the credentials is still raised.
        """
        token = self._token
        if token is not None and self._fresh(token):
            return token
        async with self._lock:
            token = self._token
            if token is not None and self._fresh(token):
                return token
            now = self._clock()
            standing = token if token is not None and now < token.usable_until() else None
            if standing is not None and now < self._renew_after:
                return standing  # a renewal failed moments ago
            try:
                self._token = await fetch(standing is not None)
            except OrchestratorUnavailableError:
                if standing is None:
                    raise
                self._renew_after = self._clock() + _RENEW_PAUSE
                return standing
            return self._token

    def invalidate(self, token: Token) -> None:
        """Forget ``token`` after Orchestrator refused it (unless another caller already renewed it)."""
        if self._token is token:
            self._token = None
