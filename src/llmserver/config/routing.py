"""The ``routing`` setting: how a request for ``model: "auto"`` finds its model (see
:mod:`llmserver.core.routing`)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _compiles(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {value!r}: {exc}") from None
    return value


class RouteRule(BaseModel):
    """One rule: every condition it sets must hold; the first rule that matches wins."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(min_length=1, description="The rule's name (in the route header and log).")
    model: str = Field(min_length=1, description="The model (id, alias or role) it picks.")
    surface: list[str] = Field(
        default_factory=list,
        description="Surfaces it applies to (openai, ollama, anthropic); empty: any.",
    )
    key: list[str] = Field(
        default_factory=list, description="API key names it applies to; empty: any caller."
    )
    path: str | None = Field(None, description="Request path prefix, e.g. /v1/chat.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Header name -> regular expression its value must match (search).",
    )
    regex: str | None = Field(
        None, description="Regular expression searched in the last user message."
    )
    system_regex: str | None = Field(
        None, description="Regular expression searched in the system prompt."
    )
    min_prompt_tokens: int | None = Field(None, ge=0, description="Prompt at least this long.")
    max_prompt_tokens: int | None = Field(None, ge=0, description="Prompt at most this long.")

    _regexes = field_validator("regex", "system_regex")(_compiles)

    @field_validator("headers")
    @classmethod
    def _header_regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern in value.values():
            _compiles(pattern)
        return {k.lower(): v for k, v in value.items()}


class RouterRoute(BaseModel):
    """A route the router model may choose."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(min_length=1, description="The model the route goes to.")
    description: str = Field("", description="What requests belong here (the router reads it).")


class RouterModel(BaseModel):
    """A (small) model that reads the request and names one of the routes."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(min_length=1, description="The router model.")
    routes: dict[str, RouterRoute] = Field(min_length=1, description="Route name -> route.")
    instructions: str | None = Field(
        None, description="The router's system prompt; None: one listing the routes."
    )
    max_input_chars: int = Field(
        2000, ge=1, description="Characters of the last user message the router reads."
    )


class RoutingConfig(BaseModel):
    """Rules, then a router model, then a default, for ``model: "auto"``."""

    model_config = ConfigDict(extra="forbid")

    rules: list[RouteRule] = Field(default_factory=list, description="Ordered rules.")
    router: RouterModel | None = Field(None, description="Asked when no rule matches.")
    default: str | None = Field(
        None, description="The model when nothing chose one; None: such a request is a 400."
    )

    def models(self) -> list[str]:
        """Every model name the routing refers to."""
        names = [r.model for r in self.rules]
        if self.router is not None:
            names += [self.router.model, *(r.model for r in self.router.routes.values())]
        return names + ([self.default] if self.default else [])
