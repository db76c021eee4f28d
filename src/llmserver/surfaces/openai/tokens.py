"""Token tools in vLLM's shape (``POST /tokenize``, ``POST /detokenize``), also taking
llama-server's field names (``content``, ``add_special``, ``with_pieces``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field, StrictBool, StrictInt, model_validator
from starlette.responses import Response

from llmserver.core.requests import DetokenizeRequest, TokenizeRequest
from llmserver.core.tokens import TokenList
from llmserver.http.respond import caller, json_response, service
from llmserver.surfaces.openai import translate
from llmserver.surfaces.openai.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    ToolDefinition,
    _Request,
)


class TokenizeBody(_Request):
    """``POST /tokenize``: ``prompt`` (llama-server: ``content``) or ``messages``."""

    model: str | None = None
    prompt: str | None = None
    content: str | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    tools: list[ToolDefinition] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    add_special_tokens: StrictBool | None = None
    add_special: StrictBool | None = None
    return_token_strs: StrictBool | None = None
    with_pieces: StrictBool | None = None

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeBody:
        given = [n for n in ("prompt", "content", "messages") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of prompt, content or messages")
        return self


class DetokenizeBody(_Request):
    """``POST /detokenize``."""

    model: str | None = None
    tokens: list[StrictInt]


def tokenize_request(body: TokenizeBody) -> TokenizeRequest:
    """The core's request: a chat's messages go through the chat translation (so they are
    checked and rendered as a chat would be)."""
    add = body.add_special_tokens if body.add_special_tokens is not None else body.add_special
    if body.messages is not None:
        chat = ChatCompletionRequest(
            model=body.model,
            messages=body.messages,
            tools=body.tools,
            chat_template_kwargs=body.chat_template_kwargs,
        )
        return TokenizeRequest(body.model, chat=translate.chat_request(chat), add_special=add)
    text = body.prompt if body.prompt is not None else body.content
    return TokenizeRequest(body.model, prompt=text, add_special=add)


def tokenize_body(result: TokenList, body: TokenizeBody) -> dict[str, Any]:
    """vLLM's answer; ``with_pieces`` makes each token llama-server's ``{id, piece}``."""
    tokens: list[Any] = list(result.tokens)
    if body.with_pieces:
        tokens = [{"id": t, "piece": p} for t, p in zip(result.tokens, result.pieces, strict=True)]
    out: dict[str, Any] = {
        "count": len(result.tokens),
        "max_model_len": result.max_model_len,
        "tokens": tokens,
    }
    if body.return_token_strs:
        out["token_strs"] = list(result.pieces)
    return out


router = APIRouter()


@router.post("/tokenize")
async def tokenize(request: Request, body: TokenizeBody) -> Response:
    """``POST /tokenize``: the model's tokens of a prompt or of a chat."""
    result = await service(request).tokenize(caller(request), tokenize_request(body))
    return json_response(tokenize_body(result, body))


@router.post("/detokenize")
async def detokenize(request: Request, body: DetokenizeBody) -> Response:
    """``POST /detokenize``: the text of token ids (``prompt``, and llama-server's
    ``content``)."""
    core = DetokenizeRequest(body.model, tuple(body.tokens))
    text = await service(request).detokenize(caller(request), core)
    return json_response({"prompt": text, "content": text})
