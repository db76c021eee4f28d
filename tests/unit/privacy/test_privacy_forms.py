"""The forms people actually write values in: each form's positives and its look-alikes.

The labelled set ``tests/data/pii_cases_hard.jsonl`` holds these forms in context; the
sentences here are separate, one form at a time.
"""

from __future__ import annotations

import json

import pytest

from llmserver.privacy import PIIMasker, PIIType, normalize

PHONE, EMAIL, RRN, FRN = PIIType.PHONE, PIIType.EMAIL, PIIType.RRN, PIIType.FRN
CARD, ACCOUNT, BRN = PIIType.CARD, PIIType.ACCOUNT, PIIType.BRN


def found(text: str) -> list[tuple[PIIType, str]]:
    """(type, text) of every match in the normalised text."""
    return [(m.type, m.text) for m in PIIMasker().find(normalize(text))]


def check(text: str, expected: list[tuple[PIIType, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("연락처02)1234-5678로 전화주세요", [(PHONE, "02)1234-5678")]),
        ("사무실031)123-4567입니다", [(PHONE, "031)123-4567")]),
        ("지사 051)987-6543, 070)4321-8765", [(PHONE, "051)987-6543"), (PHONE, "070)4321-8765")]),
        ("문의 (031) 234-5678", [(PHONE, "(031) 234-5678")]),
        ("휴대폰(010)1234-5678", [(PHONE, "(010)1234-5678")]),
        ("(010)2345-6789 말고 010-2345-6780이요", [(PHONE, "010-2345-6780")]),
        ("1) 서류 2) 도장 3) 신분증", []),
        ("02) 항목은 생략", []),
    ],
)
def test_area_code_closed_by_a_parenthesis(text: str, expected: list[tuple[PIIType, str]]) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("제 번호 010.4567.8901 입니다", [(PHONE, "010.4567.8901")]),
        ("번호 010 - 3344 - 5566 로", [(PHONE, "010 - 3344 - 5566")]),
        ("010-2233 4455로 문자", [(PHONE, "010-2233 4455")]),
        ("사무실 02.3456.7890", [(PHONE, "02.3456.7890")]),
        ("연락은010-12345678으로", [(PHONE, "010-12345678")]),
        ("Windows 10.0.19045, Chrome 120.0.6099.129", []),
        ("카카오뱅크 3333 02 1234567", [(ACCOUNT, "3333 02 1234567")]),
    ],
)
def test_phone_dots_spaces_and_mixed_separators(
    text: str, expected: list[tuple[PIIType, str]]
) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("연락처: ０２）１２３－４５６７", [(PHONE, "02)123-4567")]),
        ("휴대폰 ０１０．８７６５．４３２１", [(PHONE, "010.8765.4321")]),
        ("신용카드 ３５６６　００２０　２０３６　０５０５", [(CARD, "3566 0020 2036 0505")]),
        ("번호 010ㅡ1234ㅡ5678 로", [(PHONE, "010\u11731234\u11735678")]),
        ("주민번호 920704ㅡ2345678", [(RRN, "920704\u11732345678")]),
        ("가격 １２，３４５원, ㅡ 구분선 ㅡ", []),
    ],
)
def test_fullwidth_forms_and_hangul_dash(text: str, expected: list[tuple[PIIType, str]]) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("연락처 +82 010-5678-9012", [(PHONE, "+82 010-5678-9012")]),
        ("국제전화 82-10-4567-8901로", [(PHONE, "82-10-4567-8901")]),
        ("(+82) 10-6789-0123 is mine", [(PHONE, "(+82) 10-6789-0123")]),
        ("Phone: +82.10.7890.1234", [(PHONE, "+82.10.7890.1234")]),
        ("Tel. 82-2-3456-7890", [(PHONE, "82-2-3456-7890")]),
        ("+821098765432로 카톡", [(PHONE, "+821098765432")]),
        ("점수 82-10 승리, 82점 10등", []),
    ],
)
def test_country_code_without_the_leading_zero(
    text: str, expected: list[tuple[PIIType, str]]
) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("연락처는 010-1234-\n5678 입니다", [(PHONE, "010-1234-\n5678")]),
        ("제 번호가 010-\n9876-5432인데요", [(PHONE, "010-\n9876-5432")]),
        ("카드 4532-0151-\n1283-0366 결제", [(CARD, "4532-0151-\n1283-0366")]),
        ("주민번호 850315-\n1234566 확인", [(RRN, "850315-\n1234566")]),
        ("회의 2024-01-\n15 오후", []),
        ("합계\n12,345원\n2024.01.15", []),
    ],
)
def test_value_wrapped_across_a_line_break(text: str, expected: list[tuple[PIIType, str]]) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<a href="tel:010-2345-6789">', [(PHONE, "010-2345-6789")]),
        ("tel:+82-10-3456-7890", [(PHONE, "+82-10-3456-7890")]),
        ("?to=%2B82-10-3456-7890&x=1", [(PHONE, "%2B82-10-3456-7890")]),
        ("/contact?name=kim&phone=01023456789&ref=sms", [(PHONE, "01023456789")]),
        ("mailto:help.desk@hanmail.net?subject=hi", [(EMAIL, "help.desk@hanmail.net")]),
        ("/submit?email=minho.lee%40gmail.com&agree=1", [(EMAIL, "minho.lee%40gmail.com")]),
        ("https://example.com/page?id=12345&sort=desc", []),
        ("https://blog.example.kr/2024/01/15/post-123", []),
    ],
)
def test_values_inside_urls(text: str, expected: list[tuple[PIIType, str]]) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"phone":"010-1234-5678","name":"김민수"}', [(PHONE, "010-1234-5678")]),
        ('{\\"phone\\":\\"010-8765-4321\\"}', [(PHONE, "010-8765-4321")]),
        ('{"text": "메일은\\nhana_kim@naver.com 입니다"}', [(EMAIL, "hana_kim@naver.com")]),
        ('{"msg":"연락처\\n010-2468-1357"}', [(PHONE, "010-2468-1357")]),
        ('{"memo":"010-1234-\\n5678"}', [(PHONE, "010-1234-\\n5678")]),
        ('{"version":"10.0.19045","build":"22631","price":"12,345"}', []),
    ],
)
def test_values_inside_json_strings(text: str, expected: list[tuple[PIIType, str]]) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("번호는 공일공-1234-5678이에요", [(PHONE, "공일공-1234-5678")]),
        ("010-일이삼사-5678로 연락", [(PHONE, "010-일이삼사-5678")]),
        ("공일공.구팔칠육.오사삼이로", [(PHONE, "공일공.구팔칠육.오사삼이")]),
        ("연락처 공일공 구구팔팔 칠칠육육", [(PHONE, "공일공 구구팔팔 칠칠육육")]),
        ("010-1234-5678이에요", [(PHONE, "010-1234-5678")]),
        ("공일공 하고 웃더라, 일이삼사 순서대로, 오늘 이사 갑니다", []),
    ],
)
def test_hangul_numerals_in_a_phone_number(text: str, expected: list[tuple[PIIType, str]]) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("주민등록번호 850315 1234566 입니다", [(RRN, "850315 1234566")]),
        ("주민번호는 771120.2765435이에요", [(RRN, "771120.2765435")]),
        ("RRN: 881231 - 2543216", [(RRN, "881231 - 2543216")]),
        ("외국인등록번호 910203 5123452", [(FRN, "910203 5123452")]),
        ("코드 850315 1234567", []),  # spaced, no context word, check digit wrong
        ("타임스탬프 20240115 143000", []),
    ],
)
def test_registration_number_with_spaces_or_dots(
    text: str, expected: list[tuple[PIIType, str]]
) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("결제 카드 4532 0151 1283 0366", [(CARD, "4532 0151 1283 0366")]),
        ("카드번호 5500.0055.5555.0006 유효기간 12/27", [(CARD, "5500.0055.5555.0006")]),
        ("Amex 3714 496353 98431", [(CARD, "3714 496353 98431")]),
        ("code 1234.5678.9012.3452", []),  # Luhn-valid, but no issuer starts with 1
        ("카드 4532.0151.1283.0367", []),  # Luhn fails
    ],
)
def test_card_with_spaces_or_dots(text: str, expected: list[tuple[PIIType, str]]) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("계좌번호 110 123 456789로 입금", [(ACCOUNT, "110 123 456789")]),
        ("국민은행 123456.78.901234 예금주", [(ACCOUNT, "123456.78.901234")]),
        ("사업자번호 214 87 09130 입니다", [(BRN, "214 87 09130")]),
        ("사업자 등록번호: 101.81.11115", [(BRN, "101.81.11115")]),
        ("사업자번호 214 87 09131", []),  # check digit wrong
        ("점수 214 87 09130", []),  # passes the check, but spaced and no business word
        ("계좌 개설일 2024.01.15, 잔액 1,234,567원", []),
        ("이체 서버 주소 192.168.123.254 점검", []),
        ("예약번호 8123-4567-8901 입금 대기", []),
        ("배송 조회 CJ 5678-1234-9012 입금 후 발송", []),
        ("거래번호 2024011512345678 입금 확인", []),
        ("이체 확인증 No. 2024-011-512345", []),
        ("누적 송금액 ₩123456789012", []),
    ],
)
def test_account_and_business_number_with_spaces_or_dots(
    text: str, expected: list[tuple[PIIType, str]]
) -> None:
    check(text, expected)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("번호 공일공-일이삼사-오육칠팔", "번호 공일공-****-오육칠팔"),
        ("연락처02)1234-5678로", "연락처02)****-5678로"),
        ("?email=minho.lee%40gmail.com", "?email=m***%40gmail.com"),
    ],
)
def test_partial_masks_of_the_new_forms(text: str, masked: str) -> None:
    assert PIIMasker(mode="partial").mask(text) == masked


def test_masked_json_with_escaped_line_breaks_stays_json() -> None:
    arguments = json.dumps({"memo": "연락처 010-1234-\n5678\nkim@naver.com", "n": 3})
    masked = PIIMasker().mask(arguments)
    assert json.loads(masked) == {"memo": "연락처 [PHONE]\n[EMAIL]", "n": 3}
