"""Refuse request bodies over ``max_body_bytes`` with 413 before they are read whole.

A declared ``Content-Length`` over the limit is refused before a byte of the body is read; a
chunked body is read only until it passes the limit. A body within the limit is buffered (it is
at most ``max_body_bytes``) and replayed to the app, so the handlers see an ordinary request; the
request context keeps it, so the rate limiter's token estimate does not read it a second time.
A JSON body's unpaired surrogate escapes are replaced here (:mod:`llmserver.surrogates`), so no
part of the server ever holds such a string.

The connection is not closed with the 413: closing a socket with unread data makes the kernel
send a reset, which can destroy the 413 before the client reads it. uvicorn discards whatever
body still arrives (never buffered) and drops the connection after its keep-alive timeout.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserver.errors import PayloadTooLargeError
from llmserver.http.context import request_context
from llmserver.http.errors import ErrorShapes, error_response
from llmserver.surrogates import lone_surrogates_replaced


async def read_body(receive: Receive, limit: int) -> tuple[bytes, Message | None]:
    """The whole body, or what was read when it passed ``limit`` bytes or the client left.

    The second value is the message that stopped the reading early (``http.disconnect``), or a
    synthetic ``{"type": "too_large"}``; None when the body was read completely.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", {"type": "too_large"}
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the client sends next (a
    disconnect, which streaming responses listen for)."""
    sent = False

    async def wrapped() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return wrapped


def too_large(limit: int) -> PayloadTooLargeError:
    """The 413 error for a body over ``limit`` bytes."""
    return PayloadTooLargeError(f"Request body too large: the limit is {limit} bytes.")


def counted(receive: Receive, limit: int) -> Receive:
    """A ``receive`` that raises the 413 once more than ``limit`` body bytes have arrived (for
    uploads, which are streamed to disk rather than buffered here)."""
    size = 0

    async def wrapped() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise too_large(limit)
        return message

    return wrapped


class BodyLimitMiddleware:
    """413 for bodies over ``limit`` bytes, whether declared or chunked.

    ``uploads`` maps paths to a larger limit of their own (a path ending in ``/``: every path
    under it); those bodies are not buffered but counted as the route reads them
    (``POST /v1/files``, ``POST /api/blobs/{digest}``)."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        shapes: ErrorShapes,
        uploads: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.uploads = uploads or {}
        self.shapes = shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        upload = next(
            (
                n
                for p, n in self.uploads.items()
                if path == p or (p.endswith("/") and path.startswith(p))
            ),
            None,
        )
        if upload is not None:
            declared = _content_length(scope)
            if declared is not None and declared > upload:
                await error_response(scope, too_large(upload), self.shapes)(scope, receive, send)
                return
            await self.app(scope, counted(receive, upload), send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await error_response(scope, too_large(self.limit), self.shapes)(scope, receive, send)
            return
        body, stopped = await read_body(receive, self.limit)
        if stopped is not None and stopped["type"] == "too_large":
            await error_response(scope, too_large(self.limit), self.shapes)(scope, receive, send)
            return
        if stopped is not None:  # the client left while sending its body
            return
        if _json(scope):
            body = lone_surrogates_replaced(body)  # the one place every JSON body passes whole
        request_context(scope).body = body  # the rate limiter's token estimate reads it
        await self.app(scope, replay(body, receive), send)


def _json(scope: Scope) -> bool:
    """Whether the body is read as JSON: FastAPI reads a body without a content type as JSON."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return b"json" in value.lower()
    return True


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
