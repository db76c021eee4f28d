"""A mock OpenAI server that answers at once, for proxy benchmarks and the bench's tests.

It serves ``/v1/models``, ``/v1/chat/completions`` and ``/v1/completions``, streaming and not,
and emits ``max_tokens`` chunks (default 16), each one token, with usage. Chunks are encoded
once and reused. ``--truncate N`` ends every response after N tokens without a finish reason,
usage or ``[DONE]``, as a broken server would; ``--delay-ms`` spaces streamed chunks out.

Run it with ``python -m llmserver.bench.mock_server --port 8001``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

DEFAULT_MODEL = "mock-model"
DEFAULT_MAX_TOKENS = 16
TOKEN_TEXT = "tok "
_DONE = b"data: [DONE]\n\n"


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


@dataclass
class MockConfig:
    """How the mock behaves."""

    model: str = DEFAULT_MODEL
    max_tokens: int = DEFAULT_MAX_TOKENS
    truncate: int | None = None
    delay_ms: float = 0.0
    _chunks: dict[tuple[str, str], tuple[bytes, bytes, bytes]] = field(default_factory=dict)

    def chunks(self, kind: str, model: str) -> tuple[bytes, bytes, bytes]:
        """The encoded (first, token, final) chunks of a stream, built once per kind and model."""
        key = (kind, model)
        if key not in self._chunks:
            self._chunks[key] = _encode_chunks(kind, model)
        return self._chunks[key]


CONFIG_KEY = web.AppKey("mock_config", MockConfig)


def _encode_chunks(kind: str, model: str) -> tuple[bytes, bytes, bytes]:
    choices: list[dict[str, Any]]
    if kind == "chat":
        base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0}
        choices = [
            {"delta": {"role": "assistant", "content": ""}, "finish_reason": None},
            {"delta": {"content": TOKEN_TEXT}, "finish_reason": None},
            {"delta": {}, "finish_reason": "length"},
        ]
    else:
        base = {"id": "cmpl-mock", "object": "text_completion", "created": 0}
        choices = [
            {"text": "", "finish_reason": None},
            {"text": TOKEN_TEXT, "finish_reason": None},
            {"text": "", "finish_reason": "length"},
        ]
    first, token, final = (
        _event({**base, "model": model, "choices": [{"index": 0, **c}]}) for c in choices
    )
    return first, token, final


def _usage(body: dict[str, Any], completion: int) -> dict[str, int]:
    prompt = body.get("prompt")
    if prompt is None:
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages") or [])
    prompt_tokens = len(str(prompt).split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


def _requested_tokens(body: dict[str, Any], config: MockConfig) -> int:
    value = body.get("max_tokens") or body.get("max_completion_tokens") or config.max_tokens
    return max(1, int(value))


async def _stream(
    request: web.Request, body: dict[str, Any], kind: str, config: MockConfig
) -> web.StreamResponse:
    model = str(body.get("model") or config.model)
    first, token, final = config.chunks(kind, model)
    wanted = _requested_tokens(body, config)
    count = wanted if config.truncate is None else min(wanted, config.truncate)
    parts = [first, *([token] * count)]
    if config.truncate is None:
        parts.append(final)
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            base = {"id": "mock", "object": "chat.completion.chunk", "created": 0, "model": model}
            parts.append(_event({**base, "choices": [], "usage": _usage(body, count)}))
        parts.append(_DONE)
    if config.delay_ms <= 0:
        return web.Response(body=b"".join(parts), content_type="text/event-stream")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for part in parts:
        await resp.write(part)
        await asyncio.sleep(config.delay_ms / 1000.0)
    await resp.write_eof()
    return resp


def _complete(body: dict[str, Any], kind: str, config: MockConfig) -> web.Response:
    model = str(body.get("model") or config.model)
    wanted = _requested_tokens(body, config)
    count = wanted if config.truncate is None else min(wanted, config.truncate)
    text = TOKEN_TEXT * count
    choice: dict[str, Any]
    if kind == "chat":
        obj, choice = "chat.completion", {"message": {"role": "assistant", "content": text}}
    else:
        obj, choice = "text_completion", {"text": text}
    payload = {
        "id": "mock",
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, **choice, "finish_reason": "length"}],
        "usage": _usage(body, count),
    }
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


async def _generate(request: web.Request, kind: str) -> web.StreamResponse:
    config = request.app[CONFIG_KEY]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return web.json_response({"error": {"message": "invalid JSON"}}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": {"message": "expected an object"}}, status=400)
    if body.get("stream"):
        return await _stream(request, body, kind, config)
    return _complete(body, kind, config)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``."""
    return await _generate(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/completions``."""
    return await _generate(request, "completions")


async def models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the one mock model."""
    model = request.app[CONFIG_KEY].model
    data = {"id": model, "object": "model", "created": 0, "owned_by": "mock"}
    return web.Response(
        body=orjson.dumps({"object": "list", "data": [data]}), content_type="application/json"
    )


def create_app(config: MockConfig | None = None) -> web.Application:
    """The mock server as an aiohttp application."""
    app = web.Application()
    app[CONFIG_KEY] = config or MockConfig()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    return app


def main(argv: list[str] | None = None) -> None:
    """Run the mock server until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m llmserver.bench.mock_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    parser.add_argument("--truncate", type=int, help="end responses after N tokens, broken")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="pause between chunks")
    args = parser.parse_args(argv)
    config = MockConfig(args.model, args.max_tokens, args.truncate, args.delay_ms)
    web.run_app(create_app(config), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
