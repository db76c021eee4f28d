"""The simple endpoints' error body: ``detail`` (the module rules' shape, which FastAPI clients
read) beside OpenAI's ``error`` object, so both kinds of client understand it.

``detail`` is the error's message, or with ``error_language: ko`` the module rules' (seed 004)
Korean text for the rows of its error table; other errors keep their message.
"""

from __future__ import annotations

from typing import Any, Literal

from llmserver.errors import (
    APIError,
    InferenceTimeoutError,
    ModelLoadFailedError,
    OutOfMemoryError,
)
from llmserver.http.errors import ErrorShape, openai_error

Language = Literal["en", "ko"]

#: the module rules' texts, exactly as written there
KO_CONCURRENCY = "동시 추론 요청 한도 초과"
KO_TIMEOUT = "LLM 추론 타임아웃 ({seconds}초)"
KO_OUT_OF_MEMORY = "LLM 추론 중 메모리 부족"
KO_LOAD_FAILED = "LLM 모델 로딩 실패"
KO_INTERNAL = "서버 내부 오류가 발생했습니다"


def korean_detail(err: APIError) -> str:
    """The module rules' Korean text for ``err``; an engine failure (their RuntimeError row)
    and errors outside their table keep the message."""
    if isinstance(err, InferenceTimeoutError):
        return KO_TIMEOUT.format(seconds=f"{err.timeout_s:g}")
    if isinstance(err, OutOfMemoryError):
        return KO_OUT_OF_MEMORY
    if isinstance(err, ModelLoadFailedError):
        return KO_LOAD_FAILED
    if err.code == "concurrency_limit_exceeded":
        return KO_CONCURRENCY
    if err.status == 500:
        return KO_INTERNAL
    return err.message


def detail(err: APIError, language: Language) -> str:
    """The ``detail`` text of ``err`` in ``language``."""
    return korean_detail(err) if language == "ko" else err.message


def error_shape(language: Language) -> ErrorShape:
    """The simple endpoints' shape: ``{"detail": "...", "error": {message, type, param,
    code}}``."""

    def shape(err: APIError) -> dict[str, Any]:
        return {"detail": detail(err, language), **openai_error(err)}

    return shape
