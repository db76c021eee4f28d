"""StreamMasker: values split across deltas are masked; output equals masking the whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest

from llmserver.privacy import MaskingError, MaskMode, PIIMasker, StreamMasker

TEXTS = [
    "제 번호는 010-1234-5678이고 이메일은 kim@naver.com입니다. " * 3,
    "카드 4111 1111 1111 1111, 주민번호 960101-1234567이야. 계좌번호는 110-123-456789로 입금!",
    "Name: Lee, passport M123A4567, phone +82 10-9876-5432, mail very.long.name+tag@korea.ac.kr",
    "고객센터 1588-1234, 버전 3.11.7, 날짜 2024-01-15. " * 4 + "끝 010-2222-3333",
    "０１０－１２３４－５６７８\u200b 그리고 ｋｉｍ＠ｎａｖｅｒ．ｃｏｍ, 그리고 많은 텍스트 " * 2,
    "짧은 글",
    "",
]


def stream(masker: PIIMasker, text: str, size: int, holdback: int = 64) -> tuple[list[str], str]:
    streamer = StreamMasker(masker, holdback=holdback)
    pieces = [streamer.feed(text[i : i + size]) for i in range(0, len(text), size)]
    pieces.append(streamer.flush())
    return pieces, "".join(pieces)


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("mode", ["placeholder", "partial"])
def test_stream_equals_mask_of_whole(text: str, size: int, mode: MaskMode) -> None:
    masker = PIIMasker(mode=mode)
    _, joined = stream(masker, text, size)
    assert joined == masker.mask(text)


def test_value_split_into_one_character_deltas_is_masked() -> None:
    text = "연락처는 010-1234-5678이고 주민번호는 960101-1234567입니다. " + "다른 이야기. " * 20
    pieces, joined = stream(PIIMasker(), text, 1)
    assert "[PHONE]" in joined
    assert "[RRN]" in joined
    assert not any(digit in joined for digit in "12345678")
    # Text is released before the end, and no piece holds half a placeholder.
    assert any(pieces[:-1])
    for piece in pieces:
        assert piece.count("[") == piece.count("]")


def test_holdback_limits_what_is_held() -> None:
    streamer = StreamMasker(PIIMasker(), holdback=16)
    released = "".join(streamer.feed(c) for c in "가나다라 " * 20)
    assert len(released) >= 100 - 16 - 5


def test_small_holdback_rejected() -> None:
    with pytest.raises(ValueError, match="holdback"):
        StreamMasker(PIIMasker(), holdback=0)


def test_stream_failure_raises_masking_error() -> None:
    streamer = StreamMasker(PIIMasker(), holdback=1)
    with pytest.raises(MaskingError):
        streamer.feed(cast(str, None))


def test_hard_set_streamed_one_character_at_a_time_equals_masking_the_whole() -> None:
    masker = PIIMasker()
    path = Path(__file__).resolve().parents[2] / "data" / "pii_cases_hard.jsonl"
    cases = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    text = "\n".join(case["text"] for case in cases)
    for size in (1, 5):
        _, joined = stream(masker, text, size)
        assert joined == masker.mask(text)
        for case in cases:
            for entity in case["entities"]:
                assert entity["text"] not in joined
