"""Streamed responses: server-sent events (plain ``data:`` or named ``event:`` ones) or NDJSON,
keep-alives, errors after the first byte, and the end marker (``[DONE]`` for OpenAI's SSE).

The chunk source runs in its own task and hands chunks over through a queue, so the response can
send keep-alive comments while the source is quiet, and a client disconnect (which cancels the
response) cancels the source and with it the generation. Chunks that are already waiting when the
response writes are framed into one body message: an instant upstream's whole answer goes out in
one or two writes instead of one per token, and a slow one still gets each chunk at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from llmserver.errors import APIError
from llmserver.http.errors import ErrorShape, as_api_error, openai_error
from llmserver.http.jsonbytes import dumps

logger = logging.getLogger("llmserver.streaming")

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_END = object()
_QUIET = object()


def frame(chunk: dict[str, Any]) -> bytes:
    """One SSE ``data:`` event."""
    return b"data: " + dumps(chunk) + b"\n\n"


def named_event(chunk: dict[str, Any]) -> bytes:
    """One SSE event named by the chunk's own ``type`` (``event:`` line, then ``data:``), as
    Anthropic's streams are written; an error chunk of type ``error`` is ``event: error``."""
    return b"event: " + str(chunk["type"]).encode() + b"\ndata: " + dumps(chunk) + b"\n\n"


def ndjson_line(chunk: dict[str, Any]) -> bytes:
    """One JSON object on a line of its own."""
    return dumps(chunk) + b"\n"


@dataclass(frozen=True, slots=True)
class Framing:
    """How a surface writes a stream: each chunk, the end, keep-alives (None: none) and the
    shape of an error that happens after the first byte."""

    media_type: str
    frame: Callable[[dict[str, Any]], bytes]
    done: bytes
    keepalive: bytes | None
    error_shape: ErrorShape


#: OpenAI's server-sent events: ``data:`` lines, comment keep-alives, ``data: [DONE]``
OPENAI_SSE = Framing("text/event-stream", frame, DONE, KEEPALIVE, openai_error)


def named_events(event: str) -> Framing:
    """Server-sent events of one type (``event: <event>`` before each ``data:`` line), comment
    keep-alives, no end marker: for streams that run until the client leaves."""
    head = f"event: {event}\n".encode()
    return Framing(
        "text/event-stream", lambda chunk: head + frame(chunk), b"", KEEPALIVE, openai_error
    )


class EventStream:
    """Relays a chunk iterator as a stream. Await :meth:`start` before sending headers, so an
    error before the first chunk still becomes a proper HTTP status."""

    def __init__(
        self,
        chunks: AsyncIterator[dict[str, Any]],
        keepalive_s: float,
        framing: Framing = OPENAI_SSE,
    ) -> None:
        self._chunks = chunks
        self._keepalive_s = keepalive_s
        self.framing = framing
        #: the last piece of the body has been handed out
        self.finished = False
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._first: object = _END
        self._receive: Receive | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def _produce(self) -> None:
        try:
            async for chunk in self._chunks:
                self._queue.put_nowait(chunk)
        except Exception as exc:
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(_END)

    async def start(self) -> None:
        """Begin generating and wait for the first chunk; raise if it failed."""
        self._task = asyncio.create_task(self._produce())
        try:
            first = await self._queue.get()
        except BaseException:
            await self.aclose()
            raise
        if isinstance(first, BaseException):
            await self.aclose()
            raise first
        self._first = first

    def watch_disconnect(self, receive: Receive) -> None:
        """Where to notice a client disconnect while the stream waits for its source."""
        self._receive = receive

    async def aclose(self) -> None:
        """Cancel the source (client gone) and wait until it has cleaned up."""
        if self._watcher is not None:
            self._watcher.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def body(self) -> AsyncIterator[bytes]:
        """The byte stream, ending with the framing's end marker."""
        framing = self.framing
        try:
            item = self._first
            while True:
                out = bytearray()
                # everything already queued goes out in one write
                while True:
                    if item is _END:
                        self.finished = True
                        yield bytes(out + framing.done)
                        return
                    if isinstance(item, BaseException):
                        self.finished = True
                        yield bytes(out + self._error_event(item) + framing.done)
                        return
                    if item is _QUIET:
                        out += framing.keepalive or b""
                    else:
                        out += framing.frame(item)  # type: ignore[arg-type]
                    if self._queue.empty():
                        break
                    item = self._queue.get_nowait()
                yield bytes(out)
                item = await self._next()
        finally:
            await self.aclose()

    async def _next(self) -> object:
        if self._receive is not None and self._watcher is None:
            # only a stream that has to wait needs to notice a client leaving meanwhile
            self._watcher = asyncio.create_task(self._watch(self._receive))
        if self.framing.keepalive is None:
            return await self._queue.get()
        try:
            async with asyncio.timeout(self._keepalive_s):
                return await self._queue.get()
        except TimeoutError:
            return _QUIET

    async def _watch(self, receive: Receive) -> None:
        """Cancel the source when the client disconnects; the body then ends at once."""
        while (await receive())["type"] != "http.disconnect":
            pass
        if self._task is not None:
            self._task.cancel()

    def _error_event(self, exc: BaseException) -> bytes:
        if not isinstance(exc, APIError):
            logger.error("stream failed after the first byte", exc_info=exc)
        return self.framing.frame(self.framing.error_shape(as_api_error(exc)))

    def response(self, headers: dict[str, str] | None = None) -> StreamingResponse:
        """The streaming HTTP response (``headers`` beside the no-cache ones)."""
        return SSEResponse(self, {**SSE_HEADERS, **(headers or {})})


class SSEResponse(StreamingResponse):
    """A :class:`StreamingResponse` without Starlette's task group per response (a task and a
    cancel scope for every stream, to listen for a disconnect): the event stream starts its own
    watcher, and only when it has to wait for the source."""

    def __init__(self, events: EventStream, headers: dict[str, str] | None = None) -> None:
        self._events = events
        self._body = events.body()
        media = events.framing.media_type
        super().__init__(self._body, media_type=media, headers=headers or SSE_HEADERS)

    async def stream_response(self, send: Send) -> None:
        """Headers, then the body; the last piece also ends the response, so an instant answer
        takes two writes (headers, body) rather than three."""
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        ended = False
        async for data in self._body:
            ended = self._events.finished
            await send({"type": "http.response.body", "body": data, "more_body": not ended})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._events.watch_disconnect(receive)
        try:
            await self.stream_response(send)
        except OSError:
            raise ClientDisconnect() from None
