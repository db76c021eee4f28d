"""Reasoning from upstream engines: an OpenAI-compatible one's ``reasoning_content`` (llama-server,
SGLang, DeepSeek) or ``reasoning`` (vLLM) relayed in the field the client reads, and an Ollama
upstream told ``think`` with its ``thinking`` relayed (its stream shaped as Ollama's docs show
a thinking model's, the recorded chat stream otherwise)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from support import fake_settings, open_client
from support.mock_upstream import REQUESTS, Upstream, recorded_ollama, serve

USER = [{"role": "user", "content": "Why is the sky blue?"}]
RECORDING: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "data" / "ollama_recorded.json").read_text()
)


def _thinking_upstream(field: str) -> web.Application:
    """An OpenAI-compatible engine with a reasoning parser: the thought in ``field``."""

    async def answer(request: web.Request) -> web.StreamResponse:
        request.app[REQUESTS].append(orjson.loads(await request.read()))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        deltas = [{field: "Rayleigh "}, {field: "scattering."}, {"content": "Blue light scatters."}]
        for delta in deltas:
            chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        end = {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 9,
                "completion_tokens": 6,
                "completion_tokens_details": {"reasoning_tokens": 4},
            },
        }
        await resp.write(b"data: " + orjson.dumps(end) + b"\n\ndata: [DONE]\n\n")
        return resp

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", answer)
    return app


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_an_openai_upstreams_thought_is_relayed_in_the_configured_field(field: str) -> None:
    with serve(_thinking_upstream(field)) as up:
        entry = {"id": "up", "backend": "upstream", "url": up.base_url, "max_concurrent": 1}
        with open_client(fake_settings(entry, reasoning_field="reasoning")) as c:
            body = {"model": "up", "messages": USER}
            answer = c.post("/v1/chat/completions", json=body).json()
            assert answer["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}
            message = answer["choices"][0]["message"]
            assert message == {
                "role": "assistant",
                "content": "Blue light scatters.",
                "reasoning": "Rayleigh scattering.",
            }
            ollama = c.post("/api/chat", json={**body, "stream": False}).json()["message"]
            assert ollama["thinking"] == "Rayleigh scattering."
            c.post("/v1/chat/completions", json={**body, "reasoning_effort": "none"})
            assert up.requests[-1]["chat_template_kwargs"] == {"enable_thinking": False}
            off = c.post("/v1/chat/completions", json={**body, "reasoning_effort": "none"})
            assert "reasoning" not in off.json()["choices"][0]["message"]


@pytest.fixture
def thinking_ollama() -> Iterator[Upstream]:
    pieces = [
        {"model": "llama3.2", "message": {"role": "assistant", "content": "", "thinking": t},
         "done": False}
        for t in ("Light ", "scatters.")
    ]  # fmt: skip
    stream = pieces + RECORDING["chat_stream"]
    with serve(recorded_ollama({**RECORDING, "chat_stream": stream})) as upstream:
        yield upstream


def test_an_ollama_upstream_is_told_think_and_its_thinking_relayed(
    thinking_ollama: Upstream,
) -> None:
    url = f"http://127.0.0.1:{thinking_ollama.port}"
    with open_client(fake_settings({"id": "llama3.2", "backend": "ollama", "url": url})) as c:
        body = {"model": "llama3.2", "messages": USER, "think": True, "stream": False}
        message = c.post("/api/chat", json=body).json()["message"]
        assert message["thinking"] == "Light scatters."
        assert message["content"] == "The sky is blue."
        assert thinking_ollama.requests[-1]["body"]["think"] is True
        openai = c.post("/v1/chat/completions", json={"model": "llama3.2", "messages": USER})
        chosen = openai.json()["choices"][0]["message"]
        assert chosen["reasoning_content"] == "Light scatters."
        assert "think" not in thinking_ollama.requests[-1]["body"]  # the model's default
