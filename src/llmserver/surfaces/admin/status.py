"""Liveness, readiness and the server summary."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from llmserver import __version__
from llmserver.core.caller import Caller
from llmserver.http.context import app_context
from llmserver.http.respond import json_response, service

router = APIRouter()


@router.get("/health")
async def health() -> Response:
    """200 as soon as the process serves."""
    return json_response({"status": "ok"})


@router.get("/ready")
async def ready(request: Request) -> Response:
    """200 once every configured model is loaded, warm and healthy (its engine alive, its
    upstream reachable), else 503 (also while draining)."""
    readiness = await service(request).admin.readiness()
    states = readiness.states
    if readiness.draining:
        return json_response({"status": "draining", "models": states}, status=503)
    if readiness.ready:
        return json_response({"status": "ready", "models": states})
    return json_response({"status": "not ready", "models": states}, status=503)


#: what Ollama answers at ``/``; its clients probe for it
OLLAMA_RUNNING = "Ollama is running"


def _ollama_client(request: Request) -> bool:
    """Ollama's own clients name themselves (``ollama-python/...``, ``ollama-js/...``, the Go
    client's ``ollama/...``); browsers, curl and monitoring send other agents."""
    return request.headers.get("user-agent", "").lower().startswith("ollama")


@router.head("/")
async def root_probe() -> Response:
    """``HEAD /``: Ollama's liveness probe."""
    return PlainTextResponse(OLLAMA_RUNNING)


@router.get("/")
async def root(request: Request) -> Response:
    """Name, version, uptime and each model with its state (health included) and slots; to an
    Ollama client, Ollama's plain ``Ollama is running``."""
    if _ollama_client(request):
        return PlainTextResponse(OLLAMA_RUNNING)
    svc = service(request)
    states = (await svc.admin.readiness()).states
    models = []
    for view in svc.admin.models(Caller.anyone()):
        models.append(
            {
                "id": view.id,
                "backend": view.backend,
                "aliases": list(view.aliases),
                "state": states.get(view.id, view.state),
                "error": view.error,
                "slots": view.slots,
                "slots_in_use": view.slots_in_use,
                "waiting": view.waiting,
            }
        )
    uptime = time.monotonic() - app_context(request.app).started
    return json_response(
        {
            "name": "llmserver",
            "version": __version__,
            "uptime_s": round(uptime, 1),
            "default_model": svc.admin.default_model,
            "models": models,
        }
    )
