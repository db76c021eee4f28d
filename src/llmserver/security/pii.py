"""Masking personal data in prompts and in generated text, failing closed."""

from __future__ import annotations

import logging
from collections.abc import Callable

from llmserver.errors import MaskingFailedError
from llmserver.privacy import MaskingError, PIIMasker, StreamMasker

logger = logging.getLogger("llmserver.privacy")


def mask(masker: PIIMasker, text: str) -> str:
    """``text`` masked, or a 500 when masking fails: the raw text is never passed on."""
    try:
        return masker.mask(text)
    except MaskingError:
        logger.error("masking failed; request refused")
        raise MaskingFailedError() from None


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
