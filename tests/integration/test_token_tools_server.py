"""``/tokenize`` and ``/detokenize`` on the real default model (SmolLM2 through llama.cpp)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from llmserver.config.settings import DEFAULT_MODEL_ID
from support import RunningServer

pytestmark = pytest.mark.integration

#: Korean, an emoji (several bytes, maybe several tokens) and one of SmolLM2's special tokens
TEXT = "안녕하세요, 세계! 🦀🎉 <|im_end|> done"


def test_tokenize_then_detokenize_round_trips_korean_emoji_and_special_tokens(
    default_server: RunningServer,
) -> None:
    url = default_server.url
    body = {"model": DEFAULT_MODEL_ID, "prompt": TEXT, "add_special_tokens": False}
    resp = httpx.post(f"{url}/tokenize", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["count"] == len(result["tokens"]) > 5
    assert result["max_model_len"] >= 2048
    pieces = httpx.post(
        f"{url}/tokenize", json={"content": TEXT, "with_pieces": True, "add_special": False}
    ).json()["tokens"]
    assert [p["id"] for p in pieces] == result["tokens"]
    assert "<|im_end|>" in [p["piece"] for p in pieces]  # one special token, not its letters
    back = httpx.post(f"{url}/detokenize", json={"tokens": result["tokens"]}, timeout=60)
    assert back.status_code == 200, back.text
    assert back.json()["prompt"] == TEXT
    bad = httpx.post(f"{url}/detokenize", json={"tokens": [10**9]}, timeout=60)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "tokens"


def test_tokenize_count_of_messages_equals_prompt_tokens_of_the_chat(
    default_server: RunningServer,
) -> None:
    messages: Any = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hi in Korean: 안녕 🦀"},
    ]
    resp = httpx.post(
        f"{default_server.url}/tokenize",
        json={"model": DEFAULT_MODEL_ID, "messages": messages},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    client = openai.OpenAI(base_url=default_server.base_url, api_key="unused", max_retries=0)
    chat = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=messages,
        max_tokens=2,
    )
    assert chat.usage is not None
    assert resp.json()["count"] == chat.usage.prompt_tokens
