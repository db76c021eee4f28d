"""Find and mask personal data in text."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence
from typing import Literal

from llmserver.privacy.normalize import normalize
from llmserver.privacy.partial import partial_mask
from llmserver.privacy.patterns import RecognizerSpec
from llmserver.privacy.recognizers import default_recognizers
from llmserver.privacy.types import MaskingError, PIIMatch, PIIType

logger = logging.getLogger(__name__)

MaskMode = Literal["placeholder", "partial"]


def resolve_overlaps(candidates: Iterable[PIIMatch]) -> list[PIIMatch]:
    """Keep the best of each group of overlapping matches, in text order.

    Matches are taken greedily by score, then length, then position; one that overlaps an
    already kept match is dropped.
    """
    ranked = sorted(candidates, key=lambda m: (-m.score, -(m.end - m.start), m.start, m.type))
    starts: list[int] = []  # kept matches never overlap, so their starts order them fully
    kept: list[PIIMatch] = []
    for match in ranked:
        index = bisect.bisect_right(starts, match.start)
        if index > 0 and kept[index - 1].end > match.start:
            continue
        if index < len(kept) and kept[index].start < match.end:
            continue
        starts.insert(index, match.start)
        kept.insert(index, match)
    return kept


class PIIMasker:
    """Find personal data and replace it with typed placeholders or partial masks.

    All recognisers run and overlaps are resolved before the result is filtered to ``types``,
    so a phone number is never masked as an account number just because PHONE is not wanted.
    """

    def __init__(
        self, types: Iterable[PIIType] | None = None, mode: MaskMode = "placeholder"
    ) -> None:
        """Mask the given types (all by default) as ``[TYPE]`` or, in partial mode, partly."""
        if mode not in ("placeholder", "partial"):
            raise ValueError(f"unknown masking mode: {mode!r}")
        self.types: frozenset[PIIType] = frozenset(PIIType if types is None else types)
        self.mode: MaskMode = mode
        self._recognizers: Sequence[RecognizerSpec] = default_recognizers()

    def candidates(self, text: str) -> list[PIIMatch]:
        """Return every recogniser's matches in normalised ``text``, overlaps unresolved."""
        found: list[PIIMatch] = []
        for spec in self._recognizers:
            found.extend(spec.find(text))
        return found

    def select(self, candidates: Iterable[PIIMatch]) -> list[PIIMatch]:
        """Resolve overlaps among ``candidates`` and keep the types this masker masks."""
        return [m for m in resolve_overlaps(candidates) if m.type in self.types]

    def find(self, text: str) -> list[PIIMatch]:
        """Return the matches in ``text``, which must already be normalised, in text order.

        Offsets refer to ``text``; call :func:`normalize` first on raw input.
        """
        return self.select(self.candidates(text))

    def replacement(self, match: PIIMatch) -> str:
        """Return what ``match`` is replaced with in this masker's mode."""
        if self.mode == "partial":
            return partial_mask(match)
        return f"[{match.type.value}]"

    def apply(self, text: str, matches: Iterable[PIIMatch]) -> str:
        """Return ``text`` with the (non-overlapping, ordered) ``matches`` replaced."""
        parts: list[str] = []
        position = 0
        for match in matches:
            parts.append(text[position : match.start])
            parts.append(self.replacement(match))
            position = match.end
        parts.append(text[position:])
        return "".join(parts)

    def mask(self, text: str) -> str:
        """Normalise ``text``, then mask it.

        The result is the masked *normalised* text: fullwidth characters come back as ASCII and
        zero-width characters are gone, even outside the masked values. Any failure is raised as
        :class:`MaskingError` so that callers can fail closed.
        """
        try:
            normal = normalize(text)
            return self.apply(normal, self.find(normal))
        except Exception as exc:
            logger.error("PII masking failed: %s", type(exc).__name__)
            raise MaskingError("PII masking failed") from exc

    def excerpt(self, text: str, limit: int = 50) -> str:
        """Text fit for a log line: masked first, then cut to ``limit`` characters (with an
        ellipsis when cut). Never the raw text, even when masking fails."""
        try:
            masked = self.mask(text)
        except MaskingError:
            return "[unmaskable text withheld]"
        return masked if len(masked) <= limit else masked[:limit] + "…"
