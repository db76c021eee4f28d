"""The tools the tool-calling tests offer, in each wire shape, and the calls a fake model
replies with. Two families: a small weather tool (a city) for the fake-backend tests, and the
weather and add tools with tighter schemas that the real-model tests validate against."""

from __future__ import annotations

from typing import Any


def openai_tool(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """A tool as OpenAI's (and Ollama's, and LangChain's) ``tools`` list holds it."""
    function = {"name": name, "description": description, "parameters": parameters}
    return {"type": "function", "function": function}


def anthropic_tool(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A tool as Anthropic's ``tools`` list holds it."""
    return {"name": name, "description": description, "input_schema": schema}


# -- the fake-backend tests: a weather tool that needs a city -------------------------------------

#: the small weather tool's parameters
CITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
#: the small weather tool, OpenAI- and Ollama-shaped
WEATHER_TOOL = openai_tool("get_weather", "Weather in a city", CITY_SCHEMA)
#: the small weather tool, Anthropic-shaped
ANTHROPIC_WEATHER_TOOL = anthropic_tool("get_weather", "Weather in a city", CITY_SCHEMA)
#: the user's question that goes with it
WEATHER_QUESTION: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
#: a fake model's reply that is one call in the generic JSON tool format
GENERIC_CALL = '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}'
#: a fake model's reply with some text and two calls in the Hermes format
HERMES_CALLS = (
    'Let me look. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n'
    "</tool_call>"
)

# -- the real-model tests: schemas a constrained reply must validate against ---------------------

#: a city (at most 40 characters) and a unit, both required
CITY_UNIT_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
#: the same and an optional number of days, one to seven
WEATHER_PARAMS: dict[str, Any] = {
    **CITY_UNIT_PARAMS,
    "properties": {
        **CITY_UNIT_PARAMS["properties"],
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
}
#: two integers, both required
ADD_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
WEATHER_DESCRIPTION = "The weather forecast for a city"
ADD_DESCRIPTION = "Add two integers"
#: the weather (with days) and add tools, OpenAI-shaped
TOOLS: list[Any] = [
    openai_tool("get_weather", WEATHER_DESCRIPTION, WEATHER_PARAMS),
    openai_tool("add", ADD_DESCRIPTION, ADD_PARAMS),
]
#: each of ``TOOLS``' schemas by name
SCHEMAS = {"get_weather": WEATHER_PARAMS, "add": ADD_PARAMS}
#: the weather (without days) and add tools, Anthropic-shaped
ANTHROPIC_TOOLS: list[Any] = [
    anthropic_tool("get_weather", WEATHER_DESCRIPTION, CITY_UNIT_PARAMS),
    anthropic_tool("add", ADD_DESCRIPTION, ADD_PARAMS),
]
#: each of ``ANTHROPIC_TOOLS``' schemas by name
ANTHROPIC_SCHEMAS = {"get_weather": CITY_UNIT_PARAMS, "add": ADD_PARAMS}
#: the question that the real-model tests ask with those tools
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
