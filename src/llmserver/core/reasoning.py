"""Reasoning models: knowing one, and deciding per request whether and how long it thinks.

A model's thought format comes from its config (``reasoning``) or, with ``format: auto``, from
its chat template: a template that writes ``<think>`` (Qwen3, DeepSeek-R1, SmolLM3) or reads
``enable_thinking`` (Qwen3's switch). Per request, :func:`decide` turns the caller's
:class:`~llmserver.core.requests.Thinking` into template variables, and :func:`thought_spec`
reads the rendered prompt: a prompt that ends with the start marker has opened the thought
(R1's "already open" style), one that ends with the end marker has closed it (Qwen3 with
``enable_thinking: false``). Thinking switched off where the template has no switch closes an
open thought in the prompt, and is stripped from the output otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmserver.backends.thought import ThoughtSpec
from llmserver.core.requests import Thinking

if TYPE_CHECKING:
    from llmserver.core.manager import ModelHandle

logger = logging.getLogger("llmserver.reasoning")

#: the template variable Qwen3's (and SmolLM3's, Granite's) templates switch thinking with
SWITCH = "enable_thinking"


@dataclass(frozen=True, slots=True)
class ReasoningFormat:
    """A model's thought format: its markers, whether its template has Qwen3's switch, and
    its configured default and budget. ``source`` says where it was found (for the log)."""

    start: str
    end: str
    switch: bool
    default_on: bool = True
    budget: int | None = None
    source: str = "template"
    #: the reply starts inside the thought whatever the prompt (``format: open``)
    opens: bool = False

    def describe(self) -> str:
        """One line for the load log."""
        switch = f", switched by {SWITCH}" if self.switch else ""
        budget = f", budget {self.budget} tokens" if self.budget is not None else ""
        state = "on" if self.default_on else "off"
        return f"{self.start}...{self.end} ({self.source}{switch}; {state} by default{budget})"


def reasoning_format(handle: ModelHandle) -> ReasoningFormat | None:
    """The model's thought format (None: it does not think, or it is not known yet: a model
    loaded on demand shows its template's format once loaded)."""
    config = handle.config.reasoning
    if config.format == "none":
        return None
    source = handle.template.source if handle.template is not None else ""
    switch = SWITCH in source
    if config.format == "auto":
        if not (config.start in source or switch):
            return None
        found = "detected from the chat template"
    else:
        found = "from the config"
    on = config.default == "on"
    opens = config.format == "open"
    return ReasoningFormat(config.start, config.end, switch, on, config.budget, found, opens)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether this request thinks, its thought budget, and the template variables to add."""

    enabled: bool
    budget: int | None
    kwargs: Mapping[str, Any]
    #: the template's switch decides (so a closed prompt means no thought)
    switched: bool


def decide(
    fmt: ReasoningFormat, thinking: Thinking, kwargs: Mapping[str, Any], constrained: bool
) -> Decision:
    """The request's choice over the model's default; ``chat_template_kwargs.enable_thinking``
    counts as the request's choice. ``constrained``: the output must be JSON and the engine
    cannot apply a constraint after a thought, so the thought is switched off."""
    enabled = fmt.default_on
    if SWITCH in kwargs:
        enabled = bool(kwargs[SWITCH])
    if thinking.enabled is not None:
        enabled = thinking.enabled
    if constrained and enabled:
        logger.info("thinking switched off: this engine constrains the whole output to JSON")
        enabled = False
    budget = thinking.budget if thinking.budget is not None else fmt.budget
    extra = dict(kwargs)
    if fmt.switch:
        extra[SWITCH] = enabled
    return Decision(enabled, budget, extra, fmt.switch)


def thought_spec(
    fmt: ReasoningFormat, decision: Decision, prompt: str, constrained: bool
) -> tuple[str, ThoughtSpec]:
    """The prompt as the model gets it and how its output holds the thought.

    Thinking off: an opened thought is closed in the prompt (the model answers at once);
    otherwise a thought the model writes anyway is dropped from what is shown. A constrained
    answer (JSON, a tool grammar) after a thought the model would open itself gets the thought
    opened in the prompt, so the engine knows where the constraint starts.
    """
    tail = prompt.rstrip()
    closed = tail.endswith(fmt.end)
    opened = tail.endswith(fmt.start) or (fmt.opens and not closed)
    if not decision.enabled:
        if opened:
            opener = "" if tail.endswith(fmt.start) else f"{fmt.start}\n"
            closing = f"{prompt}{opener}{fmt.end}\n\n"
            return closing, ThoughtSpec(fmt.start, fmt.end, drop=True)
        return prompt, ThoughtSpec(fmt.start, fmt.end, drop=True)
    if closed:  # the template closed it (a switch we do not know of): nothing to split
        return prompt, ThoughtSpec(fmt.start, fmt.end, drop=True)
    if constrained and not opened:
        prompt, opened = f"{prompt}{fmt.start}\n", True
    return prompt, ThoughtSpec(fmt.start, fmt.end, open=opened, budget=decision.budget)


def render(
    handle: ModelHandle,
    thinking: Thinking,
    kwargs: Mapping[str, Any],
    constrained: bool,
    render_with: Callable[[Mapping[str, Any]], str],
) -> tuple[str, ThoughtSpec | None]:
    """A chat's prompt (``render_with`` the template variables) and, for a reasoning model,
    how its output holds the thought. ``constrained``: the answer must be JSON; an engine
    that cannot apply a constraint after the thought gets thinking switched off."""
    fmt = reasoning_format(handle)
    if fmt is None:
        return render_with(kwargs), None
    blind = constrained and not handle.abilities().thoughts
    decision = decide(fmt, thinking, kwargs, blind)
    return thought_spec(fmt, decision, render_with(decision.kwargs), constrained)


def relay_spec(handle: ModelHandle, thinking: Thinking) -> ThoughtSpec | None:
    """For an upstream engine: the thought format its config gives (its output may hold the
    thought between markers) and what the caller asked, for the engine to be told."""
    fmt = reasoning_format(handle)
    if fmt is None and thinking.enabled is None:
        return None
    start, end = (fmt.start, fmt.end) if fmt is not None else ("<think>", "</think>")
    budget = thinking.budget if thinking.budget is not None else (fmt.budget if fmt else None)
    drop = thinking.enabled is False
    return ThoughtSpec(start, end, budget=budget, drop=drop, asked=thinking.enabled)
