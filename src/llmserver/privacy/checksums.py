"""Check-digit and date validation for Korean identifiers and payment cards."""

from __future__ import annotations

import calendar
import datetime

_RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
_BRN_WEIGHTS = (1, 3, 7, 1, 3, 7, 1, 3, 5)
# Gender/century digit of a registration number -> century of the birth year.
_CENTURY = {"1": 1900, "2": 1900, "3": 2000, "4": 2000, "5": 1900, "6": 1900, "7": 2000, "8": 2000,
            "9": 1800, "0": 1800}  # fmt: skip


def luhn_valid(digits: str) -> bool:
    """Return True if the digit string passes the Luhn (mod 10) check used by payment cards."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """Return the digit that makes ``partial + digit`` Luhn-valid."""
    for candidate in "0123456789":
        if luhn_valid(partial + candidate):
            return candidate
    raise AssertionError("unreachable: one of ten digits always completes a Luhn number")


def _registration_sum(digits: str) -> int:
    return sum(int(d) * w for d, w in zip(digits[:12], _RRN_WEIGHTS, strict=True))


def rrn_checksum_valid(digits: str) -> bool:
    """Return True if a 13-digit resident registration number has a valid check digit.

    Numbers issued from October 2020 carry no check digit, so a failure here is not proof that
    the number is fake; it only lowers confidence.
    """
    return (11 - _registration_sum(digits) % 11) % 10 == int(digits[12])


def frn_checksum_valid(digits: str) -> bool:
    """Return True if a 13-digit foreigner registration number has a valid check digit."""
    return (13 - _registration_sum(digits) % 11) % 10 == int(digits[12])


def birth_date(digits: str, today: datetime.date | None = None) -> datetime.date | None:
    """Return the birth date encoded in a registration number's first seven digits, or None.

    The seventh digit gives the century. A date that does not exist (``991332``, ``230229``)
    or lies in the future yields None.
    """
    century = _CENTURY.get(digits[6])
    if century is None:
        return None
    year = century + int(digits[0:2])
    month = int(digits[2:4])
    day = int(digits[4:6])
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    born = datetime.date(year, month, day)
    if born > (today or datetime.date.today()):
        return None
    return born


def brn_checksum_valid(digits: str) -> bool:
    """Return True if a 10-digit business registration number has a valid check digit."""
    values = [int(d) for d in digits]
    total = sum(v * w for v, w in zip(values[:9], _BRN_WEIGHTS, strict=True))
    total += values[8] * 5 // 10
    return (10 - total % 10) % 10 == values[9]


def ean13_valid(digits: str) -> bool:
    """Return True if a 13-digit string is a valid EAN-13 barcode number."""
    values = [int(d) for d in digits]
    total = sum(v * (3 if i % 2 else 1) for i, v in enumerate(values[:12]))
    return (10 - total % 10) % 10 == values[12]
