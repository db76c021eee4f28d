"""The HTTP side of the benchmark: one aiohttp session per target, SSE parsed by hand.

Every response is checked; a request that fails any check comes back with ``ok=False`` and a
short reason, so that truncated or broken answers never reach the figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from llmserver.bench.config import BenchError
from llmserver.bench.metrics import RequestResult

logger = logging.getLogger(__name__)

_DATA = b"data:"
_DONE = b"[DONE]"


@dataclass(slots=True)
class _StreamState:
    """What has been seen of one streamed response so far."""

    start: float
    expected_tokens: int
    ttft: float | None = None
    last: float = 0.0
    itl: list[float] = field(default_factory=list)
    chunks: int = 0
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    done: bool = False
    error: str | None = None


def make_session(api_key: str | None, pool_size: int, timeout_s: float) -> aiohttp.ClientSession:
    """A session whose connection pool holds ``pool_size`` connections (0: unlimited)."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    # a connection per request: llama-server closes a streaming response's connection without
    # saying so, and the next request sent on it failed (half of its requests in interleaved
    # runs); a loopback connect costs every target the same ~0.1 ms
    connector = aiohttp.TCPConnector(
        limit=pool_size, limit_per_host=0, ttl_dns_cache=300, force_close=True
    )
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, 30.0))
    return aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout)


async def first_model(session: aiohttp.ClientSession, base_url: str, api: str = "openai") -> str:
    """The id of the first model listed by ``GET {base_url}/models`` (Ollama: the name of the
    first one of ``GET {base_url}/api/tags``).

    Raises BenchError when the list cannot be read or is empty.
    """
    ollama = api == "ollama"
    url = f"{base_url.rstrip('/')}/api/tags" if ollama else f"{base_url.rstrip('/')}/models"
    key, field = ("models", "name") if ollama else ("data", "id")
    try:
        async with session.get(url) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise BenchError(f"GET {url}: HTTP {resp.status}: {body[:200]!r}")
            models = orjson.loads(body).get(key) or []
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, AttributeError) as exc:
        raise BenchError(f"GET {url}: {exc or type(exc).__name__}") from exc
    if not models or not isinstance(models[0], dict) or field not in models[0]:
        raise BenchError(f"GET {url}: no model listed; pass --model")
    return str(models[0][field])


def _chunk_text(choice: dict[str, Any]) -> str | None:
    """The generated text of one streamed choice, chat (delta) or completions (text)."""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        text = delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
        return text if isinstance(text, str) else None
    text = choice.get("text")
    return text if isinstance(text, str) else None


def _handle_event(state: _StreamState, data: bytes, now: float) -> None:
    """Apply one ``data:`` payload to the stream state."""
    if data == _DONE:
        state.done = True
        return
    event = orjson.loads(data)
    if not isinstance(event, dict):
        return
    if event.get("error") is not None:
        state.error = "error event in stream"
        return
    if isinstance(event.get("usage"), dict):
        state.usage = event["usage"]
    choices = event.get("choices")
    if not choices:
        return
    choice = choices[0]
    if choice.get("finish_reason"):
        state.finish_reason = str(choice["finish_reason"])
    if _chunk_text(choice):
        if state.ttft is None:
            state.ttft = now - state.start
        else:
            state.itl.append(now - state.last)
        state.last = now
        state.chunks += 1


def _ollama_usage(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "completion_tokens": obj.get("eval_count"),
        "prompt_tokens": obj.get("prompt_eval_count"),
    }


def _ollama_text(obj: dict[str, Any]) -> str | None:
    message = obj.get("message")
    text = message.get("content") if isinstance(message, dict) else obj.get("response")
    return text if isinstance(text, str) else None


def _handle_ndjson(state: _StreamState, line: bytes, now: float) -> None:
    """Apply one line of an Ollama NDJSON stream; ``done: true`` ends it with the counts."""
    event = orjson.loads(line)
    if not isinstance(event, dict):
        return
    if event.get("error") is not None:
        state.error = "error event in stream"
        return
    if _ollama_text(event):
        if state.ttft is None:
            state.ttft = now - state.start
        else:
            state.itl.append(now - state.last)
        state.last = now
        state.chunks += 1
    if event.get("done") is True:
        state.finish_reason = str(event.get("done_reason") or "stop")
        state.usage = _ollama_usage(event)
        state.done = True


def _handle_lines(state: _StreamState, lines: list[bytes], now: float, ndjson: bool) -> None:
    for raw in lines:
        line = raw.strip()
        if ndjson and line:
            _handle_ndjson(state, line, now)
        elif line.startswith(_DATA):
            _handle_event(state, line[len(_DATA) :].lstrip(), now)
        if state.done or state.error:
            return


async def _read_stream(
    resp: aiohttp.ClientResponse, state: _StreamState, ndjson: bool = False
) -> float:
    """Consume an SSE (or Ollama NDJSON) body; returns the time the stream ended."""
    buffer = b""
    async for data in resp.content.iter_any():
        now = time.perf_counter()
        buffer += data
        if b"\n" not in data:
            continue
        *lines, buffer = buffer.split(b"\n")
        _handle_lines(state, lines, now, ndjson)
        if state.done:
            # Drain the chunked terminator so that the connection goes back to the pool.
            await resp.content.read()
            return now
        if state.error:
            return now
    if buffer:
        _handle_lines(state, [buffer], time.perf_counter(), ndjson)
    return time.perf_counter()


def _usage_tokens(usage: dict[str, Any] | None) -> tuple[int | None, int | None]:
    if not usage:
        return None, None
    out, prompt = usage.get("completion_tokens"), usage.get("prompt_tokens")
    return (
        out if isinstance(out, int) else None,
        prompt if isinstance(prompt, int) else None,
    )


def _finish(
    state: _StreamState, end: float, counted: int, usage: dict[str, Any] | None
) -> RequestResult:
    """Check a finished response and turn it into a result."""
    usage_out, usage_prompt = _usage_tokens(usage)
    tokens = usage_out if usage_out is not None else counted
    error = state.error
    if error is None and not state.finish_reason:
        error = "no finish_reason"
    if error is None and state.expected_tokens > 0:
        if usage_out is not None and usage_out != state.expected_tokens:
            error = "output token count differs from the request"
        elif tokens == 0:
            error = "empty output"
    return RequestResult(
        ok=error is None,
        e2e=end - state.start,
        ttft=state.ttft,
        itl=state.itl,
        output_tokens=tokens,
        prompt_tokens=usage_prompt,
        usage_reported=usage_out is not None,
        error=error,
        cached_tokens=_cached_tokens(usage),
    )


def _cached_tokens(usage: dict[str, Any] | None) -> int | None:
    """OpenAI's ``usage.prompt_tokens_details.cached_tokens``, when the server reports it."""
    details = usage.get("prompt_tokens_details") if usage else None
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if isinstance(cached, int) else None


def _non_stream_result(
    state: _StreamState, body: bytes, end: float, ollama: bool = False
) -> RequestResult:
    payload = orjson.loads(body)
    if ollama:
        state.finish_reason = payload.get("done_reason") if payload.get("done") else None
        text = _ollama_text(payload)
        counted = len(text.split()) if text else 0
        return _finish(state, end, counted, _ollama_usage(payload))
    choices = payload.get("choices") or [{}]
    choice = choices[0]
    state.finish_reason = choice.get("finish_reason")
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    # Without usage, words are the best count a client has.
    counted = len(text.split()) if isinstance(text, str) else 0
    return _finish(state, end, counted, payload.get("usage"))


async def send_request(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    stream: bool,
    expected_tokens: int,
    api: str = "openai",
) -> RequestResult:
    """Send one request, read the whole response and check it (``api``: "openai" or
    "ollama", whose streams are NDJSON and whose counts are ``eval_count``)."""
    ollama = api == "ollama"
    state = _StreamState(start=time.perf_counter(), expected_tokens=expected_tokens)
    try:
        async with session.post(url, data=body) as resp:
            if resp.status != 200:
                await resp.read()
                return _failed(state, f"HTTP {resp.status}")
            if not stream:
                data = await resp.read()
                return _non_stream_result(state, data, time.perf_counter(), ollama)
            end = await _read_stream(resp, state, ollama)
    except TimeoutError:
        return _failed(state, "timeout")
    except aiohttp.ClientError as exc:
        return _failed(state, type(exc).__name__)
    except (orjson.JSONDecodeError, AttributeError, TypeError, IndexError, KeyError):
        return _failed(state, "malformed response")
    if state.error is None and not state.done:
        state.error = "stream ended without [DONE]"
    return _finish(state, end, state.chunks, state.usage)


def _failed(state: _StreamState, reason: str) -> RequestResult:
    return RequestResult(ok=False, e2e=time.perf_counter() - state.start, error=reason)


async def close_session(session: aiohttp.ClientSession) -> None:
    """Close a session and give its connections a moment to shut down cleanly."""
    await session.close()
    await asyncio.sleep(0)
