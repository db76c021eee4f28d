"""The one place exceptions become responses, each in the shape of the surface it came through.

Every surface renders an :class:`~llmserver.errors.APIError` its own way (OpenAI's
``{"error": {...}}``, Ollama's ``{"error": "..."}``, Anthropic's envelope, ...). Each surface's
descriptor names its shape and path prefixes; the app gathers them in one :class:`ErrorShapes`,
which the exception handlers and the middleware that answer before any route runs (401, 403,
413, 429) are given, so nothing answers in a shape its client cannot read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from llmserver.errors import (
    APIError,
    InternalError,
    InvalidRequestError,
    Location,
    MethodNotAllowedError,
    NotFoundError,
)
from llmserver.http.context import request_context
from llmserver.http.jsonbytes import dumps

logger = logging.getLogger("llmserver.errors")

#: an error's JSON body in one surface's shape
ErrorShape = Callable[[APIError], dict[str, Any]]


def openai_error(err: APIError) -> dict[str, Any]:
    """OpenAI's error object, the server's default shape: ``{"error": {message, type, param,
    code}}``."""
    param = err.param if err.param is not None else openai_param(err.location)
    return {"error": {"message": err.message, "type": err.type, "param": param, "code": err.code}}


def openai_param(location: Location) -> str | None:
    """A core error's location in OpenAI's words: ``("tools", 0, "parameters")`` is
    ``tools[0].function.parameters``, the output constraint is the response format's schema."""
    match location:
        case ():
            return None
        case ("constraint",):
            return "response_format.json_schema.schema"
        case ("tools", int(i), str(name)):
            return f"tools[{i}].function.{name}"
    first, *rest = location
    return str(first) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)


def _matches(path: str, prefix: str) -> bool:
    base = prefix.rstrip("/")
    return path == base or path.startswith(base + "/")


@dataclass(frozen=True, slots=True)
class ErrorShapes:
    """Each surface's error shape by path prefix; OpenAI's where no prefix matches.

    The longest matching prefix wins, so a surface may claim a path under another's prefix
    (OpenAI's ``/api/v1`` aliases under Ollama's ``/api``)."""

    by_prefix: tuple[tuple[str, ErrorShape], ...] = ()

    def for_path(self, path: str) -> ErrorShape:
        """The error shape of the surface that serves ``path``."""
        best: tuple[int, ErrorShape] = (-1, openai_error)
        for prefix, shape in self.by_prefix:
            if len(prefix) > best[0] and _matches(path, prefix):
                best = (len(prefix), shape)
        return best[1]


def as_api_error(exc: BaseException) -> APIError:
    """``exc`` itself when it is an API error, else a bare 500 (the traceback is logged)."""
    return exc if isinstance(exc, APIError) else InternalError()


def error_response(scope: Scope, err: APIError, shapes: ErrorShapes) -> Response:
    """``err`` as a JSON response in the request's surface shape, its code noted on the access
    record (metrics classify by it)."""
    request_context(scope).access.error_code = err.code
    return Response(
        dumps(shapes.for_path(scope.get("path", ""))(err)),
        status_code=err.status,
        media_type="application/json",
        headers=err.headers,
    )


_UNION_TAGS = {"str", "int", "float", "bool", "function-after", "function-plain"}


def _param_from_loc(loc: tuple[int | str, ...]) -> str | None:
    parts = [p for p in loc if p != "body"]
    out = ""
    for part in parts:
        # pydantic names union members (``str``, ``list[...]``) and tags in the location
        if isinstance(part, str) and ("[" in part or part in _UNION_TAGS):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or None


def validation_error(exc: RequestValidationError) -> InvalidRequestError:
    """Translate FastAPI's validation error into a 400 with ``param`` set."""
    errors = exc.errors()
    if not errors:
        return InvalidRequestError("invalid request")
    first = errors[0]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return InvalidRequestError(
            "We could not parse the JSON body of your request. Please send valid JSON.",
            code="invalid_json",
        )
    loc = tuple(first.get("loc", ()))
    if kind in {"model_attributes_type", "dict_type"} and loc in {("body",), ()}:
        return InvalidRequestError("The request body must be a JSON object.", code="invalid_body")
    param = _param_from_loc(loc)
    msg = str(first.get("msg", "invalid value"))
    if kind == "missing":
        message = f"Missing required parameter: '{param}'."
        return InvalidRequestError(message, param=param, code="missing_required_parameter")
    message = f"Invalid value for '{param}': {msg}." if param else msg
    return InvalidRequestError(message, param=param, code="invalid_value")


def install_exception_handlers(app: FastAPI, shapes: ErrorShapes) -> None:
    """Map every exception the app can raise to a response in its surface's shape."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return error_response(request.scope, exc, shapes)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(request.scope, validation_error(exc), shapes)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            err: APIError = NotFoundError("Not found: no such route.")
        elif exc.status_code == 405:
            err = MethodNotAllowedError("Method not allowed.")
        else:
            err = APIError(str(exc.detail), code=str(exc.status_code))
            err.status = exc.status_code
        return error_response(request.scope, err, shapes)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request.scope, InternalError(), shapes)

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
