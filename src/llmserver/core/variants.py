"""What a model's configuration adds to every request: its ``system`` prompt (a chat that has
no system message of its own gets it first) and its ``stop`` strings (added to the request's).

Derived models (``from:``, Ollama's ``/api/create``) are the usual source, as a Modelfile's
``SYSTEM`` and ``PARAMETER stop`` are in Ollama.
"""

from __future__ import annotations

import dataclasses

from llmserver.config.model_configs import ModelConfig
from llmserver.core.requests import ChatRequest, Message, Sampling


def with_system(config: ModelConfig, messages: list[Message]) -> list[Message]:
    """``messages`` with the model's system prompt first (unless they bring their own), then
    its preset turns."""
    if not config.system and not config.messages:
        return messages
    lead = messages[:1] if messages and messages[0].role == "system" else []
    if lead or any(m.role == "system" for m in messages) or not config.system:
        system = lead
    else:
        system = [Message("system", config.system)]
    preset = [Message(m.role, m.content) for m in config.messages]
    return [*system, *preset, *messages[len(lead) :]]


def with_stops(config: ModelConfig, sampling: Sampling) -> Sampling:
    """``sampling`` with the model's stop strings after the request's own."""
    if not config.stop:
        return sampling
    stops = tuple(dict.fromkeys((*sampling.stop, *config.stop)))
    return dataclasses.replace(sampling, stop=stops)


def chat_variant(config: ModelConfig, req: ChatRequest) -> ChatRequest:
    """``req`` with the model's system prompt and stop strings."""
    messages = with_system(config, list(req.messages))
    sampling = with_stops(config, req.sampling)
    if messages == list(req.messages) and sampling is req.sampling:
        return req
    return dataclasses.replace(req, messages=tuple(messages), sampling=sampling)
