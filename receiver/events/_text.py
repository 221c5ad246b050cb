"""Showing bad input values in error messages: short, and never raising."""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["show"]

_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60


def show(value: Any) -> str:
    """Return a shortened ``repr`` of ``value`` for an error message."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an int beyond int()'s 4300-digit limit has no repr
        return f"<{type(value).__name__} too large to show>"
