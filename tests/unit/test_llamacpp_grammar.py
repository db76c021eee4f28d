"""Numeric bounds as the llama.cpp grammar spells them: digit by digit, so that only values
inside the bounds can be written.

The expressions are checked by translating them into Python regular expressions (they use only
literals, character classes, repeats, groups and alternatives) and matching every value in a
window around the bounds: each is accepted exactly when the schema allows it.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from llmserver.backends.llamacpp_json import bounded_number_gbnf, naturals
from llmserver.errors import InvalidRequestError, Location

#: where the schema came from in the request (the output constraint)
HERE: Location = ("constraint",)


def as_regex(expression: str) -> re.Pattern[str]:
    """A GBNF expression of this module's subset as a Python regular expression."""
    pattern = re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), expression)
    return re.compile(pattern.replace(" ", ""))


def accepts(schema: dict[str, Any], text: str) -> bool:
    expression = bounded_number_gbnf(schema, HERE)
    assert expression is not None
    return as_regex(expression).fullmatch(text) is not None


def within(schema: dict[str, Any], value: Decimal) -> bool:
    ok = True
    if "minimum" in schema:
        ok &= value >= schema["minimum"]
    if "maximum" in schema:
        ok &= value <= schema["maximum"]
    if "exclusiveMinimum" in schema:
        ok &= value > schema["exclusiveMinimum"]
    if "exclusiveMaximum" in schema:
        ok &= value < schema["exclusiveMaximum"]
    return bool(ok)


@pytest.mark.parametrize(
    "bounds",
    [
        {"exclusiveMinimum": -1000, "exclusiveMaximum": 1000},  # the case
        {"minimum": 1, "maximum": 7},
        {"minimum": 0},
        {"maximum": -3},
        {"minimum": -120, "maximum": -7},
        {"minimum": 95, "maximum": 1234},
        {"exclusiveMinimum": 0, "exclusiveMaximum": 3.5},
        {"minimum": 5, "maximum": 5},
        {"maximum": 99, "exclusiveMaximum": 50},
    ],
)
def test_integer_bounds_accept_exactly_the_values_inside(bounds: dict[str, Any]) -> None:
    schema = {"type": "integer", **bounds}
    for value in range(-2100, 2100):
        assert accepts(schema, str(value)) == within(schema, Decimal(value)), value
    assert not accepts(schema, "123456789") or within(schema, Decimal(123456789))
    assert not accepts(schema, "007")  # no leading zeros: JSON has none


def test_an_open_ended_integer_still_takes_long_values() -> None:
    schema = {"type": "integer", "minimum": 10}
    assert accepts(schema, "123456789012")
    assert not accepts(schema, "9")
    assert not accepts(schema, "-123456789012")


@pytest.mark.parametrize(
    "bounds",
    [
        {"minimum": 0, "maximum": 1},
        {"exclusiveMinimum": 0},
        {"exclusiveMinimum": -2, "exclusiveMaximum": 2},
        {"minimum": -5, "maximum": -1},
        {"maximum": 0},
        {"minimum": 3, "exclusiveMaximum": 4},
    ],
)
def test_number_bounds_accept_exactly_the_values_inside(bounds: dict[str, Any]) -> None:
    schema = {"type": "number", **bounds}
    texts = [f"{whole}{fraction}" for whole in range(-7, 8) for fraction in ("", ".0", ".5", ".05")]
    texts += [t.replace("-0", "-0") for t in ("-0.5", "-0.05", "0.001")]
    for text in texts:
        if text.startswith("-0") and Decimal(text) == 0:
            continue  # "-0" is 0: either answer is fine
        assert accepts(schema, text) == within(schema, Decimal(text)), text


def test_a_fractional_bound_on_a_number_is_refused_by_name() -> None:
    with pytest.raises(InvalidRequestError, match=r"maximum 0.5") as err:
        bounded_number_gbnf({"type": "number", "maximum": 0.5}, HERE)
    assert err.value.location == HERE


def test_bounds_no_value_satisfies_are_a_400() -> None:
    with pytest.raises(InvalidRequestError, match="no integer"):
        bounded_number_gbnf({"type": "integer", "minimum": 3, "maximum": 2}, HERE)
    with pytest.raises(InvalidRequestError, match="no number"):
        bounded_number_gbnf(
            {"type": "number", "exclusiveMinimum": 2, "maximum": 2}, ("constraint",)
        )


def test_schemas_without_bounds_are_left_to_the_converter() -> None:
    assert bounded_number_gbnf({"type": "integer"}, HERE) is None
    assert bounded_number_gbnf({"type": "integer", "minimum": 0, "enum": [1, 2]}, HERE) is None
    assert bounded_number_gbnf({"type": "string", "minimum": 0}, HERE) is None


def test_naturals_spell_every_length_between_the_ends() -> None:
    pattern = as_regex(naturals(7, 1205))
    accepted = [n for n in range(3000) if pattern.fullmatch(str(n))]
    assert accepted == list(range(7, 1206))
