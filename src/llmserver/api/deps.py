"""Helpers shared by the HTTP adapters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from starlette.responses import Response

from llmserver.models import ModelManager
from llmserver.observability import AccessRecord
from llmserver.security.access import check_admin
from llmserver.service import Service

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


async def require_admin(request: Request) -> None:
    """Dependency for admin endpoints (model load/unload, log level, usage): 403 unless the
    caller's key is an admin key (everyone is admin only when no keys exist, which the start-up
    check allows on loopback or with ``insecure_no_auth`` only)."""
    check_admin(request)


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``, cancelling it if the client disconnects first (the body is already read)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise ClientDisconnected
    return task.result()
