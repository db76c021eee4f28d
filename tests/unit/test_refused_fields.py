"""Fields this server does not honour are refused by name (400 with ``param``), never dropped;
booleans are strict and integers keep OpenAI's ranges."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
TEXT = {"model": "fake", "prompt": "hi", "max_tokens": 3}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("/v1/chat/completions", {"logprobs": True}, "logprobs"),
        # the fake backend reports no logprobs (llama.cpp does)
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ("/v1/chat/completions", {"logit_bias": {"50256": -100}}, "logit_bias"),
        ("/v1/chat/completions", {"functions": [TOOL["function"]]}, "functions"),
        ("/v1/completions", {"logprobs": 3}, "logprobs"),
        ("/v1/completions", {"suffix": " the end"}, "suffix"),
        ("/v1/completions", {"best_of": 3}, "best_of"),
    ],
)
def test_unhonoured_field_is_a_400_naming_it(
    client: TestClient, path: str, extra: dict[str, Any], param: str
) -> None:
    base = CHAT if path.endswith("chat/completions") else TEXT
    resp = client.post(path, json={**base, **extra})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param
    assert error["code"] == "unsupported_parameter"
    assert param in error["message"]


@pytest.mark.parametrize(
    "off",
    [{"logprobs": False}, {"logprobs": None}, {"tools": []}, {"tool_choice": "none"}],
)
def test_unhonoured_field_at_its_off_value_is_accepted(
    client: TestClient, off: dict[str, Any]
) -> None:
    resp = client.post("/v1/chat/completions", json={**CHAT, **off})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["logprobs"] is None


def test_image_part_is_refused_with_its_position(client: TestClient) -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    body = {**CHAT, "messages": [{"role": "user", "content": content}]}
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["param"] == "messages[0].content[1]"
    assert "image_url" in error["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"seed": 2**64}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"max_tokens": 5.5}, "max_tokens"),
        ({"n": 129}, "n"),
        ({"stream_options": {"include_usage": "true"}}, "stream_options.include_usage"),
    ],
)
def test_loose_types_and_out_of_range_integers_are_400(
    client: TestClient, extra: dict[str, Any], param: str
) -> None:
    resp = client.post("/v1/chat/completions", json={**CHAT, **extra})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_a_64_bit_seed_is_accepted(client: TestClient) -> None:
    resp = client.post("/v1/chat/completions", json={**CHAT, "seed": 2**63 - 1})
    assert resp.status_code == 200, resp.text
