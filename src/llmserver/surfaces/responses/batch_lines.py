"""``/v1/responses`` as a batch endpoint: each line validated, translated and answered by
the same functions as ``POST /v1/responses``, so a line's body in the output file is the
response the route would have sent.

A batch line is stateless: it cannot continue a stored response (``previous_response_id``) or
run in the background, and its response lives in the batch's output file rather than in the
response store (``store`` is echoed as false).
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from llmserver.core.caller import Caller
from llmserver.core.service import Service
from llmserver.errors import APIError, InvalidRequestError
from llmserver.http.errors import openai_error, validation_error
from llmserver.jobs.lines import LineAnswer
from llmserver.surfaces.responses import translate
from llmserver.surfaces.responses.echo import head
from llmserver.surfaces.responses.schemas import CreateResponseRequest
from llmserver.surfaces.responses.stream import ResponseBuilder, events, final, response_id
from llmserver.surfaces.responses.truncation import fit


class ResponseLines:
    """``/v1/responses`` lines."""

    def parse(self, body: dict[str, Any]) -> CreateResponseRequest:
        """The line's body as the route reads it; a 400 for what a line cannot do."""
        try:
            req = CreateResponseRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_error(RequestValidationError(exc.errors())) from None
        for name in ("previous_response_id", "background"):
            if getattr(req, name):
                raise InvalidRequestError(
                    f"'{name}' is not supported in a batch line: each line stands alone",
                    param=name,
                    code="unsupported_parameter",
                )
        return req

    def check(self, body: dict[str, Any]) -> str | None:
        req = self.parse(body)
        translate.chat_request(req)
        return req.model

    async def run(self, service: Service, caller: Caller, body: dict[str, Any]) -> LineAnswer:
        req = self.parse(body)
        translated = translate.chat_request(req)
        try:
            if req.truncation == "auto":
                translated = await fit(service, caller, req.instructions, translated)
            gen = service.chat(caller, translated.chat)
        except InvalidRequestError as exc:
            raise translate.in_responses_terms(exc, translated.tools.paths) from None
        echoed = head(req) | {"store": False}
        namespaces = translated.tools.namespaces
        builder = ResponseBuilder(response_id(gen), gen.model, echoed, gen.created, namespaces)
        return LineAnswer(await final(events(gen, builder)), gen.model, gen.usage)

    def error_body(self, error: APIError) -> dict[str, Any]:
        return openai_error(error)
