"""Event text made safe to use: bounded in length, and free of lone surrogates where UTF-8 is needed.

A webhook body may be up to ``RECEIVER_MAX_BODY_BYTES`` (1 MiB) and a robot log message as long:
every text value (and every key of a free-form bag) longer than :data:`TEXT_LIMIT` characters is
cut there before the event is typed for matching and rendering, and ends with a marker saying
how long it was. The stored body is never cut: ``/api/events`` shows it whole.

JSON allows a lone surrogate (``"\\ud83d"``: a text cut inside a UTF-16 pair ends in one), which
UTF-8 cannot encode: where text must become UTF-8 (RE2, an answer, a page) it shows as U+FFFD.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["TEXT_LIMIT", "cap_strings", "cap_text", "has_lone_surrogate", "map_strings", "without_lone_surrogates"]

TEXT_LIMIT = 16_384
"""The most characters of one text value of an event that matching and templates see."""


def cap_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` cut at ``limit`` characters, with a marker naming its length; unchanged when shorter."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated: {limit} of {len(text)} characters shown]"


def cap_strings(raw: Any, limit: int = TEXT_LIMIT) -> Any:
    """Decoded JSON with every string longer than ``limit`` cut by :func:`cap_text`, keys too (in place)."""
    return map_strings(raw, lambda text: len(text) > limit, lambda text: cap_text(text, limit))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate, which UTF-8 cannot encode."""
    return _LONE_SURROGATE.search(text) is not None


def without_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (unchanged, not copied, when it has none)."""
    return _LONE_SURROGATE.sub("\ufffd", text) if has_lone_surrogate(text) else text


def map_strings(raw: Any, selects: Callable[[str], object], change: Callable[[str], str]) -> Any:
    """Decoded JSON with ``change`` applied to every string (keys too) that ``selects``.

    Lists and objects are changed in place (``raw`` is a fresh ``json.loads`` result), walked
    with a stack rather than recursion, so any depth the decoder accepted is fine.
    """
    if isinstance(raw, str):
        return change(raw) if selects(raw) else raw
    stack: list[Any] = [raw]
    while stack:
        node = stack.pop()
        slots: Iterable[tuple[Any, Any]]
        if isinstance(node, dict):
            if any(isinstance(key, str) and selects(key) for key in node):
                items = [(change(k) if isinstance(k, str) and selects(k) else k, v) for k, v in node.items()]
                node.clear()
                node.update(items)
            slots = node.items()
        elif isinstance(node, list):
            slots = enumerate(node)
        else:
            continue
        for slot, value in slots:  # replacing a value in place does not disturb the iteration
            if isinstance(value, str):
                if selects(value):
                    node[slot] = change(value)
            elif isinstance(value, dict | list):
                stack.append(value)
    return raw
