"""JSON text written on the hot paths: orjson, and the json module for what orjson refuses.

orjson refuses a ``str`` with a lone surrogate (event text can carry one) and an ``int`` past 64
bits; json writes both (surrogates escaped). Either way the text is compact and parses to the same
value. orjson is used because these run once per webhook or event (docs/performance.md, "Fast paths").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["dumps", "dumps_text"]


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None, non_str_keys: bool = False) -> bytes:
    """``value`` as compact JSON bytes.

    Args:
        value: what to write.
        default: called for what neither library knows (e.g. ``repr``); None: such a value raises TypeError.
        non_str_keys: write keys that are not strings (numbers, enums) as strings, as json does.
    """
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS if non_str_keys else None)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, an int past 64 bits, ...
        return json.dumps(value, default=default, separators=(",", ":")).encode()


def dumps_text(value: Any, *, default: Callable[[Any], Any] | None = None, non_str_keys: bool = False) -> str:
    """``dumps``, as text."""
    return dumps(value, default=default, non_str_keys=non_str_keys).decode()
