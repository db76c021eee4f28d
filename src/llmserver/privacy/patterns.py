r"""Pattern pieces and helpers shared by the recognisers.

Boundaries use digit lookarounds rather than ``\b``, because Python treats Hangul as word
characters and Korean attaches particles directly to numbers (``010-1234-5678로``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from llmserver.privacy.types import PIIMatch, PIIType

# Hyphen and the dashes people paste from word processors (NFKC leaves these alone), and the
# Hangul vowel ㅡ that Korean keyboards type in place of a dash (NFKC makes it U+1173).
DASH = "[-\u2010-\u2015\u2212\u1173\u3161]"
NOT_DIGIT_BEFORE = r"(?<!\d)(?<!\d-)"
NOT_DIGIT_AFTER = r"(?!\d)(?!-\d)"
# A line break inside a value, where a chat window or an e-mail client wrapped it; ``\n`` is
# the same break inside a JSON string (tool-call arguments), ``\\n`` inside JSON in JSON.
_WRAP = r"(?:[ \t]*(?:\r?\n|(?:\\{1,2}r)?\\{1,2}n)[ \t]*)"
# Between two digit groups: a dash or dot (spaces around it allowed), a space, or a wrap.
GAP = rf"(?:[ \t]?(?:{DASH}|\.)[ \t]?{_WRAP}?|[ ]?{_WRAP}|[ ])"

# How far before / after a match a context word may appear, in characters.
CONTEXT_BEFORE = 30
CONTEXT_AFTER = 15

Recognizer = Callable[[str], Iterator[PIIMatch]]


@dataclass(frozen=True)
class RecognizerSpec:
    """A recogniser together with the types of match it can produce."""

    types: frozenset[PIIType]
    find: Recognizer


def context(text: str, start: int, end: int, words: re.Pattern[str]) -> bool:
    """Return True if one of ``words`` stands shortly before or after ``text[start:end]``."""
    before = text[max(0, start - CONTEXT_BEFORE) : start]
    after = text[end : end + CONTEXT_AFTER]
    return words.search(before) is not None or words.search(after) is not None


def digits(text: str) -> str:
    """Return the digits of ``text``."""
    return "".join(c for c in text if c.isdigit())


def dash_separated(text: str) -> bool:
    """Return True if ``text`` is digits separated only by hyphens or dashes (or by nothing)."""
    return all(c.isdigit() or re.fullmatch(DASH, c) for c in text)
