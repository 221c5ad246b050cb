"""Text as every store can keep it."""

from __future__ import annotations

import re

__all__ = ["storable"]

# NUL is refused by PostgreSQL text, and a lone surrogate (JSON allows "\ud800") cannot be encoded
# as UTF-8 by either driver. Both come from untrusted payloads and must not make an event
# unstorable, so they become U+FFFD on both stores alike.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD (the rest unchanged)."""
    return _UNSTORABLE.sub("\ufffd", text)
