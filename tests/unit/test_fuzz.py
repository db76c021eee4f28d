"""Property-based fuzzing of every route that takes a body: whatever arrives, the answer is never
a 5xx, always a JSON error in the route's shape, and the server keeps serving.

Bodies are built as raw JSON text, so they can hold what a JSON encoder would never write:
duplicate keys, unpaired surrogates, NUL, deep nesting and numbers too big for any type.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmserver.observability.logs import set_level
from support import fake_model, fake_settings, open_client

#: each route that takes a body, with the fields a client would send it
ROUTES: dict[str, list[str]] = {
    "/v1/chat/completions": [
        "model", "messages", "max_tokens", "temperature", "top_p", "n", "stream", "stop",
        "seed", "response_format", "stream_options", "logprobs", "tools", "max_completion_tokens",
    ],
    "/v1/completions": ["model", "prompt", "max_tokens", "echo", "n", "stream", "suffix", "seed"],
    "/v1/embeddings": ["model", "input", "dimensions", "encoding_format"],
    "/infer": ["query", "max_length", "temperature", "top_p", "num_return_sequences"],
    "/infer/stream": ["query", "max_length", "temperature", "num_return_sequences"],
    "/generate": ["model", "prompt", "max_tokens", "temperature", "top_k"],
    "/chat": ["model", "prompt", "max_tokens", "temperature", "top_k"],
    "/admin/log-level": ["level"],
    "/v1/models/fake/load": [],
}  # fmt: skip

ODD_TEXT = [
    "\\u0000", "\\ud800", "\\udfff", "\\ud83d\\ude00", "\\u202e", "\\ufeff", "\\U0010ffff",
    "\U0001f600", "\u200b", "한국어", "\U000e0001", "\ufffe", "\\\\", "\\\"",
]  # fmt: skip


def _string() -> st.SearchStrategy[str]:
    """A JSON string literal, odd escapes included."""
    plain = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
    return st.one_of(
        plain.map(lambda s: json.dumps(s, ensure_ascii=False)),
        st.lists(st.sampled_from(ODD_TEXT), min_size=1, max_size=6).map(
            lambda parts: '"' + "".join(parts) + '"'
        ),
    )


def _number() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(["1e999", "-1e999", "1e-999", "0.0", "-0", "2.0", "8192.0", "1" * 400]),
    )


def _value(depth: int = 0) -> st.SearchStrategy[str]:
    """Any JSON value as text; containers nest a few levels (and one very deep chain)."""
    leaf = st.one_of(
        _string(), _number(), st.sampled_from(["true", "false", "null"]), _model_name()
    )
    if depth >= 3:
        return leaf
    inner = st.deferred(lambda: _value(depth + 1))
    return st.one_of(
        leaf,
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(_string(), inner), max_size=4).map(
            lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"
        ),
        st.integers(min_value=50, max_value=3000).map(lambda n: "[" * n + "]" * n),
        st.just('[{"role":"user","content":"hi"}]'),
        st.just('[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]'),
    )


def _model_name() -> st.SearchStrategy[str]:
    return st.sampled_from(['"fake"', '"f"', '"nope"', '"<script>"', '"fake:latest"', '""'])


def _body(fields: list[str]) -> st.SearchStrategy[str]:
    """An object with some of the route's fields (possibly twice: duplicate keys), or any
    JSON value at all."""
    named = st.sampled_from(fields) if fields else st.just("x")
    pair = st.tuples(named.map(json.dumps), _value())
    obj = st.lists(pair, max_size=8).map(lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}")
    return st.one_of(obj, obj, obj, _value(), st.binary(max_size=30).map(repr))


@pytest.fixture(scope="module")
def fuzz_client() -> Iterator[TestClient]:
    settings_ = fake_settings(
        fake_model("fake", aliases=["f"], context_size=256),
        fake_model("emb", embedding_dimensions=8),
        default_model="fake",
        max_body_bytes=200_000,
    )
    with open_client(settings_) as client:
        level = logging.getLogger().level
        yield client
    set_level(logging.getLevelName(level))  # the fuzzer may have changed it


def _check_error_shape(route: str, resp: Any) -> None:
    body = resp.json()
    assert isinstance(body, dict), body
    if resp.status_code >= 400:
        error = body["error"]
        assert isinstance(error["message"], str), body
        assert error["message"], body


@pytest.mark.parametrize("route", sorted(ROUTES))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_body_makes_a_route_answer_5xx(
    fuzz_client: TestClient, route: str, data: st.DataObject
) -> None:
    body = data.draw(_body(ROUTES[route]), label="body")
    method = "PUT" if route == "/admin/log-level" else "POST"
    resp = fuzz_client.request(
        method, route, content=body.encode("utf-8", "surrogatepass"),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert resp.status_code < 500, (body[:300], resp.status_code, resp.text[:300])
    if "text/event-stream" not in resp.headers.get("content-type", ""):
        _check_error_shape(route, resp)
    assert fuzz_client.get("/health").status_code == 200
