"""API error classes: a status, a type, a code and a message, in no wire format.

Each surface renders them in its own shape (``llmserver.http.errors``); the core and backends
raise them without knowing which surface will answer.
"""

from __future__ import annotations

from typing import ClassVar

#: where in a request an error lies, in the core's own terms: field names and indices, such as
#: ``("tools", 0, "parameters")``; each surface names it in its own words (OpenAI's
#: ``tools[0].function.parameters``, Anthropic's ``tools.0.input_schema``)
Location = tuple[str | int, ...]


class APIError(Exception):
    """An error with an HTTP status, an error type (OpenAI's names), a code and a message.

    ``param`` is a surface's own name for the field at fault; the core, which speaks no wire
    format, gives a structured ``location`` instead.
    """

    status: int = 500
    type: str = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        location: Location = (),
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.location = location
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}


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
        #: the name that was asked for
        self.model = model


class MethodNotAllowedError(APIError):
    """405: the route exists but not with this method."""

    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class ConflictError(APIError):
    """409: the request conflicts with a stored object (an idempotency key reused with another
    body, a cancel of a finished batch)."""

    status = 409
    type = "invalid_request_error"
    default_code = "conflict"


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


class StoreUnavailableError(ServiceUnavailableError):
    """503: a shared store (PostgreSQL, Redis) cannot be reached; the request may be tried
    again."""

    default_code = "store_unavailable"

    def __init__(self, what: str = "PostgreSQL") -> None:
        super().__init__(f"The shared store ({what}) is unreachable right now; try again shortly.")


class ModelNotReadyError(ServiceUnavailableError):
    """503: the model exists but is not loaded and warm."""

    default_code = "model_not_ready"


class ModelLoadFailedError(ModelNotReadyError):
    """503: the model failed to load (same code as not ready; the simple endpoints name it)."""


class InferenceTimeoutError(ServiceUnavailableError):
    """503: the generation ran past its time limit and was aborted.

    ``x-should-retry: false`` tells the OpenAI SDKs not to repeat the same long work.
    """

    default_code = "timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"inference timed out after {timeout_s:g} s", headers={"x-should-retry": "false"}
        )
        self.timeout_s = timeout_s


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
        self.status = status
        self.type = error_type or self.type


class InternalError(APIError):
    """500: anything unexpected. The traceback goes to the log only."""

    default_code = "internal_error"

    def __init__(self) -> None:
        super().__init__("internal server error")
