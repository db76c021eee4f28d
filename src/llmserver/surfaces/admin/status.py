"""Liveness, readiness and the server summary."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmserver import __version__
from llmserver.http.respond import json_response, manager

router = APIRouter()


@router.get("/health")
async def health() -> Response:
    """200 as soon as the process serves."""
    return json_response({"status": "ok"})


@router.get("/ready")
async def ready(request: Request) -> Response:
    """200 once every configured model is loaded and warm, else 503 (also while draining)."""
    models = manager(request)
    states = {h.id: h.state for h in models.handles()}
    if models.draining:
        return json_response({"status": "draining", "models": states}, status=503)
    if models.all_ready():
        return json_response({"status": "ready", "models": states})
    return json_response({"status": "not ready", "models": states}, status=503)


@router.get("/")
async def root(request: Request) -> Response:
    """Name, version, uptime and each model with its state and slots."""
    models = []
    for handle in manager(request).handles():
        models.append(
            {
                "id": handle.id,
                "backend": handle.config.backend,
                "aliases": handle.config.aliases,
                "state": handle.state,
                "error": handle.error,
                "slots": handle.limiter.slots,
                "slots_in_use": handle.limiter.in_use,
                "waiting": handle.limiter.waiting,
            }
        )
    uptime = time.monotonic() - request.app.state.started
    return json_response(
        {
            "name": "llmserver",
            "version": __version__,
            "uptime_s": round(uptime, 1),
            "default_model": manager(request).default_id,
            "models": models,
        }
    )
