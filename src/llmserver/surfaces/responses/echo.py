"""What a response echoes of its request, and how its stream and errors are written."""

from __future__ import annotations

from typing import Any

from llmserver.errors import APIError
from llmserver.http.streaming import KEEPALIVE, Framing, named_event
from llmserver.surfaces.responses.schemas import CreateResponseRequest, ToolParam
from llmserver.surfaces.responses.translate import reasoning_effort


def error_event(err: APIError) -> dict[str, Any]:
    """The stream's ``error`` event for a failure the run could not turn into
    ``response.failed`` (its ``sequence_number`` is unknown here: 0)."""
    return {
        "type": "error",
        "code": err.code or err.type,
        "message": err.message,
        "param": err.param,
        "sequence_number": 0,
    }


#: the Responses API's server-sent events: each named by its type, comment keep-alives, no end
#: marker (the terminal event ends the stream)
RESPONSES_SSE = Framing("text/event-stream", named_event, b"", KEEPALIVE, error_event)


def _tool(tool: ToolParam) -> dict[str, Any]:
    if tool.type == "namespace":
        return {
            "type": "namespace",
            "name": tool.name,
            "description": tool.description,
            "tools": [_tool(inner) for inner in tool.tools or ()],
        }
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": tool.strict,
    }


def _format(req: CreateResponseRequest) -> dict[str, Any]:
    fmt = req.text.format if req.text is not None else None
    if fmt is None:
        return {"type": "text"}
    return fmt.model_dump(by_alias=True, exclude_none=True, exclude_unset=True) | {"type": fmt.type}


def _tool_choice(req: CreateResponseRequest) -> Any:
    choice = req.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else {"type": choice.type, "name": choice.name}


def head(req: CreateResponseRequest) -> dict[str, Any]:
    """The response's fields that echo the request, in OpenAI's names."""
    return {
        "background": bool(req.background),
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": None,
        "metadata": req.metadata or {},
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": req.previous_response_id,
        "reasoning": {"effort": reasoning_effort(req), "summary": None},
        "service_tier": "default",
        "store": req.store is not False,
        "temperature": req.temperature,
        "text": {"format": _format(req)},
        "tool_choice": _tool_choice(req),
        "tools": [_tool(tool) for tool in req.tools or ()],
        "top_logprobs": req.top_logprobs or 0,
        "top_p": req.top_p,
        "truncation": req.truncation or "disabled",
        "user": req.user,
    }
