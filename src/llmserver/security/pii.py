"""Masking personal data in prompts and in generated text, failing closed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable

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
    """Stream-safe masking of generated text, one :class:`StreamMasker` per stream.

    A stream is a choice's content (keyed by the choice index) or the arguments of one of its
    tool calls (keyed ``(choice, call index)``).
    """

    def __init__(self, masker: PIIMasker | None) -> None:
        self._masker = masker
        self._streams: dict[Hashable, StreamMasker] = {}

    def feed(self, key: Hashable, text: str) -> str:
        """Masked text of stream ``key`` that is safe to send now."""
        if self._masker is None:
            return text
        stream = self._streams.setdefault(key, StreamMasker(self._masker))
        return self._run(stream.feed, text)

    def flush(self, key: Hashable) -> str:
        """The rest of stream ``key`` at its end."""
        stream = self._streams.pop(key, None)
        return "" if stream is None else self._run(lambda _: stream.flush(), "")

    def flush_calls(self, index: int) -> list[tuple[int, str]]:
        """The rest of the arguments of each tool call of choice ``index``, at its end."""
        calls = sorted(
            key[1]
            for key in self._streams
            if isinstance(key, tuple) and len(key) == 2 and key[0] == index
        )
        return [(call, self.flush((index, call))) for call in calls]

    @staticmethod
    def _run(step: Callable[[str], str], text: str) -> str:
        try:
            return step(text)
        except MaskingError:
            raise MaskingFailedError() from None
