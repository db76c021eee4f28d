"""SSE framing: one event per chunk, keep-alives while quiet, errors after the first byte."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from llmserver.errors import EngineError
from llmserver.streaming import DONE, KEEPALIVE, EventStream


async def chunks(items: list[Any], delay: float = 0.0) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        await asyncio.sleep(delay)
        if isinstance(item, Exception):
            raise item
        yield item


async def body_of(stream: EventStream) -> list[bytes]:
    await stream.start()
    return [part async for part in stream.body()]


async def test_frames_each_chunk_then_done() -> None:
    parts = await body_of(EventStream(chunks([{"a": 1}, {"b": "é"}]), keepalive_s=10))
    assert parts == [b'data: {"a":1}\n\n', 'data: {"b":"é"}\n\n'.encode(), DONE]


async def test_error_before_first_chunk_raises_for_a_proper_status() -> None:
    stream = EventStream(chunks([EngineError("boom")]), keepalive_s=10)
    with pytest.raises(EngineError):
        await stream.start()


async def test_error_after_first_byte_is_one_event_then_done() -> None:
    parts = await body_of(
        EventStream(chunks([{"a": 1}, EngineError("engine broke")]), keepalive_s=10)
    )
    assert parts[0] == b'data: {"a":1}\n\n'
    error = json.loads(parts[1][len(b"data: ") :])
    assert error["error"]["message"] == "engine broke"
    assert error["error"]["type"] == "server_error"
    assert parts[2:] == [DONE]


async def test_unexpected_error_hides_details() -> None:
    parts = await body_of(EventStream(chunks([{"a": 1}, KeyError("secret")]), keepalive_s=10))
    error = json.loads(parts[1][len(b"data: ") :])
    assert error["error"]["message"] == "internal server error"
    assert "secret" not in parts[1].decode()


async def test_keepalive_while_quiet() -> None:
    parts = await body_of(EventStream(chunks([{"a": 1}, {"b": 2}], delay=0.25), keepalive_s=0.1))
    assert KEEPALIVE in parts
    events = [p for p in parts if p != KEEPALIVE]
    assert events == [b'data: {"a":1}\n\n', b'data: {"b":2}\n\n', DONE]


async def test_closing_the_body_cancels_the_source() -> None:
    cancelled = asyncio.Event()

    async def endless() -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                yield {"x": 1}
                await asyncio.sleep(0.01)
        finally:
            cancelled.set()

    stream = EventStream(endless(), keepalive_s=10)
    await stream.start()
    body = stream.body()
    await body.__anext__()
    await body.aclose()
    await asyncio.wait_for(cancelled.wait(), 1)
