"""The official ``anthropic`` client against a real server on the real default model.

Version 2 of the package has no sampling arguments: they go in ``extra_body``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp import Llama

from llmserver.config.settings import DEFAULT_MODEL_ID, default_model_path
from llmserver.security.keys import create_key
from support import RunningServer, fake_model, run_server

pytestmark = pytest.mark.integration

QUESTION: list[Any] = [{"role": "user", "content": "Name three colours."}]
SYSTEM = "You answer in one short sentence."
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def client(default_server: RunningServer) -> anthropic.Anthropic:
    # a beta header the server has never heard of must not matter
    return anthropic.Anthropic(
        base_url=default_server.url,
        api_key="unused",
        max_retries=0,
        default_headers={"anthropic-beta": "some-future-beta-2099-01-01"},
    )


@pytest.fixture(scope="module")
def tokenizer() -> Llama:
    """The same GGUF loaded vocab-only, to count tokens independently of the server."""
    return Llama(str(default_model_path()), vocab_only=True, verbose=False)


def prompt_tokens(tokenizer: Llama, messages: list[dict[str, str]]) -> int:
    """The prompt rendered by the model's own template, counted by the model's own tokenizer."""
    template = tokenizer.metadata["tokenizer.chat_template"]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    prompt = env.from_string(template).render(messages=messages, add_generation_prompt=True)
    return len(tokenizer.tokenize(prompt.encode(), special=True))


def text_of(block: anthropic.types.ContentBlock) -> str:
    """A text block's text (any other block fails the test)."""
    assert isinstance(block, anthropic.types.TextBlock), block
    return block.text


def create(client: anthropic.Anthropic, **kwargs: Any) -> anthropic.types.Message:
    args: dict[str, Any] = {"model": DEFAULT_MODEL_ID, "max_tokens": 40, "messages": QUESTION}
    message: anthropic.types.Message = client.messages.create(
        **{**args, **kwargs}, extra_body=GREEDY
    )
    return message


def test_a_message(client: anthropic.Anthropic, tokenizer: Llama) -> None:
    msg = create(client, system=SYSTEM, metadata={"user_id": "someone"})
    assert msg.id.startswith("msg_")
    assert (msg.type, msg.role, msg.model) == ("message", "assistant", DEFAULT_MODEL_ID)
    [block] = msg.content
    assert block.type == "text"
    assert block.text.strip()
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.stop_sequence is None
    system = [{"role": "system", "content": SYSTEM}]
    assert msg.usage.input_tokens == prompt_tokens(tokenizer, [*system, *QUESTION])
    assert 0 < msg.usage.output_tokens <= 40
    assert msg._request_id


def test_a_streamed_message_has_the_events_in_order(client: anthropic.Anthropic) -> None:
    whole = create(client)
    stream = client.messages.create(
        model=DEFAULT_MODEL_ID, max_tokens=40, messages=QUESTION, stream=True, extra_body=GREEDY
    )
    events = list(stream)
    kinds = [e.type for e in events]
    deltas = kinds.count("content_block_delta")
    assert deltas > 3, "the text should arrive piece by piece"
    # the SDK skips ``ping`` events; the unit tests check it comes right after the block start
    assert kinds == [
        "message_start", "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == text_of(whole.content[0])
    start, end = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == whole.usage.input_tokens
    assert end.type == "message_delta"
    assert end.delta.stop_reason == whole.stop_reason
    assert end.usage.output_tokens == whole.usage.output_tokens


def test_the_stream_helper_builds_the_same_message(client: anthropic.Anthropic) -> None:
    whole = create(client)
    with client.messages.stream(
        model=DEFAULT_MODEL_ID, max_tokens=40, messages=QUESTION, extra_body=GREEDY
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == text_of(whole.content[0])
    assert [(b.type, text_of(b)) for b in final.content] == [("text", "".join(pieces))]
    assert final.stop_reason == whole.stop_reason
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_count_tokens_equals_the_tokenizer_count_of_the_rendered_prompt(
    client: anthropic.Anthropic, tokenizer: Llama
) -> None:
    system = [{"type": "text", "text": SYSTEM}]
    counted = client.messages.count_tokens(
        model=DEFAULT_MODEL_ID,
        messages=QUESTION,
        system=system,  # type: ignore[arg-type]
    )
    expected = prompt_tokens(tokenizer, [{"role": "system", "content": SYSTEM}, *QUESTION])
    assert counted.input_tokens == expected
    assert create(client, system=system).usage.input_tokens == expected


def test_max_tokens_stops_with_max_tokens(client: anthropic.Anthropic) -> None:
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    msg = create(client, max_tokens=5, messages=story)
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 5


def test_stop_sequence_is_reported(client: anthropic.Anthropic) -> None:
    whole = text_of(create(client).content[0])
    words = whole.split()
    assert len(words) > 3
    stop = words[2]
    cut = create(client, stop_sequences=["never-generated-xyz", stop])
    assert (cut.stop_reason, cut.stop_sequence) == ("stop_sequence", stop)
    assert text_of(cut.content[0]) == whole[: whole.index(stop)]


def test_unknown_model_is_a_not_found_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        create(client, model="claude-that-is-not-here")
    body: Any = caught.value.body
    assert body["error"]["type"] == "not_found_error"
    assert body["type"] == "error"


def test_missing_max_tokens_is_an_invalid_request_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.post(
            "/v1/messages",
            body={"model": DEFAULT_MODEL_ID, "messages": QUESTION},
            cast_to=httpx.Response,
        )
    body: Any = caught.value.body
    error = body["error"]
    assert error["type"] == "invalid_request_error"
    assert "max_tokens" in error["message"]


def test_server_tools_are_refused_clearly(client: anthropic.Anthropic) -> None:
    tool = {"type": "web_search_20250305", "name": "web_search"}
    with pytest.raises(anthropic.BadRequestError) as caught:
        create(client, tools=[tool])
    body: Any = caught.value.body
    assert "server tools" in body["error"]["message"]


# -- keys ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, dict[str, str]]]:
    """The default model behind API keys: one for every model, one for another model only."""
    tmp = tmp_path_factory.mktemp("anthropic-keys")
    path = tmp / "keys.json"
    keys = {
        "user": create_key(path, "sdk-user"),
        "elsewhere": create_key(path, "elsewhere", models=["some-other-model"]),
    }
    with run_server(tmp, env={"LLMSERVER_KEYS_FILE": str(path)}) as server:
        yield server, keys


def _keyed_client(
    server: RunningServer, api_key: str | None = None, auth_token: str | None = None
) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=server.url, max_retries=0, api_key=api_key, auth_token=auth_token
    )


def test_keys_by_x_api_key_or_bearer(keyed: tuple[RunningServer, dict[str, str]]) -> None:
    server, keys = keyed
    for auth in ({"api_key": keys["user"]}, {"auth_token": keys["user"]}):
        msg = create(_keyed_client(server, **auth), max_tokens=3)
        assert msg.usage.output_tokens > 0


def test_no_key_is_an_authentication_error(keyed: tuple[RunningServer, dict[str, str]]) -> None:
    server, _ = keyed
    bare = httpx.post(
        f"{server.url}/v1/messages",
        json={"model": DEFAULT_MODEL_ID, "max_tokens": 3, "messages": QUESTION},
    )
    assert bare.status_code == 401
    assert bare.json()["type"] == "error"
    assert bare.json()["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError) as caught:
        create(_keyed_client(server, api_key="llms-not-a-key"))
    body: Any = caught.value.body
    assert body["error"]["type"] == "authentication_error"


def test_a_forbidden_model_is_a_permission_error(
    keyed: tuple[RunningServer, dict[str, str]],
) -> None:
    server, keys = keyed
    sdk = _keyed_client(server, api_key=keys["elsewhere"])
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        create(sdk)
    body: Any = caught.value.body
    assert body["error"]["type"] == "permission_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        sdk.messages.count_tokens(model=DEFAULT_MODEL_ID, messages=QUESTION)


# -- a failure after the stream began -------------------------------------------------------------


def test_an_error_mid_stream_reaches_the_sdk(tmp_path: Path) -> None:
    slow = fake_model("slow", token_delay_s=0.2, inference_timeout_s=1.0)
    with run_server(tmp_path, {"models": [slow]}) as server:
        sdk = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
        stream = sdk.messages.create(model="slow", max_tokens=50, messages=QUESTION, stream=True)
        seen: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as caught:
            seen.extend(event.type for event in stream)
    assert seen[:2] == ["message_start", "content_block_start"]
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "timeout_error", "message": "inference timed out after 1 s"},
    }
