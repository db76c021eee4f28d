"""SSE parsing and response checks, on byte streams cut at awkward places."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson

from llmserver.bench.client import _finish, _read_stream, _StreamState


class _Content:
    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    async def iter_any(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece

    async def read(self) -> bytes:
        return b""


class _Response:
    def __init__(self, pieces: list[bytes]) -> None:
        self.content = _Content(pieces)


def _chat_chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    event = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(event) + b"\r\n\r\n"


def _stream(tokens: int, usage: int | None, done: bool = True) -> bytes:
    parts = [b": keep-alive\n\n", _chat_chunk("")]
    parts += [_chat_chunk(f"t{i}") for i in range(tokens)]
    parts.append(_chat_chunk(None, "stop"))
    if usage is not None:
        event = {"choices": [], "usage": {"completion_tokens": usage, "prompt_tokens": 3}}
        parts.append(b"data:" + orjson.dumps(event) + b"\n\n")
    if done:
        parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


async def _parse(data: bytes, cut: int, expected: int) -> tuple[_StreamState, float]:
    pieces = [data[i : i + cut] for i in range(0, len(data), cut)]
    state = _StreamState(start=time.perf_counter(), expected_tokens=expected)
    end = await _read_stream(_Response(pieces), state)  # type: ignore[arg-type]
    return state, end


async def test_stream_parsed_whatever_the_cuts() -> None:
    data = _stream(6, usage=6)
    for cut in (1, 7, 64, len(data)):
        state, end = await _parse(data, cut, 6)
        assert state.done
        assert state.chunks == 6
        assert len(state.itl) == 5
        assert state.finish_reason == "stop"
        result = _finish(state, end, state.chunks, state.usage)
        assert result.ok, result.error
        assert result.output_tokens == 6
        assert result.prompt_tokens == 3
        assert result.usage_reported


async def test_usage_count_must_match_request() -> None:
    state, end = await _parse(_stream(5, usage=5), 16, 6)
    result = _finish(state, end, state.chunks, state.usage)
    assert not result.ok
    assert result.error == "output token count differs from the request"


async def test_without_usage_chunks_are_counted() -> None:
    state, end = await _parse(_stream(4, usage=None), 16, 6)
    result = _finish(state, end, state.chunks, state.usage)
    assert result.ok
    assert result.output_tokens == 4
    assert not result.usage_reported


async def test_missing_finish_reason_fails() -> None:
    data = b"".join([_chat_chunk("a"), _chat_chunk("b"), b"data: [DONE]\n\n"])
    state, end = await _parse(data, 5, 0)
    result = _finish(state, end, state.chunks, state.usage)
    assert not result.ok
    assert result.error == "no finish_reason"


async def test_error_event_stops_the_stream() -> None:
    data = _chat_chunk("a") + b'data: {"error": {"message": "boom"}}\n\n' + _chat_chunk("b")
    state, _ = await _parse(data, 1000, 0)
    assert state.error == "error event in stream"
    assert state.chunks == 1


async def test_stream_without_done_is_not_done() -> None:
    state, _ = await _parse(_stream(3, usage=3, done=False), 10, 3)
    assert not state.done
    assert state.chunks == 3
