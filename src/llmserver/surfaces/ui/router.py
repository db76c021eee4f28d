"""The dashboard's data endpoints, part of the API like any other (a key is needed when keys
exist; what a key sees follows its permissions, see :mod:`.snapshot`):

- ``GET /dashboard/snapshot``: one snapshot as JSON;
- ``GET /dashboard/events``: server-sent events, one ``snapshot`` event every ``interval``
  seconds (default 1, from 0.25 to 60) until the client leaves or the server drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from llmserver.http.respond import json_response, respond_stream
from llmserver.http.streaming import named_events
from llmserver.surfaces.ui.snapshot import snapshot

router = APIRouter(prefix="/dashboard")

SNAPSHOT_EVENTS = named_events("snapshot")


@router.get("/snapshot")
async def dashboard_snapshot(request: Request) -> Response:
    """What the server is doing now, as the caller may see it."""
    return json_response(await snapshot(request))


async def _snapshots(request: Request, interval: float) -> AsyncIterator[dict[str, Any]]:
    while True:
        snap = await snapshot(request)
        yield snap
        if snap["server"]["draining"]:
            return  # a stream that never ended would hold up the shutdown
        await asyncio.sleep(interval)


@router.get("/events")
async def dashboard_events(
    request: Request, interval: float = Query(1.0, ge=0.25, le=60)
) -> Response:
    """A snapshot every ``interval`` seconds as server-sent events."""
    return await respond_stream(request, _snapshots(request, interval), SNAPSHOT_EVENTS)
