"""PIIMasker: placeholders, partial masks, type selection, overlaps and failing closed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest

from llmserver.privacy import MaskingError, PIIMasker, PIIMatch, PIIType
from llmserver.privacy.masker import resolve_overlaps
from llmserver.privacy.recognizers import RecognizerSpec

SENTENCE = "제 번호는 010-1234-5678이고 이메일은 kim@naver.com입니다"


def test_placeholders() -> None:
    assert PIIMasker().mask(SENTENCE) == "제 번호는 [PHONE]이고 이메일은 [EMAIL]입니다"


def test_every_type_has_its_placeholder() -> None:
    text = (
        "a@b.co 010-1234-5678 960101-1234567 900101-5123456 220-81-62517 "
        "4111-1111-1111-1111 여권 M12345678 계좌 110-123-456789"
    )
    assert PIIMasker().mask(text) == (
        "[EMAIL] [PHONE] [RRN] [FRN] [BRN] [CARD] 여권 [PASSPORT] 계좌 [ACCOUNT]"
    )


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("010-1234-5678로 연락", "010-****-5678로 연락"),
        ("01012345678", "010****5678"),
        ("+82 10-1234-5678", "+82 10-****-5678"),
        ("02-123-4567", "02-***-4567"),
        ("960101-1234567이야", "960101-*******이야"),
        ("4111-1111-1111-1111", "****-****-****-1111"),
        ("4111 1111 1111 1111", "**** **** **** 1111"),
        ("kim@example.com", "k***@example.com"),
        ("220-81-62517", "220-81-*****"),
        ("계좌 110-123-456789", "계좌 ***-***-**6789"),
        ("여권 M12345678", "여권 M********"),
    ],
)
def test_partial_masks(text: str, masked: str) -> None:
    assert PIIMasker(mode="partial").mask(text) == masked


def test_unknown_mode_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        PIIMasker(mode=cast(Any, "redact"))


def test_only_selected_types_are_masked() -> None:
    assert PIIMasker([PIIType.EMAIL]).mask(SENTENCE) == (
        "제 번호는 010-1234-5678이고 이메일은 [EMAIL]입니다"
    )


def test_unselected_type_still_wins_its_overlap() -> None:
    # The phone number next to 계좌 is a phone, not an account, even if phones are not masked.
    assert PIIMasker([PIIType.ACCOUNT]).mask("계좌 문의 010-1234-5678") == "계좌 문의 010-1234-5678"


def test_mask_returns_masked_normalised_text() -> None:
    assert PIIMasker().mask("ＡＢＣ\u200b 010-1234-5678") == "ABC [PHONE]"


def test_hard_negatives_stay_unmasked() -> None:
    text = (
        "주문번호 12345678901234, 코드 991332-1234567, 고객센터 1588-1234, "
        "카드 4111-1111-1111-1112, v2.10.1234, 2024-01-15, 1,234,000원"
    )
    assert PIIMasker().mask(text) == text


def test_overlap_resolves_to_higher_score_then_longer() -> None:
    low = PIIMatch(PIIType.ACCOUNT, 0, 13, "x" * 13, 0.6)
    high = PIIMatch(PIIType.PHONE, 0, 13, "x" * 13, 0.9)
    short = PIIMatch(PIIType.PHONE, 2, 6, "x" * 4, 0.9)
    other = PIIMatch(PIIType.EMAIL, 20, 30, "y" * 10, 0.5)
    assert resolve_overlaps([low, short, other, high]) == [high, other]


def _broken(text: str) -> Iterator[PIIMatch]:
    raise RuntimeError("recogniser bug")
    yield  # pragma: no cover


def test_recogniser_failure_raises_masking_error() -> None:
    masker = PIIMasker()
    masker._recognizers = (RecognizerSpec(frozenset({PIIType.EMAIL}), _broken),)
    with pytest.raises(MaskingError) as info:
        masker.mask(SENTENCE)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "010" not in str(info.value)  # the error never carries the text


def test_non_text_input_raises_masking_error() -> None:
    with pytest.raises(MaskingError):
        PIIMasker().mask(cast(str, None))
