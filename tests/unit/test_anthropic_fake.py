"""Anthropic's Messages API through the whole server stack on the deterministic fake backend:
message shape, stop reasons, the stream's events in order, token counts, errors in Anthropic's
envelope (also for 401/403/429 from middleware), keys, headers and roles."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmserver.backends.fake import REPLY_WORDS, split_tokens
from llmserver.errors import AuthenticationError, EngineError, InferenceTimeoutError
from llmserver.http.streaming import EventStream
from llmserver.security.keys import create_key
from llmserver.surfaces.anthropic.translate import ANTHROPIC_SSE, anthropic_error
from support import fake_model, fake_settings, open_client
from support.anthropic_wire import error_of, events
from support.fake import fake_backend

MESSAGES = "/v1/messages"
COUNT = "/v1/messages/count_tokens"
USER = [{"role": "user", "content": "hello there"}]
PROMPT = "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n"
EMAIL = "jane.doe@example.com"
#: four fake tokens that mask to one, so a masked prompt counts fewer tokens
CARD = "4111 1111 1111 1111"


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "fake", "max_tokens": 50, "messages": USER, **extra}


def message(client: TestClient, **extra: Any) -> dict[str, Any]:
    resp = client.post(MESSAGES, json=body(**extra))
    assert resp.status_code == 200, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def _seen(client: TestClient, model: str = "fake") -> list[str]:
    return list(fake_backend(client, model).seen)


@pytest.fixture
def fixed() -> Iterator[TestClient]:
    """A fake model with a fixed reply, for stop sequences."""
    with open_client(
        fake_settings(fake_model("fake", reply="alpha beta gamma delta epsilon"))
    ) as c:
        yield c


# -- messages ------------------------------------------------------------------------------------


def test_message_shape_and_usage(client: TestClient) -> None:
    resp = client.post(MESSAGES, json=body())
    assert resp.headers["request-id"] == resp.headers["x-request-id"]
    msg = resp.json()
    assert set(msg) == {
        "id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage",
    }  # fmt: skip
    assert msg["id"].startswith("msg_")
    assert len(msg["id"]) > 10
    assert (msg["type"], msg["role"], msg["model"]) == ("message", "assistant", "fake")
    [block] = msg["content"]
    assert block["type"] == "text"
    assert len(split_tokens(block["text"])) == REPLY_WORDS
    assert (msg["stop_reason"], msg["stop_sequence"]) == ("end_turn", None)
    assert msg["usage"] == {"input_tokens": len(split_tokens(PROMPT)), "output_tokens": REPLY_WORDS}


def test_string_and_block_content_and_system_forms_are_the_same(client: TestClient) -> None:
    as_string = message(client, system="Be brief.")
    as_blocks = message(
        client,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    )
    assert as_string["content"] == as_blocks["content"]
    assert as_string["usage"] == as_blocks["usage"]
    assert _seen(client)[-1].startswith("<|im_start|>system\nBe brief.<|im_end|>\n")


def test_text_blocks_and_consecutive_turns_are_joined(client: TestClient) -> None:
    blocks = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    message(client, messages=[{"role": "user", "content": blocks}, USER[0]])
    assert _seen(client)[-1] == (
        "<|im_start|>user\none\n\ntwo\n\nhello there<|im_end|>\n<|im_start|>assistant\n"
    )


def test_unknown_role_is_a_user_turn_with_a_warning(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "llmserver.anthropic")
    message(client, messages=[{"role": "developer", "content": "hello there"}])
    assert _seen(client)[-1] == PROMPT
    assert "messages.0 has role 'developer'; treated as 'user'" in caplog.text


def test_max_tokens_gives_max_tokens_with_exact_count(client: TestClient) -> None:
    msg = message(client, max_tokens=3)
    assert msg["stop_reason"] == "max_tokens"
    assert msg["usage"]["output_tokens"] == 3
    assert len(split_tokens(msg["content"][0]["text"])) == 3


def test_stop_sequence_names_the_one_that_matched(fixed: TestClient) -> None:
    msg = message(fixed, stop_sequences=["zeta", "delta", "epsilon"])
    assert msg["content"][0]["text"] == "alpha beta gamma "
    assert (msg["stop_reason"], msg["stop_sequence"]) == ("stop_sequence", "delta")
    plain = message(fixed)
    assert (plain["stop_reason"], plain["stop_sequence"]) == ("end_turn", None)


def test_sampling_fields_and_metadata_are_accepted(client: TestClient) -> None:
    same = [
        message(client, temperature=0.5, top_p=0.9, top_k=5, metadata={"user_id": "u1"}),
        message(client, temperature=0.5, top_p=0.9, top_k=5),
    ]
    assert same[0]["content"] == same[1]["content"]


def test_anthropic_headers_never_cause_an_error(client: TestClient) -> None:
    headers = {"anthropic-version": "1999-01-01", "anthropic-beta": "no-such-beta,another"}
    resp = client.post(MESSAGES, json=body(), headers=headers)
    assert resp.status_code == 200, resp.text


def test_output_config_json_schema_constrains_the_output(client: TestClient) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    msg = message(client, output_config={"format": {"type": "json_schema", "schema": schema}})
    assert json.loads(msg["content"][0]["text"])["answer"] == "fake"


# -- streaming -----------------------------------------------------------------------------------


def test_stream_events_in_order_and_equal_to_the_message(client: TestClient) -> None:
    whole = message(client)
    resp = client.post(MESSAGES, json=body(stream=True))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    got = events(resp.text)
    assert all(name == data["type"] for name, data in got)
    names = [name for name, _ in got]
    deltas = names.count("content_block_delta")
    assert deltas == REPLY_WORDS
    assert names == [
        "message_start", "content_block_start", "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    start = got[0][1]["message"]
    assert start["id"].startswith("msg_")
    assert (start["content"], start["stop_reason"], start["stop_sequence"]) == ([], None, None)
    assert start["usage"]["input_tokens"] == whole["usage"]["input_tokens"]
    assert got[1][1] == {
        "type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""},
    }  # fmt: skip
    pieces = [d["delta"] for n, d in got if n == "content_block_delta"]
    assert all(p["type"] == "text_delta" for p in pieces)
    assert "".join(p["text"] for p in pieces) == whole["content"][0]["text"]
    assert got[-3][1] == {"type": "content_block_stop", "index": 0}
    delta = got[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == whole["usage"]
    assert got[-1][1] == {"type": "message_stop"}
    assert "[DONE]" not in resp.text


def test_stream_reports_the_stop_sequence(fixed: TestClient) -> None:
    resp = fixed.post(MESSAGES, json=body(stream=True, stop_sequences=["gamma"]))
    got = events(resp.text)
    text = "".join(d["delta"]["text"] for n, d in got if n == "content_block_delta")
    assert text == "alpha beta "
    assert got[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "gamma"}


def test_stream_error_before_the_first_byte_is_a_proper_status(client: TestClient) -> None:
    too_long = [{"role": "user", "content": "word " * 3000}]
    resp = client.post(MESSAGES, json=body(stream=True, messages=too_long))
    assert "maximum context length" in error_of(resp, 400, "invalid_request_error")


def test_error_mid_stream_is_an_error_event() -> None:
    settings = fake_settings(fake_model("fake", token_delay_s=0.2, inference_timeout_s=1.0))
    with open_client(settings) as client:
        resp = client.post(MESSAGES, json=body(stream=True))
    assert resp.status_code == 200
    got = events(resp.text)
    assert [n for n, _ in got[:3]] == ["message_start", "content_block_start", "ping"]
    assert "content_block_delta" in [n for n, _ in got]
    name, data = got[-1]
    assert name == "error"
    assert data == {
        "type": "error",
        "error": {"type": "timeout_error", "message": "inference timed out after 1 s"},
    }


async def _chunks(items: list[Any]) -> Any:
    for item in items:
        if isinstance(item, Exception):
            raise item
        yield item


async def test_framing_writes_named_events_pings_and_no_done_marker() -> None:
    stream = EventStream(
        _chunks([{"type": "message_stop"}, EngineError("broke")]), 10, ANTHROPIC_SSE
    )
    await stream.start()
    data = b"".join([part async for part in stream.body()])
    assert data == (
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
        b'event: error\ndata: {"type":"error","error":'
        b'{"type":"overloaded_error","message":"broke"}}\n\n'
    )
    assert ANTHROPIC_SSE.keepalive == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_error_types_follow_anthropics_table() -> None:
    assert anthropic_error(AuthenticationError("no"))["error"]["type"] == "authentication_error"
    assert anthropic_error(InferenceTimeoutError(3))["error"]["type"] == "timeout_error"
    assert anthropic_error(EngineError("x"))["error"]["type"] == "overloaded_error"


# -- count_tokens --------------------------------------------------------------------------------


def test_count_tokens_equals_the_rendered_prompt_and_the_message_usage(client: TestClient) -> None:
    resp = client.post(COUNT, json={"model": "fake", "messages": USER, "system": "Be brief."})
    assert resp.status_code == 200, resp.text
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n" + PROMPT
    assert resp.json() == {"input_tokens": len(split_tokens(prompt))}
    assert message(client, system="Be brief.")["usage"]["input_tokens"] == len(split_tokens(prompt))


def test_count_tokens_needs_no_max_tokens_and_counts_tools(client: TestClient) -> None:
    plain = client.post(COUNT, json={"model": "fake", "messages": USER})
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    resp = client.post(COUNT, json={"model": "fake", "messages": USER, "tools": tools})
    assert resp.status_code == 200, resp.text
    # the tools are described to the model, so they take tokens too
    assert resp.json()["input_tokens"] > plain.json()["input_tokens"]


# -- errors --------------------------------------------------------------------------------------


def test_missing_max_tokens_is_a_400(client: TestClient) -> None:
    resp = client.post(MESSAGES, json={"model": "fake", "messages": USER})
    assert "max_tokens" in error_of(resp, 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "server tools"),
        ({"tools": [{"name": "t"}]}, "tools.0.input_schema"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "image"),
        ({"messages": [*USER, {"role": "assistant", "content": "The answer is"}]}, "prefill"),
        ({"messages": []}, "messages"),
        ({"temperature": 1.5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_refused_requests_name_what_is_wrong(
    client: TestClient, extra: dict[str, Any], named: str
) -> None:
    resp = client.post(MESSAGES, json=body(**extra))
    assert named in error_of(resp, 400, "invalid_request_error")


def test_tool_choice_auto_without_tools_is_harmless(client: TestClient) -> None:
    message(client, tool_choice={"type": "auto"})


def test_unknown_model_and_route_are_not_found_errors(client: TestClient) -> None:
    error_of(client.post(MESSAGES, json=body(model="nope")), 404, "not_found_error")
    error_of(client.post(COUNT, json={"model": "nope", "messages": USER}), 404, "not_found_error")
    error_of(client.post("/v1/messages/batches", json={}), 404, "not_found_error")
    # the OpenAI surface keeps its own shape beside it
    assert "error" in client.post("/v1/chat/completions", json={}).json()


def test_bad_json_is_an_invalid_request_error(client: TestClient) -> None:
    resp = client.post(MESSAGES, content=b"{", headers={"content-type": "application/json"})
    error_of(resp, 400, "invalid_request_error")


# -- keys, permissions, rate limits, masking ------------------------------------------------------


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    path = tmp_path / "keys.json"
    keys = {
        "any": create_key(path, "any"),
        "other-only": create_key(path, "other-only", models=["other"]),
        "masked": create_key(path, "masked", mask_pii=True),
        "slow": create_key(path, "slow", requests_per_minute=1),
    }
    settings = fake_settings(fake_model("fake"), fake_model("other"), keys_file=path)
    with open_client(settings) as c:
        yield c, keys


def test_keys_by_x_api_key_or_bearer_and_401_without(
    keyed: tuple[TestClient, dict[str, str]],
) -> None:
    client, keys = keyed
    error_of(client.post(MESSAGES, json=body()), 401, "authentication_error")
    error_of(client.post(COUNT, json=body()), 401, "authentication_error")
    wrong = client.post(MESSAGES, json=body(), headers={"x-api-key": "sk-wrong"})
    error_of(wrong, 401, "authentication_error")
    assert client.post(MESSAGES, json=body(), headers={"x-api-key": keys["any"]}).is_success
    bearer = {"Authorization": f"Bearer {keys['any']}"}
    assert client.post(MESSAGES, json=body(), headers=bearer).is_success


def test_a_forbidden_model_is_a_permission_error_and_never_reaches_the_model(
    keyed: tuple[TestClient, dict[str, str]],
) -> None:
    client, keys = keyed
    headers = {"x-api-key": keys["other-only"]}
    text = "a secret nobody may read"
    turn = [{"role": "user", "content": text}]
    for route, payload in ((MESSAGES, body(messages=turn)), (COUNT, body(messages=turn))):
        error_of(client.post(route, json=payload, headers=headers), 403, "permission_error")
    error_of(
        client.post(MESSAGES, json=body(messages=turn, stream=True), headers=headers),
        403,
        "permission_error",
    )
    assert all(text not in seen for seen in _seen(client))


def test_rate_limit_is_a_rate_limit_error(keyed: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = keyed
    headers = {"x-api-key": keys["slow"]}
    assert client.post(MESSAGES, json=body(), headers=headers).is_success
    resp = client.post(MESSAGES, json=body(), headers=headers)
    error_of(resp, 429, "rate_limit_error")
    assert "retry-after" in resp.headers


def test_a_masked_key_is_masked_in_messages_and_counts(
    keyed: tuple[TestClient, dict[str, str]],
) -> None:
    client, keys = keyed
    turn = [{"role": "user", "content": f"mail {EMAIL} now, card {CARD}"}]
    masked = {"x-api-key": keys["masked"]}
    plain = {"x-api-key": keys["any"]}
    assert client.post(MESSAGES, json=body(messages=turn), headers=masked).is_success
    assert EMAIL not in _seen(client)[-1]
    assert "[EMAIL]" in _seen(client)[-1]
    counted = client.post(COUNT, json=body(messages=turn), headers=masked).json()
    used = client.post(MESSAGES, json=body(messages=turn), headers=masked).json()
    assert counted["input_tokens"] == used["usage"]["input_tokens"]
    unmasked = client.post(COUNT, json=body(messages=turn), headers=plain).json()
    assert unmasked["input_tokens"] == counted["input_tokens"] + 3


def test_a_body_too_large_is_request_too_large() -> None:
    with open_client(fake_settings(fake_model("fake"), max_body_bytes=1024)) as client:
        resp = client.post(MESSAGES, json=body(messages=[{"role": "user", "content": "x" * 4096}]))
    error_of(resp, 413, "request_too_large")
