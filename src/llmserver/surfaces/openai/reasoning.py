"""A reasoning model's thought on OpenAI's chat surface: the controls a request sends, and the
field the thought goes out in.

Peers disagree on the field: llama-server, SGLang and DeepSeek's API send
``reasoning_content``, vLLM and Ollama's ``/v1`` send ``reasoning``; the ``reasoning_field``
setting (the model's ``reasoning.field`` first) picks one, ``both``, or ``inline``, which
leaves the thought in ``content`` between ``<think>`` and ``</think>`` for clients that parse
it themselves.
"""

from __future__ import annotations

from typing import Any

from llmserver.core.requests import Thinking
from llmserver.surfaces.openai.schemas import ChatCompletionRequest

#: the markers an ``inline`` thought is written between
INLINE_START, INLINE_END = "<think>", "</think>"


def thinking(req: ChatCompletionRequest) -> Thinking:
    """The request's thinking control: ``reasoning_effort`` (:meth:`Thinking.of_effort`), else
    Ollama's ``think`` (a boolean or a level)."""
    if req.reasoning_effort is not None:
        return Thinking.of_effort(req.reasoning_effort)
    think = req.think
    if isinstance(think, bool):
        return Thinking(enabled=think)
    if think is not None:
        return Thinking(enabled=True, effort=think)
    return Thinking()


def sent_back(reasoning_content: str | None, reasoning: str | None) -> str:
    """An assistant turn's thought as a client sends it back, under either name."""
    return reasoning_content or reasoning or ""


def message_fields(field: str, thought: str, content: str) -> dict[str, Any]:
    """A whole message's ``content`` and thought fields."""
    if field == "inline":
        text = f"{INLINE_START}{thought}{INLINE_END}\n\n{content}" if thought else content
        return {"content": text}
    return {"content": content, **_thought(field, thought or None)}


def _thought(field: str, thought: str | None) -> dict[str, Any]:
    if field == "both":
        return {"reasoning_content": thought, "reasoning": thought}
    return {field: thought}


class DeltaFields:
    """Streamed ``delta`` fields of one choice: the thought in its field, or inline in
    ``content`` with the markers written where the thought begins and ends."""

    def __init__(self, field: str) -> None:
        self._field = field
        self._inline = field == "inline"
        self._open = False

    def __call__(self, thought: str, content: str) -> dict[str, Any]:
        """The delta's fields (empty: nothing to send)."""
        out: dict[str, Any] = {}
        if self._inline:
            text = ""
            if thought:
                text = thought if self._open else INLINE_START + thought
                self._open = True
            if content:
                text += (INLINE_END + "\n\n" if self._open else "") + content
                self._open = False
            return {"content": text} if text else out
        if thought:
            out.update(_thought(self._field, thought))
        if content:
            out["content"] = content
        return out
