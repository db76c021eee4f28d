"""API error classes and the one place that maps exceptions to OpenAI-shaped responses."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

logger = logging.getLogger("llmserver.errors")


class APIError(Exception):
    """An error with an HTTP status and an OpenAI error body."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The OpenAI error object: ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> Response:
        """This error as a JSON response."""
        return Response(
            orjson.dumps(self.body()),
            status_code=self.status,
            media_type="application/json",
            headers=self.headers,
        )


class InvalidRequestError(APIError):
    """400: the request is malformed or asks for something impossible."""

    status = 400
    type = "invalid_request_error"


class ContextLengthError(InvalidRequestError):
    """400: prompt plus requested tokens do not fit the model's context window."""

    default_code = "context_length_exceeded"


class AuthenticationError(APIError):
    """401: missing or wrong credentials."""

    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(APIError):
    """403: the caller may not do this."""

    status = 403
    type = "permission_error"
    default_code = "permission_denied"


class NotFoundError(APIError):
    """404: no such route or object."""

    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFoundError(NotFoundError):
    """404: the requested model id or alias is not configured."""

    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist", param="model")


class MethodNotAllowedError(APIError):
    """405: the route exists but not with this method."""

    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class PayloadTooLargeError(APIError):
    """413: the request body is larger than allowed."""

    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(APIError):
    """429: too many requests right now; ``Retry-After`` says when to try again."""

    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class ServiceUnavailableError(APIError):
    """503: the server cannot do this now (loading, timed out, engine failure)."""

    status = 503
    type = "server_error"
    default_code = "service_unavailable"


class ModelNotReadyError(ServiceUnavailableError):
    """503: the model exists but is not loaded and warm."""

    default_code = "model_not_ready"


class InferenceTimeoutError(ServiceUnavailableError):
    """503: the generation ran past its time limit and was aborted.

    ``x-should-retry: false`` tells the OpenAI SDKs not to repeat the same long work.
    """

    default_code = "timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"inference timed out after {timeout_s:g} s", headers={"x-should-retry": "false"}
        )


class OutOfMemoryError(ServiceUnavailableError):
    """503: the engine ran out of memory while generating."""

    default_code = "out_of_memory"

    def __init__(self) -> None:
        super().__init__("out of memory during inference")


class ShuttingDownError(ServiceUnavailableError):
    """503: the server is draining before it stops and takes no new work."""

    default_code = "shutting_down"

    def __init__(self) -> None:
        super().__init__("server is shutting down", headers={"Retry-After": "5"})


class EngineError(ServiceUnavailableError):
    """503: the engine failed while generating; the message is safe to show to clients."""

    default_code = "engine_error"


class UpstreamError(APIError):
    """502: an upstream engine answered with a server error."""

    status = 502
    type = "server_error"
    default_code = "upstream_error"


class MaskingFailedError(APIError):
    """500: personal-data masking failed, so the request was not passed on (fail closed)."""

    default_code = "pii_masking_failed"

    def __init__(self) -> None:
        super().__init__("Personal-data masking failed; the request was not processed.")


class UpstreamStatusError(APIError):
    """An upstream engine's 4xx answer, relayed with its own status, type, message and code."""

    type = "invalid_request_error"

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, headers=headers)
        self.http_status = status
        self.error_type = error_type or self.type

    def body(self) -> dict[str, Any]:
        """The upstream's error, in our shape."""
        body = super().body()
        body["error"]["type"] = self.error_type
        return body

    def response(self) -> Response:
        """This error with the upstream's status."""
        return Response(
            orjson.dumps(self.body()),
            status_code=self.http_status,
            media_type="application/json",
            headers=self.headers,
        )


class InternalError(APIError):
    """500: anything unexpected. The traceback goes to the log only."""

    default_code = "internal_error"

    def __init__(self) -> None:
        super().__init__("internal server error")


def error_body(exc: BaseException) -> dict[str, Any]:
    """The OpenAI error body for any exception; unexpected ones become a bare 500 body."""
    return exc.body() if isinstance(exc, APIError) else InternalError().body()


_UNION_TAGS = {"str", "int", "float", "function-after"}


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


def note_error(request: Request, err: APIError) -> Response:
    """``err`` as a response, its code noted on the access record (metrics classify by it)."""
    record = request.scope.get("state", {}).get("access")
    if record is not None:
        record.error_code = err.code
    return err.response()


def install_exception_handlers(app: FastAPI) -> None:
    """Map every exception the app can raise to an OpenAI-shaped JSON response."""

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return note_error(request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return note_error(request, validation_error(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return note_error(request, NotFoundError("Not found: no such route."))
        if exc.status_code == 405:
            return note_error(request, MethodNotAllowedError("Method not allowed."))
        err = APIError(str(exc.detail), code=str(exc.status_code))
        note_error(request, err)
        return Response(
            orjson.dumps(err.body()), status_code=exc.status_code, media_type="application/json"
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return note_error(request, InternalError())

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
