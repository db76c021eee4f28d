"""The OpenAI endpoints a batch may target, as :class:`~llmserver.jobs.lines.LineHandler`\\ s.

Each validates a line's body with the same schema as its synchronous route, translates it with
the same functions and builds the same response body, so a batch answer is exactly what
``POST /v1/chat/completions`` (``/v1/completions``, ``/v1/embeddings``) would have returned.
This module depends on the jobs layer's interface, never the other way round; the app hands
:func:`handlers` to the runner.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from llmserver.core.caller import Caller
from llmserver.core.service import Service
from llmserver.errors import APIError
from llmserver.http.errors import openai_error, validation_error
from llmserver.jobs.lines import LineAnswer, LineHandler
from llmserver.surfaces.openai import translate
from llmserver.surfaces.openai.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)

R = TypeVar("R", bound=BaseModel)


class _Endpoint(Generic[R]):
    """What the three endpoints share: parsing a body with the route's own schema."""

    schema: type[R]

    def parse(self, body: dict[str, Any]) -> R:
        try:
            return self.schema.model_validate(body)
        except ValidationError as exc:
            raise validation_error(RequestValidationError(exc.errors())) from None

    def error_body(self, error: APIError) -> dict[str, Any]:
        return openai_error(error)


class ChatLines(_Endpoint[ChatCompletionRequest]):
    """``/v1/chat/completions`` lines."""

    schema = ChatCompletionRequest

    def check(self, body: dict[str, Any]) -> str | None:
        req = self.parse(body)
        translate.chat_request(req)
        return req.model

    async def run(self, service: Service, caller: Caller, body: dict[str, Any]) -> LineAnswer:
        gen = service.chat(caller, translate.chat_request(self.parse(body)))
        return LineAnswer(await translate.chat_response(gen), gen.model, gen.usage)


class CompletionLines(_Endpoint[CompletionRequest]):
    """``/v1/completions`` lines."""

    schema = CompletionRequest

    def check(self, body: dict[str, Any]) -> str | None:
        req = self.parse(body)
        if translate.infill_request(req) is None:
            translate.text_request(req)
        return req.model

    async def run(self, service: Service, caller: Caller, body: dict[str, Any]) -> LineAnswer:
        req = self.parse(body)
        if (infill := translate.infill_request(req)) is not None:  # fill-in-the-middle
            gen = service.infill(caller, infill)
            echoed: list[str] | None = [infill.prefix] * gen.n_choices
        else:
            gen = service.text(caller, translate.text_request(req))
            echoed = None
        answer = await translate.completion_response(gen, req.echo, echoed=echoed)
        return LineAnswer(answer, gen.model, gen.usage)


class EmbeddingLines(_Endpoint[EmbeddingRequest]):
    """``/v1/embeddings`` lines."""

    schema = EmbeddingRequest

    def check(self, body: dict[str, Any]) -> str | None:
        req = self.parse(body)
        translate.embed_request(req)
        return req.model

    async def run(self, service: Service, caller: Caller, body: dict[str, Any]) -> LineAnswer:
        req = self.parse(body)
        result = await service.embed(caller, translate.embed_request(req))
        body_out = translate.embedding_body(result, req.encoding_format)
        return LineAnswer(body_out, result.model, result.usage)


def handlers() -> dict[str, LineHandler]:
    """Every endpoint a batch may target, by path."""
    return {
        "/v1/chat/completions": ChatLines(),
        "/v1/completions": CompletionLines(),
        "/v1/embeddings": EmbeddingLines(),
    }
