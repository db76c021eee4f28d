"""Helpers shared by the HTTP adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from starlette.responses import Response

from llmserver.core.manager import ModelManager
from llmserver.observability.logs import AccessRecord
from llmserver.security.access import check_admin
from llmserver.security.pii import OutputMasker
from llmserver.core.service import Generation, Service

T = TypeVar("T")

#: nginx's status for "client closed the request"; only ever seen in our own logs
CLIENT_CLOSED = 499


class ClientDisconnected(Exception):
    """The client went away before the answer was ready."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson."""
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def service(request: Request) -> Service:
    """The app's service."""
    svc: Service = request.app.state.service
    return svc


def manager(request: Request) -> ModelManager:
    """The app's model manager."""
    mgr: ModelManager = request.app.state.models
    return mgr


def access(request: Request) -> AccessRecord:
    """This request's access-log record."""
    record: AccessRecord | None = request.scope.get("state", {}).get("access")
    return record if record is not None else AccessRecord()


def track(request: Request, gen: Generation, streamed: bool) -> None:
    """Attach what every generation of a request needs: the access record, linked to usage and
    timing that fill in as it runs (so the line logged at the end is complete, streamed or
    not), and stream-safe masking of the generated text when ``mask_output`` is on."""
    if request.app.state.settings.mask_output:
        gen.output = OutputMasker(request.app.state.pii)
    record = access(request)
    record.model, record.backend = gen.handle.id, gen.handle.config.backend
    record.usage, record.timing, record.streamed = gen.usage, gen.timing, streamed


async def require_admin(request: Request) -> None:
    """Dependency for admin endpoints (model load/unload, log level, usage): 403 unless the
    caller's key is an admin key (everyone is admin only when no keys exist, which the start-up
    check allows on loopback or with ``insecure_no_auth`` only)."""
    check_admin(request)


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
