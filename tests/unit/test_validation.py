"""Bad requests get OpenAI-shaped 400/404 errors with ``param``; never FastAPI's 422."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


def assert_error(resp: Any, status: int, param: str | None, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param
    assert body["error"]["message"]
    assert "Traceback" not in resp.text
    if code is not None:
        assert body["error"]["code"] == code


def test_malformed_json(client: TestClient) -> None:
    resp = client.post(
        CHAT, content=b'{"messages": [', headers={"content-type": "application/json"}
    )
    assert_error(resp, 400, None, "invalid_json")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42"])
def test_body_not_an_object(client: TestClient, body: bytes) -> None:
    resp = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    assert_error(resp, 400, None, "invalid_body")


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"top_p": 0}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 0}, "n"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, None),
    ],
)
def test_invalid_fields(client: TestClient, patch: dict[str, Any], param: str | None) -> None:
    resp = client.post(CHAT, json={"model": "fake", "messages": USER, **patch})
    assert resp.status_code == 400, resp.text
    if param is not None:
        assert_error(resp, 400, param)


def test_missing_messages(client: TestClient) -> None:
    assert_error(client.post(CHAT, json={"model": "fake"}), 400, "messages")


def test_n_over_cap(client: TestClient) -> None:
    resp = client.post(CHAT, json={"model": "fake", "messages": USER, "n": 9})
    assert_error(resp, 400, "n")


def test_context_window_exceeded(client: TestClient) -> None:
    long_prompt = "word " * 3000
    resp = client.post("/v1/completions", json={"model": "fake", "prompt": long_prompt})
    assert_error(resp, 400, "max_tokens", "context_length_exceeded")
    messages = [{"role": "user", "content": long_prompt}]
    resp = client.post(CHAT, json={"model": "fake", "messages": messages, "max_tokens": 10})
    assert_error(resp, 400, "max_tokens", "context_length_exceeded")


def test_unknown_model_is_404(client: TestClient) -> None:
    resp = client.post(CHAT, json={"model": "nope", "messages": USER})
    assert_error(resp, 404, "model", "model_not_found")
    assert_error(client.get("/v1/models/nope"), 404, "model", "model_not_found")


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, None)
    assert_error(client.get(CHAT), 405, None)


def test_unknown_fields_are_accepted(client: TestClient) -> None:
    resp = client.post(CHAT, json={"model": "fake", "messages": USER, "logit_bias": {}, "x": 1})
    assert resp.status_code == 200


def test_server_keeps_serving_after_errors(client: TestClient) -> None:
    for _ in range(3):
        client.post(CHAT, content=b"{", headers={"content-type": "application/json"})
    assert client.post(CHAT, json={"model": "fake", "messages": USER}).status_code == 200


def test_an_unpaired_surrogate_is_read_as_the_replacement_character_not_a_500(
    client: TestClient,
) -> None:
    raw = b'{"model": "\\ud800", "prompt": "hi"}'  # JSON allows it; no UTF-8 encoder takes it
    resp = client.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
    assert_error(resp, 404, "model", "model_not_found")
    assert resp.json()["error"]["message"] == "The model '\ufffd' does not exist"


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        (CHAT, {"messages": USER, "temperature": True}, "temperature"),
        (CHAT, {"messages": USER, "top_p": "0.5"}, "top_p"),
        (CHAT, {"messages": USER, "max_tokens": 2.0}, "max_tokens"),
        ("/v1/completions", {"prompt": "hi", "presence_penalty": False}, "presence_penalty"),
        (
            "/v1/messages",
            {"model": "fake", "messages": USER, "max_tokens": 4, "temperature": True},
            "temperature",
        ),
        ("/generate", {"prompt": "hi", "max_tokens": "4"}, "max_tokens"),
        ("/infer", {"query": "hi", "temperature": True}, "temperature"),
        ("/infill", {"input_prefix": "x", "temperature": True}, "temperature"),
    ],
)
def test_a_boolean_or_a_string_is_never_a_number(
    client: TestClient, route: str, body: dict[str, Any], field: str
) -> None:
    resp = client.post(route, json=body)
    assert resp.status_code == 400, resp.text
    assert field in resp.text


def test_an_integer_is_a_number(client: TestClient) -> None:
    assert client.post(CHAT, json={"messages": USER, "temperature": 1}).status_code == 200
