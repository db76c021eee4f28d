"""SSE framing: one event per chunk, keep-alives while quiet, errors after the first byte, chunks
already waiting sent in one write, and a client disconnect cancelling the source."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, MutableMapping
from typing import Any

import pytest

from llmserver.errors import EngineError
from llmserver.http.streaming import DONE, KEEPALIVE, EventStream, SSEResponse


async def chunks(items: list[Any], delay: float = 0.0) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        await asyncio.sleep(delay)
        if isinstance(item, Exception):
            raise item
        yield item


async def writes_of(stream: EventStream) -> list[bytes]:
    """The body as written: one item per body message."""
    await stream.start()
    return [part async for part in stream.body()]


async def body_of(stream: EventStream) -> list[bytes]:
    """The body as SSE events, however they were grouped into writes."""
    data = b"".join(await writes_of(stream))
    return [event + b"\n\n" for event in data.split(b"\n\n") if event]


async def test_frames_each_chunk_then_done() -> None:
    parts = await body_of(EventStream(chunks([{"a": 1}, {"b": "é"}]), keepalive_s=10))
    assert parts == [b'data: {"a":1}\n\n', 'data: {"b":"é"}\n\n'.encode(), DONE]


async def test_chunks_already_waiting_go_out_in_one_write() -> None:
    async def instant() -> AsyncIterator[dict[str, Any]]:
        for item in ({"a": 1}, {"b": 2}, {"c": 3}):
            yield item  # no await: all of it is there before the response writes

    writes = await writes_of(EventStream(instant(), keepalive_s=10))
    assert writes == [b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: {"c":3}\n\n' + DONE]


async def test_a_slow_source_gets_each_chunk_written_at_once() -> None:
    writes = await writes_of(EventStream(chunks([{"a": 1}, {"b": 2}], delay=0.05), keepalive_s=10))
    assert writes == [b'data: {"a":1}\n\n', b'data: {"b":2}\n\n' + DONE]


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
    assert isinstance(body, AsyncGenerator)  # an async generator, so it can be closed
    await body.__anext__()
    await body.aclose()
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_client_disconnect_cancels_a_waiting_stream() -> None:
    cancelled = asyncio.Event()
    disconnect = asyncio.Event()
    sent: list[MutableMapping[str, Any]] = []

    async def slow() -> AsyncIterator[dict[str, Any]]:
        try:
            yield {"x": 1}
            await asyncio.sleep(30)
            yield {"x": 2}
        finally:
            cancelled.set()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if message.get("body"):
            disconnect.set()  # the client leaves after the first event

    stream = EventStream(slow(), keepalive_s=10)
    await stream.start()
    scope = {"type": "http", "asgi": {"spec_version": "2.3"}}
    await asyncio.wait_for(SSEResponse(stream)(scope, receive, send), 2)
    assert cancelled.is_set()
    assert sent[0]["type"] == "http.response.start"
    assert b'{"x":2}' not in b"".join(m.get("body", b"") for m in sent)


async def test_an_instant_answer_is_headers_and_one_final_body_message() -> None:
    async def instant() -> AsyncIterator[dict[str, Any]]:
        yield {"a": 1}
        yield {"b": 2}

    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    stream = EventStream(instant(), keepalive_s=10)
    await stream.start()
    await SSEResponse(stream)({"type": "http"}, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b'data: {"a":1}\n\ndata: {"b":2}\n\n' + DONE
    assert sent[1]["more_body"] is False
