"""Shared value types of the privacy package."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PIIType(StrEnum):
    """Kinds of personal data the recognisers find; the value is the placeholder's label."""

    EMAIL = "EMAIL"
    PHONE = "PHONE"
    RRN = "RRN"
    FRN = "FRN"
    BRN = "BRN"
    CARD = "CARD"
    ACCOUNT = "ACCOUNT"
    PASSPORT = "PASSPORT"


@dataclass(frozen=True)
class PIIMatch:
    """One recognised value: offsets into the normalised text, the matched text and a score.

    ``score`` is a confidence in [0, 1]; overlapping matches resolve to the higher score, then
    the longer match.
    """

    type: PIIType
    start: int
    end: int
    text: str
    score: float


class MaskingError(Exception):
    """Masking failed; callers must fail closed and not pass the unmasked text on."""
