"""``model: "auto"``: the ``routing`` setting's rules, then its router model, then its default.

Rules look at what the surface knows of the request (surface, path, headers), the caller's key
and the conversation (the last user message, the system prompt, the prompt's length in tokens).
The router model reads the last user message and answers under a JSON schema whose only
strings are the route names, so its answer is always one of them. A model the caller's key may
not use is never chosen: such a rule is passed over and such a route is not offered.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from llmserver.config.routing import RouterModel, RouteRule, RoutingConfig
from llmserver.core.caller import Caller
from llmserver.core.requests import ChatRequest, JsonConstraint, Message, Sampling
from llmserver.core.usage import Usage

logger = logging.getLogger("llmserver.routing")

#: the model name that asks for routing
AUTO = "auto"
#: the response header that says what chose the model
ROUTE_HEADER = "x-llmserver-route"


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What the surface knows of the request: its name, the path and the headers (lower-case
    names)."""

    surface: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """The model chosen and why: ``rule:<name>``, ``router:<route>`` or ``default``; and the
    router model's own tokens when it was asked (they are the caller's too)."""

    model: str
    reason: str
    router: str | None = None
    router_usage: Usage | None = None


def last_user(req: ChatRequest) -> str:
    """The text of the last user message ('' when there is none)."""
    return next((m.content for m in reversed(req.messages) if m.role == "user"), "")


def system_prompt(req: ChatRequest) -> str:
    """The system messages' text."""
    return "\n".join(m.content for m in req.messages if m.role == "system")


def matches(
    rule: RouteRule,
    caller: Caller,
    req: ChatRequest,
    ctx: RouteContext,
    count: Callable[[], int],
) -> bool:
    """Whether every condition ``rule`` sets holds (``count`` gives the prompt's tokens)."""
    if rule.surface and ctx.surface not in rule.surface:
        return False
    if rule.key and caller.name not in rule.key:
        return False
    if rule.path is not None and not ctx.path.startswith(rule.path):
        return False
    for name, pattern in rule.headers.items():
        if re.search(pattern, ctx.headers.get(name, "")) is None:
            return False
    if rule.regex is not None and re.search(rule.regex, last_user(req)) is None:
        return False
    if rule.system_regex is not None and re.search(rule.system_regex, system_prompt(req)) is None:
        return False
    if rule.min_prompt_tokens is None and rule.max_prompt_tokens is None:
        return True
    tokens = count()
    low, high = rule.min_prompt_tokens or 0, rule.max_prompt_tokens
    return tokens >= low and (high is None or tokens <= high)


def by_rules(
    routing: RoutingConfig,
    caller: Caller,
    req: ChatRequest,
    ctx: RouteContext,
    count: Callable[[], int],
    allowed: Callable[[str], bool],
) -> Decision | None:
    """The first matching rule whose model the caller may use."""
    for rule in routing.rules:
        if matches(rule, caller, req, ctx, count) and allowed(rule.model):
            return Decision(rule.model, f"rule:{rule.name}")
    return None


def router_request(router: RouterModel, names: list[str], req: ChatRequest) -> ChatRequest:
    """The router model's request: its instructions, the last user message, and a schema that
    admits only ``{"route": <one of names>}``."""
    routes = "\n".join(f"- {n}: {router.routes[n].description or n}" for n in names)
    instructions = router.instructions or (
        "Choose the route for the user's message. Routes:\n"
        f'{routes}\nAnswer with JSON: {{"route": <route name>}}.'
    )
    schema = {
        "type": "object",
        "properties": {"route": {"type": "string", "enum": names}},
        "required": ["route"],
        "additionalProperties": False,
    }
    return ChatRequest(
        model=router.model,
        messages=(
            Message("system", instructions),
            Message("user", last_user(req)[: router.max_input_chars]),
        ),
        sampling=Sampling(temperature=0.0, max_tokens=32, seed=0),
        constraint=JsonConstraint(schema=schema),
    )


def route_name(text: str, names: list[str]) -> str | None:
    """The route the router's answer names (None: not one of ``names``)."""
    try:
        name = json.loads(text).get("route")
    except (ValueError, AttributeError):
        return None
    return name if name in names else None
