"""Masking for streamed output: text arrives in deltas and must leave masked."""

from __future__ import annotations

import unicodedata

from llmserver.privacy.masker import PIIMasker
from llmserver.privacy.normalize import is_invisible, normalize
from llmserver.privacy.types import MaskingError, PIIMatch

# Characters a value can be made of without a space; a cut between two of them is avoided.
_TOKEN_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@._%+-")
# A run of token characters longer than this (a hash, base64) is cut anyway.
_MAX_TOKEN = 256
# Emitted normalised text kept to give context words and lookbehinds to later matches.
_TAIL = 64


def _tokenish(char: str) -> bool:
    folded = normalize(char)
    return all(c in _TOKEN_CHARS for c in folded)  # an invisible character folds to ""


def _starts_segment(char: str) -> bool:
    """Return True if normalisation can never join ``char`` to what comes before it."""
    if is_invisible(char) or unicodedata.combining(char):
        return False
    if "\u1160" <= char <= "\u11ff" or "\ud7b0" <= char <= "\ud7ff":
        return False  # Hangul vowel and final jamo compose with the syllable before them
    decomposed = unicodedata.normalize("NFKD", char)
    return not decomposed or unicodedata.combining(decomposed[0]) == 0


class StreamMasker:
    """Mask a stream of text deltas without leaking a value split across deltas.

    Up to ``holdback`` characters are held back so that a value still arriving can be seen
    whole; text is released only at points where no match (or run of characters a value can
    be made of) is cut in two, so a placeholder is never emitted in halves. The concatenation
    of every :meth:`feed` result and :meth:`flush` equals ``masker.mask`` of the whole text for
    values no longer than ``holdback``. Any failure is raised as :class:`MaskingError`.
    """

    def __init__(self, masker: PIIMasker, holdback: int = 64) -> None:
        """Wrap ``masker``; ``holdback`` below 40 may let a spaced card number be split."""
        if holdback < 1:
            raise ValueError("holdback must be at least 1")
        self._masker = masker
        self._holdback = holdback
        self._pending = ""  # raw text received but not yet released
        self._tail = ""  # normalised text already released, for context

    def feed(self, delta: str) -> str:
        """Take the next delta; return the masked text that is now safe to release."""
        try:
            self._pending += delta
            if len(self._pending) <= self._holdback:
                return ""
            return self._release(final=False)
        except Exception as exc:
            raise MaskingError("PII masking failed in stream") from exc

    def flush(self) -> str:
        """Return the masked remainder at the end of the stream."""
        try:
            return self._release(final=True)
        except Exception as exc:
            raise MaskingError("PII masking failed in stream") from exc

    def _release(self, final: bool) -> str:
        pending = self._pending
        window = self._tail + normalize(pending)
        base = len(self._tail)
        candidates = [m for m in self._masker.candidates(window) if m.start >= base]
        cut = len(pending) if final else self._cut(pending, candidates, base)
        if cut == 0:
            return ""
        head = normalize(pending[:cut])
        end = base + len(head)
        chosen = [
            PIIMatch(m.type, m.start - base, m.end - base, m.text, m.score)
            for m in self._masker.select(candidates)
            if m.end <= end
        ]
        self._pending = pending[cut:]
        self._tail = (self._tail + head)[-_TAIL:]
        return self._masker.apply(head, chosen)

    def _cut(self, pending: str, candidates: list[PIIMatch], base: int) -> int:
        """Return the furthest raw offset before the holdback where releasing is safe, or 0."""
        whole = normalize(pending)
        cut = len(pending) - self._holdback
        while cut > 0:
            if not _starts_segment(pending[cut]):
                cut -= 1
                continue
            if _tokenish(pending[cut - 1]) and _tokenish(pending[cut]):
                run_start = cut - 1
                while run_start > 0 and _tokenish(pending[run_start - 1]):
                    run_start -= 1
                if cut - run_start < _MAX_TOKEN:
                    cut = run_start
                    continue
            head = normalize(pending[:cut])
            if head + normalize(pending[cut:]) != whole:
                cut -= 1
                continue
            offset = base + len(head)
            spanning = [m.start for m in candidates if m.start < offset < m.end]
            if not spanning:
                return cut
            cut -= 1
        return 0
