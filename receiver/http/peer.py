"""Which peer a request came from before a trusted proxy's X-Forwarded-For was applied.

uvicorn's proxy-headers middleware replaces the client address with the forwarded one, after
which nobody can tell whether the request really came through a trusted proxy. ``PeerRecorder``
keeps the address of the connection itself, so that a header only a proxy may set (the signed-in
person of ``RECEIVER_TRUSTED_USER_HEADER``) is believed only from ``RECEIVER_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = ["PEER", "PeerRecorder", "from_trusted_proxy"]

PEER = "receiver.peer"
"""The scope key of the connection's own (host, port)."""


class PeerRecorder:
    """ASGI wrapper (outside the proxy-headers middleware): records the connection's peer in the scope."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            scope[PEER] = scope.get("client")
        await self.app(scope, receive, send)


def from_trusted_proxy(scope: Any, trusted: str) -> bool:
    """Whether the connection's peer is one of ``trusted`` (addresses, networks or ``*``)."""
    if not trusted:
        return False
    peer = scope.get(PEER, scope.get("client"))
    host = peer[0] if peer else None
    if host is None:
        return False
    items = [item for item in trusted.split(",") if item]
    if "*" in items:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for item in items:
        network = ipaddress.ip_network(item, strict=False)
        if address in network:
            return True
    return False
