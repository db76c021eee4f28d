"""aiohttp upstream servers for tests, each on its own loop in a thread: the bench's instant
OpenAI mock, and small apps that answer errors or record what they were sent."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from llmserver.bench.mock_server import MockConfig
from llmserver.bench.mock_server import create_app as mock_app
from support.servers import free_port

REQUESTS = web.AppKey("requests", list)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Upstream:
    """A running aiohttp app."""

    port: int
    loop: asyncio.AbstractEventLoop
    runner: web.AppRunner
    thread: threading.Thread
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """OpenAI base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@contextmanager
def serve(app: web.Application, port: int | None = None) -> Iterator[Upstream]:
    """Serve ``app`` on a free loopback port until the block ends."""
    port = port or free_port()
    requests: list[dict[str, Any]] = []
    app[REQUESTS] = requests
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "mock upstream did not start"
    upstream = Upstream(port, loop, runner, thread, requests)
    try:
        yield upstream
    finally:
        upstream.stop()


async def _empty_models(_: web.Request) -> web.Response:
    """No models: what the backends' health probe asks for."""
    return web.json_response({"object": "list", "data": []})


def _openai_app(answer: Handler, *paths: str) -> web.Application:
    """An OpenAI-like app that lists no models and answers ``paths`` (by default the chat
    path) with ``answer``."""
    app = web.Application()
    app.router.add_get("/v1/models", _empty_models)
    for path in paths or ("/v1/chat/completions",):
        app.router.add_post(path, answer)
    return app


async def _event_stream(request: web.Request) -> web.StreamResponse:
    """A started server-sent-events answer."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    return resp


async def _event(resp: web.StreamResponse, payload: Any) -> None:
    """One SSE event with ``payload`` as JSON."""
    await resp.write(b"data: " + orjson.dumps(payload) + b"\n\n")


def instant(delay_ms: float = 0.0) -> web.Application:
    """The bench's mock: ``max_tokens`` chunks of ``"tok "`` each, with usage; it records
    every request's headers and body."""
    app = mock_app(MockConfig(delay_ms=delay_ms))

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        body = orjson.loads(await request.read()) if request.method == "POST" else None
        request.app[REQUESTS].append({"headers": dict(request.headers), "body": body})
        return await handler(request)  # type: ignore[no-any-return]

    app.middlewares.append(record)
    return app


def failing(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Application:
    """An upstream that answers every generation with ``status`` and ``body``."""

    async def answer(request: web.Request) -> web.Response:
        request.app[REQUESTS].append({"path": request.path})
        return web.Response(
            status=status,
            body=orjson.dumps(body),
            content_type="application/json",
            headers=headers,
        )

    return _openai_app(answer, "/v1/chat/completions", "/v1/completions")


def endless() -> web.Application:
    """Streams a chunk every 20 ms for up to 10 s and records ``"cut"`` when the client goes."""

    async def answer(request: web.Request) -> web.StreamResponse:
        resp = await _event_stream(request)
        chunk = {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
        try:
            for _ in range(500):
                await _event(resp, chunk)
                await asyncio.sleep(0.02)
        except (ConnectionError, asyncio.CancelledError):
            request.app[REQUESTS].append({"path": request.path, "cut": True})
            raise
        return resp

    return _openai_app(answer)


def reporting(usage: Any) -> web.Application:
    """An upstream that streams one word and then reports ``usage`` as it pleases."""

    async def answer(request: web.Request) -> web.StreamResponse:
        resp = await _event_stream(request)
        text = {"choices": [{"index": 0, "delta": {"content": "hello there"}}]}
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
        for chunk in (text, end):
            await _event(resp, chunk)
        await resp.write(b"data: [DONE]\n\n")
        return resp

    return _openai_app(answer)


def recorded_ollama(recording: dict[str, Any], model: str = "llama3.2") -> web.Application:
    """An Ollama that answers with responses recorded from Ollama's documentation: the chat
    and generate streams as NDJSON, an empty generate as a load, embeddings, the version; any
    other model name is Ollama's 404. Every request body is recorded."""

    async def version(_: web.Request) -> web.Response:
        return web.json_response(recording["version"])

    async def ndjson(request: web.Request, name: str) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        request.app[REQUESTS].append({"path": request.path, "body": body})
        if body.get("model") != model:
            return web.json_response(recording["not_found"], status=404)
        if request.path == "/api/generate" and not body.get("prompt"):
            return web.json_response(recording["load"])
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        for obj in recording[name]:
            await resp.write(orjson.dumps(obj) + b"\n")
        await resp.write_eof()
        return resp

    async def chat(request: web.Request) -> web.StreamResponse:
        return await ndjson(request, "chat_stream")

    async def generate(request: web.Request) -> web.StreamResponse:
        return await ndjson(request, "generate_stream")

    async def embed(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        request.app[REQUESTS].append({"path": request.path, "body": body})
        vectors = recording["embed"]["embeddings"]
        count = len(body["input"]) if isinstance(body["input"], list) else 1
        return web.json_response({**recording["embed"], "embeddings": vectors[:count]})

    app = web.Application()
    app.router.add_get("/api/version", version)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/embed", embed)
    return app


def tool_calling() -> web.Application:
    """Answers every chat with one streamed tool call, in OpenAI's pieces; records bodies."""
    pieces: list[dict[str, Any]] = [
        {"role": "assistant", "content": None},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_up1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
    ]

    async def answer(request: web.Request) -> web.StreamResponse:
        request.app[REQUESTS].append({"body": orjson.loads(await request.read())})
        resp = await _event_stream(request)
        for delta in pieces:
            chunk: dict[str, Any] = {
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}]
            }
            await _event(resp, chunk)
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
        usage = {"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 9}}
        for chunk in (end, usage):
            await _event(resp, chunk)
        await resp.write(b"data: [DONE]\n\n")
        return resp

    return _openai_app(answer)


def echoing(piece: int = 3) -> web.Application:
    """An OpenAI-like engine that answers a chat with its last user message, or a completion
    with its prompt, ``piece`` characters a chunk when streamed; with tools it calls the first
    one with ``{"text": <that message>}`` instead. Every request body is recorded."""

    def said(body: dict[str, Any]) -> str:
        if "prompt" in body:
            return str(body["prompt"])
        return str([m for m in body["messages"] if m["role"] == "user"][-1]["content"])

    def call(body: dict[str, Any], arguments: str) -> dict[str, Any]:
        name = body["tools"][0]["function"]["name"]
        function = {"name": name, "arguments": arguments}
        return {"id": "call_1", "type": "function", "function": function}

    async def answer(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        request.app[REQUESTS].append({"path": request.path, "body": body})
        text = said(body)
        chat = request.path.endswith("/chat/completions")
        tools = chat and bool(body.get("tools"))
        out = orjson.dumps({"text": text}).decode() if tools else text
        usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
        if not body.get("stream"):
            if tools:
                message: dict[str, Any] = {"role": "assistant", "content": None,
                                           "tool_calls": [call(body, out)]}  # fmt: skip
                choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            elif chat:
                message = {"role": "assistant", "content": out}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
            else:
                choice = {"index": 0, "text": out, "finish_reason": "stop"}
            return web.json_response({"id": "x", "choices": [choice], "usage": usage})
        resp = await _event_stream(request)
        for start in range(0, len(out), piece):
            chunk = out[start : start + piece]
            if tools:
                fn = call(body, chunk) if start == 0 else {"function": {"arguments": chunk}}
                delta: dict[str, Any] = {"tool_calls": [{"index": 0, **fn}]}
            else:
                delta = {"content": chunk}
            key = "delta" if chat else "text"
            value: Any = delta if chat else chunk
            await _event(resp, {"choices": [{"index": 0, key: value, "finish_reason": None}]})
        end: dict[str, Any] = {"index": 0, "finish_reason": "tool_calls" if tools else "stop"}
        if chat:
            end["delta"] = {}
        else:
            end["text"] = ""
        await _event(resp, {"choices": [end], "usage": usage})
        await resp.write(b"data: [DONE]\n\n")
        return resp

    return _openai_app(answer, "/v1/chat/completions", "/v1/completions")


def reranking(answer: Callable[[dict[str, Any]], Any]) -> web.Application:
    """An upstream reranker (vLLM's, llama-server's shape) at ``/v1/rerank``: ``answer`` makes
    the JSON answer from the request body; every request body is recorded."""

    async def rerank(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        request.app[REQUESTS].append({"path": request.path, "body": body})
        return web.json_response(answer(body))

    return _openai_app(rerank, "/v1/rerank")
