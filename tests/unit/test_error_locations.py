"""A core error's structured location, named by each surface in its own words."""

from __future__ import annotations

import pytest

from llmserver.errors import InvalidRequestError, Location
from llmserver.http.errors import openai_error
from llmserver.surfaces.anthropic.tools import in_anthropic_terms


@pytest.mark.parametrize(
    ("location", "param"),
    [
        (("tools", 2, "parameters"), "tools[2].function.parameters"),
        (("tools", 0, "name"), "tools[0].function.name"),
        (("tools",), "tools"),
        (("messages", 3, "tool_call_id"), "messages[3].tool_call_id"),
        (("constraint",), "response_format.json_schema.schema"),
        ((), None),
    ],
)
def test_openai_names_a_core_location_as_its_param(location: Location, param: str | None) -> None:
    body = openai_error(InvalidRequestError("bad", location=location))
    assert body["error"]["param"] == param


def test_a_surfaces_own_param_wins_over_a_location() -> None:
    err = InvalidRequestError("bad", param="tools[0].function.name", location=("tools",))
    assert openai_error(err)["error"]["param"] == "tools[0].function.name"


@pytest.mark.parametrize(
    ("location", "where"),
    [(("tools", 1, "parameters"), "tools.1.input_schema"), (("tools", 0, "name"), "tools.0.name")],
)
def test_anthropic_names_a_tool_location_before_the_message(location: Location, where: str) -> None:
    named = in_anthropic_terms(InvalidRequestError("is wrong", location=location, code="c"))
    assert (named.message, named.param, named.code) == (f"{where}: is wrong", where, "c")


def test_anthropic_leaves_other_errors_as_they_are() -> None:
    err = InvalidRequestError("no", location=("messages", 1, "tool_call_id"))
    assert in_anthropic_terms(err) is err
