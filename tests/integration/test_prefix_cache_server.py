"""The prefix cache as a client sees it: OpenAI's ``usage.prompt_tokens_details.cached_tokens``,
the access log line and the metrics, on the real default server, through the official client."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import openai
import pytest
from llama_cpp import Llama
from openai.types.chat import ChatCompletionMessageParam

from llmserver.config.settings import DEFAULT_MODEL_ID, default_model_path
from llmserver.core.templating import ChatTemplate
from support import RunningServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=default_server.base_url, api_key="unused", max_retries=0)


def prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """The prompt as the server builds it, tokenized by the model's own tokenizer."""
    llm = Llama(str(default_model_path()), vocab_only=True, verbose=False)
    template = ChatTemplate(llm.metadata.get("tokenizer.chat_template"))
    text = template.render(messages)
    return list(llm.tokenize(text.encode(), add_bos=False, special=True))


def common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def cache_counter(server: RunningServer, outcome: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith("llmserver_prompt_cache_tokens_total{") and (
            f'outcome="{outcome}"' in line and f'model="{DEFAULT_MODEL_ID}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_cached_tokens_in_usage_log_and_metrics(
    client: openai.OpenAI, default_server: RunningServer
) -> None:
    # a system prompt no other test sends, so no other request's cache shares it
    system = f"You are assistant {uuid.uuid4().hex}. Answer in one short sentence, politely."
    first: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Name a colour."},
    ]
    second: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Name a tree."},
    ]
    client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=first,
        temperature=0,
        max_tokens=4,
    )
    before = cache_counter(default_server, "cached")
    stream = client.chat.completions.create(
        model=DEFAULT_MODEL_ID,
        messages=second,
        temperature=0,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [chunk.usage for chunk in stream if chunk.usage is not None][-1]
    expected = common(prompt_tokens(first), prompt_tokens(second))
    assert expected > 20
    assert usage.prompt_tokens == len(prompt_tokens(second))
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == expected
    assert cache_counter(default_server, "cached") == before + expected
    assert f"cached_tokens={expected} " in default_server.log()
