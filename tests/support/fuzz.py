"""Hypothesis strategies for fuzzing request bodies, shared by the fuzz test on the fake backend
and the one on the real models.

Bodies are built as raw JSON text, so they can hold what a JSON encoder would never write:
duplicate keys, unpaired surrogates, NUL, deep nesting and numbers too big for any type.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from hypothesis import strategies as st

#: each route that takes a body, with the fields a client would send it
ROUTES: dict[str, list[str]] = {
    "/v1/chat/completions": [
        "model", "messages", "max_tokens", "temperature", "top_p", "n", "stream", "stop",
        "seed", "response_format", "stream_options", "logprobs", "tools", "max_completion_tokens",
    ],
    "/v1/completions": ["model", "prompt", "max_tokens", "echo", "n", "stream", "suffix", "seed"],
    "/v1/embeddings": ["model", "input", "dimensions", "encoding_format"],
    "/v1/messages": [
        "model", "messages", "max_tokens", "system", "temperature", "stream", "stop_sequences",
        "tools", "tool_choice",
    ],
    "/v1/messages/count_tokens": ["model", "messages", "system", "tools"],
    "/api/chat": ["model", "messages", "stream", "format", "options", "tools", "think"],
    "/api/generate": ["model", "prompt", "suffix", "stream", "raw", "options", "system"],
    "/api/embed": ["model", "input", "truncate", "dimensions"],
    "/tokenize": ["model", "prompt", "messages", "add_special_tokens", "content"],
    "/detokenize": ["model", "tokens"],
    "/infill": ["model", "input_prefix", "input_suffix", "input_extra", "n_predict", "stream"],
    "/v1/responses": [
        "model", "input", "instructions", "tools", "tool_choice", "max_output_tokens", "stream",
        "text", "store", "previous_response_id", "include", "top_logprobs", "reasoning",
    ],
    "/v1/responses/input_tokens": ["model", "input", "instructions", "tools"],
    "/v1/rerank": ["model", "query", "documents", "top_n", "return_documents", "rank_fields"],
    "/rerank": ["model", "query", "documents", "top_n", "truncate"],
    "/v2/rerank": ["model", "query", "documents", "top_n", "max_tokens_per_doc", "priority"],
    "/v1/score": ["model", "text_1", "text_2", "truncate", "truncate_prompt_tokens"],
    "/infer": ["query", "max_length", "temperature", "top_p", "num_return_sequences"],
    "/infer/stream": ["query", "max_length", "temperature", "num_return_sequences"],
    "/generate": ["model", "prompt", "max_tokens", "temperature", "top_k"],
    "/chat": ["model", "prompt", "max_tokens", "temperature", "top_k"],
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


def _value(models: Sequence[str], depth: int = 0) -> st.SearchStrategy[str]:
    """Any JSON value as text; containers nest a few levels (and one very deep chain)."""
    leaf = st.one_of(
        _string(), _number(), st.sampled_from(["true", "false", "null"]), _model_name(models)
    )
    if depth >= 3:
        return leaf
    inner = st.deferred(lambda: _value(models, depth + 1))
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


def _model_name(models: Sequence[str]) -> st.SearchStrategy[str]:
    names = [*models, "nope", "<script>", f"{models[0]}:latest", ""]
    return st.sampled_from([json.dumps(name) for name in names])


def body(fields: list[str], models: Sequence[str]) -> st.SearchStrategy[str]:
    """An object with some of the route's fields (possibly twice: duplicate keys), or any
    JSON value at all; ``models`` are the model names the server has (the first one also
    with a tag)."""
    named = st.sampled_from(fields) if fields else st.just("x")
    pair = st.tuples(named.map(json.dumps), _value(models))
    obj = st.lists(pair, max_size=8).map(lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}")
    return st.one_of(obj, obj, obj, _value(models), st.binary(max_size=30).map(repr))


class Answer(Protocol):
    """What the check reads of a response (httpx's, or the test client's)."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def check_answer(route: str, body: str, resp: Answer) -> None:
    """Never a 5xx; an error is a JSON object in the route's surface's shape with a message
    (Ollama's ``{"error": "..."}``, everyone else's ``{"error": {"message": ...}}``)."""
    assert resp.status_code < 500, (body[:300], resp.status_code, resp.text[:300])
    if resp.status_code < 400:
        return
    error = resp.json()["error"]
    message = error if route.startswith("/api/") else error["message"]
    assert isinstance(message, str), resp.text
    assert message, resp.text
