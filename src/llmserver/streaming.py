"""Server-sent events: framing, keep-alives, errors after the first byte, and ``[DONE]``.

The chunk source runs in its own task and hands chunks over through a queue, so the response can
send keep-alive comments while the source is quiet, and a client disconnect (which cancels the
response) cancels the source and with it the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import StreamingResponse

from llmserver.errors import APIError, error_body

logger = logging.getLogger("llmserver.streaming")

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_END = object()
_QUIET = object()


def frame(chunk: dict[str, Any]) -> bytes:
    """One SSE ``data:`` event."""
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class EventStream:
    """Relays a chunk iterator as SSE. Await :meth:`start` before sending headers, so an error
    before the first chunk still becomes a proper HTTP status."""

    def __init__(self, chunks: AsyncIterator[dict[str, Any]], keepalive_s: float) -> None:
        self._chunks = chunks
        self._keepalive_s = keepalive_s
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._first: object = _END

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

    async def aclose(self) -> None:
        """Cancel the source (client gone) and wait until it has cleaned up."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def body(self) -> AsyncIterator[bytes]:
        """The SSE byte stream, ending with ``[DONE]``."""
        try:
            item = self._first
            while item is not _END:
                if isinstance(item, BaseException):
                    yield self._error_event(item)
                    break
                yield KEEPALIVE if item is _QUIET else frame(item)  # type: ignore[arg-type]
                item = await self._next()
            yield DONE
        finally:
            await self.aclose()

    async def _next(self) -> object:
        while True:
            if not self._queue.empty():
                return self._queue.get_nowait()
            try:
                async with asyncio.timeout(self._keepalive_s):
                    return await self._queue.get()
            except TimeoutError:
                return _QUIET

    @staticmethod
    def _error_event(exc: BaseException) -> bytes:
        if not isinstance(exc, APIError):
            logger.error("stream failed after the first byte", exc_info=exc)
        return frame(error_body(exc))

    def response(self) -> StreamingResponse:
        """The streaming HTTP response."""
        return StreamingResponse(self.body(), media_type="text/event-stream", headers=SSE_HEADERS)
