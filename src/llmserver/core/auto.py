"""Choosing the model for ``model: "auto"`` (:mod:`llmserver.core.routing` holds the rules):
the service asks :func:`choose` before a chat, with its own ways to check a model for the
caller, to count a prompt's tokens and to run the router model."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from llmserver.config.routing import RoutingConfig
from llmserver.core.caller import Caller
from llmserver.core.requests import ChatRequest
from llmserver.core.routing import (
    Decision,
    RouteContext,
    by_rules,
    route_name,
    router_request,
)
from llmserver.core.usage import Usage
from llmserver.errors import InvalidRequestError

logger = logging.getLogger("llmserver.routing")

#: runs a chat request to its end: (its first choice's text, prompt tokens, completion tokens)
RunChat = Callable[[ChatRequest], Awaitable[tuple[str, int, int]]]


async def choose(
    routing: RoutingConfig,
    caller: Caller,
    req: ChatRequest,
    ctx: RouteContext,
    allowed: Callable[[str], bool],
    count: Callable[[], int],
    run: RunChat,
) -> Decision:
    """Rules first, then the router model, then the default; a 400 when none chooses."""
    decision = by_rules(routing, caller, req, ctx, count, allowed)
    router = routing.router
    spent: Usage | None = None
    if decision is None and router is not None:
        names = [n for n, r in router.routes.items() if allowed(r.model)]
        if names:
            text, prompt, completion = await run(router_request(router, names, req))
            name = route_name(text, names)
            spent = Usage(prompt_tokens=prompt, completion_tokens=completion)
            logger.info(
                "router %s chose %s (answer %r; %d prompt and %d completion tokens)",
                router.model,
                name,
                text[:80],
                prompt,
                completion,
            )
            if name is not None:
                decision = Decision(router.routes[name].model, f"router:{name}")
    if decision is None and routing.default is not None and allowed(routing.default):
        decision = Decision(routing.default, "default")
    if decision is None:
        raise InvalidRequestError(
            "model 'auto': no routing rule or route chose a model this key may use, and "
            "routing has no default",
            param="model",
            code="no_route",
        )
    logger.info("model auto: %s chose %s", decision.reason, decision.model)
    if spent is not None and router is not None:
        decision = dataclasses.replace(decision, router=router.model, router_usage=spent)
    return decision
