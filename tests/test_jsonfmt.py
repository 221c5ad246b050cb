"""receiver.jsonfmt: one JSON writer for the hot paths, whatever orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from receiver.jsonfmt import dumps, dumps_text


@pytest.mark.parametrize(
    "value",
    [
        {"event_id": "e-1", "matched": ["faults"], "n": 3},
        {"reason": "key \ud800 muted"},  # a lone surrogate from event text: orjson refuses it
        {"count": 2**70},  # past 64 bits: orjson refuses it
    ],
)
def test_compact_json_that_reads_back_the_same(value: dict[str, Any]) -> None:
    text = dumps_text(value)
    assert value == json.loads(text)
    assert ", " not in text
    assert dumps(value) == text.encode()


def test_unknown_values_and_keys() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    assert {"1": "<thing>"} == json.loads(dumps_text({1: Thing()}, default=repr, non_str_keys=True))
    assert {"1": "<thing>", "s": "\ud800"} == json.loads(
        dumps_text({1: Thing(), "s": "\ud800"}, default=repr, non_str_keys=True)
    )
    with pytest.raises(TypeError):
        dumps({"x": Thing()})
