"""Text as every store can keep it."""

from __future__ import annotations

import hashlib
import re

__all__ = ["KEY_BYTES", "noise_ref", "storable", "stored_key"]

# NUL is refused by PostgreSQL text, and a lone surrogate (JSON allows "\ud800") cannot be encoded
# as UTF-8 by either driver. Both come from untrusted payloads and must not make an event
# unstorable, so they become U+FFFD on both stores alike.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

KEY_BYTES = 200
"""The longest noise key (UTF-8 bytes) stored as it is; a longer one is stored as ``stored_key`` says."""

_PREFIX_BYTES = 120


def storable(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD (the rest unchanged)."""
    return _UNSTORABLE.sub("\ufffd", text)


def stored_key(key: str) -> str:
    """A noise key as both stores keep it: storable, and at most ``KEY_BYTES`` bytes of UTF-8.

    A longer key (rendered event text has no bound) becomes its first 120 bytes, ``…#`` and the
    SHA-256 of the whole key in hex: equal keys still share one state row, a person can still
    recognise it, and the index entry stays far below PostgreSQL's 2,704-byte btree limit. The
    result is never longer than the bound, so storing a stored key again leaves it unchanged
    (a timer's row, read back and written again, keeps its key).
    """
    text = storable(key)
    data = text.encode()
    if len(data) <= KEY_BYTES:
        return text
    prefix = data[:_PREFIX_BYTES].decode("utf-8", "ignore")  # "ignore": a character cut in two is dropped
    return f"{prefix}…#{hashlib.sha256(data).hexdigest()}"


def noise_ref(ref: tuple[str, str, str]) -> tuple[str, str, str]:
    """A noise state ref (kind, name, key) as stored."""
    kind, name, key = ref
    return storable(kind), storable(name), stored_key(key)
