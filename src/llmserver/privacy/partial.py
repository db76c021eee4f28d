"""Partial masks: keep a recognisable prefix or suffix, star out the rest."""

from __future__ import annotations

import re

from llmserver.privacy.phones import NUMERALS
from llmserver.privacy.types import PIIMatch, PIIType

# Hangul numerals (공일공-1234-5678) count as digits, so that they are starred like digits.
_SEPARATOR = re.compile(rf"[^0-9A-Za-z{NUMERALS}]+")


def _is_digit(char: str) -> bool:
    return char.isdigit() or char in NUMERALS


def _star_digits(text: str, keep: set[int]) -> str:
    """Replace every digit whose index among the digits is not in ``keep`` with ``*``."""
    out: list[str] = []
    index = 0
    for char in text:
        if _is_digit(char):
            out.append(char if index in keep else "*")
            index += 1
        else:
            out.append(char)
    return "".join(out)


def _keep_last_digits(text: str, count: int) -> str:
    total = sum(_is_digit(c) for c in text)
    return _star_digits(text, set(range(total - count, total)))


def _mask_email(text: str) -> str:
    at = "@" if "@" in text else "%40"  # an address in a URL: kim%40naver.com
    local, _, domain = text.partition(at)
    return f"{local[:1]}***{at}{domain}"


def _mask_phone(text: str) -> str:
    """``010-1234-5678`` -> ``010-****-5678``; ``01012345678`` -> ``010****5678``."""
    groups = [g for g in _SEPARATOR.split(text) if g]
    total = sum(len(g) for g in groups)
    if len(groups) >= 3:
        # Star the group before the last one: the exchange number.
        start = sum(len(g) for g in groups[:-2])
        keep = set(range(start)) | set(range(start + len(groups[-2]), total))
    else:
        keep = set(range(3)) | set(range(total - 4, total))
    return _star_digits(text, keep)


def _mask_registration(text: str) -> str:
    """``960101-1234567`` -> ``960101-*******``: the birth date stays, the rest goes."""
    return _star_digits(text, set(range(6)))


def _mask_business(text: str) -> str:
    """``123-45-67890`` -> ``123-45-*****``."""
    return _star_digits(text, set(range(5)))


def _mask_passport(text: str) -> str:
    """``M12345678`` -> ``M********``."""
    return text[:1] + "*" * (len(text) - 1)


def partial_mask(match: PIIMatch) -> str:
    """Return the partial mask of a match; separators and length are kept."""
    text = match.text
    if match.type is PIIType.EMAIL:
        return _mask_email(text)
    if match.type is PIIType.PHONE:
        return _mask_phone(text)
    if match.type in (PIIType.RRN, PIIType.FRN):
        return _mask_registration(text)
    if match.type is PIIType.BRN:
        return _mask_business(text)
    if match.type is PIIType.PASSPORT:
        return _mask_passport(text)
    # Cards and accounts: only the last four digits stay, as on a receipt.
    return _keep_last_digits(text, 4)
