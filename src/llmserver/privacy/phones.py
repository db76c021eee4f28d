"""Korean phone numbers, in the forms people type them.

Besides ``010-1234-5678`` this covers an area code closed by a parenthesis alone
(``02)123-4567``), dots, spaces and wrapped lines between the groups, ``+82`` and ``82-``
without the leading zero, and groups spelt in Hangul numerals (``공일공-1234-5678``), which
people use to slip a number past filters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from llmserver.privacy.patterns import GAP, NOT_DIGIT_AFTER, NOT_DIGIT_BEFORE, context
from llmserver.privacy.types import PIIMatch, PIIType

# Sino-Korean numerals; a group is either all digits or all numerals, so a particle such as
# 이 ("is") after the last digit is never taken as a 2.
NUMERALS = "공영일이삼사오육륙칠팔구"
_NUMERAL = f"[{NUMERALS}]"
_MOBILE = r"(?:01[016789]|[공영]일[공영일육륙칠팔구])"
_LAND = r"0(?:2|[3-6][1-5]|70|50[2-8])"
_AREA = r"(?:1[016789]|2|[3-6][1-5]|70)"  # after +82, without the leading zero


def _group(sizes: str) -> str:
    return rf"(?:\d{{{sizes}}}|{_NUMERAL}{{{sizes}}})"


# The exchange and line number: a landline needs a separator between them (so that
# ``3333 02 1234567``, an account, is not read as ``02 1234567``), a mobile number does not.
_REST = _group("3,4") + f"{GAP}?" + _group("4")
_LAND_REST = _group("3,4") + GAP + _group("4")

_PHONE = re.compile(
    NOT_DIGIT_BEFORE
    + r"(?:"
    # +82 10-1234-5678, +82 (0)10 1234 5678, (+82) 10..., +82 010..., %2B82 in a URL
    + rf"(?P<intl>(?:\+|%2B|\(\+)82\)?{GAP}?(?:\(0\)\s?|0)?"
    + rf"{_AREA}{GAP}?"
    # 82-10-1234-5678: the plus left out, so a separator and an area code must follow
    + rf"|(?<![+A-Za-z])82{GAP}0?{_AREA}{GAP})"
    + _REST
    # 010-1234-5678, 010 1234 5678, 01012345678, 공일공-1234-5678
    + rf"|(?P<mobile>{_MOBILE}{GAP}?{_REST})"
    # landlines and 070 / 050x numbers need a separator: 02-123-4567, 031.123.4567
    + rf"|(?P<land>{_LAND}{GAP}{_LAND_REST})"
    # (02) 123-4567, 02)123-4567, 031)123-4567: the opening parenthesis is often left out
    + rf"|(?P<paren>\(?{_LAND}\)[ ]?{_REST})"
    # 0212345678, 0311234567: landlines typed without separators
    + r"|(?P<bare>0(?:2|[3-6][1-5]|70)[2-9]\d{6,7})"
    + r")"
    + NOT_DIGIT_AFTER
)
# (010)1234-5678: a mobile code in parentheses is also how people cite a number they reject
# ("(010)2345-6789 말고 010-2345-6780"), so it needs a word such as 휴대폰 near it.
_PAREN_MOBILE = re.compile(NOT_DIGIT_BEFORE + rf"\(01[016789]\)[ ]?{_REST}" + NOT_DIGIT_AFTER)
_PHONE_CONTEXT = re.compile(
    r"전화|휴대폰|핸드폰|연락처|문자|\b(?:HP|tel|phone|mobile|cell)\b", re.IGNORECASE
)


def find_phones(text: str) -> Iterator[PIIMatch]:
    """Yield Korean mobile, landline and +82 numbers.

    Service numbers (``1588-1234``) and toll-free ``080`` numbers belong to businesses and are
    not matched.
    """
    for m in _PHONE.finditer(text):
        if m.group("intl"):
            score = 0.95
        elif m.group("mobile"):
            score = 0.85 if m.group().isdigit() else 0.9
        elif m.group("bare"):
            score = 0.7
        else:
            score = 0.8
        yield PIIMatch(PIIType.PHONE, m.start(), m.end(), m.group(), score)
    for m in _PAREN_MOBILE.finditer(text):
        if context(text, m.start(), m.end(), _PHONE_CONTEXT):
            yield PIIMatch(PIIType.PHONE, m.start(), m.end(), m.group(), 0.85)
