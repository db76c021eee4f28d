"""Restoring masking on a real server in front of an engine that repeats what it is told: the
engine (and so anything upstream) sees only numbered placeholders, while every surface's
official client gets the values back, streamed with placeholders cut across chunks, in
tool-call arguments and in a batch line; the server's log holds no value either."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import ollama
import openai
import pytest

from support import RunningServer, run_server
from support.batches import read_lines, upload, wait_final
from support.mock_upstream import Upstream, echoing, serve
from support.tools import TOOLS

pytestmark = pytest.mark.integration

PHONE, EMAIL, RRN = "010-1234-5678", "kim.minsu@example.com", "900101-1234568"
SAID = f"연락처 {PHONE}, 메일 {EMAIL}, 주민번호 {RRN}, 다시 {PHONE}"
VALUES = (PHONE, EMAIL, RRN)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with serve(echoing(piece=3)) as running:  # 3 characters a chunk: placeholders are cut
        yield running


@pytest.fixture(scope="module")
def server(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = {
        "log_level": "debug",  # the request text is logged (masked) at DEBUG
        "models": [{"id": "echo", "url": upstream.base_url, "pii_restore": True}],
    }
    with run_server(tmp_path_factory.mktemp("restore"), config) as running:
        yield running
    log = running.log()
    assert not any(value in log for value in VALUES), "a value reached the log"


@pytest.fixture(autouse=True)
def _upstream_sees_placeholders_only(upstream: Upstream) -> Iterator[None]:
    before = len(upstream.requests)
    yield
    sent = json.dumps([r["body"] for r in upstream.requests[before:]], ensure_ascii=False)
    assert "[PHONE_1]" in sent
    assert not any(value in sent for value in VALUES), sent


def _openai(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_openai_chat_gets_the_values_back_streamed_and_not(server: RunningServer) -> None:
    client = _openai(server)
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": SAID}
    ]
    done = client.chat.completions.create(model="echo", messages=messages)
    assert done.choices[0].message.content == SAID
    stream = client.chat.completions.create(model="echo", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == SAID


def test_openai_completion_gets_the_values_back(server: RunningServer) -> None:
    done = _openai(server).completions.create(model="echo", prompt=SAID, max_tokens=64)
    assert done.choices[0].text == SAID


def test_tool_call_arguments_get_the_values_back(server: RunningServer) -> None:
    stream = _openai(server).chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": SAID}],
        tools=TOOLS,
        stream=True,
    )
    arguments = ""
    for chunk in stream:
        calls = chunk.choices[0].delta.tool_calls if chunk.choices else None
        for call in calls or []:
            arguments += call.function.arguments or "" if call.function else ""
    assert json.loads(arguments) == {"text": SAID}


def test_anthropic_messages_get_the_values_back(server: RunningServer) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": SAID}]
    done = client.messages.create(model="echo", max_tokens=256, messages=messages)
    assert done.content[0].type == "text"
    assert done.content[0].text == SAID
    with client.messages.stream(model="echo", max_tokens=256, messages=messages) as stream:
        assert "".join(stream.text_stream) == SAID


def test_ollama_chat_gets_the_values_back(server: RunningServer) -> None:
    client = ollama.Client(host=server.url)
    messages = [{"role": "user", "content": SAID}]
    assert client.chat(model="echo", messages=messages).message.content == SAID
    parts = client.chat(model="echo", messages=messages, stream=True)
    assert "".join(p.message.content or "" for p in parts) == SAID


def test_a_batch_line_gets_the_values_back(server: RunningServer, tmp_path: Path) -> None:
    client = _openai(server)
    line = {"custom_id": "r", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "echo", "messages": [{"role": "user", "content": SAID}]}}  # fmt: skip
    file_id = upload(client, (json.dumps(line, ensure_ascii=False) + "\n").encode())
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = wait_final(client, batch.id, timeout=120)
    (result,) = read_lines(client, done.output_file_id)
    assert result["response"]["body"]["choices"][0]["message"]["content"] == SAID
