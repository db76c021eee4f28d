"""Each recogniser on positives, hard negatives, Hangul suffixes, fullwidth and zero-width text."""

from __future__ import annotations

import datetime

import pytest

from llmserver.privacy import PIIMasker, PIIType, normalize
from llmserver.privacy.checksums import (
    birth_date,
    brn_checksum_valid,
    luhn_valid,
    rrn_checksum_valid,
)


def found(text: str) -> list[tuple[PIIType, str]]:
    """(type, text) of every match in the normalised text."""
    return [(m.type, m.text) for m in PIIMasker().find(normalize(text))]


def test_normalize_folds_fullwidth_and_removes_invisible_characters() -> None:
    assert normalize("０１０－１２３４－５６７８") == "010-1234-5678"
    assert normalize("kim＠naver．com") == "kim@naver.com"
    assert normalize("010\u200b-12\u200c34-\u200d5678\ufeff\u2060") == "010-1234-5678"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("제 이메일은 kim@naver.com입니다", "kim@naver.com"),
        ("이메일은minsu.kim+news@korea.ac.kr이에요", "minsu.kim+news@korea.ac.kr"),
        ("Contact: j_park92@company.co.kr.", "j_park92@company.co.kr"),
        ("kim＠naver.com으로 보내줘", "kim@naver.com"),
        ("send to k\u200bim@gmail.com", "kim@gmail.com"),
    ],
)
def test_email_found(text: str, value: str) -> None:
    assert found(text) == [(PIIType.EMAIL, value)]


@pytest.mark.parametrize(
    "text", ["hello@localhost 로 테스트", "@minsu_kim 팔로우", "user at example dot com"]
)
def test_email_look_alikes_ignored(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("010-1234-5678로 연락", "010-1234-5678"),
        ("번호 01012345678", "01012345678"),
        ("call +82 10-1234-5678 now", "+82 10-1234-5678"),
        ("call +82-10-1234-5678 now", "+82-10-1234-5678"),
        ("휴대폰 010 2345 6789", "010 2345 6789"),
        ("서울 02-123-4567입니다", "02-123-4567"),
        ("경기 031-123-4567", "031-123-4567"),
        ("(02) 345-6789로 전화", "(02) 345-6789"),
        ("０１０－１２３４－５６７８이야", "010-1234-5678"),
        ("010-12\u200b34-5678", "010-1234-5678"),
    ],
)
def test_phone_found(text: str, value: str) -> None:
    assert found(text) == [(PIIType.PHONE, value)]


@pytest.mark.parametrize(
    "text",
    [
        "고객센터 1588-1234",
        "1577-1000으로 전화",
        "1544-9970, 1600-1234, 1644-5566, 1661-2345, 1666-1111, 1599-0011",
        "수신자부담 080-123-4567",
        "회의 2024-01-15",
        "Python 3.11.7",
        "2010-1234-5678-9",
    ],
)
def test_phone_look_alikes_ignored(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("960101-1234567이야", PIIType.RRN, "960101-1234567"),
        ("주민번호 9601011234567", PIIType.RRN, "9601011234567"),
        ("아이 번호 150301-3123456", PIIType.RRN, "150301-3123456"),
        ("외국인등록번호 900101-5123456", PIIType.FRN, "900101-5123456"),
        ("ARC 020202-7123456입니다", PIIType.FRN, "020202-7123456"),
        ("윤년생 000229-3123456", PIIType.RRN, "000229-3123456"),
    ],
)
def test_registration_number_found(text: str, kind: PIIType, value: str) -> None:
    assert found(text) == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "991332-1234567",  # month 13
        "850230-2345678",  # 30 February
        "010229-3123456",  # 2001 was not a leap year
        "960101-1234567890",  # too many digits
        "12345678901234",  # 14 digits
        "바코드 8801234567893",  # EAN-13 of a Korean product
    ],
)
def test_registration_look_alikes_ignored(text: str) -> None:
    assert found(text) == []


def test_registration_checksum_raises_score_but_is_not_required() -> None:
    masker = PIIMasker()
    with_check = masker.find("8001011234560")  # 80-01-01, male, valid check digit
    without = masker.find("8001011234561")
    assert rrn_checksum_valid("8001011234560")
    assert [m.type for m in with_check] == [m.type for m in without] == [PIIType.RRN]
    assert with_check[0].score > without[0].score


def test_birth_date_rejects_future_and_invalid_dates() -> None:
    today = datetime.date(2024, 1, 15)
    assert birth_date("2401143", today) == datetime.date(2024, 1, 14)
    assert birth_date("2401163", today) is None
    assert birth_date("9913321", today) is None
    assert birth_date("0002293", today) == datetime.date(2000, 2, 29)


@pytest.mark.parametrize("brn", ["220-81-62517", "124-81-00998"])
def test_business_number_with_valid_checksum(brn: str) -> None:
    assert brn_checksum_valid(brn.replace("-", ""))
    assert found(f"사업자등록번호 {brn}입니다") == [(PIIType.BRN, brn)]


def test_business_number_checksum_required() -> None:
    assert found("사업자등록번호 220-81-62518") == []


def test_bare_business_number_needs_context() -> None:
    assert found("사업자번호 2208162517") == [(PIIType.BRN, "2208162517")]
    assert found("코드 2208162517") == []


@pytest.mark.parametrize(
    "card",
    ["4111-1111-1111-1111", "4111 1111 1111 1111", "5500000000000004", "3782-822463-10005"],
)
def test_card_found(card: str) -> None:
    assert luhn_valid(card.replace("-", "").replace(" ", ""))
    assert found(f"카드번호 {card}로 결제") == [(PIIType.CARD, card)]


@pytest.mark.parametrize(
    "text",
    [
        "카드 4111-1111-1111-1112",  # Luhn fails
        "serial 12345678901234",  # 14 bare digits
        "code 1234-5678-9012-3452",  # Luhn-valid, but no issuer starts with 1
        "총 1,234,567원",
    ],
)
def test_card_look_alikes_ignored(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("계좌번호 110-123-456789로 입금해주세요", "110-123-456789"),
        ("카카오뱅크 3333-01-1234567 (예금주 김민수)", "3333-01-1234567"),
        ("wire it to account 1002123456789", "1002123456789"),
        ("123456-78-901234 계좌로 보내줘", "123456-78-901234"),
    ],
)
def test_account_found_next_to_context(text: str, value: str) -> None:
    assert found(text) == [(PIIType.ACCOUNT, value)]


def test_account_needs_context() -> None:
    assert found("문서번호 110-123-456789") == []


def test_phone_number_near_account_word_stays_phone() -> None:
    assert found("계좌 문의는 010-1234-5678") == [(PIIType.PHONE, "010-1234-5678")]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("여권번호 M12345678", "M12345678"),
        ("여권번호는M123A4567이야", "M123A4567"),
        ("Passport No.: S98765432", "S98765432"),
    ],
)
def test_passport_found_next_to_context(text: str, value: str) -> None:
    assert found(text) == [(PIIType.PASSPORT, value)]


@pytest.mark.parametrize("text", ["모델명 M12345678", "part no. M123A4567"])
def test_passport_shape_without_context_ignored(text: str) -> None:
    assert found(text) == []
