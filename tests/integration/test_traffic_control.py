"""Traffic control against real servers with the real default model: busy, timeouts, clients that
give up, graceful shutdown, rate limits, caps and body size."""

from __future__ import annotations

import asyncio
import json
import re
import select
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support import RunningServer, run_server, sse_events

pytestmark = pytest.mark.integration

CHAT = "/chat/completions"


def long_chat(tokens: int, stream: bool = False) -> dict[str, Any]:
    """A request that keeps the model busy for ``tokens`` tokens."""
    return {
        "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": stream,
    }


SHORT = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 5}


def model_status(server: RunningServer) -> tuple[int, int]:
    model = httpx.get(server.url, timeout=5).json()["models"][0]
    return model["slots_in_use"], model["waiting"]


def wait_idle(server: RunningServer, within: float) -> tuple[int, int]:
    """Poll the status until nothing is in use or waiting, for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    seen = model_status(server)
    while seen != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = model_status(server)
    return seen


def test_burst_with_one_slot_and_queue_of_two(tmp_path: Path) -> None:
    env = {
        "MAX_CONCURRENT_INFERENCE": "1",
        "LLMSERVER_MAX_QUEUE": "2",
        "LLMSERVER_MAX_QUEUE_WAIT_S": "300",
    }
    with run_server(tmp_path, env=env) as server:

        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=40)
            async with httpx.AsyncClient(timeout=300, limits=limits) as client:
                url = f"{server.base_url}{CHAT}"
                return await asyncio.gather(
                    *(client.post(url, json=long_chat(150)) for _ in range(30))
                )

        responses = asyncio.run(burst())
        codes = sorted(r.status_code for r in responses)
        assert codes == [200] * 3 + [429] * 27
        for resp in responses:
            if resp.status_code == 429:
                assert int(resp.headers["retry-after"]) >= 1
                assert resp.json()["error"]["message"] == "concurrent inference limit exceeded"
            else:
                assert resp.json()["usage"]["completion_tokens"] == 150
        assert model_status(server) == (0, 0)


def test_timeout_is_503_not_retried_and_frees_the_model(tmp_path: Path) -> None:
    with run_server(tmp_path, env={"INFERENCE_TIMEOUT_SEC": "1"}) as server:
        raw = httpx.post(f"{server.base_url}{CHAT}", json=long_chat(3000), timeout=60)
        assert raw.status_code == 503
        assert raw.headers["x-should-retry"] == "false"
        assert raw.json()["error"] == {
            "message": "inference timed out after 1 s",
            "type": "server_error",
            "param": None,
            "code": "timeout",
        }
        # the official SDK honours x-should-retry: one attempt, not three
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        body = long_chat(3000)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(
                model="smollm2-135m",
                messages=body["messages"],
                max_tokens=3000,
                extra_body={"ignore_eos": True},
            )
        assert caught.value.status_code == 503
        assert server.log().count('"POST /v1/chat/completions" 503') == 2
        # the slot is free the moment the 503 is out, so a new request is served at once (the
        # smallest one, so that even a loaded machine does it well within the 1 s limit)
        assert model_status(server) == (0, 0)
        tiny = {"prompt": "Hi", "max_tokens": 1}
        assert (
            httpx.post(f"{server.base_url}/completions", json=tiny, timeout=60).status_code == 200
        )
        # a stream that times out after its first chunk ends with one error event, then [DONE]
        # (on a very loaded machine the first token itself may come too late: then a plain 503)
        streamed = httpx.post(
            f"{server.base_url}{CHAT}", json=long_chat(3000, stream=True), timeout=60
        )
        if streamed.status_code == 200:
            events = sse_events(streamed.text)
            assert events[-1] == "[DONE]"
            assert json.loads(events[-2])["error"]["message"] == "inference timed out after 1 s"
            assert sum('"error"' in e for e in events) == 1
        else:
            assert streamed.status_code == 503
            assert streamed.json()["error"]["message"] == "inference timed out after 1 s"
        assert model_status(server) == (0, 0)


def test_clients_that_give_up_free_their_slots(tmp_path: Path) -> None:
    env = {"MAX_CONCURRENT_INFERENCE": "1", "LLMSERVER_MAX_QUEUE": "32"}
    with run_server(tmp_path, env=env) as server:
        url = f"{server.base_url}{CHAT}"

        async def ask(client: httpx.AsyncClient, stream: bool) -> None:
            if stream:
                async with client.stream("POST", url, json=long_chat(2000, True)) as resp:
                    async for _ in resp.aiter_lines():
                        pass
            else:
                await client.post(url, json=long_chat(2000))

        async def impatient(stream: bool) -> None:
            async with httpx.AsyncClient(timeout=60) as client:
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(ask(client, stream), 0.5)

        async def crowd() -> None:
            await asyncio.gather(*(impatient(i % 2 == 0) for i in range(20)))

        asyncio.run(crowd())
        # every slot free within 1 s (with slack: llama.cpp stops at its next token, and a
        # token can take long on a loaded two-core machine)
        assert wait_idle(server, 2.5) == (0, 0)
        resp = httpx.post(url, json=SHORT, timeout=60)
        assert resp.status_code == 200
        assert model_status(server) == (0, 0)


def test_giving_up_during_a_long_prompt_frees_the_slot(default_server: RunningServer) -> None:
    """llama.cpp's prompt processing is one long call; it is aborted, not waited for."""
    body = {"messages": [{"role": "user", "content": "lighthouse keeper " * 1200}]}

    async def give_up() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(
                    client.post(f"{default_server.base_url}{CHAT}", json=body), 0.5
                )

    asyncio.run(give_up())
    assert wait_idle(default_server, 2.5) == (0, 0)
    assert "prompt_tokens=2432 completion_tokens=0" in default_server.log()


def _stream_in_background(
    url: str, body: dict[str, Any]
) -> tuple[threading.Thread, list[str], threading.Event]:
    lines: list[str] = []
    begun = threading.Event()

    def read() -> None:
        try:
            with httpx.stream("POST", url, json=body, timeout=120) as resp:
                for line in resp.iter_lines():
                    lines.append(line)
                    if '"content"' in line and len(lines) > 4:
                        begun.set()
        except httpx.HTTPError:
            lines.append("(cut off)")  # the server aborted the stream
        finally:
            begun.set()

    worker = threading.Thread(target=read)
    worker.start()
    return worker, lines, begun


def test_sigterm_lets_the_stream_finish_then_exits_0(tmp_path: Path) -> None:
    # limits far above the 600 tokens' time, which is long on a loaded 2-core machine
    env = {"LLMSERVER_SHUTDOWN_GRACE_S": "600", "LLMSERVER_INFERENCE_TIMEOUT_S": "600"}
    with run_server(tmp_path, env=env) as server:
        worker, lines, begun = _stream_in_background(
            f"{server.base_url}{CHAT}", long_chat(600, stream=True)
        )
        assert begun.wait(60)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # draining: not ready, no new work, while the stream goes on
        ready = httpx.get(f"{server.url}/ready", timeout=5)
        assert ready.status_code == 503
        refused = httpx.post(f"{server.base_url}{CHAT}", json=SHORT, timeout=5)
        assert refused.status_code == 503
        assert refused.json()["error"]["message"] == "server is shutting down"
        worker.join(600)
        assert not worker.is_alive()
        events = sse_events("\n".join(lines))
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
        assert server.process.wait(60) == 0
        log = server.log()
        assert "models closed" in log
        assert "shutdown complete" in log


def test_sigterm_after_the_grace_period_aborts_and_exits_0(tmp_path: Path) -> None:
    with run_server(tmp_path, env={"LLMSERVER_SHUTDOWN_GRACE_S": "1"}) as server:
        worker, lines, begun = _stream_in_background(
            f"{server.base_url}{CHAT}", long_chat(3500, stream=True)
        )
        assert begun.wait(60)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        worker.join(30)
        assert not any('"finish_reason":"length"' in line for line in lines)
        assert "grace period over" in server.log()


def test_rate_limit_is_429_with_headers(tmp_path: Path) -> None:
    env = {"LLMSERVER_RATE_LIMIT_REQUESTS_PER_MINUTE": "2"}
    with run_server(tmp_path, env=env) as server:
        url = f"{server.base_url}{CHAT}"
        for left in ("1", "0"):
            resp = httpx.post(url, json=SHORT, timeout=30)
            assert resp.status_code == 200
            assert resp.headers["x-ratelimit-limit-requests"] == "2"
            assert resp.headers["x-ratelimit-remaining-requests"] == left
        refused = httpx.post(url, json=SHORT, timeout=30)
        assert refused.status_code == 429
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 60
        assert refused.json() == {
            "error": {
                "message": "Rate limit reached for requests per minute: limit 2. "
                f"Please try again in {wait} s.",
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }


@pytest.mark.parametrize(
    ("path", "body", "param", "message"),
    [
        (CHAT, {**SHORT, "n": 9}, "n", "n must be at most 8"),
        (CHAT, {**SHORT, "stop": list("abcde")}, "stop", None),
        # a max_tokens past the context is clamped (max_tokens_overflow); a prompt past it is not
        (CHAT, {"messages": [{"role": "user", "content": "word " * 9000}]}, "messages", None),
        ("/completions", {"prompt": ["p"] * 17}, "prompt", "prompt may hold at most 16 prompts"),
    ],
)
def test_caps_are_400_with_param(
    default_server: RunningServer,
    path: str,
    body: dict[str, Any],
    param: str,
    message: str | None,
) -> None:
    resp = httpx.post(f"{default_server.base_url}{path}", json=body, timeout=30)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert (err["type"], err["param"]) == ("invalid_request_error", param)
    if message is not None:
        assert err["message"] == message


TOO_LARGE = {
    "error": {
        "message": "Request body too large: the limit is 1048576 bytes.",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_too_large",
    }
}


def _raw_request(port: int, head: bytes, chunks: int) -> tuple[bytes, bytes]:
    """Send ``head`` and up to ``chunks`` chunks of 64 KiB (stopping once the server answers),
    then read the answer: its head and its body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        for _ in range(chunks):
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        data = b""
        while b"\r\n\r\n" not in data and (more := sock.recv(65536)):
            data += more
        answer, _, body = data.partition(b"\r\n\r\n")
        found = re.search(rb"content-length: (\d+)", answer, re.IGNORECASE)
        assert found is not None
        while len(body) < int(found.group(1)) and (more := sock.recv(65536)):
            body += more
        return answer, body


def test_bodies_over_1_mib_are_413(default_server: RunningServer) -> None:
    url = f"{default_server.base_url}{CHAT}"
    big = {"messages": [{"role": "user", "content": "x" * (1 << 20)}]}
    resp = httpx.post(url, json=big, timeout=30)
    assert resp.status_code == 413
    assert resp.json() == TOO_LARGE
    # a declared length over the limit is refused before a single body byte is sent
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10485760\r\n\r\n"
    )
    answer, body = _raw_request(default_server.port, head, 0)
    assert answer.startswith(b"HTTP/1.1 413")
    assert json.loads(body) == TOO_LARGE
    # a chunked body is cut off once it passes the limit
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    answer, body = _raw_request(default_server.port, head, 40)
    assert answer.startswith(b"HTTP/1.1 413")
    assert json.loads(body) == TOO_LARGE
    assert httpx.post(url, json=SHORT, timeout=30).status_code == 200


def test_fallback_mock_serves_the_fake_backend(tmp_path: Path) -> None:
    with run_server(tmp_path, env={"LLM_FALLBACK_MOCK": "1"}) as server:
        root = httpx.get(server.url, timeout=5).json()
        assert root["models"][0]["backend"] == "fake"
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        reply = client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "hi"}], seed=1
        )
        again = client.chat.completions.create(
            model="smollm2-135m", messages=[{"role": "user", "content": "hi"}], seed=1
        )
        assert reply.choices[0].message.content == again.choices[0].message.content
        assert reply.usage is not None
        assert reply.usage.completion_tokens > 0
