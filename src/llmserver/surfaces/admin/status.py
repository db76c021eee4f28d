"""Liveness, readiness and the server summary."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from llmserver import __version__
from llmserver.core.caller import Caller
from llmserver.errors import StoreUnavailableError
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
    upstream reachable) and the shared stores answer, else 503 (also while draining)."""
    readiness = await service(request).admin.readiness()
    states = readiness.states
    if readiness.draining:
        return json_response({"status": "draining", "models": states}, status=503)
    shared = await _shared_state(request)
    body: dict[str, object] = {"models": states}
    if shared:
        body["shared_state"] = shared
    if readiness.ready and all(state == "ok" for state in shared.values()):
        return json_response({"status": "ready", **body})
    return json_response({"status": "not ready", **body}, status=503)


async def _shared_state(request: Request) -> dict[str, str]:
    """``ok`` or ``unreachable`` for each shared store this gateway uses (none: empty)."""
    settings = app_context(request.app).settings
    out: dict[str, str] = {}
    if settings.store != "sqlite":
        try:
            await asyncio.to_thread(app_context(request.app).jobs.store.ping)
            out["postgresql"] = "ok"
        except StoreUnavailableError:
            out["postgresql"] = "unreachable"
    urls = (settings.rate_limit_storage, settings.response_cache_redis or "")
    if redis_url := next((u for u in urls if u.startswith(("redis://", "rediss://"))), None):
        out["redis"] = "ok" if await _redis_answers(redis_url) else "unreachable"
    return out


async def _redis_answers(url: str) -> bool:
    """Whether Redis at ``url`` answers a PING within a second."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


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
