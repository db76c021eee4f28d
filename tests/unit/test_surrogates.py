"""The one rule for unpaired surrogates in JSON text: each escape becomes ``\\ufffd``, in place,
and nothing else changes."""

from __future__ import annotations

import json

import pytest

from llmserver.surrogates import lone_surrogates_replaced


@pytest.mark.parametrize(
    ("raw", "read"),
    [
        (rb'"a\ud800b"', "a\ufffdb"),
        (rb'"\udfff\uD800"', "\ufffd\ufffd"),
        (rb'"\ud800\ud800\udc00"', "\ufffd\U00010000"),  # the second high one has its pair
        (rb'"\ud83d\ude00x\uDC00"', "\U0001f600x\ufffd"),
        (rb'"\\ud800"', "\\ud800"),  # an escaped backslash, then plain text
        (rb'"\\\ud800"', "\\\ufffd"),  # an escaped backslash, then a lone surrogate
        (rb'{"k\ud800": ["\u0041", 1]}', None),
    ],
)
def test_each_lone_surrogate_becomes_the_replacement_character(raw: bytes, read: str) -> None:
    fixed = lone_surrogates_replaced(raw)
    assert len(fixed) == len(raw)  # nothing else in the text moves
    value = json.loads(fixed)
    if read is not None:
        assert value == read
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # every string now encodes


def test_text_without_surrogates_is_the_same_object() -> None:
    raw = rb'{"a": "\u00e9\ud55c\\u"}'
    assert lone_surrogates_replaced(raw) is raw
