"""The bound on the text of one event that rules match and templates render.

A webhook body may be up to ``RECEIVER_MAX_BODY_BYTES`` (1 MiB) and a robot log message as long:
every text value (and every key of a free-form bag) longer than :data:`TEXT_LIMIT` characters is
cut there before the event is typed for matching and rendering, and ends with a marker saying
how long it was. The stored body is never cut: ``/api/events`` shows it whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["TEXT_LIMIT", "cap_strings", "cap_text"]

TEXT_LIMIT = 16_384
"""The most characters of one text value of an event that matching and templates see."""


def cap_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` cut at ``limit`` characters, with a marker naming its length; unchanged when shorter."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated: {limit} of {len(text)} characters shown]"


def cap_strings(raw: Any, limit: int = TEXT_LIMIT) -> Any:
    """Decoded JSON with every string longer than ``limit`` cut by :func:`cap_text`, keys too.

    Lists and objects are changed in place (``raw`` is a fresh ``json.loads`` result), walked
    with a stack rather than recursion, so any depth the decoder accepted is fine.
    """
    if isinstance(raw, str):
        return cap_text(raw, limit)
    stack: list[Any] = [raw]
    while stack:
        node = stack.pop()
        slots: Iterable[tuple[Any, Any]]
        if isinstance(node, dict):
            if any(isinstance(key, str) and len(key) > limit for key in node):
                items = [(cap_text(k, limit) if isinstance(k, str) else k, v) for k, v in node.items()]
                node.clear()
                node.update(items)
            slots = node.items()
        elif isinstance(node, list):
            slots = enumerate(node)
        else:
            continue
        for slot, value in slots:  # replacing a value in place does not disturb the iteration
            if isinstance(value, str):
                if len(value) > limit:
                    node[slot] = cap_text(value, limit)
            elif isinstance(value, dict | list):
                stack.append(value)
    return raw
