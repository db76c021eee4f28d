"""``max_tokens`` past the context on the real default model: LangChain's ``ChatAnthropic``
with its default ``max_tokens`` (4096, for a model it has no profile for) on a 4096-token
context, and an OpenAI request that fills a small context to its end."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from langchain_anthropic import ChatAnthropic

from llmserver.config.settings import default_model_path
from support import RunningServer, run_server

pytestmark = pytest.mark.integration

#: a context as small as a test can fill quickly
SMALL = 128


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    gguf = str(default_model_path())
    config = {
        "models": [
            {"id": "chat", "path": gguf, "context_size": 4096, "max_concurrent": 1},
            {"id": "small", "path": gguf, "context_size": SMALL, "max_concurrent": 1},
        ]
    }
    with run_server(tmp_path_factory.mktemp("overflow"), config) as running:
        yield running


def test_chat_anthropic_with_its_default_max_tokens_gets_an_answer(server: RunningServer) -> None:
    model = ChatAnthropic(
        model="chat", base_url=server.url, api_key="unused", temperature=0, max_retries=0
    )
    assert model.max_tokens == 4096  # what it sends for a model it has no profile for
    reply = model.invoke("Name one colour.")
    assert isinstance(reply.content, str)
    assert reply.content.strip()
    assert reply.response_metadata["stop_reason"] in ("end_turn", "max_tokens")


def test_openai_request_past_a_small_context_fills_it_and_ends_with_length(
    server: RunningServer,
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": "Count to one thousand."}],
        max_tokens=4096,
        extra_body={"ignore_eos": True},
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.total_tokens == SMALL
    assert "clamped to" in server.log()
