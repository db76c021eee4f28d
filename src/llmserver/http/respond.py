"""What every route repeats, once: who is calling, the access record, cancel-on-disconnect
(logged as 499), and the JSON or streamed response."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import Request
from starlette.requests import HTTPConnection
from starlette.responses import Response

from llmserver.core.caller import Caller
from llmserver.core.generation import Generation
from llmserver.core.requests import ChatRequest, InfillRequest, Message, TextRequest
from llmserver.core.routing import ROUTE_HEADER, RouteContext
from llmserver.core.service import Service
from llmserver.core.usage import Timing, Usage
from llmserver.http.context import app_context, request_context
from llmserver.http.jsonbytes import dumps
from llmserver.http.streaming import OPENAI_SSE, EventStream, Framing
from llmserver.observability.logs import AccessRecord
from llmserver.security.keys import ApiKey

T = TypeVar("T")
#: the requests ``model: "auto"`` may route
Routable = TypeVar("Routable", ChatRequest, TextRequest, InfillRequest)

#: nginx's status for "client closed the request"; only ever seen in our own logs
CLIENT_CLOSED = 499


class ClientDisconnected(Exception):
    """The client went away before the answer was ready."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (see :func:`llmserver.http.jsonbytes.dumps`)."""
    return Response(dumps(body), status_code=status, media_type="application/json", headers=headers)


def service(request: HTTPConnection) -> Service:
    """The app's service: the only way from a route to a model."""
    return app_context(request.app).service


def api_key(request: HTTPConnection) -> ApiKey | None:
    """The authenticated key of this request; None when authentication is off."""
    return request_context(request.scope).key


def caller(request: HTTPConnection) -> Caller:
    """Who is calling, for the core: the key's permissions, or anyone when keys are off."""
    key = api_key(request)
    if key is not None:
        return Caller.of_key(key)
    if app_context(request.app).keys.configured:
        return Caller()  # keys are on but none was checked (a path open without one)
    return Caller.anyone()


def access(request: HTTPConnection) -> AccessRecord:
    """This request's access-log record."""
    return request_context(request.scope).access


def track(request: HTTPConnection, gen: Generation, streamed: bool) -> None:
    """Link the access record to a generation's usage and timing, which fill in as it runs, so
    the line logged at the end is complete, streamed or not."""
    record = access(request)
    record.model, record.backend = gen.model, gen.backend
    record.usage, record.timing, record.streamed = gen.usage, gen.timing, streamed


def track_usage(
    request: HTTPConnection, model: str | None, usage: Usage, timing: Timing | None = None
) -> None:
    """Link the access record to work that is not a generation (embeddings)."""
    record = access(request)
    record.model, record.usage, record.timing, record.streamed = model, usage, timing, False


async def require_admin(request: Request) -> None:
    """Dependency for admin endpoints: 401 without a key, 403 for a key that is not an admin key
    (everyone is admin only when no keys exist, which the start-up check allows on loopback or
    with ``insecure_no_auth`` only)."""
    caller(request).check_admin()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``, cancelling it if the client disconnects first (the body is already read).

    ``work`` runs in this task; only the disconnect watcher is a task of its own, which cancels
    this one when the client leaves (one task per request instead of two)."""
    current = asyncio.current_task()
    assert current is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        await _disconnected(request)
        gone = True
        current.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except BaseException:
        # whatever the cancelled work raised on its way out, the client is gone; a cancellation
        # from elsewhere as well (shutdown) still goes through
        if not gone or current.uncancel() > 0:
            raise
        raise ClientDisconnected from None
    finally:
        watcher.cancel()


async def routed(request: Request, req: Routable, surface: str) -> tuple[Routable, dict[str, str]]:
    """``req`` for the model that ``model: "auto"`` routes to (else as it is), and the
    response header that says what chose it. A completion is routed as a chat whose user
    message is its (last) prompt, or a fill-in-the-middle's prefix; the router model's tokens
    are charged to the caller with the request's."""
    if isinstance(req, ChatRequest):
        asked = req
    else:
        text = req.prompts[-1] if isinstance(req, TextRequest) else req.prefix
        asked = ChatRequest(req.model, (Message("user", text),))
    headers = {k.lower(): v for k, v in request.headers.items()}
    context = RouteContext(surface, request.scope["path"], headers)
    _, decision = await service(request).route(caller(request), asked, context)
    if decision is None:
        return req, {}
    if decision.router is not None and decision.router_usage is not None:
        access(request).extra.append((decision.router, decision.router_usage))
    header = {ROUTE_HEADER: f"{decision.reason}; model={decision.model}"}
    return dataclasses.replace(req, model=decision.model), header


async def respond_json(
    request: Request, body: Awaitable[Any], headers: dict[str, str] | None = None
) -> Response:
    """Wait for the whole body; a client that leaves meanwhile cancels the work (499)."""
    try:
        return json_response(await until_disconnect(request, body), headers=headers)
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)


async def respond_stream(
    request: Request,
    chunks: AsyncIterator[dict[str, Any]],
    framing: Framing = OPENAI_SSE,
    headers: dict[str, str] | None = None,
) -> Response:
    """Stream ``chunks``. Up to the first chunk (the wait for a slot, the prompt) an error is a
    proper HTTP status and a client that leaves cancels the work (499); after it, an error is
    one event in the stream and a disconnect cancels the stream."""
    events = EventStream(chunks, app_context(request.app).settings.keepalive_s, framing)
    try:
        await until_disconnect(request, events.start())
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)
    return events.response(headers)
