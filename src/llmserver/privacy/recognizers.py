r"""Pattern recognisers for Korean and international personal data.

Every recogniser takes normalised text (see :func:`llmserver.privacy.normalize.normalize`) and
yields candidate matches; overlaps are resolved by the masker. Boundaries use digit and letter
lookarounds rather than ``\b``, because Python treats Hangul as word characters and Korean
attaches particles directly to numbers (``010-1234-5678로``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from llmserver.privacy.checksums import (
    birth_date,
    brn_checksum_valid,
    ean13_valid,
    frn_checksum_valid,
    luhn_valid,
    rrn_checksum_valid,
)
from llmserver.privacy.types import PIIMatch, PIIType

# Hyphen and the dashes people paste from word processors; NFKC leaves these alone.
_DASH = "[-\u2010-\u2015\u2212]"
_NOT_DIGIT_BEFORE = r"(?<!\d)(?<!\d-)"
_NOT_DIGIT_AFTER = r"(?!\d)(?!-\d)"

# How far before / after a match a context word may appear, in characters.
CONTEXT_BEFORE = 30
CONTEXT_AFTER = 15

Recognizer = Callable[[str], Iterator[PIIMatch]]


@dataclass(frozen=True)
class RecognizerSpec:
    """A recogniser together with the types of match it can produce."""

    types: frozenset[PIIType]
    find: Recognizer


def _context(text: str, start: int, end: int, words: re.Pattern[str]) -> bool:
    before = text[max(0, start - CONTEXT_BEFORE) : start]
    after = text[end : end + CONTEXT_AFTER]
    return words.search(before) is not None or words.search(after) is not None


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


# --- e-mail ----------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])"
    r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9-])"
)


def find_emails(text: str) -> Iterator[PIIMatch]:
    """Yield e-mail addresses (a fullwidth ``＠`` has become ``@`` in normalisation)."""
    for m in _EMAIL.finditer(text):
        yield PIIMatch(PIIType.EMAIL, m.start(), m.end(), m.group(), 0.95)


# --- phone numbers ---------------------------------------------------------------------------

_PHONE_SEP = rf"(?:{_DASH}|[. ])"
_PHONE = re.compile(
    _NOT_DIGIT_BEFORE
    + r"(?:"
    # +82 10-1234-5678, +82-10-1234-5678, +82 (0)10 1234 5678, +82 2-123-4567
    + rf"(?P<intl>\+82[ -]?(?:\(0\)\s?)?(?:1[016789]|2|[3-6][1-5]|70)(?P<s1>{_PHONE_SEP}?)"
    + r"\d{3,4}(?P=s1)\d{4})"
    # 010-1234-5678, 010 1234 5678, 01012345678, 011-123-4567
    + rf"|(?P<mobile>01[016789](?P<s2>{_PHONE_SEP}?)\d{{3,4}}(?P=s2)\d{{4}})"
    # landlines and 070 / 050x numbers need a separator: 02-123-4567, 031.123.4567
    + rf"|(?P<land>0(?:2|[3-6][1-5]|70|50[2-8])(?P<s3>{_PHONE_SEP})\d{{3,4}}(?P=s3)\d{{4}})"
    # (02) 123-4567
    + rf"|(?P<paren>\(0(?:2|[3-6][1-5]|70)\)\s?\d{{3,4}}{_DASH}\d{{4}})"
    # 0212345678, 0311234567: landlines typed without separators
    + r"|(?P<bare>0(?:2|[3-6][1-5]|70)[2-9]\d{6,7})"
    + r")"
    + _NOT_DIGIT_AFTER
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
            score = 0.9 if m.group("s2") else 0.85
        elif m.group("bare"):
            score = 0.7
        else:
            score = 0.8
        yield PIIMatch(PIIType.PHONE, m.start(), m.end(), m.group(), score)


# --- resident and foreigner registration numbers ----------------------------------------------

_REGISTRATION = re.compile(
    _NOT_DIGIT_BEFORE + rf"(?P<birth>\d{{6}})(?P<sep>{_DASH}?)(?P<rest>\d{{7}})" + _NOT_DIGIT_AFTER
)
_RRN_CONTEXT = re.compile(r"주민|외국인|등록번호|resident|registration|RRN|ARC|SSN", re.IGNORECASE)


def find_registration_numbers(text: str) -> Iterator[PIIMatch]:
    """Yield resident (RRN, gender digit 1-4, 9, 0) and foreigner (FRN, 5-8) numbers.

    The birth date must exist. A valid check digit raises the score but is not required, since
    numbers issued from October 2020 have none. Without a hyphen the score is low, unless a
    context word such as 주민 is near; next to an account word it yields to the account.
    """
    for m in _REGISTRATION.finditer(text):
        digits = m.group("birth") + m.group("rest")
        if birth_date(digits) is None:
            continue
        foreign = digits[6] in "5678"
        checked = frn_checksum_valid(digits) if foreign else rrn_checksum_valid(digits)
        context = _context(text, m.start(), m.end(), _RRN_CONTEXT)
        if not m.group("sep") and not context and digits.startswith("880") and ean13_valid(digits):
            continue  # a Korean product barcode, not a person
        score = 0.9 if m.group("sep") else 0.6
        if checked:
            score += 0.08
        if context:
            score = max(score, 0.9)
        elif not m.group("sep") and _context(text, m.start(), m.end(), _ACCOUNT_CONTEXT):
            score = 0.5  # thirteen bare digits after 계좌: an account that happens to parse
        kind = PIIType.FRN if foreign else PIIType.RRN
        yield PIIMatch(kind, m.start(), m.end(), m.group(), min(score, 0.99))


# --- business registration numbers ------------------------------------------------------------

_BRN = re.compile(
    _NOT_DIGIT_BEFORE + rf"\d{{3}}(?P<sep>{_DASH}?)\d{{2}}(?P=sep)\d{{5}}" + _NOT_DIGIT_AFTER
)
_BRN_CONTEXT = re.compile(r"사업자|법인|business|BRN|tax\s*id", re.IGNORECASE)


def find_business_numbers(text: str) -> Iterator[PIIMatch]:
    """Yield business registration numbers (``NNN-NN-NNNNN``) with a valid check digit.

    Ten bare digits need a context word such as 사업자. Near an account word (계좌) and with no
    business word, the score drops below that of an account number.
    """
    for m in _BRN.finditer(text):
        digits = _digits(m.group())
        if not brn_checksum_valid(digits):
            continue
        business = _context(text, m.start(), m.end(), _BRN_CONTEXT)
        if not m.group("sep") and not business:
            continue
        score = 0.9
        if not business and _context(text, m.start(), m.end(), _ACCOUNT_CONTEXT):
            score = 0.5
        yield PIIMatch(PIIType.BRN, m.start(), m.end(), m.group(), score)


# --- payment cards ----------------------------------------------------------------------------

_CARD = re.compile(
    _NOT_DIGIT_BEFORE
    + r"(?:"
    + rf"\d{{4}}(?P<s1>{_DASH}|[ ])\d{{4}}(?P=s1)\d{{4}}(?P=s1)\d{{4}}"  # 4-4-4-4
    + rf"|\d{{4}}(?P<s2>{_DASH}|[ ])\d{{6}}(?P=s2)\d{{4,5}}"  # Amex 4-6-5, Diners 4-6-4
    + r"|\d{15,16}|\d{19}"
    + r")"
    + _NOT_DIGIT_AFTER
)
_CARD_CONTEXT = re.compile(r"카드|card|visa|master|amex|결제|신용", re.IGNORECASE)


def _plausible_card(digits: str) -> bool:
    """Check issuer prefix against length: Luhn alone passes one random number in ten."""
    if len(digits) == 15:
        return digits[:2] in ("34", "37")
    if len(digits) == 14:
        return digits[:2] in ("30", "36", "38")
    return digits[0] in "234569"


def find_cards(text: str) -> Iterator[PIIMatch]:
    """Yield Luhn-valid payment card numbers, grouped by spaces or hyphens or bare."""
    for m in _CARD.finditer(text):
        digits = _digits(m.group())
        if not luhn_valid(digits) or not _plausible_card(digits):
            continue
        grouped = len(digits) != len(m.group())
        score = 0.92 if grouped else 0.85
        if _context(text, m.start(), m.end(), _CARD_CONTEXT):
            score += 0.05
        yield PIIMatch(PIIType.CARD, m.start(), m.end(), m.group(), score)


# --- bank accounts ----------------------------------------------------------------------------

_ACCOUNT = re.compile(
    _NOT_DIGIT_BEFORE + rf"(?:\d{{2,6}}(?:{_DASH}\d{{1,7}}){{1,4}}|\d{{10,16}})" + _NOT_DIGIT_AFTER
)
_ACCOUNT_CONTEXT = re.compile(
    r"계좌|입금|송금|이체|통장|예금주|은행|뱅크|농협|신협|새마을금고|우체국|수협"
    r"|account|acct|bank|deposit|wire|transfer|IBK|KEB",
    re.IGNORECASE,
)


def find_accounts(text: str) -> Iterator[PIIMatch]:
    """Yield bank account numbers (10-16 digits) that stand near a word such as 계좌 or account.

    Without such a word an account number cannot be told from an order or tracking number.
    """
    for m in _ACCOUNT.finditer(text):
        if not 10 <= len(_digits(m.group())) <= 16:
            continue
        if _context(text, m.start(), m.end(), _ACCOUNT_CONTEXT):
            yield PIIMatch(PIIType.ACCOUNT, m.start(), m.end(), m.group(), 0.6)


# --- passports --------------------------------------------------------------------------------

_PASSPORT_KR = re.compile(
    r"(?<![A-Za-z0-9])[MSRGDOT](?:\d{8}|\d{3}[A-Z]\d{4})(?![A-Za-z0-9])", re.IGNORECASE
)
_PASSPORT_OTHER = re.compile(r"(?<![A-Za-z0-9])[A-Z]{1,2}\d{6,8}(?![A-Za-z0-9])")
_PASSPORT_CONTEXT = re.compile(r"여권|passport", re.IGNORECASE)


def find_passports(text: str) -> Iterator[PIIMatch]:
    """Yield passport numbers next to a word such as 여권 or passport.

    Korean passports are a letter and eight digits (``M12345678``) or, since December 2021,
    ``M123A4567``; other countries' letter-and-digit numbers are also taken in that context.
    Without the context word these shapes are too common (model and part numbers) to mask.
    """
    seen: set[tuple[int, int]] = set()
    for pattern, score in ((_PASSPORT_KR, 0.85), (_PASSPORT_OTHER, 0.7)):
        for m in pattern.finditer(text):
            if (m.start(), m.end()) in seen:
                continue
            if _context(text, m.start(), m.end(), _PASSPORT_CONTEXT):
                seen.add((m.start(), m.end()))
                yield PIIMatch(PIIType.PASSPORT, m.start(), m.end(), m.group(), score)


def default_recognizers() -> tuple[RecognizerSpec, ...]:
    """Return the built-in recognisers."""
    return (
        RecognizerSpec(frozenset({PIIType.EMAIL}), find_emails),
        RecognizerSpec(frozenset({PIIType.PHONE}), find_phones),
        RecognizerSpec(frozenset({PIIType.RRN, PIIType.FRN}), find_registration_numbers),
        RecognizerSpec(frozenset({PIIType.BRN}), find_business_numbers),
        RecognizerSpec(frozenset({PIIType.CARD}), find_cards),
        RecognizerSpec(frozenset({PIIType.ACCOUNT}), find_accounts),
        RecognizerSpec(frozenset({PIIType.PASSPORT}), find_passports),
    )
