"""Masking personal data in prompts and in generated text, failing closed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Protocol

from llmserver.errors import MaskingFailedError
from llmserver.privacy import MaskingError, PIIMasker, StreamMasker, Vault

logger = logging.getLogger("llmserver.privacy")


def mask(masker: PIIMasker | Vault, text: str) -> str:
    """``text`` masked, or a 500 when masking fails: the raw text is never passed on."""
    try:
        return masker.mask(text)
    except MaskingError:
        logger.error("masking failed; request refused")
        raise MaskingFailedError() from None


class _Stream(Protocol):
    def feed(self, delta: str) -> str: ...
    def flush(self) -> str: ...


class OutputStreams:
    """Generated text rewritten stream by stream (masked, or its placeholders restored), each
    stream by its own stateful rewriter so that a value split across deltas is seen whole.

    A stream is a choice's content (keyed by the choice index) or the arguments of one of its
    tool calls (keyed ``(choice, call index)``).
    """

    def __init__(self, new_stream: Callable[[], _Stream]) -> None:
        self._new_stream = new_stream
        self._streams: dict[Hashable, _Stream] = {}

    def feed(self, key: Hashable, text: str) -> str:
        """The rewritten text of stream ``key`` that is safe to send now."""
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = self._new_stream()
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


def output_masker(masker: PIIMasker) -> OutputStreams:
    """Generated text masked, stream-safe (``mask_output``)."""
    return OutputStreams(lambda: StreamMasker(masker))


def output_restorer(vault: Vault) -> OutputStreams:
    """Generated text with the request's placeholders put back (``pii_restore``)."""
    return OutputStreams(vault.stream)
