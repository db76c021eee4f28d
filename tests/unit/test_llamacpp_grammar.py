"""Schemas as the llama.cpp grammar gets them: small integer ranges become enums."""

from __future__ import annotations

from llmserver.backends.llamacpp_sampling import MAX_ENUM_RANGE, with_integer_ranges


def test_small_integer_ranges_become_enums() -> None:
    schema = {
        "type": "object",
        "properties": {
            "days": {"type": "integer", "minimum": 1, "maximum": 7, "description": "d"},
            "gap": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3.5},
            "list": {"type": "array", "items": {"type": "integer", "minimum": -1, "maximum": 1}},
        },
    }
    out = with_integer_ranges(schema)
    assert out["properties"]["days"] == {"description": "d", "enum": [1, 2, 3, 4, 5, 6, 7]}
    assert out["properties"]["gap"] == {"enum": [1, 2, 3]}
    assert out["properties"]["list"]["items"] == {"enum": [-1, 0, 1]}


def test_open_or_wide_ranges_and_numbers_are_left_alone() -> None:
    open_range = {"type": "integer", "minimum": 0}
    wide = {"type": "integer", "minimum": 0, "maximum": MAX_ENUM_RANGE}
    number = {"type": "number", "minimum": 0, "maximum": 1}
    assert with_integer_ranges(open_range) == open_range
    assert with_integer_ranges(wide) == wide
    assert with_integer_ranges(number) == number
