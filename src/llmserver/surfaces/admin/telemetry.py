"""Metrics for Prometheus, the runtime log level, and per-key usage."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from llmserver.errors import InvalidRequestError
from llmserver.http.context import app_context
from llmserver.http.respond import json_response, require_admin
from llmserver.observability.logs import current_level, set_level

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """``GET /metrics`` in Prometheus text format."""
    exposition = app_context(request.app).metrics.exposition()
    return Response(exposition, media_type=CONTENT_TYPE_LATEST)


class LogLevel(BaseModel):
    """Body of ``PUT /admin/log-level``."""

    model_config = ConfigDict(extra="forbid")

    level: Literal["debug", "info", "warning", "error"]


@router.put("/admin/log-level", dependencies=[Depends(require_admin)])
async def put_log_level(body: LogLevel) -> Response:
    """Change the server's log level at run time (not saved: a restart uses the settings)."""
    set_level(body.level)
    return json_response({"level": current_level()})


@router.get("/admin/log-level", dependencies=[Depends(require_admin)])
async def get_log_level() -> Response:
    """The current log level."""
    return json_response({"level": current_level()})


def _day(value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(
            "since must be a date like 2026-01-31", param="since", code="invalid_value"
        ) from None


@router.get("/admin/usage", dependencies=[Depends(require_admin)])
async def usage(request: Request, since: str | None = None) -> Response:
    """Token usage per key name, model and UTC day, from ``since`` (YYYY-MM-DD) on."""
    day = _day(since)
    recorder = app_context(request.app).usage
    await asyncio.to_thread(recorder.flush)  # include the last second's counts
    rows = await asyncio.to_thread(recorder.store.query, day)
    return json_response({"object": "list", "data": [row.body() for row in rows]})
