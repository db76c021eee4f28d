r"""Pattern recognisers for Korean and international personal data.

Every recogniser takes normalised text (see :func:`llmserver.privacy.normalize.normalize`) and
yields candidate matches; overlaps are resolved by the masker. Boundaries use digit and letter
lookarounds rather than ``\b``, because Python treats Hangul as word characters and Korean
attaches particles directly to numbers (``010-1234-5678로``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from llmserver.privacy.checksums import (
    birth_date,
    brn_checksum_valid,
    ean13_valid,
    frn_checksum_valid,
    luhn_valid,
    rrn_checksum_valid,
)
from llmserver.privacy.patterns import (
    DASH,
    GAP,
    NOT_DIGIT_AFTER,
    NOT_DIGIT_BEFORE,
    RecognizerSpec,
    context,
    dash_separated,
    digits,
)
from llmserver.privacy.phones import find_phones
from llmserver.privacy.types import PIIMatch, PIIType

__all__ = [
    "RecognizerSpec",
    "default_recognizers",
    "find_accounts",
    "find_business_numbers",
    "find_cards",
    "find_emails",
    "find_passports",
    "find_phones",
    "find_registration_numbers",
]

# --- e-mail ----------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])"
    r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    r"(?:@|%40)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9-])"
)


def find_emails(text: str) -> Iterator[PIIMatch]:
    """Yield e-mail addresses (a fullwidth ``＠`` has become ``@`` in normalisation).

    ``%40`` counts as ``@`` (an address in a URL), and in JSON-escaped text the letter of an
    escape such as ``\\n`` before the address is not part of it.
    """
    for m in _EMAIL.finditer(text):
        start = m.start()
        if start > 0 and text[start - 1] == "\\" and text[start] in "nrtbf":
            start += 1
            if not text[start].isalnum():
                continue
        yield PIIMatch(PIIType.EMAIL, start, m.end(), text[start : m.end()], 0.95)


# --- resident and foreigner registration numbers ----------------------------------------------

_REGISTRATION = re.compile(
    NOT_DIGIT_BEFORE + rf"(?P<birth>\d{{6}})(?P<sep>{GAP}?)(?P<rest>\d{{7}})" + NOT_DIGIT_AFTER
)
_RRN_CONTEXT = re.compile(r"주민|외국인|등록번호|resident|registration|RRN|ARC|SSN", re.IGNORECASE)


def find_registration_numbers(text: str) -> Iterator[PIIMatch]:
    """Yield resident (RRN, gender digit 1-4, 9, 0) and foreigner (FRN, 5-8) numbers.

    The birth date must exist. A valid check digit raises the score but is not required, since
    numbers issued from October 2020 have none. Without a hyphen the score is low, unless a
    context word such as 주민 is near; next to an account word it yields to the account. A
    space, dot or line break between the halves needs a context word or a valid check digit.
    """
    for m in _REGISTRATION.finditer(text):
        number = m.group("birth") + m.group("rest")
        if birth_date(number) is None:
            continue
        foreign = number[6] in "5678"
        checked = frn_checksum_valid(number) if foreign else rrn_checksum_valid(number)
        near = context(text, m.start(), m.end(), _RRN_CONTEXT)
        if not dash_separated(m.group("sep")) and not (near or checked):
            continue
        if not m.group("sep") and not near and number.startswith("880") and ean13_valid(number):
            continue  # a Korean product barcode, not a person
        score = 0.9 if m.group("sep") else 0.6
        if checked:
            score += 0.08
        if near:
            score = max(score, 0.9)
        elif not m.group("sep") and context(text, m.start(), m.end(), _ACCOUNT_CONTEXT):
            score = 0.5  # thirteen bare digits after 계좌: an account that happens to parse
        kind = PIIType.FRN if foreign else PIIType.RRN
        yield PIIMatch(kind, m.start(), m.end(), m.group(), min(score, 0.99))


# --- business registration numbers ------------------------------------------------------------

_BRN = re.compile(NOT_DIGIT_BEFORE + rf"\d{{3}}{GAP}?\d{{2}}{GAP}?\d{{5}}" + NOT_DIGIT_AFTER)
_BRN_DASHED = re.compile(rf"\d{{3}}{DASH}\d{{2}}{DASH}\d{{5}}")
_BRN_CONTEXT = re.compile(r"사업자|법인|business|BRN|tax\s*id", re.IGNORECASE)


def find_business_numbers(text: str) -> Iterator[PIIMatch]:
    """Yield business registration numbers (``NNN-NN-NNNNN``) with a valid check digit.

    Only ``NNN-NN-NNNNN`` stands alone; bare digits, spaces or dots need a context word such
    as 사업자, since three numbers in a row pass the check one time in ten. Near an account
    word (계좌) and with no business word, the score drops below that of an account number.
    """
    for m in _BRN.finditer(text):
        if not brn_checksum_valid(digits(m.group())):
            continue
        business = context(text, m.start(), m.end(), _BRN_CONTEXT)
        if not business and not _BRN_DASHED.fullmatch(m.group()):
            continue
        score = 0.9
        if not business and context(text, m.start(), m.end(), _ACCOUNT_CONTEXT):
            score = 0.5
        yield PIIMatch(PIIType.BRN, m.start(), m.end(), m.group(), score)


# --- payment cards ----------------------------------------------------------------------------

_CARD = re.compile(
    NOT_DIGIT_BEFORE
    + r"(?:"
    + rf"\d{{4}}{GAP}\d{{4}}{GAP}\d{{4}}{GAP}\d{{4}}"  # 4-4-4-4, spaces, dots, wrapped
    + rf"|\d{{4}}{GAP}\d{{6}}{GAP}\d{{4,5}}"  # Amex 4-6-5, Diners 4-6-4
    + r"|\d{15,16}|\d{19}"
    + r")"
    + NOT_DIGIT_AFTER
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
        number = digits(m.group())
        if not luhn_valid(number) or not _plausible_card(number):
            continue
        grouped = len(number) != len(m.group())
        score = 0.92 if grouped else 0.85
        if context(text, m.start(), m.end(), _CARD_CONTEXT):
            score += 0.05
        yield PIIMatch(PIIType.CARD, m.start(), m.end(), m.group(), score)


# --- bank accounts ----------------------------------------------------------------------------

_ACCOUNT = re.compile(
    NOT_DIGIT_BEFORE
    + rf"(?:\d{{2,6}}(?:{DASH}\d{{1,7}}){{1,4}}"
    # spaces or dots, the same between every group: 110 123 456789, 110.123.456789
    + r"|\d{2,6}(?P<sep>[ .])\d{1,7}(?:(?P=sep)\d{1,7}){0,3}"
    + r"|\d{10,16})"
    + NOT_DIGIT_AFTER
)
_ACCOUNT_CONTEXT = re.compile(
    r"계좌|입금|송금|이체|통장|예금주|은행|뱅크|농협|신협|새마을금고|우체국|수협"
    r"|account|acct|bank|deposit|wire|transfer|IBK|KEB",
    re.IGNORECASE,
)
# A label right before the number that says what else it is (예매번호 8123-4567-8901), perhaps
# followed by one short word such as a carrier's name (배송 조회 CJ 5678-1234-9012).
_REFERENCE_LABEL = re.compile(
    r"(?:(?:예매|주문|예약|접수|승인|거래|회원|문서|관리|티켓|영수증|일련|결제|신청|조회)\s*번호"
    r"|(?:배송|택배|송장|운송장)(?:\s*(?:조회|번호))?|확인증"
    r"|order|invoice|tracking|booking|ticket|reference|receipt|serial|transaction|confirmation)"
    r"(?:\s*(?:no\.?|number|#|id))?\s*[:#]?(?:\s*[A-Za-z가-힣]{1,6})?\s*$",
    re.IGNORECASE,
)


def _other_number(text: str, start: int, end: int) -> bool:
    """Return True if the digits at ``text[start:end]`` are labelled, priced or an address."""
    if _REFERENCE_LABEL.search(text[max(0, start - 20) : start]):
        return True
    if text[end : end + 1] == "원" or text[max(0, start - 1) : start] in ("₩", "$"):
        return True
    try:
        ipaddress.IPv4Address(text[start:end])
    except ValueError:
        return False
    return True


def find_accounts(text: str) -> Iterator[PIIMatch]:
    """Yield bank account numbers (10-16 digits) that stand near a word such as 계좌 or account.

    Without such a word an account number cannot be told from an order or tracking number; a
    number labelled as something else (주문번호, invoice no.), a price or an IP address is not
    taken even then.
    """
    for m in _ACCOUNT.finditer(text):
        if not 10 <= len(digits(m.group())) <= 16:
            continue
        if _other_number(text, m.start(), m.end()):
            continue
        if context(text, m.start(), m.end(), _ACCOUNT_CONTEXT):
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
            if context(text, m.start(), m.end(), _PASSPORT_CONTEXT):
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
