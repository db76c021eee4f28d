"""``x-request-id``: the caller's when it is short and safe, else a new one; on every response and
in every log line of the request."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmserver.http.context import request_context
from llmserver.observability.logs import request_id_var

HEADER = b"x-request-id"
#: printable ASCII without spaces, quotes or separators that could break a log line or a header
_SAFE = re.compile(rb"[A-Za-z0-9._:@+/=-]{1,128}")


def pick_request_id(scope: Scope) -> str:
    """The request's own id when valid, otherwise a fresh random one."""
    for name, value in scope.get("headers", ()):
        if name == HEADER and _SAFE.fullmatch(value):
            return str(value.decode("ascii"))
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Sets the request id context variable, so log lines and tasks started later carry it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = pick_request_id(scope)
        request_context(scope).request_id = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                headers.append((HEADER, request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
