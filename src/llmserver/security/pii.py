"""Masking personal data in prompts before they reach a backend, failing closed."""

from __future__ import annotations

import logging
from collections.abc import Callable

from llmserver.errors import MaskingFailedError
from llmserver.core.manager import ModelHandle
from llmserver.privacy import MaskingError, PIIMasker, StreamMasker
from llmserver.surfaces.openai.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest
from llmserver.security.keys import ApiKey

logger = logging.getLogger("llmserver.privacy")


def mask(masker: PIIMasker, text: str) -> str:
    """``text`` masked, or a 500 when masking fails: the raw text is never passed on."""
    try:
        return masker.mask(text)
    except MaskingError:
        logger.error("masking failed; request refused")
        raise MaskingFailedError() from None


def for_log(masker: PIIMasker, text: str, limit: int = 50) -> str:
    """The first ``limit`` characters of masked ``text``, for a log line (never raw text)."""
    try:
        return masker.mask(text)[:limit]
    except MaskingError:
        return "[masking failed]"


def wanted(handle: ModelHandle, key: ApiKey | None) -> bool:
    """Whether prompts to this model from this key are masked (per-model or per-key setting)."""
    return handle.config.mask_pii or (key is not None and key.mask_pii)


def mask_chat(masker: PIIMasker, req: ChatCompletionRequest) -> ChatCompletionRequest:
    """A copy of ``req`` with every message's text masked."""
    messages = [
        ChatMessage(role=m.role, content=mask(masker, m.text()), name=m.name) for m in req.messages
    ]
    return req.model_copy(update={"messages": messages})


def mask_completion(masker: PIIMasker, req: CompletionRequest) -> CompletionRequest:
    """A copy of ``req`` with every prompt masked."""
    prompts = [mask(masker, p) for p in req.prompts()]
    prompt: str | list[str] = prompts[0] if isinstance(req.prompt, str) else prompts
    return req.model_copy(update={"prompt": prompt})


class OutputMasker:
    """Stream-safe masking of generated text, one :class:`StreamMasker` per choice."""

    def __init__(self, masker: PIIMasker | None) -> None:
        self._masker = masker
        self._streams: dict[int, StreamMasker] = {}

    def feed(self, index: int, text: str) -> str:
        """Masked text of choice ``index`` that is safe to send now."""
        if self._masker is None:
            return text
        stream = self._streams.setdefault(index, StreamMasker(self._masker))
        return self._run(stream.feed, text)

    def flush(self, index: int) -> str:
        """The rest of choice ``index`` at its end."""
        stream = self._streams.pop(index, None)
        return "" if stream is None else self._run(lambda _: stream.flush(), "")

    @staticmethod
    def _run(step: Callable[[str], str], text: str) -> str:
        try:
            return step(text)
        except MaskingError:
            raise MaskingFailedError() from None
